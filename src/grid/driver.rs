//! The grid driver: one tokio task that owns a node's [`Core`], feeds it ticks, peer
//! messages and proposals, and carries out its commands **in order** — persist (fsync) the
//! hard state and log, then send, respond, apply, reply. Everything else talks to the task
//! through a [`GridHandle`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::engine::Engine;
use crate::error::{SolidError, code};
use crate::grid::core::{Command, Core, Input, Outcome, Proposal, RequestId, Role};
use crate::grid::membership::ChangeRequest;
use crate::grid::peer::PeerClient;
use crate::grid::store::{GridStore, HardState};
use crate::grid::types::{
    Change, ChangeKind, Entry, Index, Member, MemberState, Message, NodeId, Payload, Term, Topology,
};
use crate::msglog::MessageLog;
use crate::storage::db::{DbDump, LogRecord};

/// How often the core is ticked.
const TICK: Duration = Duration::from_millis(10);
/// Requests queued to the driver task before callers wait (back-pressure).
const QUEUE: usize = 1024;
/// Peer requests in flight to one peer; beyond it new ones are dropped (Raft retries).
const MAX_IN_FLIGHT_PER_PEER: usize = 8;
/// Log entries after which the log is compacted (the database holds their effect) and how
/// many recent entries are kept for followers that are slightly behind. `SOLIDGRID_COMPACT_ENTRIES`
/// overrides the first for tests (the second is a tenth of it).
const COMPACT_ENTRIES: usize = 10_000;
/// Bound on a snapshot transfer to a follower.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on waiting for a proposal's outcome; past it the outcome is unknown.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(60);

/// What a joining node receives at grid start: the grid's common data as of `index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSnapshot {
    pub grid: String,
    pub index: Index,
    pub term: Term,
    pub topology: Topology,
    pub dump: DbDump,
}

/// A read-only view of the node's grid state, refreshed after every step.
#[derive(Debug, Clone, Default)]
pub struct GridView {
    pub node_id: NodeId,
    pub role: Option<Role>,
    /// Leader that has committed an entry of its term (may propose changes).
    pub ready_leader: bool,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub topology: Topology,
    /// Milliseconds since the leader last heard from each node (leader only).
    pub last_heard_ago_ms: BTreeMap<NodeId, u64>,
}

impl GridView {
    pub fn leader_member(&self) -> Option<&Member> {
        self.leader.and_then(|l| self.topology.members.get(&l))
    }

    pub fn is_leader(&self) -> bool {
        self.role == Some(Role::Leader)
    }

    /// The error a leader-only statement gets on this node (18503 naming the leader, or
    /// 18502 when there is none).
    pub fn not_leader_error(&self) -> SolidError {
        match self.leader_member() {
            Some(m) if !self.is_leader() => SolidError::grid(
                code::NOT_LEADER,
                format!(
                    "DDL operation not allowed in current grid node: run it on the grid leader, node {} at {}",
                    m.name, m.addr
                ),
            ),
            _ => SolidError::grid(
                code::NO_LEADER,
                "no grid leader: a majority of the voters is not reachable",
            ),
        }
    }
}

/// Identity and settings of this node in its grid.
#[derive(Debug, Clone)]
pub struct DriverSettings {
    pub node_id: NodeId,
    pub secret: String,
    /// Timeout of one peer request (vote, append).
    pub rpc_timeout: Duration,
}

enum Request {
    Peer {
        from: NodeId,
        msg: Message,
        respond: oneshot::Sender<Result<Message, SolidError>>,
    },
    PeerReply {
        from: NodeId,
        msg: Message,
    },
    Propose {
        proposal: Proposal,
        reply: oneshot::Sender<Result<Outcome, SolidError>>,
    },
    CheckChange {
        req: ChangeRequest,
        reply: oneshot::Sender<Result<Change, SolidError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Result<GridSnapshot, SolidError>>,
    },
    /// A leader sent this member a snapshot (it was too far behind).
    Install {
        snapshot: Box<GridSnapshot>,
        leader_term: Term,
        reply: oneshot::Sender<Result<(), SolidError>>,
    },
    Input(Input),
    FailureDetection(bool),
    Stop,
}

