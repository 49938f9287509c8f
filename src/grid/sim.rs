//! A deterministic, in-process cluster harness for the grid protocol core
//! ([`crate::grid::core`]): N cores in one thread, a simulated clock, a fault-injecting
//! network and checkers of design §10 that run after every step.
//!
//! Everything is driven by one `u64` seed (a splitmix64 generator of our own): message
//! delays, drops, duplicates, the cores' own randomness, the fuzz driver's choices. Replaying
//! a seed replays the run exactly.
//!
//! What is modelled:
//! - **Durable state.** Each node keeps what the driver would have fsynced — term, vote,
//!   commit hint, snapshot, log entries — and it changes *only* by executing the core's
//!   `PersistHardState` / `AppendLog` commands, strictly in command order. A crash (also in
//!   the middle of a command batch, [`Cluster::crash_between_commands`]) loses exactly the
//!   commands not yet executed; a restart builds a new [`Core`] from that state.
//! - **The network.** `Send` becomes a request delivered to the node at its address;
//!   `Respond` becomes a reply delivered back to the requester (both as `Input::Message`).
//!   Each copy gets its own random delay (so messages reorder); knobs drop or duplicate
//!   them, partition the nodes symmetrically, cut one direction of a link (for every
//!   message, or for real vote requests only). Messages to or from a crashed node are lost,
//!   including those already in flight. [`Cluster::hold`] withholds a node's ticks, and
//!   [`Cluster::elect`] uses that to make a chosen node the leader.
//! - **Storage faults.** A slow fsync ([`Cluster::set_slow_fsync`]) keeps the node busy
//!   (no input) until the write and the rest of its batch complete; a crash meanwhile loses
//!   them. A failing fsync ([`Cluster::fail_fsync`]) stops the node at that write: a
//!   hard-state write may or may not land, an append keeps a random prefix of its entries
//!   (the last record is torn).
//! - **Clients.** Proposals go through the core's public API (`check_change` then
//!   `Input::Propose`); what each client was told is recorded and checked against the log.
//! - **A joining node** (ADD) exists before it is in the topology and starts the way the
//!   driver's grid start will make it start: from a snapshot of the leader's committed state.
//!   The leader assigns its id; when that id belonged to an earlier node (a failed add or
//!   a dropped node: ids are reused), the earlier node is wiped.
//!
//! The checkers (any violation panics with the seed and the last events):
//! 1. at most one leader per term;
//! 2. committed-prefix agreement: the same entry at the same index on every node, for every
//!    index up to each node's commit, and no committed entry is ever overwritten;
//! 3. every core's `validate()`, and its durable term and log end match its volatile ones;
//! 4. applied topologies only move through legal transitions (`membership::transition`),
//!    replayed here independently of the core's own apply code;
//! 5. durable before acknowledged: in every command batch no append acknowledgement, vote
//!    or vote request precedes a durable write, and when one is executed the durable state
//!    already holds what it acknowledges;
//! 6. a change a client saw committed has its COMMIT decision in the committed log, one it
//!    saw rolled back has its ABORT there (so it never commits); committed data is the data
//!    proposed, and every member holds all of it once caught up;
//! 7. quorums: whenever a leader's commit index advances, the new entry is durable on a
//!    majority of the voters of its applied topology (so a joining node, which is not
//!    ONLINE there, never counts), and that topology is at most one membership change behind
//!    the newest committed one;
//! 8. a ready leader is a voter of its own applied topology;
//! 9. one change in flight in every log: no PREPARE follows an undecided PREPARE.
//!
//! Liveness ([`Cluster::liveness`]): once faults stop and a majority is connected, a leader
//! exists and no membership change is in flight within [`LIVENESS_ELECTION_TIMEOUTS`]
//! election timeouts; [`Cluster::check_caught_up`] then requires every member to reach the
//! leader's commit. [`fuzz`] mixes faults and proposals from one seed and then checks
//! liveness (with every node back, then with a minority of the voters down) and
//! convergence; a failure prints the command that replays it.
//!
//! A member whose log ends before the leader's log start catches up by a snapshot
//! (`Command::SendSnapshot`, carried out here as a delayed transfer of the leader's applied
//! state); [`Cluster::stranded`] names members that have not caught up yet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use crate::error::code;
use crate::grid::core::{
    Bugs, Command, Core, CoreConfig, Input, Outcome, Proposal, RequestId, Restored, Role,
};
use crate::grid::membership::{self, ChangeRequest};
use crate::grid::types::{
    Change, ChangeKind, Entry, Index, Member, MemberState, Message, NodeId, Payload, Term, Topology,
};

/// Liveness bound, in election timeouts: after faults stop, a leader with no change in flight
/// must exist within this many.
pub const LIVENESS_ELECTION_TIMEOUTS: u64 = 20;
/// How many recent events a failure report shows.
const TRACE_LEN: usize = 80;
/// The grid name of simulated clusters.
pub const GRID_NAME: &str = "SIMGRID";
/// Most nodes the fuzz driver grows a cluster to (bounds run time).
const FUZZ_MAX_NODES: usize = 7;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The address a simulated node answers on: derived from its name.
pub fn addr_of(name: &str) -> String {
    format!("{name}:1315")
}

/// A small deterministic generator (splitmix64); the simulation's only source of randomness.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    /// A uniformly chosen element.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            Some(items[self.below(items.len() as u64) as usize])
        }
    }
}

/// Timing of the simulation; all durations in milliseconds.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub core: CoreConfig,
    /// Interval between two `Input::Tick`s of a node.
    pub tick_ms: u64,
    /// Network delay of one message copy, uniform in `[min_delay_ms, max_delay_ms]`.
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            core: CoreConfig {
                election_timeout_ms: 100,
                heartbeat_interval_ms: 20,
                pre_vote: true,
                change_timeout_ms: 800,
                node_failure_timeout_ms: 0,
                bugs: Bugs::default(),
            },
            tick_ms: 5,
            min_delay_ms: 1,
            max_delay_ms: 8,
        }
    }
}

/// What a node has durably stored: changed only by executing its core's commands.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Durable {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    pub commit: Index,
    pub snapshot_index: Index,
    pub snapshot_term: Term,
    pub snapshot_topology: Topology,
    /// Entries after the snapshot.
    pub entries: Vec<Entry>,
}

impl Durable {
    pub fn last_index(&self) -> Index {
        self.entries.last().map_or(self.snapshot_index, |e| e.index)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            Some(self.snapshot_term)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }

    fn restored(&self) -> Restored {
        Restored {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.commit,
            snapshot_index: self.snapshot_index,
            snapshot_term: self.snapshot_term,
            snapshot_topology: self.snapshot_topology.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// What a client was told about its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// Its data entry committed at `index`.
    Committed { index: Index },
    /// Its membership change committed; `index` is the COMMIT decision.
    ChangeCommitted { index: Index },
    /// An error with its stable code (18509: rolled back, 18510: outcome unknown, …).
    Failed { code: u32 },
    /// The node it talked to crashed before answering (a broken connection).
    Lost,
}

impl fmt::Display for Told {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Told::Committed { index } => write!(f, "committed at {index}"),
            Told::ChangeCommitted { index } => write!(f, "change committed at {index}"),
            Told::Failed { code } => write!(f, "error {code}"),
            Told::Lost => f.write_str("lost (node crashed)"),
        }
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Requested {
    Data(Vec<u8>),
    Change(ChangeRequest),
}

/// One client request and what became of it.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub id: RequestId,
    /// The node the client sent it to.
    pub node: NodeId,
    pub what: Requested,
    /// The change as resolved by the leader's `check_change`.
    pub change: Option<Change>,
    /// Where the leader appended the change's PREPARE.
    pub prepare: Option<Index>,
    pub told: Option<Told>,
}

#[derive(Debug, Clone)]
struct Packet {
    from: NodeId,
    to: NodeId,
    from_incarnation: u64,
    to_incarnation: u64,
    msg: Message,
}

#[derive(Debug, Clone)]
enum Event {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Deliver(Packet),
    /// A snapshot transfer from a leader to a follower that needs compacted entries.
    Snapshot(SnapshotTransfer),
    /// An input that reached a node while a slow fsync kept it busy, retried after it.
    Input {
        node: NodeId,
        incarnation: u64,
        input: Input,
    },
    /// A slow fsync completes: the node carries out the rest of its command batch.
    Resume {
        node: NodeId,
        incarnation: u64,
        cmds: Vec<Command>,
        pre: PreStep,
    },
}

#[derive(Debug, Clone)]
struct SnapshotTransfer {
    from: NodeId,
    to: NodeId,
    from_incarnation: u64,
    to_incarnation: u64,
    index: Index,
    term: Term,
    topology: Topology,
}

struct SimNode {
    name: String,
    addr: String,
    /// `None` while crashed.
    core: Option<Core>,
    durable: Durable,
    /// Bumped on crash and on restart: messages of another incarnation are lost.
    incarnation: u64,
    /// Crash after executing this many commands of the next step.
    crash_after: Option<usize>,
    /// The first durable write of the next step fails: part of it may reach the disk (a
    /// torn append keeps a prefix of its entries), then the node stops.
    fail_fsync: bool,
    /// A slow fsync is in progress until then (0: none): the node takes no input meanwhile.
    busy_until: u64,
    /// The applied topology, replayed independently from the `Apply` commands.
    shadow: Topology,
    shadow_applied: Index,
    /// Entries up to here were checked against the global committed log.
    checked: Index,
}

/// The node state captured before a step, for the checks after it.
#[derive(Debug, Clone)]
struct PreStep {
    role: Role,
    commit: Index,
    shadow_voters: Vec<NodeId>,
    shadow_config: Index,
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub steps: u64,
    pub delivered: u64,
    pub lost: u64,
    pub crashes: u64,
    /// ADDs that were given the id of an earlier node (a failed add or a dropped node).
    pub ids_reused: u64,
    /// Durable writes that were slow (the node was busy until they completed).
    pub slow_fsyncs: u64,
    /// Durable writes that failed (the node stopped; an append may have been torn).
    pub failed_fsyncs: u64,
    /// Appends of which only a prefix reached the disk before a failed fsync.
    pub torn_appends: u64,
}

/// N simulated grid nodes, their network and their clients.
pub struct Cluster {
    cfg: SimConfig,
    seed: u64,
    rng: SimRng,
    now_ms: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: BTreeMap<NodeId, SimNode>,
    /// Links that lose every message, `(from, to)`.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Links that lose only real vote requests, `(from, to)`.
    votes_blocked: BTreeSet<(NodeId, NodeId)>,
    drop_rate: f64,
    dup_rate: f64,
    /// Probability that a step's durable write is slow, and how slow (ms range).
    slow_fsync_rate: f64,
    slow_fsync_ms: (u64, u64),
    /// FNV-1a hash of every event line of the run (replays must reproduce it).
    trace_hash: u64,
    /// Nodes whose ticks are withheld (used by [`Cluster::elect`]).
    held: BTreeSet<NodeId>,
    requests: BTreeMap<RequestId, ClientRequest>,
    next_request: RequestId,
    leaders: BTreeMap<Term, NodeId>,
    /// The committed grid log as observed across all nodes.
    committed: BTreeMap<Index, Entry>,
    /// Indexes of the committed entries that changed the voters (0: the initial grid).
    configs: BTreeSet<Index>,
    trace: VecDeque<String>,
    replay_hint: String,
    stats: SimStats,
}

fn core_entry(core: &Core, index: Index) -> Option<&Entry> {
    let log = core.entries();
    let first = log.first()?.index;
    if index < first {
        return None;
    }
    log.get((index - first) as usize)
}

fn msg_summary(m: &Message) -> String {
    match m {
        Message::Vote {
            term,
            candidate,
            last_log_index,
            last_log_term,
            pre_vote,
        } => format!(
            "{}Vote t{term} cand {candidate} last {last_log_index}/t{last_log_term}",
            if *pre_vote { "Pre" } else { "" }
        ),
        Message::VoteReply {
            term,
            granted,
            pre_vote,
        } => format!(
            "{}VoteReply t{term} {}",
            if *pre_vote { "Pre" } else { "" },
            if *granted { "granted" } else { "refused" }
        ),
        Message::Append {
            term,
            prev_index,
            prev_term,
            entries,
            leader_commit,
            ..
        } => format!(
            "Append t{term} prev {prev_index}/t{prev_term} +{} commit {leader_commit}",
            entries.len()
        ),
        Message::AppendReply {
            term,
            success,
            match_index,
        } => format!(
            "AppendReply t{term} {} {match_index}",
            if *success { "ok" } else { "no" }
        ),
    }
}

fn payload_summary(p: &Payload) -> String {
    match p {
        Payload::Noop => "Noop".into(),
        Payload::CreateGrid { .. } => "CreateGrid".into(),
        Payload::Prepare(c) => format!("PREPARE {} node {}", c.kind.as_str(), c.node.id),
        Payload::Decide { prepare, commit } => {
            format!("{} of {prepare}", if *commit { "COMMIT" } else { "ABORT" })
        }
        Payload::Data(d) => format!("Data({})", String::from_utf8_lossy(d)),
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Follower => "follower",
        Role::PreCandidate => "pre-candidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// Applies a committed entry to `t` by the rules of design §5.1 — written independently of
/// `membership::apply_*` so that it checks them.
fn shadow_apply(t: &mut Topology, e: &Entry) -> Result<(), String> {
    match &e.payload {
        Payload::Noop | Payload::Data(_) => Ok(()),
        Payload::CreateGrid { grid, founder } => {
            if !t.members.is_empty() {
                return Err(format!("CREATE GRID at {} in an existing grid", e.index));
            }
            let mut f = founder.clone();
            f.state = MemberState::Online;
            *t = Topology {
                grid: grid.clone(),
                members: BTreeMap::from([(f.id, f)]),
                config_index: e.index,
                in_flight: None,
                next_id: 0,
            };
            Ok(())
        }
        Payload::Prepare(c) => {
            if let Some((p, _)) = &t.in_flight {
                return Err(format!(
                    "PREPARE at {} while the PREPARE at {p} is undecided",
                    e.index
                ));
            }
            let current = t
                .members
                .get(&c.node.id)
                .map_or(MemberState::NotMember, |m| m.state);
            if current != c.from {
                return Err(format!(
                    "PREPARE at {} of {} expects node {} in {}, it is {current}",
                    e.index,
                    c.kind.as_str(),
                    c.node.id,
                    c.from
                ));
            }
            let tr = membership::transition(c.kind, c.from).ok_or_else(|| {
                format!(
                    "PREPARE at {}: {} is not a legal transition from {}",
                    e.index,
                    c.kind.as_str(),
                    c.from
                )
            })?;
            let mut m = t.members.get(&c.node.id).cloned().unwrap_or(Member {
                state: MemberState::NotMember,
                ..c.node.clone()
            });
            m.state = tr.via;
            // Ids are never reused: the highest id ever prepared bounds the next one.
            let highest = t.members.keys().next_back().copied().unwrap_or(0);
            t.next_id = t.next_id.max(highest + 1).max(m.id + 1);
            t.members.insert(m.id, m);
            t.in_flight = Some((e.index, c.clone()));
            Ok(())
        }
        Payload::Decide { prepare, commit } => {
            let Some((p, c)) = t.in_flight.take() else {
                return Err(format!(
                    "decision at {} on {prepare} with nothing in flight",
                    e.index
                ));
            };
            if p != *prepare {
                return Err(format!(
                    "decision at {} on {prepare} but {p} is in flight",
                    e.index
                ));
            }
            let tr = membership::transition(c.kind, c.from)
                .ok_or_else(|| format!("in-flight change at {p} has no transition"))?;
            let state = t.members.get(&c.node.id).map(|m| m.state);
            if state != Some(tr.via) {
                return Err(format!(
                    "decision at {} finds node {} in {state:?}, not {}",
                    e.index, c.node.id, tr.via
                ));
            }
            let outcome = if *commit { tr.on_commit } else { tr.on_abort };
            if outcome == MemberState::NotMember {
                t.members.remove(&c.node.id);
            } else if let Some(m) = t.members.get_mut(&c.node.id) {
                m.state = outcome;
            }
            t.config_index = e.index;
            Ok(())
        }
    }
}

impl Cluster {
    /// A grid of `nodes` members `n1..nN`, all `MEMBER_ONLINE`, with default timing.
    pub fn new(nodes: usize, seed: u64) -> Cluster {
        Cluster::with_config(nodes, seed, SimConfig::default())
    }

    pub fn with_config(nodes: usize, seed: u64, cfg: SimConfig) -> Cluster {
        let mut topology = Topology {
            grid: GRID_NAME.into(),
            ..Topology::default()
        };
        for id in 1..=nodes as NodeId {
            let name = format!("n{id}");
            topology.members.insert(
                id,
                Member {
                    id,
                    addr: addr_of(&name),
                    name,
                    state: MemberState::Online,
                },
            );
        }
        let mut c = Cluster {
            cfg,
            seed,
            rng: SimRng::new(seed),
            now_ms: 0,
            seq: 0,
            events: BTreeMap::new(),
            nodes: BTreeMap::new(),
            blocked: BTreeSet::new(),
            votes_blocked: BTreeSet::new(),
            drop_rate: 0.0,
            dup_rate: 0.0,
            slow_fsync_rate: 0.0,
            slow_fsync_ms: (0, 0),
            trace_hash: FNV_OFFSET,
            held: BTreeSet::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            configs: BTreeSet::from([0]),
            trace: VecDeque::new(),
            replay_hint: String::new(),
            stats: SimStats::default(),
        };
        for id in 1..=nodes as NodeId {
            let name = format!("n{id}");
            let durable = Durable {
                snapshot_topology: topology.clone(),
                ..Durable::default()
            };
            c.spawn(id, &name, &addr_of(&name), durable);
        }
        c
    }

    // ---- inspection ----------------------------------------------------------------------

    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }
    /// Appended to every failure report (the fuzz driver puts its replay command here).
    pub fn set_replay_hint(&mut self, hint: impl Into<String>) {
        self.replay_hint = hint.into();
    }
    /// Every simulated node, members or not, alive or not.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }
    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, n)| n.name.eq_ignore_ascii_case(name))
            .map(|(id, _)| *id)
    }
    pub fn name_of(&self, id: NodeId) -> &str {
        self.nodes.get(&id).map_or("?", |n| n.name.as_str())
    }
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.core(id).is_some()
    }
    /// The node's core, `None` while it is crashed.
    pub fn core(&self, id: NodeId) -> Option<&Core> {
        self.nodes.get(&id).and_then(|n| n.core.as_ref())
    }
    pub fn durable(&self, id: NodeId) -> Option<&Durable> {
        self.nodes.get(&id).map(|n| &n.durable)
    }
    /// The live leader of the highest term, if it has committed an entry of its term.
    pub fn leader(&self) -> Option<NodeId> {
        let (_, id) = self
            .nodes
            .iter()
            .filter_map(|(id, n)| n.core.as_ref().map(|c| (c, *id)))
            .filter(|(c, _)| c.role() == Role::Leader)
            .map(|(c, id)| (c.term(), id))
            .max()?;
        self.core(id)
            .is_some_and(|c| c.is_ready_leader())
            .then_some(id)
    }
    /// The committed grid log as observed across all nodes.
    pub fn committed_log(&self) -> &BTreeMap<Index, Entry> {
        &self.committed
    }
    pub fn request(&self, id: RequestId) -> Option<&ClientRequest> {
        self.requests.get(&id)
    }
    pub fn requests(&self) -> impl Iterator<Item = &ClientRequest> {
        self.requests.values()
    }
    pub fn told(&self, id: RequestId) -> Option<&Told> {
        self.requests.get(&id).and_then(|r| r.told.as_ref())
    }
    /// Whether some node's committed log holds this data.
    pub fn data_committed(&self, bytes: &[u8]) -> bool {
        self.committed
            .values()
            .any(|e| matches!(&e.payload, Payload::Data(d) if d == bytes))
    }

    /// One line per node: role, term, log and commit, and its view of the membership.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (id, n) in &self.nodes {
            let line = match &n.core {
                None => format!(
                    "  {} (id {id}): crashed; durable term {} last {} commit hint {}\n",
                    n.name,
                    n.durable.term,
                    n.durable.last_index(),
                    n.durable.commit
                ),
                Some(c) => {
                    let members: Vec<String> = c
                        .topology()
                        .members
                        .values()
                        .map(|m| format!("{}={}", m.name, m.state))
                        .collect();
                    format!(
                        "  {} (id {id}): {} term {} last {}/t{} commit {} leader {:?}; members [{}]{}\n",
                        n.name,
                        role_name(c.role()),
                        c.term(),
                        c.last_index(),
                        c.last_term(),
                        c.commit_index(),
                        c.leader(),
                        members.join(" "),
                        c.topology()
                            .in_flight
                            .as_ref()
                            .map(|(p, ch)| format!(
                                "; in flight {} of {} (PREPARE {p})",
                                ch.kind.as_str(),
                                ch.node.name
                            ))
                            .unwrap_or_default()
                    )
                }
            };
            s.push_str(&line);
        }
        s
    }

    fn fail(&self, what: impl fmt::Display) -> ! {
        let trace: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        panic!(
            "grid simulation: {what}\n  seed {} at t={} ms\n{}\nnodes:\n{}recent events (oldest first):\n  {}",
            self.seed,
            self.now_ms,
            self.replay_hint,
            self.describe(),
            trace.join("\n  ")
        );
    }

    /// A hash of every event of the run so far: two runs of one seed give the same value.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    fn note(&mut self, line: String) {
        for b in self.now_ms.to_le_bytes().iter().chain(line.as_bytes()) {
            self.trace_hash = (self.trace_hash ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
        }
        if self.trace.len() == TRACE_LEN {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>6} {line}", self.now_ms));
    }

    // ---- time ----------------------------------------------------------------------------

    fn schedule(&mut self, at_ms: u64, ev: Event) {
        self.seq += 1;
        self.events.insert((at_ms, self.seq), ev);
    }

    /// Runs the simulation until `pred` holds (checked after every event) or `max_ms` of
    /// simulated time passed; returns whether `pred` held.
    pub fn run_until(&mut self, mut pred: impl FnMut(&Cluster) -> bool, max_ms: u64) -> bool {
        let deadline = self.now_ms + max_ms;
        if pred(self) {
            return true;
        }
        while let Some((&(at, _), _)) = self.events.first_key_value() {
            if at > deadline {
                break;
            }
            let (_, ev) = self.events.pop_first().expect("peeked");
            self.now_ms = at;
            self.handle(ev);
            if pred(self) {
                return true;
            }
        }
        self.now_ms = deadline;
        false
    }

    pub fn run_for(&mut self, ms: u64) {
        self.run_until(|_| false, ms);
    }

    /// Makes `id` the leader: until it is a ready leader, the other nodes' ticks are
    /// withheld (so only `id` times out and campaigns) except those of current leaders,
    /// whose outgoing messages are cut instead (so they stop heartbeating and step down for
    /// want of acknowledgements). Partitions and cuts are restored afterwards.
    pub fn elect(&mut self, id: NodeId, max_ms: u64) -> bool {
        let saved = self.blocked.clone();
        let saved_held = self.held.clone();
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(n, node)| {
                **n != id && node.core.as_ref().is_some_and(|c| c.role() == Role::Leader)
            })
            .map(|(n, _)| *n)
            .collect();
        for &l in &leaders {
            for &other in self.nodes.keys() {
                if other != l {
                    self.blocked.insert((l, other));
                }
            }
        }
        self.held = self
            .nodes
            .keys()
            .copied()
            .filter(|n| *n != id && !leaders.contains(n))
            .collect();
        let ok = self.run_until(|c| c.leader() == Some(id), max_ms);
        self.held = saved_held;
        self.blocked = saved;
        ok
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Tick { node, incarnation } => {
                let alive = self
                    .nodes
                    .get(&node)
                    .is_some_and(|n| n.incarnation == incarnation && n.core.is_some());
                if !alive {
                    return;
                }
                let next = self.now_ms + self.cfg.tick_ms;
                self.schedule(next, Event::Tick { node, incarnation });
                if !self.held.contains(&node) {
                    self.step_node(node, Input::Tick);
                }
            }
            Event::Snapshot(t) => {
                let busy = self.nodes.get(&t.to).map_or(0, |n| n.busy_until);
                if busy != 0 {
                    self.schedule(busy.max(self.now_ms), Event::Snapshot(t));
                } else {
                    self.deliver_snapshot(t);
                }
            }
            Event::Input {
                node,
                incarnation,
                input,
            } => {
                if self
                    .nodes
                    .get(&node)
                    .is_some_and(|n| n.incarnation == incarnation)
                {
                    self.step_node(node, input);
                }
            }
            Event::Resume {
                node,
                incarnation,
                cmds,
                pre,
            } => {
                let live = self
                    .nodes
                    .get(&node)
                    .is_some_and(|n| n.incarnation == incarnation && n.core.is_some());
                if !live {
                    return;
                }
                self.nodes.get_mut(&node).expect("live").busy_until = 0;
                self.note(format!("{}: slow fsync completes", self.name_of(node)));
                for cmd in cmds {
                    self.execute(node, cmd);
                }
                self.check_after_step(node, &pre);
            }
            Event::Deliver(p) => {
                let live = |id: NodeId, inc: u64| {
                    self.nodes
                        .get(&id)
                        .is_some_and(|n| n.incarnation == inc && n.core.is_some())
                };
                if !live(p.from, p.from_incarnation)
                    || !live(p.to, p.to_incarnation)
                    || self.blocked.contains(&(p.from, p.to))
                {
                    self.stats.lost += 1;
                    return;
                }
                self.stats.delivered += 1;
                self.note(format!(
                    "{} <- {}: {}",
                    self.name_of(p.to),
                    self.name_of(p.from),
                    msg_summary(&p.msg)
                ));
                self.step_node(
                    p.to,
                    Input::Message {
                        from: p.from,
                        msg: p.msg,
                    },
                );
            }
        }
    }

    // ---- the network and its faults --------------------------------------------------------

    fn send(&mut self, from: NodeId, to: NodeId, msg: Message) {
        let Some(dst) = self.nodes.get(&to) else {
            self.stats.lost += 1;
            return;
        };
        let vote_cut = matches!(
            msg,
            Message::Vote {
                pre_vote: false,
                ..
            }
        ) && self.votes_blocked.contains(&(from, to));
        if dst.core.is_none()
            || self.blocked.contains(&(from, to))
            || vote_cut
            || self.rng.chance(self.drop_rate)
        {
            self.stats.lost += 1;
            return;
        }
        let p = Packet {
            from,
            to,
            from_incarnation: self.nodes[&from].incarnation,
            to_incarnation: dst.incarnation,
            msg,
        };
        let copies = if self.rng.chance(self.dup_rate) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.rng.range(self.cfg.min_delay_ms, self.cfg.max_delay_ms);
            self.schedule(self.now_ms + delay, Event::Deliver(p.clone()));
        }
    }

    /// Probability that a message copy is lost.
    pub fn set_drop_rate(&mut self, p: f64) {
        self.drop_rate = p;
    }
    /// Probability that a message is delivered twice.
    pub fn set_dup_rate(&mut self, p: f64) {
        self.dup_rate = p;
    }
    /// Probability that a step's first durable write is slow: it (and everything after it
    /// in the batch) completes `min_ms..=max_ms` later, and the node takes no input
    /// meanwhile (the driver blocks on its fsync). A crash meanwhile loses the write.
    pub fn set_slow_fsync(&mut self, p: f64, min_ms: u64, max_ms: u64) {
        self.slow_fsync_rate = p;
        self.slow_fsync_ms = (min_ms, max_ms.max(min_ms));
    }
    /// The first durable write of `id`'s next step fails: the node stops there (design:
    /// a failed fsync is fatal). What reached the disk is unknown, so a hard-state write
    /// may or may not have landed and an append keeps a random prefix of its entries — the
    /// last record is torn.
    pub fn fail_fsync(&mut self, id: NodeId) {
        if let Some(n) = self.nodes.get_mut(&id)
            && n.core.is_some()
        {
            n.fail_fsync = true;
        }
    }
    /// Cuts `id` off from every other node, both ways (leader isolation).
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&n| n != id).collect();
        self.partition(&[id], &others);
    }
    /// The node in the leader role of the highest term, ready or not (a client that
    /// reaches a leader which has not yet committed an entry of its term).
    pub fn acting_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, n)| n.core.as_ref().map(|c| (c, *id)))
            .filter(|(c, _)| c.role() == Role::Leader)
            .map(|(c, id)| (c.term(), id))
            .max()
            .map(|(_, id)| id)
    }
    /// Delay range of a message copy (a wider range reorders more).
    pub fn set_delay(&mut self, min_ms: u64, max_ms: u64) {
        self.cfg.min_delay_ms = min_ms;
        self.cfg.max_delay_ms = max_ms.max(min_ms);
    }
    /// No message crosses between `a` and `b`, either way.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
        self.note(format!("partition {a:?} | {b:?}"));
    }
    /// Messages from `from` to `to` are lost (the other direction still works).
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
        self.note(format!("cut {from} -> {to}"));
    }
    /// Real vote requests from `from` to `to` are lost (pre-votes and everything else pass):
    /// a directed way to make a campaign fail after its pre-vote succeeded.
    pub fn cut_votes(&mut self, from: NodeId, to: NodeId) {
        self.votes_blocked.insert((from, to));
        self.note(format!("cut votes {from} -> {to}"));
    }
    /// Removes every partition and cut.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.votes_blocked.clear();
        self.note("heal".into());
    }
    /// Withholds `id`'s ticks (it never times out, campaigns or heartbeats; it still
    /// answers messages) until [`Cluster::release`].
    pub fn hold(&mut self, id: NodeId) {
        self.held.insert(id);
    }
    pub fn release(&mut self, id: NodeId) {
        self.held.remove(&id);
    }

    // ---- nodes: spawn, crash, restart ------------------------------------------------------

    fn spawn(&mut self, id: NodeId, name: &str, addr: &str, durable: Durable) {
        self.nodes.insert(
            id,
            SimNode {
                name: name.into(),
                addr: addr.into(),
                core: None,
                shadow: durable.snapshot_topology.clone(),
                shadow_applied: durable.snapshot_index,
                checked: durable.snapshot_index,
                durable,
                incarnation: 0,
                crash_after: None,
                fail_fsync: false,
                busy_until: 0,
            },
        );
        self.start_node(id);
    }

    fn start_node(&mut self, id: NodeId) {
        let seed = self.rng.next_u64();
        let now = self.now_ms;
        let cfg = self.cfg.core.clone();
        let node = self.nodes.get_mut(&id).expect("known node");
        node.incarnation += 1;
        node.crash_after = None;
        node.fail_fsync = false;
        node.busy_until = 0;
        node.shadow = node.durable.snapshot_topology.clone();
        node.shadow_applied = node.durable.snapshot_index;
        node.checked = node.durable.snapshot_index;
        let mut core = Core::new(id, cfg, node.durable.restored(), seed, now);
        let cmds = core.start();
        node.core = Some(core);
        let incarnation = node.incarnation;
        let name = node.name.clone();
        self.note(format!("{name} starts (incarnation {incarnation})"));
        let pre = self.pre_step(id);
        self.run_commands(id, cmds, None);
        self.check_after_step(id, &pre);
        let first_tick = now + self.rng.range(1, self.cfg.tick_ms);
        self.schedule(
            first_tick,
            Event::Tick {
                node: id,
                incarnation,
            },
        );
    }

    /// Crashes `id`: its volatile state and every message to or from it are lost; its
    /// clients lose their connection.
    pub fn crash(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.core.take().is_none() {
            return;
        }
        node.incarnation += 1;
        node.crash_after = None;
        node.fail_fsync = false;
        node.busy_until = 0;
        let name = node.name.clone();
        self.stats.crashes += 1;
        for r in self.requests.values_mut() {
            if r.node == id && r.told.is_none() {
                r.told = Some(Told::Lost);
            }
        }
        self.note(format!("{name} CRASHES"));
    }

    /// Restarts a crashed node from its durable state (no-op if it is running).
    pub fn restart(&mut self, id: NodeId) {
        if self.nodes.get(&id).is_some_and(|n| n.core.is_none()) {
            self.start_node(id);
        }
    }

    /// `id` crashes in its next step, after executing only the first `k` of its commands.
    pub fn crash_between_commands(&mut self, id: NodeId, k: usize) {
        if let Some(n) = self.nodes.get_mut(&id)
            && n.core.is_some()
        {
            n.crash_after = Some(k);
        }
    }

    // ---- clients ---------------------------------------------------------------------------

    fn new_request(&mut self, node: NodeId, what: Requested) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        self.requests.insert(
            id,
            ClientRequest {
                id,
                node,
                what,
                change: None,
                prepare: None,
                told: None,
            },
        );
        id
    }

    /// A client proposes a data entry on `node`. The bytes should be unique (the checkers
    /// find the entry by them).
    pub fn propose_data(&mut self, node: NodeId, bytes: Vec<u8>) -> RequestId {
        let rid = self.new_request(node, Requested::Data(bytes.clone()));
        if !self.is_alive(node) {
            self.requests.get_mut(&rid).expect("just made").told = Some(Told::Lost);
            return rid;
        }
        self.note(format!(
            "client #{rid} -> {}: data {}",
            self.name_of(node),
            String::from_utf8_lossy(&bytes)
        ));
        self.step_node(
            node,
            Input::Propose {
                id: rid,
                proposal: Proposal::Data(bytes),
            },
        );
        rid
    }

    /// A client asks `node` for a membership change: `check_change`, then `Input::Propose`.
    /// For ADD the joining node is created first, started from a snapshot of the leader's
    /// committed state (what the driver's grid start gives it); a node that used the same id
    /// before (a failed add, a dropped node) is wiped.
    pub fn propose_change(&mut self, node: NodeId, req: ChangeRequest) -> RequestId {
        let rid = self.new_request(node, Requested::Change(req.clone()));
        let checked = match self.core(node) {
            None => {
                self.requests.get_mut(&rid).expect("just made").told = Some(Told::Lost);
                return rid;
            }
            Some(core) => core.check_change(&req),
        };
        let change = match checked {
            Err(e) => {
                self.note(format!(
                    "client #{rid} -> {}: {} {} refused: {}",
                    self.name_of(node),
                    req.kind.as_str(),
                    req.name,
                    e.code
                ));
                self.requests.get_mut(&rid).expect("just made").told =
                    Some(Told::Failed { code: e.code });
                return rid;
            }
            Ok(c) => c,
        };
        self.requests.get_mut(&rid).expect("just made").change = Some(change.clone());
        self.note(format!(
            "client #{rid} -> {}: {} {} (id {})",
            self.name_of(node),
            req.kind.as_str(),
            req.name,
            change.node.id
        ));
        if change.kind == ChangeKind::Add {
            self.spawn_joiner(node, &change.node);
        }
        self.step_node(
            node,
            Input::Propose {
                id: rid,
                proposal: Proposal::Change(change),
            },
        );
        rid
    }

    /// `ADD NODE name` on the current leader (or on `n1` when there is none, to get the
    /// refusal), with the address derived from the name unless given.
    pub fn add_node(&mut self, name: &str, addr: Option<&str>) -> RequestId {
        let at = self.leader().unwrap_or(1);
        self.propose_change(
            at,
            ChangeRequest {
                kind: ChangeKind::Add,
                name: name.into(),
                addr: Some(addr.map_or_else(|| addr_of(name), str::to_string)),
            },
        )
    }

    fn spawn_joiner(&mut self, leader: NodeId, member: &Member) {
        let lnode = &self.nodes[&leader];
        let core = lnode.core.as_ref().expect("the leader is alive");
        let commit = core.commit_index();
        let snapshot_term = if commit == lnode.durable.snapshot_index {
            lnode.durable.snapshot_term
        } else {
            core_entry(core, commit).map_or(0, |e| e.term)
        };
        let durable = Durable {
            term: core.term(),
            voted_for: None,
            commit,
            snapshot_index: commit,
            snapshot_term,
            snapshot_topology: core.topology().clone(),
            entries: Vec::new(),
        };
        if self.nodes.contains_key(&member.id) {
            self.stats.ids_reused += 1;
            self.note(format!(
                "node id {} is reused for {}: the old node is wiped",
                member.id, member.name
            ));
            self.crash(member.id);
            self.nodes.remove(&member.id);
        }
        self.spawn(member.id, &member.name, &member.addr, durable);
    }

    // ---- stepping and executing commands ----------------------------------------------------

    fn pre_step(&self, id: NodeId) -> PreStep {
        let n = &self.nodes[&id];
        let c = n.core.as_ref().expect("alive");
        PreStep {
            role: c.role(),
            commit: c.commit_index(),
            shadow_voters: n.shadow.voters(),
            shadow_config: n.shadow.config_index,
        }
    }

    fn step_node(&mut self, id: NodeId, input: Input) {
        if !self.is_alive(id) {
            return;
        }
        let node = &self.nodes[&id];
        if node.busy_until != 0 {
            // The driver is blocked in an fsync: the input waits in its queue (behind the
            // completion, which is scheduled at `busy_until` already).
            let ev = Event::Input {
                node: id,
                incarnation: node.incarnation,
                input,
            };
            self.schedule(node.busy_until.max(self.now_ms), ev);
            return;
        }
        self.stats.steps += 1;
        let pre = self.pre_step(id);
        let now = self.now_ms;
        let propose = match &input {
            Input::Propose {
                id: rid,
                proposal: Proposal::Change(c),
            } => Some((*rid, c.clone())),
            _ => None,
        };
        let core = self
            .nodes
            .get_mut(&id)
            .and_then(|n| n.core.as_mut())
            .expect("alive");
        let cmds = core.step(now, input);
        if let Some((rid, change)) = propose {
            let prepare = cmds.iter().find_map(|c| match c {
                Command::AppendLog { entries } => entries.iter().find_map(|e| match &e.payload {
                    Payload::Prepare(p) if *p == change => Some(e.index),
                    _ => None,
                }),
                _ => None,
            });
            if let Some(r) = self.requests.get_mut(&rid) {
                r.prepare = prepare;
            }
        }
        let crash_after = self.nodes.get_mut(&id).and_then(|n| n.crash_after.take());
        let first_write = cmds.iter().position(|c| {
            matches!(
                c,
                Command::PersistHardState { .. } | Command::AppendLog { .. }
            )
        });
        let fail_fsync = first_write.is_some()
            && self
                .nodes
                .get_mut(&id)
                .is_some_and(|n| std::mem::take(&mut n.fail_fsync));
        if let (true, Some(w)) = (fail_fsync, first_write) {
            self.fail_write(id, cmds, w);
            return;
        }
        if let (None, Some(w)) = (crash_after, first_write)
            && self.rng.chance(self.slow_fsync_rate)
        {
            self.slow_write(id, cmds, w, pre);
            return;
        }
        self.run_commands(id, cmds, crash_after);
        if crash_after.is_some() {
            self.crash(id);
            return;
        }
        self.check_after_step(id, &pre);
    }

    /// Runs the commands before the durable write at `w`, then lets the write fail: part
    /// of it may land (a torn append), and the node stops.
    fn fail_write(&mut self, id: NodeId, mut cmds: Vec<Command>, w: usize) {
        self.check_batch_order(id, &cmds);
        let failed = cmds.remove(w);
        cmds.truncate(w);
        for cmd in cmds {
            self.execute(id, cmd);
        }
        self.stats.failed_fsyncs += 1;
        let landed = match failed {
            Command::AppendLog { mut entries } => {
                // Whole entries of the batch reach the disk in order; the last one never
                // does (it is torn, and CRC drops it at restart).
                let keep = self.rng.below(entries.len() as u64) as usize;
                entries.truncate(keep);
                if !entries.is_empty() {
                    self.stats.torn_appends += 1;
                }
                let n = entries.len();
                if n > 0 {
                    self.exec_append_log(id, entries);
                }
                format!("an append torn after {n} entries")
            }
            hs @ Command::PersistHardState { .. } => {
                if self.rng.chance(0.5) {
                    self.execute(id, hs);
                    "a hard-state write that landed".to_string()
                } else {
                    "a hard-state write that did not land".to_string()
                }
            }
            _ => unreachable!("a durable write"),
        };
        self.note(format!(
            "{}: fsync FAILS ({landed}): the node stops",
            self.name_of(id)
        ));
        self.crash(id);
    }

    /// Runs the commands before the durable write at `w`; the write and the rest complete
    /// after a delay during which the node takes no input.
    fn slow_write(&mut self, id: NodeId, mut cmds: Vec<Command>, w: usize, pre: PreStep) {
        self.check_batch_order(id, &cmds);
        let rest = cmds.split_off(w);
        for cmd in cmds {
            self.execute(id, cmd);
        }
        let (lo, hi) = self.slow_fsync_ms;
        let until = self.now_ms + self.rng.range(lo.max(1), hi.max(1));
        self.stats.slow_fsyncs += 1;
        let node = self.nodes.get_mut(&id).expect("alive");
        node.busy_until = until;
        let incarnation = node.incarnation;
        self.note(format!("{}: slow fsync until t={until}", self.name_of(id)));
        self.schedule(
            until,
            Event::Resume {
                node: id,
                incarnation,
                cmds: rest,
                pre,
            },
        );
    }

    fn run_commands(&mut self, id: NodeId, cmds: Vec<Command>, limit: Option<usize>) {
        self.check_batch_order(id, &cmds);
        let limit = limit.unwrap_or(usize::MAX);
        if limit < cmds.len() {
            self.note(format!(
                "{} will crash after {limit} of its {} commands",
                self.name_of(id),
                cmds.len()
            ));
        }
        for cmd in cmds.into_iter().take(limit) {
            self.execute(id, cmd);
        }
    }

    /// Durable before acknowledged (design §10.4), as an order on each batch: an append
    /// acknowledgement, a granted vote or a vote request never precedes a durable write of
    /// the same step.
    fn check_batch_order(&self, id: NodeId, cmds: &[Command]) {
        let Some(last_write) = cmds.iter().rposition(|c| {
            matches!(
                c,
                Command::PersistHardState { .. } | Command::AppendLog { .. }
            )
        }) else {
            return;
        };
        for (i, c) in cmds.iter().enumerate().take(last_write) {
            let ack = match c {
                Command::Respond {
                    msg: Message::AppendReply { success: true, .. },
                    ..
                } => Some("an append acknowledgement"),
                Command::Respond {
                    msg:
                        Message::VoteReply {
                            granted: true,
                            pre_vote: false,
                            ..
                        },
                    ..
                } => Some("a granted vote"),
                Command::Send {
                    msg:
                        Message::Vote {
                            pre_vote: false, ..
                        },
                    ..
                } => Some("a vote request"),
                _ => None,
            };
            if let Some(what) = ack {
                self.fail(format!(
                    "{} emits {what} (command {i}) before a durable write (command {last_write}): {cmds:?}",
                    self.name_of(id)
                ));
            }
        }
    }

    fn execute(&mut self, id: NodeId, cmd: Command) {
        match cmd {
            Command::PersistHardState {
                term,
                voted_for,
                commit,
            } => {
                let d = &mut self.nodes.get_mut(&id).expect("known").durable;
                d.term = term;
                d.voted_for = voted_for;
                d.commit = commit;
            }
            Command::AppendLog { entries } => self.exec_append_log(id, entries),
            Command::Send { to, addr, msg } => {
                let d = &self.nodes[&id].durable;
                match &msg {
                    Message::Vote {
                        term,
                        pre_vote: false,
                        ..
                    } if d.term != *term || d.voted_for != Some(id) => {
                        self.fail(format!(
                            "{} asks for votes in term {term} before its own vote is durable (durable term {} vote {:?})",
                            self.name_of(id),
                            d.term,
                            d.voted_for
                        ));
                    }
                    Message::Vote { pre_vote: true, .. } => {}
                    m if d.term < m.term() => self.fail(format!(
                        "{} sends {} with durable term {}",
                        self.name_of(id),
                        msg_summary(m),
                        d.term
                    )),
                    _ => {}
                }
                // The network routes by address. A node id can be reused (a failed add, a
                // dropped node), so a node with a stale view may address the old holder of
                // an id: that message reaches whoever is at the address, if anyone.
                match self.nodes.iter().find(|(_, n)| n.addr == addr) {
                    Some((&at, _)) if at == to => self.send(id, to, msg),
                    _ => {
                        self.stats.lost += 1;
                        self.note(format!(
                            "{} -> node {to} at {addr}: no such node there (lost)",
                            self.name_of(id)
                        ));
                    }
                }
            }
            Command::Respond { to, msg } => {
                self.check_durable_ack(id, to, &msg);
                self.send(id, to, msg);
            }
            Command::Apply { entries } => self.exec_apply(id, entries),
            Command::SendSnapshot { to, .. } => self.exec_send_snapshot(id, to),
            Command::Reply { id: rid, result } => {
                let told = match result {
                    Ok(Outcome::Committed { index }) => Told::Committed { index },
                    Ok(Outcome::ChangeCommitted { index, .. }) => Told::ChangeCommitted { index },
                    Err(e) => Told::Failed { code: e.code },
                };
                self.exec_reply(id, rid, told);
            }
        }
    }

    /// The driver's snapshot transfer: the leader's applied state (its database and
    /// topology) reaches the follower after a delay, unless the link or a node fails.
    fn exec_send_snapshot(&mut self, from: NodeId, to: NodeId) {
        let Some(core) = self.nodes[&from].core.as_ref() else {
            return;
        };
        let index = core.applied_index();
        let Some(term) = core.term_at(index) else {
            return;
        };
        let topology = core.topology().clone();
        let (Some(fi), Some(ti)) = (
            self.nodes.get(&from).map(|n| n.incarnation),
            self.nodes.get(&to).map(|n| n.incarnation),
        ) else {
            return;
        };
        self.note(format!(
            "{} -> {}: snapshot through {index}",
            self.name_of(from),
            self.name_of(to)
        ));
        let at = self.now_ms + self.cfg.max_delay_ms.max(1);
        self.schedule(
            at,
            Event::Snapshot(SnapshotTransfer {
                from,
                to,
                from_incarnation: fi,
                to_incarnation: ti,
                index,
                term,
                topology,
            }),
        );
    }

    fn deliver_snapshot(&mut self, t: SnapshotTransfer) {
        let live = |c: &Cluster, id: NodeId, inc: u64| {
            c.nodes
                .get(&id)
                .is_some_and(|n| n.incarnation == inc && n.core.is_some())
        };
        if !live(self, t.from, t.from_incarnation) {
            return;
        }
        let ok = live(self, t.to, t.to_incarnation)
            && !self.blocked.contains(&(t.from, t.to))
            && !self.blocked.contains(&(t.to, t.from));
        if !ok {
            self.step_node(t.from, Input::SnapshotFailed { to: t.to });
            return;
        }
        let node = self.nodes.get_mut(&t.to).expect("live");
        let core = node.core.as_mut().expect("live");
        if t.index > core.commit_index() {
            // What the driver does: replace the database, reset the stored log, then tell
            // the core.
            node.durable.snapshot_index = t.index;
            node.durable.snapshot_term = t.term;
            node.durable.snapshot_topology = t.topology.clone();
            node.durable.entries.clear();
            node.durable.commit = t.index;
            core.install_snapshot(t.index, t.term, t.topology.clone());
            node.shadow = t.topology;
            node.shadow_applied = t.index;
            node.checked = t.index;
            let name = node.name.clone();
            self.note(format!("{name} installed a snapshot through {}", t.index));
        }
        self.step_node(
            t.from,
            Input::SnapshotSent {
                to: t.to,
                index: t.index,
            },
        );
    }

    fn exec_append_log(&mut self, id: NodeId, entries: Vec<Entry>) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        let node = &self.nodes[&id];
        let d = &node.durable;
        if first <= d.snapshot_index || first > d.last_index() + 1 {
            self.fail(format!(
                "{} appends at {first} to a log of {}..={}",
                node.name,
                d.snapshot_index + 1,
                d.last_index()
            ));
        }
        for (k, e) in entries.iter().enumerate() {
            if e.index != first + k as u64 {
                self.fail(format!("{} appends a gapped batch at {first}", node.name));
            }
            if e.index <= node.checked && d.entry(e.index).is_some_and(|old| old != e) {
                self.fail(format!(
                    "{} overwrites its committed entry {} ({:?} with {:?})",
                    node.name,
                    e.index,
                    d.entry(e.index),
                    e
                ));
            }
        }
        let name = node.name.clone();
        let summary: Vec<String> = entries
            .iter()
            .map(|e| format!("{}/t{} {}", e.index, e.term, payload_summary(&e.payload)))
            .collect();
        let prepares = entries
            .iter()
            .any(|e| matches!(e.payload, Payload::Prepare(_)));
        let d = &mut self.nodes.get_mut(&id).expect("known").durable;
        let keep = (first - d.snapshot_index - 1) as usize;
        d.entries.truncate(keep);
        d.entries.extend(entries);
        if prepares {
            self.check_one_change_in_log(id);
        }
        if summary.len() <= 3 {
            self.note(format!("{name} stores {}", summary.join(", ")));
        } else {
            self.note(format!(
                "{name} stores {} entries {}..",
                summary.len(),
                summary[0]
            ));
        }
    }

    /// One membership change in flight at a time (design §5.1), in every log: a PREPARE
    /// is never followed by another PREPARE before its decision — a leader settles an
    /// undecided PREPARE it holds before it proposes (§5.3, §5.4).
    fn check_one_change_in_log(&self, id: NodeId) {
        let d = &self.nodes[&id].durable;
        let mut open = d.snapshot_topology.in_flight.as_ref().map(|(p, _)| *p);
        for e in &d.entries {
            match &e.payload {
                Payload::Prepare(_) => {
                    if let Some(p) = open {
                        self.fail(format!(
                            "{} stores a PREPARE at {} while the PREPARE at {p} in its log is undecided",
                            self.name_of(id),
                            e.index
                        ));
                    }
                    open = Some(e.index);
                }
                Payload::Decide { prepare, .. } if open == Some(*prepare) => open = None,
                _ => {}
            }
        }
    }

    fn check_durable_ack(&self, id: NodeId, to: NodeId, msg: &Message) {
        let node = &self.nodes[&id];
        let d = &node.durable;
        if d.term < msg.term() {
            self.fail(format!(
                "{} answers {} with durable term {}",
                node.name,
                msg_summary(msg),
                d.term
            ));
        }
        match msg {
            Message::AppendReply {
                success: true,
                match_index,
                ..
            } => {
                let core = node.core.as_ref().expect("alive");
                let ours = if *match_index == d.snapshot_index {
                    Some(d.snapshot_term)
                } else {
                    core_entry(core, *match_index).map(|e| e.term)
                };
                if *match_index > d.last_index()
                    || (*match_index >= d.snapshot_index && d.term_at(*match_index) != ours)
                {
                    self.fail(format!(
                        "{} acknowledges its log through {match_index} before it is durable (durable last {})",
                        node.name,
                        d.last_index()
                    ));
                }
            }
            Message::VoteReply {
                term,
                granted: true,
                pre_vote: false,
            } if d.term != *term || d.voted_for != Some(to) => {
                self.fail(format!(
                    "{} grants its vote in term {term} to node {to} before it is durable (durable term {} vote {:?})",
                    node.name, d.term, d.voted_for
                ));
            }
            _ => {}
        }
    }

    fn exec_apply(&mut self, id: NodeId, entries: Vec<Entry>) {
        let node = self.nodes.get_mut(&id).expect("known");
        let mut shadow = node.shadow.clone();
        let mut applied = node.shadow_applied;
        let name = node.name.clone();
        let mut error = None;
        for e in &entries {
            if e.index != applied + 1 {
                error = Some(format!("{name} applies entry {} after {applied}", e.index));
                break;
            }
            if let Err(why) = shadow_apply(&mut shadow, e) {
                error = Some(format!("{name} applies an illegal membership step: {why}"));
                break;
            }
            applied = e.index;
        }
        if let Some(why) = error {
            self.fail(why);
        }
        let node = self.nodes.get_mut(&id).expect("known");
        node.shadow = shadow;
        node.shadow_applied = applied;
    }

    fn exec_reply(&mut self, id: NodeId, rid: RequestId, told: Told) {
        let Some(req) = self.requests.get(&rid).cloned() else {
            self.fail(format!(
                "{} answers unknown request #{rid}",
                self.name_of(id)
            ));
        };
        if let Some(earlier) = &req.told {
            self.fail(format!(
                "{} answers request #{rid} twice: {earlier}, then {told}",
                self.name_of(id)
            ));
        }
        let node = &self.nodes[&id];
        let core = node.core.as_ref().expect("alive");
        match (&told, &req.what) {
            (Told::Committed { index }, Requested::Data(bytes)) => {
                let entry = core_entry(core, *index);
                let ok = *index <= core.commit_index()
                    && matches!(entry.map(|e| &e.payload), Some(Payload::Data(d)) if d == bytes)
                    && node.durable.entry(*index) == entry;
                if !ok {
                    self.fail(format!(
                        "{} tells client #{rid} its data committed at {index}, but its log has {entry:?} there (commit {})",
                        node.name,
                        core.commit_index()
                    ));
                }
            }
            (Told::ChangeCommitted { index }, Requested::Change(_)) => {
                let entry = core_entry(core, *index);
                let ok = *index <= core.commit_index()
                    && req.prepare.is_some()
                    && entry.map(|e| &e.payload)
                        == Some(&Payload::Decide {
                            prepare: req.prepare.unwrap_or(0),
                            commit: true,
                        });
                if !ok {
                    self.fail(format!(
                        "{} tells client #{rid} its change (PREPARE at {:?}) committed at {index}, but its log has {entry:?} there",
                        node.name, req.prepare
                    ));
                }
            }
            (Told::Failed { code }, Requested::Change(_)) if *code == code::ROLLED_BACK => {
                let Some(p) = req.prepare else {
                    self.fail(format!(
                        "{} tells client #{rid} its change rolled back, but it never appended a PREPARE",
                        node.name
                    ));
                };
                let aborted = core.entries().iter().any(|e| {
                    e.index <= core.commit_index()
                        && e.payload
                            == Payload::Decide {
                                prepare: p,
                                commit: false,
                            }
                });
                if !aborted {
                    self.fail(format!(
                        "{} tells client #{rid} its change (PREPARE at {p}) rolled back without a committed ABORT",
                        node.name
                    ));
                }
            }
            (Told::Failed { .. }, _) => {}
            (t, w) => self.fail(format!(
                "{} answers request #{rid} ({w:?}) with a reply of the wrong kind: {t}",
                node.name
            )),
        }
        let name = node.name.clone();
        self.note(format!("{name} tells client #{rid}: {told}"));
        self.requests.get_mut(&rid).expect("known").told = Some(told);
    }

    // ---- the checkers --------------------------------------------------------------------

    fn check_after_step(&mut self, id: NodeId, pre: &PreStep) {
        let node = &self.nodes[&id];
        let Some(core) = node.core.as_ref() else {
            return;
        };
        let name = node.name.clone();
        if let Err(why) = core.validate() {
            self.fail(format!("{name} fails validate(): {why}"));
        }
        let d = &node.durable;
        if d.term != core.term()
            || d.last_index() != core.last_index()
            || d.last_term() != core.last_term()
            || d.commit > core.commit_index()
        {
            self.fail(format!(
                "{name}: durable state (term {}, last {}/t{}, commit {}) disagrees with the core (term {}, last {}/t{}, commit {})",
                d.term,
                d.last_index(),
                d.last_term(),
                d.commit,
                core.term(),
                core.last_index(),
                core.last_term(),
                core.commit_index()
            ));
        }
        if node.shadow != *core.topology() {
            self.fail(format!(
                "{name}: the core's topology {:?} differs from the one replayed from its applied entries {:?}",
                core.topology(),
                node.shadow
            ));
        }
        if node.shadow_applied != core.commit_index() {
            self.fail(format!(
                "{name}: applied {} but commit is {}",
                node.shadow_applied,
                core.commit_index()
            ));
        }
        let commit = core.commit_index();
        // 1. At most one leader per term.
        if core.role() == Role::Leader {
            let term = core.term();
            // 8. A ready leader is a voter of its own topology.
            if core.is_ready_leader() && !core.topology().voters().contains(&id) {
                self.fail(format!(
                    "{name} leads term {term} but is not a voter of its applied topology"
                ));
            }
            match self.leaders.get(&term) {
                Some(&other) if other != id => self.fail(format!(
                    "two leaders in term {term}: {} and {name}",
                    self.name_of(other)
                )),
                Some(_) => {}
                None => {
                    self.leaders.insert(term, id);
                    self.note(format!("{name} leads term {term}"));
                }
            }
        }
        // 7. Quorums behind a leader's commit.
        if pre.role == Role::Leader && commit > pre.commit {
            self.check_commit_quorum(id, pre);
        }
        // 2. Committed-prefix agreement.
        self.check_prefix(id);
    }

    fn check_commit_quorum(&self, id: NodeId, pre: &PreStep) {
        let node = &self.nodes[&id];
        let core = node.core.as_ref().expect("alive");
        let c = core.commit_index();
        let Some(entry) = core_entry(core, c) else {
            return;
        };
        let holds = |v: &NodeId| {
            self.nodes.get(v).is_some_and(|n| {
                n.durable.entry(c) == Some(entry)
                    || (c <= n.durable.snapshot_index && self.committed.get(&c) == Some(entry))
            })
        };
        let post_voters = node.shadow.voters();
        let majority_of = |voters: &[NodeId]| membership::majority(voters, |v| holds(&v));
        if !majority_of(&pre.shadow_voters) && !majority_of(&post_voters) {
            let holders: Vec<NodeId> = self.nodes.keys().filter(|v| holds(v)).copied().collect();
            self.fail(format!(
                "{} commits {c} but only nodes {holders:?} store it durably; its voters are {:?}",
                node.name, pre.shadow_voters
            ));
        }
        // A leader two or more changes behind (a deposed leader counting acks from its own
        // term) may still commit, but only what every future leader will hold: the nodes
        // storing the entry must meet every majority of the newest committed membership,
        // whose voters elect every later leader. (Single-node changes guarantee that only
        // for a membership at most one change behind, so that case needs no count.)
        let second_newest = self.configs.iter().rev().nth(1).copied().unwrap_or(0);
        if pre.shadow_config < second_newest {
            let newest = self.configs.iter().next_back().copied().unwrap_or(0);
            let newest_voters = self
                .nodes
                .values()
                .find(|n| n.shadow.config_index == newest)
                .map(|n| n.shadow.voters());
            let meets_every_majority = newest_voters
                .as_ref()
                .is_some_and(|v| 2 * v.iter().filter(|x| holds(x)).count() >= v.len());
            if !meets_every_majority {
                self.fail(format!(
                    "{} commits {c} counting the voters of the membership at {} — two or more changes behind the committed ones {:?} — and the nodes holding it do not meet every majority of the newest voters {newest_voters:?}",
                    node.name, pre.shadow_config, self.configs
                ));
            }
        }
    }

    fn check_prefix(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let core = node.core.as_ref().expect("alive");
        let commit = core.commit_index();
        if commit <= node.checked {
            let node = self.nodes.get_mut(&id).expect("known");
            node.checked = node.checked.min(commit.max(node.durable.snapshot_index));
            return;
        }
        let mut new = Vec::new();
        for i in node.checked + 1..=commit {
            let Some(e) = core_entry(core, i) else {
                self.fail(format!("{} commits {i} which it does not hold", node.name));
            };
            match self.committed.get(&i) {
                Some(g) if g != e => self.fail(format!(
                    "committed logs disagree at {i}: {} has {e:?}, another node committed {g:?}",
                    node.name
                )),
                Some(_) => {}
                None => new.push(e.clone()),
            }
        }
        for e in new {
            if matches!(
                e.payload,
                Payload::Decide { .. } | Payload::CreateGrid { .. }
            ) {
                self.configs.insert(e.index);
            }
            self.committed.insert(e.index, e);
        }
        self.nodes.get_mut(&id).expect("known").checked = commit;
    }

    // ---- liveness and convergence --------------------------------------------------------

    fn election_timeout_ms(&self) -> u64 {
        self.cfg.core.election_timeout_ms
    }

    /// A ready leader exists, no membership change is in flight in its topology and none of
    /// its clients' changes awaits an answer.
    pub fn settled(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let core = self.core(l).expect("alive");
        core.topology().in_flight.is_none()
            && core.commit_index() == core.last_index()
            && !self
                .requests
                .values()
                .any(|r| r.node == l && r.told.is_none() && matches!(r.what, Requested::Change(_)))
    }

    /// Runs until [`Cluster::settled`] within the liveness bound; returns whether it was.
    pub fn try_settle(&mut self) -> bool {
        let bound = LIVENESS_ELECTION_TIMEOUTS * self.election_timeout_ms();
        self.run_until(Cluster::settled, bound)
    }

    fn require_settled(&mut self, context: &str) {
        if !self.try_settle() {
            let bound = LIVENESS_ELECTION_TIMEOUTS * self.election_timeout_ms();
            self.fail(format!(
                "liveness: no leader with every change settled within {bound} ms {context}"
            ));
        }
    }

    /// Stops every fault: partitions, cuts, drops, duplicates, delays beyond the default,
    /// and restarts every crashed node.
    pub fn stop_faults(&mut self) {
        self.heal();
        self.drop_rate = 0.0;
        self.dup_rate = 0.0;
        self.slow_fsync_rate = 0.0;
        for n in self.nodes.values_mut() {
            n.fail_fsync = false;
            // A crash armed by `crash_between_commands` is a fault too: a node busy in a
            // slow fsync would otherwise carry it into the liveness phase (seed 13770).
            n.crash_after = None;
        }
        self.cfg.min_delay_ms = SimConfig::default().min_delay_ms;
        self.cfg.max_delay_ms = SimConfig::default().max_delay_ms;
        self.held.clear();
        let crashed: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.core.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in crashed {
            self.restart(id);
        }
    }

    /// Design §10.8: stops every fault and restarts every crashed node, then requires a
    /// settled leader within the liveness bound.
    pub fn liveness(&mut self) {
        self.stop_faults();
        self.require_settled("after every fault stopped and every node restarted");
    }

    /// Live members behind the leader's log start: their logs do not reach the leader's
    /// snapshot, so only a snapshot transfer (still under way) can catch them up.
    pub fn stranded(&self) -> Vec<NodeId> {
        let Some(l) = self.leader() else {
            return Vec::new();
        };
        let ld = &self.nodes[&l].durable;
        let lc = self.core(l).expect("alive");
        if ld.snapshot_index == 0 {
            return Vec::new();
        }
        lc.topology()
            .members
            .keys()
            .copied()
            .filter(|&m| {
                let n = &self.nodes[&m];
                n.core.as_ref().is_some_and(|c| {
                    c.commit_index() < ld.snapshot_index
                        && n.durable.term_at(ld.snapshot_index) != Some(ld.snapshot_term)
                })
            })
            .collect()
    }

    /// After [`Cluster::liveness`]: crashes the largest minority of the voters (chosen by the
    /// seed, possibly the leader; stranded voters count as down already) and requires a
    /// settled leader again. Returns the crashed.
    pub fn liveness_with_minority_down(&mut self) -> Vec<NodeId> {
        let Some(l) = self.leader() else {
            self.fail("liveness_with_minority_down needs a leader");
        };
        let stranded = self.stranded();
        // A minority of every configuration the grid may be in: the applied one and the
        // latest in the leader's log (a removal there may already be committed on the
        // leader while the followers do not know it yet, seed 4809).
        let core = self.core(l).expect("alive");
        let log_voters = core.log_voters();
        let mut voters: Vec<NodeId> = core
            .topology()
            .voters()
            .into_iter()
            .filter(|v| log_voters.contains(v))
            .collect();
        let smallest = voters.len().min(log_voters.len()).max(1);
        let k = ((smallest - 1) / 2).saturating_sub(stranded.len());
        voters.retain(|v| !stranded.contains(v));
        let mut down = Vec::new();
        for _ in 0..k {
            let i = self.rng.below(voters.len() as u64) as usize;
            down.push(voters.remove(i));
        }
        for &id in &down {
            self.crash(id);
        }
        let names: Vec<&str> = down.iter().map(|&id| self.name_of(id)).collect();
        let context = format!("with the voters {} down", names.join(", "));
        self.require_settled(&context);
        down
    }

    /// Whether every live member, except `excused`, has committed what the leader has.
    fn caught_up_except(&self, excused: &[NodeId]) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let lc = self.core(l).expect("alive");
        lc.topology().members.keys().all(|m| {
            excused.contains(m)
                || self
                    .core(*m)
                    .is_none_or(|c| c.commit_index() == lc.commit_index())
        })
    }

    /// Whether every live member has committed what the leader has.
    pub fn caught_up(&self) -> bool {
        self.caught_up_except(&[])
    }

    /// Runs until every live member has caught up with the leader, then checks what clients
    /// were told: each committed data entry and change is in every live member's committed
    /// log (the prefix checker already proved that the entries are the proposed ones).
    pub fn check_caught_up(&mut self) {
        self.check_caught_up_except(&[]);
    }

    /// [`Cluster::check_caught_up`], excusing `excused` (the fuzz driver passes the
    /// [`Cluster::stranded`] members: a known gap, reported rather than failed).
    pub fn check_caught_up_except(&mut self, excused: &[NodeId]) {
        let bound = LIVENESS_ELECTION_TIMEOUTS * self.election_timeout_ms();
        if !self.run_until(|c| c.caught_up_except(excused), bound) {
            let stranded = self.stranded();
            self.fail(format!(
                "members did not catch up with the leader within {bound} ms (stranded behind the leader's snapshot: {stranded:?})"
            ));
        }
        let l = self.leader().expect("caught up implies a leader");
        let members: Vec<NodeId> = self
            .core(l)
            .expect("alive")
            .topology()
            .members
            .keys()
            .copied()
            .collect();
        for r in self.requests.values() {
            let (Some(Told::Committed { index }) | Some(Told::ChangeCommitted { index })) = r.told
            else {
                continue;
            };
            for &m in members.iter().filter(|m| !excused.contains(m)) {
                if let Some(c) = self.core(m)
                    && (c.commit_index() < index || !self.committed.contains_key(&index))
                {
                    self.fail(format!(
                        "client #{} was told committed at {index}, but member {} has committed only {}",
                        r.id,
                        self.name_of(m),
                        c.commit_index()
                    ));
                }
            }
        }
    }
}