/// What the driver tells its owner about this node's own membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelfEvent {
    /// This node's add committed: its provisional common data is now its database.
    JoinCommitted,
    /// This node's add was rolled back: it must become an empty grid node again.
    JoinAborted,
}

/// The handle through which the server and the peer service use the driver task.
#[derive(Clone)]
pub struct GridHandle {
    tx: mpsc::Sender<Request>,
    view: Arc<RwLock<GridView>>,
}

impl std::fmt::Debug for GridHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridHandle").finish_non_exhaustive()
    }
}

fn stopped() -> SolidError {
    SolidError::grid(code::NO_LEADER, "the grid driver of this node has stopped")
}

/// A proposal's answer when the driver stopped after taking it: it may have been appended
/// and replicated, so its outcome is unknown.
fn stopped_in_flight() -> SolidError {
    SolidError::grid(
        code::OUTCOME_UNKNOWN,
        "outcome unknown: the grid driver of this node stopped while the statement was in flight; check SYS_GRID_NODES and the data on the leader",
    )
}

impl GridHandle {
    pub fn view(&self) -> GridView {
        self.view.read().clone()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, SolidError>>) -> Request,
    ) -> Result<T, SolidError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Replicates a proposal and waits for its outcome (applied on this node first).
    ///
    /// Once the driver has the proposal it may be in the log, so a driver that stops before
    /// answering gives "outcome unknown" (18510), never 18502: clients retry 18502 and
    /// 18503 as "refused before anything happened".
    pub async fn propose(&self, proposal: Proposal) -> Result<Outcome, SolidError> {
        let fut = async {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(Request::Propose {
                    proposal,
                    reply: tx,
                })
                .await
                .map_err(|_| stopped())?;
            rx.await.map_err(|_| stopped_in_flight())?
        };
        match tokio::time::timeout(PROPOSAL_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(SolidError::grid(
                code::OUTCOME_UNKNOWN,
                "outcome unknown: the grid did not decide in time; check SYS_GRID_NODES",
            )),
        }
    }

    /// A peer's vote or append request; the reply is sent only after what it acknowledges
    /// is durable.
    pub async fn peer_message(&self, from: NodeId, msg: Message) -> Result<Message, SolidError> {
        self.call(|respond| Request::Peer { from, msg, respond })
            .await
    }

    pub async fn check_change(&self, req: ChangeRequest) -> Result<Change, SolidError> {
        self.call(|reply| Request::CheckChange { req, reply }).await
    }

    /// The grid's common data as of the last applied index, consistent with the topology.
    pub async fn snapshot(&self) -> Result<GridSnapshot, SolidError> {
        self.call(|reply| Request::Snapshot { reply }).await
    }

    /// Installs a snapshot a leader sent because this member was too far behind.
    pub async fn install_snapshot(
        &self,
        snapshot: GridSnapshot,
        leader_term: Term,
    ) -> Result<(), SolidError> {
        self.call(|reply| Request::Install {
            snapshot: Box::new(snapshot),
            leader_term,
            reply,
        })
        .await
    }

    /// Waits until this node is a leader that may propose changes, up to `limit`.
    pub async fn wait_ready_leader(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.view();
            if v.ready_leader {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Pauses or resumes failure detection on this node (when it leads).
    pub async fn set_failure_detection(&self, on: bool) {
        let _ = self.tx.send(Request::FailureDetection(on)).await;
    }

    /// Stops the driver task (node shutdown).
    pub async fn stop(&self) {
        let _ = self.tx.send(Request::Stop).await;
    }
}

/// A peer's client and the permits bounding its requests in flight.
type PeerSlot = (PeerClient, Arc<Semaphore>);

/// Peer clients by address, each with a bound on requests in flight.
#[derive(Clone)]
struct Peers {
    secret: String,
    timeout: Duration,
    clients: Arc<Mutex<HashMap<String, PeerSlot>>>,
}

impl Peers {
    fn get(&self, addr: &str) -> Option<PeerSlot> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(addr) {
            return Some(c.clone());
        }
        match PeerClient::new(addr, &self.secret) {
            Ok(client) => {
                let entry = (client, Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_PEER)));
                clients.insert(addr.to_string(), entry.clone());
                Some(entry)
            }
            Err(e) => {
                tracing::warn!("cannot make a peer client for {addr}: {e}");
                None
            }
        }
    }
}

struct Driver {
    core: Core,
    store: Box<dyn GridStore>,
    engine: Arc<Engine>,
    msglog: Arc<MessageLog>,
    peers: Peers,
    self_tx: mpsc::Sender<Request>,
    view: Arc<RwLock<GridView>>,
    started: Instant,
    next_request: RequestId,
    replies: HashMap<RequestId, oneshot::Sender<Result<Outcome, SolidError>>>,
    hard_state: HardState,
    events: mpsc::UnboundedSender<SelfEvent>,
}

/// Starts the driver task for `core`. Returns the handle and a stream of events about this
/// node's own membership.
pub fn spawn(
    settings: DriverSettings,
    mut core: Core,
    store: Box<dyn GridStore>,
    engine: Arc<Engine>,
    msglog: Arc<MessageLog>,
    hard_state: HardState,
) -> Result<(GridHandle, mpsc::UnboundedReceiver<SelfEvent>), SolidError> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let view = Arc::new(RwLock::new(GridView {
        node_id: settings.node_id,
        ..GridView::default()
    }));
    let initial = core.start();
    let mut driver = Driver {
        core,
        store,
        engine,
        msglog,
        peers: Peers {
            secret: settings.secret.clone(),
            timeout: settings.rpc_timeout,
            clients: Arc::new(Mutex::new(HashMap::new())),
        },
        self_tx: tx.clone(),
        view: view.clone(),
        started: Instant::now(),
        next_request: 1,
        replies: HashMap::new(),
        hard_state,
        events: events_tx,
    };
    driver.execute(initial, None)?;
    driver.refresh_view();
    tokio::spawn(driver.run(rx));
    Ok((GridHandle { tx, view }, events_rx))
}