/// What a fuzz run did.
#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    pub seed: u64,
    pub initial_nodes: usize,
    pub final_nodes: usize,
    pub sim_ms: u64,
    pub committed_entries: usize,
    pub changes_committed: usize,
    pub changes_rolled_back: usize,
    pub outcome_unknown: usize,
    pub highest_term: Term,
    /// Members behind the leader's log start when the run ended (their snapshot transfer
    /// was still under way); convergence and the minority-down liveness phase excuse them.
    pub stranded: Vec<String>,
    pub stats: SimStats,
    /// Hash of the run's event trace ([`Cluster::trace_hash`]): a replay gives the same.
    pub trace_hash: u64,
}

/// What a fuzz run varies beyond its seed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FuzzOptions {
    /// Known bugs to re-introduce in every core (to show the checkers find them).
    pub bugs: Bugs,
    /// Failure detection on: the leader marks silent members failed and brings answering
    /// failed members back, so automatic changes race the workload's.
    pub failure_detection: bool,
}

/// The names of the re-introduced bugs, as `GRID_SIM_BUGS` takes them.
pub const BUG_NAMES: [&str; 4] = [
    "joiner-quorum",
    "ack-before-fsync",
    "change-before-term-commit",
    "ignore-undecided",
];

/// Parses a comma-separated list of [`BUG_NAMES`]; `None` names an unknown one.
pub fn parse_bugs(list: &str) -> Option<Bugs> {
    let mut b = Bugs::default();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            "joiner-quorum" => b.joiner_counts_toward_quorum = true,
            "ack-before-fsync" => b.ack_before_fsync = true,
            "change-before-term-commit" => b.change_before_own_term_commit = true,
            "ignore-undecided" => b.ignore_undecided_change = true,
            _ => return None,
        }
    }
    Some(b)
}