impl Driver {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let result = tokio::select! {
                req = rx.recv() => match req {
                    None | Some(Request::Stop) => break,
                    Some(req) => self.handle(req),
                },
                _ = ticker.tick() => self.step(Input::Tick, None),
            };
            if let Err(e) = result {
                self.msglog
                    .error(format!("grid: storage failure, the grid driver stops: {e}"));
                break;
            }
            self.refresh_view();
        }
        for (_, reply) in self.replies.drain() {
            let _ = reply.send(Err(stopped_in_flight()));
        }
    }

    fn handle(&mut self, req: Request) -> Result<(), SolidError> {
        match req {
            Request::Peer { from, msg, respond } => {
                self.step(Input::Message { from, msg }, Some(respond))
            }
            Request::PeerReply { from, msg } => self.step(Input::Message { from, msg }, None),
            Request::Propose { proposal, reply } => {
                let id = self.next_request;
                self.next_request += 1;
                self.replies.insert(id, reply);
                self.step(Input::Propose { id, proposal }, None)
            }
            Request::CheckChange { req, reply } => {
                let _ = reply.send(self.core.check_change(&req));
                Ok(())
            }
            Request::Snapshot { reply } => {
                let _ = reply.send(self.snapshot());
                Ok(())
            }
            Request::Install {
                snapshot,
                leader_term,
                reply,
            } => {
                let result = self.install(*snapshot, leader_term);
                let fatal = matches!(&result, Err(e) if e.code == code::STORAGE);
                let _ = reply.send(result.clone());
                if fatal { result } else { Ok(()) }
            }
            Request::Input(input) => self.step(input, None),
            Request::FailureDetection(on) => {
                self.core.set_failure_detection(on);
                Ok(())
            }
            Request::Stop => Ok(()),
        }
    }

    /// Replaces this member's database and log with a leader's snapshot.
    fn install(&mut self, snapshot: GridSnapshot, leader_term: Term) -> Result<(), SolidError> {
        if leader_term < self.core.term() {
            return Err(SolidError::grid(
                code::NOT_LEADER,
                format!(
                    "snapshot from a stale leader (term {leader_term} < {})",
                    self.core.term()
                ),
            ));
        }
        if snapshot.index <= self.core.commit_index() {
            return Ok(());
        }
        tokio::task::block_in_place(|| -> Result<(), SolidError> {
            self.engine
                .restore(&snapshot.dump, snapshot.index)
                .map_err(|e| SolidError::server(code::STORAGE, e.to_string()))?;
            self.engine
                .mark_lost_copies(self.core.id(), snapshot.index)?;
            crate::grid::fault::point("during-snapshot-install");
            self.store
                .reset_to_snapshot(snapshot.index, snapshot.term)
                .map_err(grid_log_error)?;
            self.store
                .set_snapshot_topology(&snapshot.topology)
                .map_err(grid_log_error)?;
            let hs = HardState {
                commit: snapshot.index,
                ..self.hard_state
            };
            self.store.set_hard_state(hs).map_err(grid_log_error)?;
            self.hard_state = hs;
            Ok(())
        })?;
        self.core
            .install_snapshot(snapshot.index, snapshot.term, snapshot.topology);
        self.msglog.info(format!(
            "grid {}: installed a snapshot from the leader through index {} (this node was too far behind)",
            snapshot.grid, snapshot.index
        ));
        Ok(())
    }

    /// Compacts the log once it is long: the database already holds the effect of every
    /// applied entry.
    fn maybe_compact(&mut self) -> Result<(), SolidError> {
        let threshold = std::env::var("SOLIDGRID_COMPACT_ENTRIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(COMPACT_ENTRIES)
            .max(2);
        if self.core.entries().len() <= threshold {
            return Ok(());
        }
        let through = self
            .core
            .applied_index()
            .saturating_sub((threshold / 10) as u64);
        let Some((through, term, topology)) = self.core.compact(through) else {
            return Ok(());
        };
        tokio::task::block_in_place(|| -> Result<(), SolidError> {
            self.store
                .set_snapshot_topology(&topology)
                .map_err(grid_log_error)?;
            self.store.compact(through, term).map_err(grid_log_error)
        })?;
        tracing::info!(through, "grid log compacted");
        Ok(())
    }

    fn send_snapshot(&self, to: NodeId, addr: String) {
        let snapshot = match self.snapshot() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(to, "cannot make a snapshot: {e}");
                return;
            }
        };
        let bytes = match postcard::to_stdvec(&snapshot) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(to, "cannot encode a snapshot: {e}");
                return;
            }
        };
        let Some((client, _)) = self.peers.get(&addr) else {
            return;
        };
        let req = crate::grid::peer::GridStart {
            grid: snapshot.grid.clone(),
            node_id: to,
            leader_id: self.core.id(),
            leader_term: self.core.term(),
            snapshot: bytes,
        };
        let index = snapshot.index;
        let tx = self.self_tx.clone();
        tokio::spawn(async move {
            let input = match client.grid_start(req, SNAPSHOT_TIMEOUT).await {
                Ok(()) => Input::SnapshotSent { to, index },
                Err(e) => {
                    tracing::warn!(to, "snapshot transfer failed: {e}");
                    Input::SnapshotFailed { to }
                }
            };
            let _ = tx.send(Request::Input(input)).await;
        });
    }

    fn snapshot(&self) -> Result<GridSnapshot, SolidError> {
        let topology = self.core.topology().clone();
        let index = self.core.commit_index();
        let applied = self.engine.grid_applied_index()?;
        // Every committed data entry is applied before the driver takes its next request,
        // so the database is exactly the state at `index`.
        debug_assert!(applied <= index);
        let term = self
            .core
            .term_at(index)
            .ok_or_else(|| SolidError::server(code::STORAGE, "commit index outside the log"))?;
        Ok(GridSnapshot {
            grid: topology.grid.clone(),
            index,
            term,
            topology,
            // Rows of partitioned tables stay where their copies are; the GAM loads them.
            dump: self.engine.dump_shared()?,
        })
    }

    fn step(
        &mut self,
        input: Input,
        respond: Option<oneshot::Sender<Result<Message, SolidError>>>,
    ) -> Result<(), SolidError> {
        let now = self.now_ms();
        let commands = self.core.step(now, input);
        self.execute(commands, respond)
    }

    /// Carries out commands strictly in order: an fsync before whatever follows it.
    fn execute(
        &mut self,
        commands: Vec<Command>,
        mut respond: Option<oneshot::Sender<Result<Message, SolidError>>>,
    ) -> Result<(), SolidError> {
        for command in commands {
            match command {
                Command::PersistHardState {
                    term,
                    voted_for,
                    commit,
                } => {
                    let hs = HardState {
                        term,
                        voted_for,
                        commit,
                    };
                    if hs != self.hard_state {
                        tokio::task::block_in_place(|| self.store.set_hard_state(hs))
                            .map_err(grid_log_error)?;
                        self.hard_state = hs;
                    }
                }
                Command::AppendLog { entries } => {
                    crate::grid::fault::before_append(&entries, &self.core);
                    tokio::task::block_in_place(|| self.store.append(&entries))
                        .map_err(grid_log_error)?;
                    crate::grid::fault::after_append(&entries, &self.core);
                }
                Command::Send { to, addr, msg } => self.send(to, addr, msg),
                Command::Respond { msg, .. } => {
                    if let Some(r) = respond.take() {
                        let _ = r.send(Ok(msg));
                    }
                }
                Command::Apply { entries } => {
                    self.apply(&entries)?;
                    self.maybe_compact()?;
                }
                Command::SendSnapshot { to, addr } => self.send_snapshot(to, addr),
                Command::Reply { id, result } => {
                    if let Some(r) = self.replies.remove(&id) {
                        let _ = r.send(result);
                    }
                }
            }
        }
        if let Some(r) = respond {
            // The core answers every request; a missing answer is a bug, but never hang
            // the caller on it.
            let _ = r.send(Err(SolidError::grid(
                code::NO_LEADER,
                "request not answered",
            )));
        }
        Ok(())
    }

    fn send(&self, to: NodeId, addr: String, msg: Message) {
        let Some((client, permits)) = self.peers.get(&addr) else {
            return;
        };
        let Ok(permit) = permits.try_acquire_owned() else {
            tracing::debug!(to, "dropping a message: too many in flight to this peer");
            return;
        };
        let tx = self.self_tx.clone();
        let timeout = self.peers.timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match client.message(msg, timeout).await {
                Ok(reply) => {
                    let _ = tx
                        .send(Request::PeerReply {
                            from: to,
                            msg: reply,
                        })
                        .await;
                }
                Err(e) => tracing::debug!(to, "peer request failed: {e}"),
            }
        });
    }

    /// Applies committed data entries in batches of consecutive ones (one engine fsync
    /// each), in log order with the membership entries between them.
    fn apply_data(&self, batch: &mut Vec<(u64, LogRecord)>) -> Result<(), SolidError> {
        if batch.is_empty() {
            return Ok(());
        }
        let me = self.core.id();
        let entries = std::mem::take(batch);
        tokio::task::block_in_place(|| self.engine.apply_replicated_batch(entries, Some(me)))?;
        Ok(())
    }

    fn apply(&mut self, entries: &[Entry]) -> Result<(), SolidError> {
        let me = self.core.id();
        let mut batch = Vec::new();
        for e in entries {
            if let Payload::Data(bytes) = &e.payload {
                let record = LogRecord::decode(bytes)
                    .map_err(|err| SolidError::server(code::STORAGE, err.to_string()))?;
                batch.push((e.index, record));
                continue;
            }
            self.apply_data(&mut batch)?;
            match &e.payload {
                Payload::Data(_) => unreachable!("data entries are batched above"),
                Payload::CreateGrid { grid, founder } => self.msglog.info(format!(
                    "grid {grid}: created with founder node {} ({}) at index {}",
                    founder.name, founder.addr, e.index
                )),
                Payload::Prepare(c) => self.msglog.info(format!(
                    "grid {}: PREPARE {} of node {} ({}) at index {}: {} -> {}",
                    self.core.topology().grid,
                    c.kind.as_str(),
                    c.node.name,
                    c.node.addr,
                    e.index,
                    c.from,
                    crate::grid::membership::transition(c.kind, c.from)
                        .map_or(MemberState::NotMember, |t| t.via)
                )),
                Payload::Decide { prepare, commit } => {
                    let t = self.core.topology();
                    // The change is already applied to the topology: find it by prepare.
                    let change = self
                        .core
                        .entries()
                        .iter()
                        .find(|x| x.index == *prepare)
                        .and_then(|x| match &x.payload {
                            Payload::Prepare(c) => Some(c.clone()),
                            _ => None,
                        });
                    if let Some(c) = change {
                        let state = t.stable_state(c.node.id);
                        if *commit {
                            self.msglog.info(format!(
                                "grid {}: COMMIT {} of node {} at index {}: node is {state}",
                                t.grid,
                                c.kind.as_str(),
                                c.node.name,
                                e.index
                            ));
                        } else {
                            self.msglog.error(format!(
                                "grid {}: {} of node {} rolled back (ABORT at index {}): quorum not reached, node is {state}",
                                t.grid,
                                c.kind.as_str(),
                                c.node.name,
                                e.index
                            ));
                        }
                        if c.node.id == me && c.kind == ChangeKind::Add {
                            let _ = self.events.send(if *commit {
                                SelfEvent::JoinCommitted
                            } else {
                                SelfEvent::JoinAborted
                            });
                        }
                    }
                }
                Payload::Noop => {}
            }
        }
        self.apply_data(&mut batch)
    }

    fn refresh_view(&self) {
        let now = self.now_ms();
        let topology = self.core.topology().clone();
        let last_heard_ago_ms = topology
            .members
            .keys()
            .filter_map(|&id| {
                self.core
                    .last_heard_ms(id)
                    .map(|t| (id, now.saturating_sub(t)))
            })
            .collect();
        let mut view = self.view.write();
        let role = self.core.role();
        if view.role != Some(role) && (role == Role::Leader || view.role == Some(Role::Leader)) {
            // Leadership changes go to solmsg.out, so a failure says when and in which term.
            self.msglog.info(format!(
                "grid {}: this node {} the grid leader in term {}",
                topology.grid,
                if role == Role::Leader {
                    "became"
                } else {
                    "is no longer"
                },
                self.core.term()
            ));
        }
        *view = GridView {
            node_id: self.core.id(),
            role: Some(role),
            ready_leader: self.core.is_ready_leader(),
            term: self.core.term(),
            leader: self.core.leader(),
            commit: self.core.commit_index(),
            topology,
            last_heard_ago_ms,
        };
    }
}

/// A failure of the grid-log store, as the node reports it (it stops the driver).
fn grid_log_error(e: crate::grid::store::StoreError) -> SolidError {
    SolidError::server(code::STORAGE, format!("grid log: {e}"))
}