/// The inverse of [`parse_bugs`].
pub fn bug_list(b: Bugs) -> String {
    let flags = [
        b.joiner_counts_toward_quorum,
        b.ack_before_fsync,
        b.change_before_own_term_commit,
        b.ignore_undecided_change,
    ];
    let names: Vec<&str> = BUG_NAMES
        .iter()
        .zip(flags)
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    names.join(",")
}

/// A membership change a client might ask `at` for: ADD of a new node (named `j<k>`) or
/// another kind on one of the members `at` knows.
fn random_change(c: &Cluster, rng: &mut SimRng, at: NodeId, joined: &mut u64) -> ChangeRequest {
    let members: Vec<NodeId> = c
        .core(at)
        .map(|core| {
            core.topology()
                .members
                .keys()
                .copied()
                .filter(|&m| m != at)
                .collect()
        })
        .unwrap_or_default();
    match rng.pick(&members) {
        Some(target) if rng.below(2) == 0 || c.node_ids().len() >= FUZZ_MAX_NODES => {
            let kind = [
                ChangeKind::Drop,
                ChangeKind::Offline,
                ChangeKind::Online,
                ChangeKind::Fail,
            ][rng.below(4) as usize];
            ChangeRequest {
                kind,
                name: c.name_of(target).to_string(),
                addr: None,
            }
        }
        _ => {
            *joined += 1;
            let name = format!("j{joined}");
            ChangeRequest {
                kind: ChangeKind::Add,
                addr: Some(addr_of(&name)),
                name,
            }
        }
    }
}

/// A seeded random run: 3–5 nodes, `steps` random actions (proposals, membership changes,
/// crashes — also between commands — restarts, partitions, one-way cuts of all messages or
/// of vote requests only, drops, duplicates and wider delays), each followed by a random
/// stretch of time; then liveness with every node
/// back, liveness with a minority of the voters down, and convergence. The checkers run
/// throughout; a failure names the seed and the command that replays it.
pub fn fuzz(seed: u64, steps: usize) -> FuzzReport {
    fuzz_with(seed, steps, FuzzOptions::default())
}

/// The command that replays a fuzz run.
pub fn replay_command(seed: u64, steps: usize, opts: FuzzOptions) -> String {
    let bugs = bug_list(opts.bugs);
    let mut bugs = if bugs.is_empty() {
        String::new()
    } else {
        format!("GRID_SIM_BUGS={bugs} ")
    };
    if opts.failure_detection {
        bugs.push_str("GRID_SIM_FAILURE_DETECTION=1 ");
    }
    format!(
        "{bugs}GRID_SIM_SEED={seed} GRID_SIM_STEPS={steps} cargo test --test grid_core fuzz_replay -- --nocapture"
    )
}

/// [`fuzz`] with options (re-introduced bugs).
pub fn fuzz_with(seed: u64, steps: usize, opts: FuzzOptions) -> FuzzReport {
    let mut rng = SimRng::new(seed ^ 0x5eed_f00d_cafe_d00d);
    let initial = 3 + rng.below(3) as usize;
    let mut cfg = SimConfig::default();
    cfg.core.bugs = opts.bugs;
    if opts.failure_detection {
        // Four election timeouts of silence: long enough that a healthy follower is never
        // marked, short enough to fire within a run.
        cfg.core.node_failure_timeout_ms = 4 * cfg.core.election_timeout_ms;
    }
    let mut c = Cluster::with_config(initial, seed, cfg);
    c.set_replay_hint(format!("replay: {}", replay_command(seed, steps, opts)));
    let et = c.election_timeout_ms();
    c.run_until(|c| c.leader().is_some(), LIVENESS_ELECTION_TIMEOUTS * et);
    let mut joined = 0u64;
    let mut data = 0u64;
    for _ in 0..steps {
        let ids = c.node_ids();
        let alive: Vec<NodeId> = ids.iter().copied().filter(|&i| c.is_alive(i)).collect();
        let crashed: Vec<NodeId> = ids.iter().copied().filter(|&i| !c.is_alive(i)).collect();
        let leader = c.leader();
        let members: Vec<NodeId> = leader
            .map(|l| {
                c.core(l)
                    .expect("alive")
                    .topology()
                    .members
                    .keys()
                    .copied()
                    .filter(|&m| m != l)
                    .collect()
            })
            .unwrap_or_default();
        match rng.below(120) {
            0..=29 => {
                let at = match leader {
                    Some(l) if rng.below(5) > 0 => l,
                    _ => rng.pick(&ids).unwrap_or(1),
                };
                data += 1;
                c.propose_data(at, format!("s{seed}-d{data}").into_bytes());
            }
            30..=39 if ids.len() < FUZZ_MAX_NODES => {
                joined += 1;
                let rid = c.add_node(&format!("j{joined}"), None);
                // Sometimes the joining node dies at once, before it can acknowledge.
                if rng.below(4) == 0
                    && let Some(ch) = c.request(rid).and_then(|r| r.change.clone())
                {
                    c.crash(ch.node.id);
                }
            }
            40..=46 => {
                if let (Some(l), Some(target)) = (leader, rng.pick(&members)) {
                    let kind = *[
                        ChangeKind::Drop,
                        ChangeKind::Offline,
                        ChangeKind::Online,
                        ChangeKind::Fail,
                    ]
                    .get(rng.below(4) as usize)
                    .expect("in range");
                    let name = c.name_of(target).to_string();
                    c.propose_change(
                        l,
                        ChangeRequest {
                            kind,
                            name,
                            addr: None,
                        },
                    );
                }
            }
            47..=54 => {
                if let Some(v) = rng.pick(&alive) {
                    c.crash(v);
                }
            }
            55..=66 => {
                if let Some(v) = rng.pick(&crashed) {
                    c.restart(v);
                }
            }
            67..=71 => {
                if let Some(v) = rng.pick(&alive) {
                    let k = rng.below(5) as usize;
                    c.crash_between_commands(v, k);
                }
            }
            72..=77 => {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for &i in &ids {
                    if rng.below(2) == 0 {
                        a.push(i)
                    } else {
                        b.push(i)
                    }
                }
                c.partition(&a, &b);
            }
            78..=82 => {
                if let (Some(x), Some(y)) = (rng.pick(&ids), rng.pick(&ids))
                    && x != y
                {
                    if rng.below(3) == 0 {
                        c.cut_votes(x, y);
                    } else {
                        c.cut(x, y);
                    }
                }
            }
            83..=90 => c.heal(),
            91..=94 => {
                let p = [0.0, 0.0, 0.02, 0.1, 0.3][rng.below(5) as usize];
                c.set_drop_rate(p);
            }
            95..=96 => {
                let p = [0.0, 0.05, 0.2][rng.below(3) as usize];
                c.set_dup_rate(p);
            }
            97..=98 => {
                let hi = [8, 8, 30, 120][rng.below(4) as usize];
                c.set_delay(1, hi);
            }
            99 => {
                if let Some(l) = leader {
                    c.crash(l);
                }
            }
            100..=102 => {
                // Leader isolation: cut off both ways while it still believes it leads.
                if let Some(l) = leader {
                    c.isolate(l);
                }
            }
            103..=105 => {
                let p = [0.0, 0.05, 0.2][rng.below(3) as usize];
                let hi = [10, 50, 300][rng.below(3) as usize];
                c.set_slow_fsync(p, 1, hi);
            }
            106..=108 => {
                // A failing fsync stops the node; an append may be torn.
                if let Some(v) = rng.pick(&alive) {
                    c.fail_fsync(v);
                }
            }
            109..=113 => {
                // The leader dies in the middle of a change, and a client asks whichever
                // node takes the leader role next for another change at once.
                if let Some(l) = leader {
                    let req = random_change(&c, &mut rng, l, &mut joined);
                    c.propose_change(l, req);
                    c.run_for(rng.range(1, 12));
                    c.crash(l);
                    if c.run_until(
                        |c| c.acting_leader().is_some_and(|a| a != l),
                        LIVENESS_ELECTION_TIMEOUTS * et,
                    ) && let Some(a) = c.acting_leader()
                    {
                        let req = random_change(&c, &mut rng, a, &mut joined);
                        c.propose_change(a, req);
                    }
                }
            }
            _ => {
                // A change, then its leader isolated or crashed after a short while.
                if let Some(l) = leader {
                    let req = random_change(&c, &mut rng, l, &mut joined);
                    c.propose_change(l, req);
                    c.run_for(rng.range(1, 20));
                    if rng.below(2) == 0 {
                        c.isolate(l);
                    } else {
                        c.crash(l);
                    }
                }
            }
        }
        let pause = rng.range(5, 3 * et);
        c.run_for(pause);
    }
    c.stop_faults();
    let settled = c.try_settle();
    let stranded = c.stranded();
    let mut names: Vec<String> = stranded.iter().map(|&s| c.name_of(s).to_string()).collect();
    if !settled && stranded.is_empty() {
        c.require_settled("after every fault stopped and every node restarted");
    }
    if settled {
        c.check_caught_up_except(&stranded);
        let down = c.liveness_with_minority_down();
        for id in down {
            c.restart(id);
        }
        let stranded = c.stranded();
        c.check_caught_up_except(&stranded);
        names = stranded.iter().map(|&s| c.name_of(s).to_string()).collect();
    }
    let mut report = FuzzReport {
        stranded: names,
        seed,
        initial_nodes: initial,
        final_nodes: c
            .leader()
            .and_then(|l| c.core(l))
            .map_or(0, |core| core.topology().members.len()),
        sim_ms: c.now_ms(),
        committed_entries: c.committed.len(),
        highest_term: c.leaders.keys().next_back().copied().unwrap_or(0),
        stats: c.stats.clone(),
        trace_hash: c.trace_hash(),
        ..FuzzReport::default()
    };
    for r in c.requests.values() {
        match r.told {
            Some(Told::ChangeCommitted { .. }) => report.changes_committed += 1,
            Some(Told::Failed { code }) if code == code::ROLLED_BACK => {
                report.changes_rolled_back += 1
            }
            Some(Told::Failed { code }) if code == code::OUTCOME_UNKNOWN => {
                report.outcome_unknown += 1
            }
            _ => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_three_node_grid_elects_and_commits() {
        let mut c = Cluster::new(3, 7);
        assert!(c.elect(1, 2_000), "{}", c.describe());
        let rid = c.propose_data(1, b"x".to_vec());
        assert!(c.run_until(|c| c.told(rid).is_some(), 1_000));
        assert!(matches!(c.told(rid), Some(Told::Committed { .. })));
        c.check_caught_up();
    }

    #[test]
    fn the_same_seed_replays_the_same_run() {
        let a = fuzz(3, 20);
        let b = fuzz(3, 20);
        assert_eq!(a.stats, b.stats);
        assert_eq!(a.sim_ms, b.sim_ms);
        assert_eq!(a.committed_entries, b.committed_entries);
    }

    #[test]
    #[should_panic(expected = "before a durable write")]
    fn the_order_checker_catches_an_ack_before_its_fsync() {
        let c = Cluster::new(1, 1);
        c.check_batch_order(
            1,
            &[
                Command::Respond {
                    to: 2,
                    msg: Message::AppendReply {
                        term: 1,
                        success: true,
                        match_index: 1,
                    },
                },
                Command::AppendLog { entries: vec![] },
            ],
        );
    }

    #[test]
    fn shadow_apply_refuses_illegal_steps() {
        let c = Cluster::new(2, 1);
        let t = c.nodes[&1].shadow.clone();
        let bad = Entry {
            term: 1,
            index: 1,
            payload: Payload::Prepare(Change {
                kind: ChangeKind::Online,
                node: t.members[&2].clone(),
                from: MemberState::Online,
            }),
        };
        assert!(shadow_apply(&mut t.clone(), &bad).is_err());
        let orphan = Entry {
            term: 1,
            index: 1,
            payload: Payload::Decide {
                prepare: 1,
                commit: true,
            },
        };
        assert!(shadow_apply(&mut t.clone(), &orphan).is_err());
    }
}
