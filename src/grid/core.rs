//! The grid protocol core: Raft-style leader election and log replication of the grid log,
//! with membership changes as a two-phase commit on top (design §5). A pure, deterministic
//! state machine: no tokio, sockets, clock or filesystem. Time and randomness come in as
//! arguments; [`Core::step`] takes one [`Input`] and returns the [`Command`]s to carry out.
//!
//! **Command order is the durability contract.** The driver executes commands strictly in
//! the order given: `PersistHardState` and `AppendLog` (each fsynced) always come before a
//! `Send`/`Respond` that depends on them, so no vote, append acknowledgement (a durable
//! PREPARE ack) or leader broadcast leaves the node before its fsync (design §10.4).
//!
//! Membership changes:
//! 1. the leader, once it has committed an entry of its own term, appends `PREPARE(change)`;
//! 2. it replicates the log to every member and to the affected node; a follower's append
//!    acknowledgement is its durable PREPARE ack;
//! 3. when the quorum rule (§5.3) holds on the match indexes it appends `Decide{commit}`;
//!    past the change timeout it appends `Decide{abort}` instead;
//! 4. the outcome is reported when the decision entry is committed (Raft majority of the
//!    voters, which during a change are the voters *before* it — so the old voters alone can
//!    always roll back an add whose node died);
//! 5. a new leader that finds a PREPARE without decision in its committed log runs steps 3–4
//!    for it with a fresh timeout. A decision is reported committed only once the decision
//!    entry is committed, so a leader that does not hold a COMMIT knows none was reported,
//!    and any two quorums that can decide intersect.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{SolidError, code};
use crate::grid::membership::{self, ChangeRequest};
use crate::grid::types::{
    Change, ChangeKind, Entry, Index, Member, MemberState, Message, NodeId, Payload, Term, Topology,
};

/// Most entries sent in one append message (bounds message size and apply batches).
pub const MAX_ENTRIES_PER_APPEND: usize = 256;

/// Timing and behaviour of the core; all durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// T: a follower campaigns after a random silence in [T, 2T).
    pub election_timeout_ms: u64,
    /// How often the leader heartbeats each follower.
    pub heartbeat_interval_ms: u64,
    pub pre_vote: bool,
    /// Bound for a membership change to reach its quorum before it is rolled back.
    pub change_timeout_ms: u64,
    /// Silence after which the leader marks an online member failed (design §5.4);
    /// 0 turns failure detection off.
    pub node_failure_timeout_ms: u64,
    /// Known bugs re-introduced for the simulation to find (all off; never set outside
    /// tests).
    #[doc(hidden)]
    pub bugs: Bugs,
}

/// Known protocol bugs behind a test-only switch: each flag re-introduces one, so the
/// simulation can show that its checkers find it (design §10, issue "the harness must
/// bite"). All `false` by default; the driver never sets them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bugs {
    /// Count the joining node of an in-flight ADD toward the commit quorum before its add
    /// commits (breaks design §5.3 and §10.6).
    pub joiner_counts_toward_quorum: bool,
    /// Acknowledge an append (a PREPARE ack) before its `AppendLog` fsync (breaks §10.4).
    pub ack_before_fsync: bool,
    /// Let a new leader propose a membership change before it has committed an entry of
    /// its own term (breaks the single-change rule of §5.3).
    pub change_before_own_term_commit: bool,
    /// Let a new leader ignore a PREPARE it finds undecided: it never settles it (breaks
    /// §5.4 and liveness, §10.8).
    pub ignore_undecided_change: bool,
}

/// The durable state a core starts from (see `grid::store`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// A commit index known durable earlier (lets a restarted node re-apply at once).
    pub commit: Index,
    pub snapshot_index: Index,
    pub snapshot_term: Term,
    /// Membership as of the snapshot.
    pub snapshot_topology: Topology,
    /// Log entries after the snapshot.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Identifies a proposal so its outcome can be routed back.
pub type RequestId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    /// A database change (DDL, users, shared-table rows), replicated then applied.
    Data(Vec<u8>),
    /// A membership change (already checked with [`Core::check_change`]).
    Change(Change),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The entry at `index` is committed (and applied by the driver before this reply).
    Committed { index: Index },
    /// The change committed; `index` is its decision entry (the configuration index).
    ChangeCommitted { index: Index, topology: Topology },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Tick,
    /// A request from a peer (needs a `Respond`) or a reply to our request.
    Message {
        from: NodeId,
        msg: Message,
    },
    Propose {
        id: RequestId,
        proposal: Proposal,
    },
    /// The driver installed our snapshot (through `index`) on follower `to`.
    SnapshotSent {
        to: NodeId,
        index: Index,
    },
    /// Sending a snapshot to `to` failed; it may be retried.
    SnapshotFailed {
        to: NodeId,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Durably store term and vote (and the commit index hint). Before anything after it.
    PersistHardState {
        term: Term,
        voted_for: Option<NodeId>,
        commit: Index,
    },
    /// Durably store `entries`, first dropping any stored entry at or after the first one's
    /// index. Before anything after it.
    AppendLog { entries: Vec<Entry> },
    /// Send a request to a peer (its reply comes back as `Input::Message`).
    Send {
        to: NodeId,
        addr: String,
        msg: Message,
    },
    /// Answer the peer request currently being stepped.
    Respond { to: NodeId, msg: Message },
    /// Follower `to` needs entries this log no longer holds: send it a snapshot of the
    /// applied state (then report `Input::SnapshotSent` or `Input::SnapshotFailed`).
    SendSnapshot { to: NodeId, addr: String },
    /// Entries newly committed, in order: apply them (data to the database).
    Apply { entries: Vec<Entry> },
    /// A proposal's outcome.
    Reply {
        id: RequestId,
        result: Result<Outcome, SolidError>,
    },
}

#[derive(Debug, Clone)]
struct Progress {
    next: Index,
    matched: Index,
    last_heard_ms: u64,
    /// When this follower last answered (None: not since this node became leader).
    last_reply_ms: Option<u64>,
    /// When a snapshot was last handed to the driver for this follower (one at a time).
    snapshot_sent_ms: Option<u64>,
}

/// How long a snapshot transfer may take before the leader tries another.
const SNAPSHOT_RETRY_MS: u64 = 30_000;

/// A membership change the leader is driving to a decision.
#[derive(Debug, Clone)]
struct ChangeTracking {
    prepare: Index,
    change: Change,
    deadline_ms: u64,
    request: Option<RequestId>,
    /// Index of the decision entry once appended.
    decided: Option<Index>,
}

pub struct Core {
    id: NodeId,
    cfg: CoreConfig,
    rng: u64,
    // Durable state (mirrored by the driver's store).
    term: Term,
    voted_for: Option<NodeId>,
    snapshot_index: Index,
    snapshot_term: Term,
    /// Membership as of the snapshot (to compute the topology at a compaction point).
    snapshot_topology: Topology,
    log: Vec<Entry>,
    // Volatile state.
    role: Role,
    leader: Option<NodeId>,
    commit: Index,
    applied: Index,
    topology: Topology,
    /// Membership with every entry of the log applied, committed or not: what elections
    /// and commitment count with (Raft's "latest configuration in the log" rule — safe
    /// because one change is in flight at a time and each adds or removes one voter).
    log_topology: Topology,
    /// A COMMIT in the log, not yet known committed, that takes a voter out, with the
    /// voters before it. Until it is known committed elections and commitment count the
    /// voters before it (see [`Core::voters`]).
    pending_removal: Option<(Index, Vec<NodeId>)>,
    election_deadline_ms: u64,
    last_leader_contact_ms: Option<u64>,
    votes: BTreeSet<NodeId>,
    // Leader state.
    progress: BTreeMap<NodeId, Progress>,
    heartbeat_due_ms: u64,
    became_leader_ms: u64,
    noop_index: Index,
    pending: BTreeMap<Index, RequestId>,
    change: Option<ChangeTracking>,
    /// Failure detection may be paused (an orderly grid shutdown marks nobody failed).
    failure_detection: bool,
    /// Per node: no automatic change is proposed for it before this time (back-off after
    /// one was tried, so a rolled-back one is retried later, not in a loop).
    detection_backoff_ms: BTreeMap<NodeId, u64>,
    now_ms: u64,
}

fn not_leader(leader: Option<&Member>) -> SolidError {
    match leader {
        Some(m) => SolidError::grid(
            code::NOT_LEADER,
            format!(
                "this statement must run on the grid leader: node {} at {}",
                m.name, m.addr
            ),
        ),
        None => no_leader(),
    }
}

fn no_leader() -> SolidError {
    SolidError::grid(
        code::NO_LEADER,
        "no grid leader: a majority of the voters is not reachable",
    )
}

fn outcome_unknown() -> SolidError {
    SolidError::grid(
        code::OUTCOME_UNKNOWN,
        "outcome unknown: this node lost the grid leadership during the change; check SYS_GRID_NODES on the new leader",
    )
}

/// The highest index a log proves committed by itself. A leader appends a PREPARE only once
/// it has committed its term's first entry (the no-op) and the decision on every earlier
/// change (see `propose`), and by log matching a log holding that PREPARE holds the same
/// entries before it; so those entries are committed.
fn commit_proven_by_log(log: &[Entry]) -> Index {
    let Some(p) = log
        .iter()
        .rposition(|e| matches!(e.payload, Payload::Prepare(_)))
    else {
        return 0;
    };
    let term = log[p].term;
    let noop = log[..p]
        .iter()
        .find(|e| e.term == term)
        .filter(|e| e.payload == Payload::Noop)
        .map_or(0, |e| e.index);
    let decided = log[..p]
        .iter()
        .rev()
        .find(|e| matches!(e.payload, Payload::Decide { .. }))
        .map_or(0, |e| e.index);
    noop.max(decided)
}

impl Core {
    pub fn new(id: NodeId, cfg: CoreConfig, restored: Restored, seed: u64, now_ms: u64) -> Core {
        let last = restored
            .entries
            .last()
            .map_or(restored.snapshot_index, |e| e.index);
        let mut core = Core {
            id,
            cfg,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15 ^ id,
            term: restored.term,
            voted_for: restored.voted_for,
            snapshot_index: restored.snapshot_index,
            snapshot_term: restored.snapshot_term,
            log: restored.entries,
            role: Role::Follower,
            leader: None,
            commit: restored.snapshot_index,
            applied: restored.snapshot_index,
            log_topology: restored.snapshot_topology.clone(),
            pending_removal: None,
            snapshot_topology: restored.snapshot_topology.clone(),
            topology: restored.snapshot_topology,
            election_deadline_ms: 0,
            last_leader_contact_ms: None,
            votes: BTreeSet::new(),
            progress: BTreeMap::new(),
            heartbeat_due_ms: 0,
            became_leader_ms: 0,
            noop_index: 0,
            pending: BTreeMap::new(),
            change: None,
            failure_detection: true,
            detection_backoff_ms: BTreeMap::new(),
            now_ms,
        };
        // The stored commit is only a hint and may predate the stored log (a leader stores
        // it only with its term; a crash can fall between `AppendLog` and the
        // `PersistHardState` after it). Applying a topology two changes behind the log
        // would let this node count votes and acknowledgements by a membership whose
        // majorities do not intersect the current one's, so take what the log proves.
        let proven = commit_proven_by_log(&core.log);
        core.commit = restored.commit.max(proven).clamp(core.snapshot_index, last);
        core.recompute_log_topology();
        core.reset_election_timer();
        core
    }

    /// Commands to run right after construction: re-applying what was known committed.
    pub fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        self.apply_committed(&mut out);
        out
    }

    // ---- accessors -------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn commit_index(&self) -> Index {
        self.commit
    }
    pub fn last_index(&self) -> Index {
        self.log.last().map_or(self.snapshot_index, |e| e.index)
    }
    pub fn last_term(&self) -> Term {
        self.log.last().map_or(self.snapshot_term, |e| e.term)
    }
    /// Membership as applied from the committed log.
    /// The voters of the latest configuration in the log (committed or not).
    pub fn log_voters(&self) -> Vec<NodeId> {
        self.log_topology.voters()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }
    /// Entries after the snapshot (for the simulation's checkers and for snapshots).
    pub fn entries(&self) -> &[Entry] {
        &self.log
    }
    /// Whether this node is leader and has committed an entry of its term (so it knows the
    /// committed log and may propose membership changes).
    pub fn is_ready_leader(&self) -> bool {
        self.role == Role::Leader && self.commit >= self.noop_index
    }
    pub fn leader_member(&self) -> Option<&Member> {
        self.leader.and_then(|l| self.topology.members.get(&l))
    }
    /// When the leader last heard from each follower (for `grid nodeinfo`).
    pub fn last_heard_ms(&self, id: NodeId) -> Option<u64> {
        if id == self.id {
            return Some(self.now_ms);
        }
        self.progress.get(&id).map(|p| p.last_heard_ms)
    }

    /// Validates a change request against the applied topology and the leader's state.
    pub fn check_change(&self, req: &ChangeRequest) -> Result<Change, SolidError> {
        if self.role != Role::Leader {
            return Err(not_leader(self.leader_member()));
        }
        if !self.is_ready_leader() && !self.cfg.bugs.change_before_own_term_commit {
            return Err(SolidError::grid(
                code::NO_LEADER,
                "the leader has not yet committed an entry of its term; try again",
            ));
        }
        if let Some(t) = &self.change {
            return Err(membership::change_in_progress(t.prepare, &t.change));
        }
        let change = membership::check_change(&self.topology, req)?;
        if change.node.id == self.id {
            return Err(SolidError::grid(
                code::TRANSITION_NOT_ALLOWED,
                format!(
                    "node {} is the grid leader: {} of the leader is not supported; run it when another node leads",
                    change.node.name,
                    change.kind.as_str()
                ),
            ));
        }
        Ok(change)
    }

    /// Forgets log entries through `through` (at most the applied index): they are covered
    /// by the database state. Returns the snapshot's term and topology for the store.
    pub fn compact(&mut self, through: Index) -> Option<(Index, Term, Topology)> {
        // Keep an undecided PREPARE in the log: its decision is logged against it.
        let through = match &self.topology.in_flight {
            Some((prepare, _)) => through.min(prepare.saturating_sub(1)),
            None => through,
        };
        if through <= self.snapshot_index || through > self.applied {
            return None;
        }
        let term = self.term_at(through)?;
        let mut topology = self.snapshot_topology.clone();
        for e in self.log.iter().take_while(|e| e.index <= through) {
            topology = membership::apply_entry(&topology, e).ok()?;
        }
        let drop = (through - self.snapshot_index) as usize;
        self.log.drain(..drop);
        self.snapshot_index = through;
        self.snapshot_term = term;
        self.snapshot_topology = topology.clone();
        Some((through, term, topology))
    }

    /// Adopts a snapshot a leader installed (the driver already replaced the database and
    /// reset the stored log): the log restarts after `index`.
    pub fn install_snapshot(&mut self, index: Index, term: Term, topology: Topology) {
        if index <= self.commit {
            tracing::debug!(
                node = self.id,
                index,
                "ignoring a snapshot older than the commit index"
            );
            return;
        }
        self.log.clear();
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.snapshot_topology = topology.clone();
        self.commit = index;
        self.applied = index;
        self.topology = topology;
        self.recompute_log_topology();
        self.last_leader_contact_ms = Some(self.now_ms);
        self.reset_election_timer();
    }

    /// Where the log starts: entries through this index are covered by a snapshot.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// The applied index (equal to the commit index once the driver ran `Apply`).
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// Checks the core's invariants (used after every step in tests).
    pub fn validate(&self) -> Result<(), String> {
        if self.commit > self.last_index() {
            return Err(format!(
                "commit {} beyond last {}",
                self.commit,
                self.last_index()
            ));
        }
        if self.applied > self.commit {
            return Err(format!(
                "applied {} beyond commit {}",
                self.applied, self.commit
            ));
        }
        for (i, e) in self.log.iter().enumerate() {
            if e.index != self.snapshot_index + 1 + i as u64 {
                return Err(format!("log index gap at {}", e.index));
            }
            if i > 0 && e.term < self.log[i - 1].term {
                return Err(format!("log terms decrease at {}", e.index));
            }
        }
        if self.role == Role::Leader && self.leader != Some(self.id) {
            return Err("leader does not name itself".into());
        }
        membership::check_invariants(&self.topology)
    }

    // ---- log helpers -------------------------------------------------------------------

    /// The term of the entry at `index` (the snapshot's term at its index); `None` when the
    /// index is before the snapshot or beyond the log.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot_index {
            return None;
        }
        self.log
            .get((index - self.snapshot_index - 1) as usize)
            .map(|e| e.term)
    }

    fn entries_from(&self, from: Index, max: usize) -> Vec<Entry> {
        if from <= self.snapshot_index {
            return Vec::new();
        }
        let start = (from - self.snapshot_index - 1) as usize;
        self.log.iter().skip(start).take(max).cloned().collect()
    }

    fn append_local(&mut self, payload: Payload, out: &mut Vec<Command>) -> Index {
        let entry = Entry {
            term: self.term,
            index: self.last_index() + 1,
            payload,
        };
        let index = entry.index;
        self.log.push(entry.clone());
        match membership::apply_entry(&self.log_topology, &entry) {
            Ok(t) => self.advance_log_topology(t, &entry),
            Err(why) => {
                tracing::warn!(node = self.id, index, "own entry does not apply: {why}");
            }
        }
        out.push(Command::AppendLog {
            entries: vec![entry],
        });
        if let Some(p) = self.progress.get_mut(&self.id) {
            p.matched = index;
            p.next = index + 1;
        }
        index
    }

    // ---- timers and randomness ---------------------------------------------------------

    fn next_random(&mut self) -> u64 {
        // splitmix64: deterministic for a seed, good enough for timeout jitter.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn reset_election_timer(&mut self) {
        let t = self.cfg.election_timeout_ms.max(1);
        let jitter = self.next_random() % t;
        self.election_deadline_ms = self.now_ms + t + jitter;
    }

    /// The voters elections and commitment count: those of the latest configuration in the
    /// log — except that a COMMIT taking a voter out counts only once it is known committed
    /// (until then, the voters before it). Adding follows Raft (the configuration counts
    /// once appended); removing waits for the commit, so an uncommitted removal never leaves
    /// the grid needing the voters that remain when the removed one is still there to vote:
    /// with three voters, a FAIL of n1 appended everywhere and n2 crashing before it acked
    /// would otherwise leave n1 and n3 — a majority of the committed voters — unable to
    /// elect or commit anything (simulation seed 5256). Safe for the same reason as Raft's
    /// single-server changes: the voters before and after one change differ by one node,
    /// so their majorities intersect, and a log holding a later PREPARE proves the removal
    /// committed (a leader proposes only after applying the previous decision), so no node
    /// counts a configuration two changes behind one that is committed.
    fn voters(&self) -> Vec<NodeId> {
        match &self.pending_removal {
            Some((index, before)) if *index > self.commit => before.clone(),
            _ => self.log_topology.voters(),
        }
    }

    /// Re-derives `log_topology` from the applied topology and the entries after it.
    fn recompute_log_topology(&mut self) {
        self.log_topology = self.topology.clone();
        self.pending_removal = None;
        let pending: Vec<Entry> = self
            .log
            .iter()
            .filter(|e| e.index > self.applied)
            .cloned()
            .collect();
        for e in &pending {
            match membership::apply_entry(&self.log_topology, e) {
                Ok(next) => self.advance_log_topology(next, e),
                Err(why) => {
                    tracing::warn!(
                        node = self.id,
                        index = e.index,
                        "entry does not apply to the log topology: {why}"
                    );
                }
            }
        }
    }

    /// Moves `log_topology` past one entry (`next` is it applied) and keeps
    /// `pending_removal` up to date: set by a COMMIT that takes voters out, cleared by a
    /// later PREPARE (which proves it committed) or a later decision.
    fn advance_log_topology(&mut self, next: Topology, e: &Entry) {
        match e.payload {
            Payload::Prepare(_) => self.pending_removal = None,
            Payload::Decide { .. } => {
                let before = self.log_topology.voters();
                let after = next.voters();
                let removes =
                    after.len() < before.len() && after.iter().all(|v| before.contains(v));
                self.pending_removal = removes.then_some((e.index, before));
            }
            _ => {}
        }
        self.log_topology = next;
    }

    fn is_voter(&self, id: NodeId) -> bool {
        self.voters().contains(&id)
    }

    fn persist_hard_state(&self, out: &mut Vec<Command>) {
        out.push(Command::PersistHardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.commit,
        });
    }

    // ---- the step function ---------------------------------------------------------------

    pub fn step(&mut self, now_ms: u64, input: Input) -> Vec<Command> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut out = Vec::new();
        match input {
            Input::Tick => self.tick(&mut out),
            Input::Message { from, msg } => self.on_message(from, msg, &mut out),
            Input::Propose { id, proposal } => self.propose(id, proposal, &mut out),
            Input::SnapshotSent { to, index } => {
                if self.role == Role::Leader
                    && let Some(p) = self.progress.get_mut(&to)
                {
                    p.snapshot_sent_ms = None;
                    p.matched = p.matched.max(index);
                    p.next = p.matched + 1;
                    p.last_heard_ms = self.now_ms;
                    self.maybe_commit(&mut out);
                    self.drive_change(&mut out);
                    if let Some(addr) = self.addr_of(to) {
                        self.send_append(to, addr, &mut out);
                    }
                }
            }
            Input::SnapshotFailed { to } => {
                if let Some(p) = self.progress.get_mut(&to) {
                    p.snapshot_sent_ms = None;
                }
            }
        }
        out
    }

    fn tick(&mut self, out: &mut Vec<Command>) {
        match self.role {
            Role::Leader => {
                if !self.has_quorum_contact() {
                    tracing::warn!(
                        node = self.id,
                        term = self.term,
                        "leader cannot hear a majority of the voters: stepping down"
                    );
                    self.become_follower(self.term, None, out);
                    return;
                }
                if self.now_ms >= self.heartbeat_due_ms {
                    self.broadcast_append(out);
                }
                self.drive_change(out);
                self.detect_failures(out);
            }
            _ => {
                if self.now_ms >= self.election_deadline_ms {
                    if self.is_voter(self.id) {
                        self.campaign(self.cfg.pre_vote, out);
                    } else {
                        self.reset_election_timer();
                    }
                }
            }
        }
    }

    fn has_quorum_contact(&self) -> bool {
        if self.now_ms < self.became_leader_ms + self.cfg.election_timeout_ms {
            return true;
        }
        let voters = self.voters();
        membership::majority(&voters, |v| {
            v == self.id
                || self.progress.get(&v).is_some_and(|p| {
                    self.now_ms.saturating_sub(p.last_heard_ms) <= self.cfg.election_timeout_ms
                })
        })
    }

    fn campaign(&mut self, pre_vote: bool, out: &mut Vec<Command>) {
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.id);
        let term = if pre_vote {
            self.role = Role::PreCandidate;
            tracing::debug!(node = self.id, term = self.term, "pre-vote");
            self.term + 1
        } else {
            self.role = Role::Candidate;
            self.term += 1;
            self.voted_for = Some(self.id);
            self.leader = None;
            tracing::info!(
                node = self.id,
                term = self.term,
                "campaigning for leadership"
            );
            self.persist_hard_state(out);
            self.term
        };
        if self.won_votes() {
            self.after_votes(pre_vote, out);
            return;
        }
        let msg = Message::Vote {
            term,
            candidate: self.id,
            last_log_index: self.last_index(),
            last_log_term: self.last_term(),
            pre_vote,
        };
        for v in self.voters() {
            // The voters are those of the latest configuration in the log: a node added by a
            // COMMIT not yet applied is found there (the applied topology lacks its address,
            // and without its vote a grid of two voters could never elect a leader).
            if v != self.id
                && let Some(m) = self
                    .log_topology
                    .members
                    .get(&v)
                    .or_else(|| self.topology.members.get(&v))
            {
                out.push(Command::Send {
                    to: v,
                    addr: m.addr.clone(),
                    msg: msg.clone(),
                });
            }
        }
    }

    fn won_votes(&self) -> bool {
        membership::majority(&self.voters(), |v| self.votes.contains(&v))
    }

    fn after_votes(&mut self, pre_vote: bool, out: &mut Vec<Command>) {
        if pre_vote {
            self.campaign(false, out);
        } else {
            self.become_leader(out);
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>, out: &mut Vec<Command>) {
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state(out);
        }
        if self.role != Role::Follower {
            tracing::info!(node = self.id, term = self.term, from = ?self.role, "role → Follower");
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.votes.clear();
        if was_leader {
            self.progress.clear();
            for (_, id) in std::mem::take(&mut self.pending) {
                out.push(Command::Reply {
                    id,
                    result: Err(outcome_unknown()),
                });
            }
            if let Some(t) = self.change.take()
                && let Some(id) = t.request
            {
                out.push(Command::Reply {
                    id,
                    result: Err(outcome_unknown()),
                });
            }
        }
        self.reset_election_timer();
    }

    fn become_leader(&mut self, out: &mut Vec<Command>) {
        tracing::info!(node = self.id, term = self.term, "role → Leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.became_leader_ms = self.now_ms;
        self.progress.clear();
        let next = self.last_index() + 1;
        self.progress.insert(
            self.id,
            Progress {
                next,
                matched: self.last_index(),
                last_heard_ms: self.now_ms,
                last_reply_ms: Some(self.now_ms),
                snapshot_sent_ms: None,
            },
        );
        self.noop_index = self.append_local(Payload::Noop, out);
        self.maybe_commit(out);
        self.broadcast_append(out);
    }

    /// Everyone the leader replicates to: members (not itself) and the affected node of the
    /// change being driven (a joining node receives the log before it is a member).
    fn replication_targets(&self) -> Vec<(NodeId, String)> {
        let mut targets: BTreeMap<NodeId, String> = self
            .topology
            .members
            .values()
            .chain(self.log_topology.members.values())
            .filter(|m| m.id != self.id)
            .map(|m| (m.id, m.addr.clone()))
            .collect();
        if let Some(t) = &self.change
            && t.change.node.id != self.id
        {
            targets.insert(t.change.node.id, t.change.node.addr.clone());
        }
        targets.into_iter().collect()
    }

    fn broadcast_append(&mut self, out: &mut Vec<Command>) {
        self.heartbeat_due_ms = self.now_ms + self.cfg.heartbeat_interval_ms.max(1);
        for (id, addr) in self.replication_targets() {
            self.send_append(id, addr, out);
        }
    }

    fn send_append(&mut self, to: NodeId, addr: String, out: &mut Vec<Command>) {
        let last = self.last_index();
        let now = self.now_ms;
        let p = self.progress.entry(to).or_insert(Progress {
            next: last + 1,
            matched: 0,
            last_heard_ms: now,
            last_reply_ms: None,
            snapshot_sent_ms: None,
        });
        if p.next <= self.snapshot_index {
            // The entries it needs were compacted away: it needs a snapshot.
            let due = p
                .snapshot_sent_ms
                .is_none_or(|t| now.saturating_sub(t) >= SNAPSHOT_RETRY_MS);
            if due {
                p.snapshot_sent_ms = Some(now);
                tracing::info!(
                    node = self.id,
                    to,
                    next = p.next,
                    "follower is behind the log start: sending a snapshot"
                );
                out.push(Command::SendSnapshot { to, addr });
            }
            return;
        }
        let next = p.next;
        let prev_index = next - 1;
        let Some(prev_term) = self.term_at(prev_index) else {
            tracing::warn!(
                node = self.id,
                to,
                prev_index,
                "follower is behind the log start"
            );
            return;
        };
        let entries = self.entries_from(next, MAX_ENTRIES_PER_APPEND);
        out.push(Command::Send {
            to,
            addr,
            msg: Message::Append {
                term: self.term,
                leader: self.id,
                prev_index,
                prev_term,
                entries,
                leader_commit: self.commit,
            },
        });
    }

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Vec<Command>) {
        match msg {
            Message::Vote {
                term,
                candidate,
                last_log_index,
                last_log_term,
                pre_vote,
            } => self.on_vote(
                from,
                term,
                candidate,
                last_log_index,
                last_log_term,
                pre_vote,
                out,
            ),
            Message::VoteReply {
                term,
                granted,
                pre_vote,
            } => self.on_vote_reply(from, term, granted, pre_vote, out),
            Message::Append {
                term,
                leader,
                prev_index,
                prev_term,
                entries,
                leader_commit,
            } => self.on_append(
                from,
                term,
                leader,
                prev_index,
                prev_term,
                entries,
                leader_commit,
                out,
            ),
            Message::AppendReply {
                term,
                success,
                match_index,
            } => self.on_append_reply(from, term, success, match_index, out),
        }
    }

    fn log_up_to_date(&self, last_log_index: Index, last_log_term: Term) -> bool {
        (last_log_term, last_log_index) >= (self.last_term(), self.last_index())
    }

    #[allow(clippy::too_many_arguments)]
    fn on_vote(
        &mut self,
        from: NodeId,
        term: Term,
        candidate: NodeId,
        last_log_index: Index,
        last_log_term: Term,
        pre_vote: bool,
        out: &mut Vec<Command>,
    ) {
        let up_to_date = self.log_up_to_date(last_log_index, last_log_term);
        let leader_is_alive = self.role == Role::Leader
            || self
                .last_leader_contact_ms
                .is_some_and(|t| self.now_ms.saturating_sub(t) < self.cfg.election_timeout_ms);
        if pre_vote {
            // A pre-vote changes nothing here: it only asks "would you vote?".
            let granted = term > self.term && up_to_date && !leader_is_alive;
            if !granted {
                tracing::debug!(node = self.id, from, term, "refusing pre-vote");
            }
            out.push(Command::Respond {
                to: from,
                msg: Message::VoteReply {
                    term: self.term,
                    granted,
                    pre_vote: true,
                },
            });
            return;
        }
        if term > self.term {
            self.become_follower(term, None, out);
        }
        let granted = term == self.term
            && up_to_date
            && (self.voted_for.is_none() || self.voted_for == Some(candidate));
        if granted {
            if self.voted_for != Some(candidate) {
                self.voted_for = Some(candidate);
                // The vote is durable before the reply leaves (design §5.4).
                self.persist_hard_state(out);
            }
            self.reset_election_timer();
        } else {
            tracing::debug!(node = self.id, from, term, "refusing vote");
        }
        out.push(Command::Respond {
            to: from,
            msg: Message::VoteReply {
                term: self.term,
                granted,
                pre_vote: false,
            },
        });
    }

    fn on_vote_reply(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
        out: &mut Vec<Command>,
    ) {
        // A higher term ends the campaign, also when it comes with a refused pre-vote: a
        // pre-vote is granted only to a term above the voter's, so a voter that has moved on
        // would refuse every pre-vote of ours while its own log may be too old to win ours.
        // (A granted pre-vote never carries a term above ours.)
        if term > self.term {
            self.become_follower(term, None, out);
            return;
        }
        let expected = match (self.role, pre_vote) {
            (Role::PreCandidate, true) => true,
            (Role::Candidate, false) => term == self.term,
            _ => false,
        };
        if !expected {
            tracing::debug!(node = self.id, from, "ignoring stale vote reply");
            return;
        }
        if granted {
            self.votes.insert(from);
            if self.won_votes() {
                self.after_votes(pre_vote, out);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append(
        &mut self,
        from: NodeId,
        term: Term,
        leader: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
        out: &mut Vec<Command>,
    ) {
        let reply = |core: &Core, success: bool, match_index: Index| Command::Respond {
            to: from,
            msg: Message::AppendReply {
                term: core.term,
                success,
                match_index,
            },
        };
        if term < self.term {
            tracing::debug!(node = self.id, from, term, "ignoring append: stale term");
            out.push(reply(self, false, self.last_index()));
            return;
        }
        if term > self.term || self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(term, Some(leader), out);
        }
        self.last_leader_contact_ms = Some(self.now_ms);
        self.reset_election_timer();

        if prev_index > self.last_index() {
            out.push(reply(self, false, self.last_index()));
            return;
        }
        if prev_index >= self.snapshot_index && self.term_at(prev_index) != Some(prev_term) {
            // Conflict: tell the leader to back up to before this index.
            out.push(reply(
                self,
                false,
                prev_index.saturating_sub(1).max(self.commit),
            ));
            return;
        }
        // Skip entries we already hold; truncate from the first conflicting one.
        let mut new_from = None;
        for (i, e) in entries.iter().enumerate() {
            if e.index <= self.snapshot_index {
                continue;
            }
            match self.term_at(e.index) {
                Some(t) if t == e.term => continue,
                _ => {
                    new_from = Some(i);
                    break;
                }
            }
        }
        let last_new = entries.last().map_or(prev_index, |e| e.index);
        if self.cfg.bugs.ack_before_fsync && new_from.is_some() {
            // Re-introduced bug: the acknowledgement leaves before the entries are durable.
            out.push(reply(self, true, last_new));
        }
        if let Some(i) = new_from {
            let first = entries[i].index;
            debug_assert!(
                first > self.commit,
                "a leader never overwrites committed entries"
            );
            self.log
                .truncate((first - self.snapshot_index - 1) as usize);
            self.log.extend_from_slice(&entries[i..]);
            self.recompute_log_topology();
            out.push(Command::AppendLog {
                entries: entries[i..].to_vec(),
            });
        }
        let new_commit = leader_commit.min(last_new);
        if new_commit > self.commit {
            self.commit = new_commit;
            self.persist_hard_state(out);
            self.apply_committed(out);
        }
        // Acknowledged only now: the entries are durable (AppendLog ran before this).
        if !(self.cfg.bugs.ack_before_fsync && new_from.is_some()) {
            out.push(reply(self, true, last_new));
        }
    }

    fn on_append_reply(
        &mut self,
        from: NodeId,
        term: Term,
        success: bool,
        match_index: Index,
        out: &mut Vec<Command>,
    ) {
        if term > self.term {
            self.become_follower(term, None, out);
            return;
        }
        if self.role != Role::Leader || term < self.term {
            tracing::debug!(node = self.id, from, "ignoring stale append reply");
            return;
        }
        let now = self.now_ms;
        let last = self.last_index();
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.last_heard_ms = now;
        p.last_reply_ms = Some(now);
        if success {
            if match_index > p.matched {
                p.matched = match_index.min(last);
            }
            p.next = p.matched + 1;
            self.maybe_commit(out);
            self.drive_change(out);
            let more = self.progress.get(&from).is_some_and(|p| p.next <= last);
            if more && let Some(addr) = self.addr_of(from) {
                self.send_append(from, addr, out);
            }
        } else {
            p.next = (match_index + 1).min(p.next.saturating_sub(1)).max(1);
            if p.next <= self.snapshot_index {
                // It needs entries this node holds only as a snapshot: an immediate resend
                // would be refused again, in a loop. The heartbeat retries.
                tracing::warn!(
                    node = self.id,
                    to = from,
                    follower_last = match_index,
                    log_start = self.snapshot_index + 1,
                    "follower is behind the log start: it needs the grid's data again"
                );
                return;
            }
            if let Some(addr) = self.addr_of(from) {
                self.send_append(from, addr, out);
            }
        }
    }

    fn addr_of(&self, id: NodeId) -> Option<String> {
        self.replication_targets()
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a)
    }

    fn matched(&self, id: NodeId) -> Index {
        if id == self.id {
            return self.last_index();
        }
        self.progress.get(&id).map_or(0, |p| p.matched)
    }

    /// Advances the commit index: an entry of the current term stored on a majority of the
    /// voters (Raft §5.4.2; during a change, the voters before it) — of the latest
    /// configuration in the log *and* of the applied one. The second matters between a
    /// COMMIT of an ADD being appended and being committed: the log's configuration already
    /// counts the new node, and a majority of it may lack a majority of the voters before
    /// the change; design §5.3 has a joining node count only once its add committed.
    fn maybe_commit(&mut self, out: &mut Vec<Command>) {
        let applied_voters = self.topology.voters();
        let mut voters = self.voters();
        if self.cfg.bugs.joiner_counts_toward_quorum
            && let Some((_, c)) = &self.log_topology.in_flight
            && c.kind == ChangeKind::Add
            && !voters.contains(&c.node.id)
        {
            // Re-introduced bug: the joining node counts before its add commits.
            voters.push(c.node.id);
        }
        let mut n = self.last_index();
        while n > self.commit {
            if self.term_at(n) == Some(self.term)
                && membership::majority(&voters, |v| self.matched(v) >= n)
                && (self.cfg.bugs.joiner_counts_toward_quorum
                    || membership::majority(&applied_voters, |v| self.matched(v) >= n))
            {
                break;
            }
            n -= 1;
        }
        if n > self.commit {
            self.commit = n;
            self.apply_committed(out);
        }
    }

    /// Emits `Apply` for newly committed entries, updating the topology and answering
    /// proposals whose entries are now committed.
    fn apply_committed(&mut self, out: &mut Vec<Command>) {
        if self.applied >= self.commit {
            return;
        }
        let entries = self.entries_from(self.applied + 1, (self.commit - self.applied) as usize);
        for e in &entries {
            let next = membership::apply_entry(&self.topology, e);
            match next {
                Ok(t) => self.topology = t,
                Err(why) => {
                    // A committed entry that does not apply is our bug, never the world's.
                    panic!("grid log entry {} does not apply: {why}", e.index);
                }
            }
            self.applied = e.index;
        }
        out.push(Command::Apply {
            entries: entries.clone(),
        });
        if self.role == Role::Leader {
            for e in &entries {
                if let Some(id) = self.pending.remove(&e.index) {
                    out.push(Command::Reply {
                        id,
                        result: Ok(Outcome::Committed { index: e.index }),
                    });
                }
                // The back-off of failure detection is for rolled-back attempts only: once a
                // change of a node commits, the next one may follow as soon as it is due.
                if let Payload::Decide { commit: true, .. } = e.payload
                    && let Some(t) = &self.change
                {
                    self.detection_backoff_ms.remove(&t.change.node.id);
                }
                if let Payload::Decide { prepare, commit } = e.payload
                    && let Some(t) = self.change.take_if(|t| t.prepare == prepare)
                    && let Some(id) = t.request
                {
                    let result = if commit {
                        Ok(Outcome::ChangeCommitted {
                            index: e.index,
                            topology: self.topology.clone(),
                        })
                    } else {
                        Err(SolidError::grid(
                            code::ROLLED_BACK,
                            format!(
                                "{} of node {} did not reach its quorum in time and was rolled back (state {})",
                                t.change.kind.as_str(),
                                t.change.node.name,
                                self.topology.stable_state(t.change.node.id)
                            ),
                        ))
                    };
                    out.push(Command::Reply { id, result });
                }
            }
            // The voters may have changed: the commit index may move on. And tell the
            // followers at once that the decision is committed rather than at the next
            // heartbeat: until they know, they count the configuration before it, and with
            // two voters before an add the survivors of a leader crash would have to wait
            // for the old leader to return.
            if entries
                .iter()
                .any(|e| matches!(e.payload, Payload::Decide { .. }))
            {
                self.maybe_commit(out);
                if self.role == Role::Leader {
                    self.broadcast_append(out);
                }
            }
            // A leader may settle a change that takes itself out of the voters (it adopted
            // an undecided PREPARE that marks it failed, offline or dropped): a non-voter
            // cannot lead, so it steps down and the voters elect one of their own.
            if self.role == Role::Leader && !self.is_voter(self.id) {
                tracing::warn!(
                    node = self.id,
                    term = self.term,
                    state = %self.topology.stable_state(self.id),
                    "the leader is no longer a voter: stepping down"
                );
                self.become_follower(self.term, None, out);
            }
        }
    }

    fn propose(&mut self, id: RequestId, proposal: Proposal, out: &mut Vec<Command>) {
        if self.role != Role::Leader {
            out.push(Command::Reply {
                id,
                result: Err(not_leader(self.leader_member())),
            });
            return;
        }
        match proposal {
            Proposal::Data(bytes) => {
                let index = self.append_local(Payload::Data(bytes), out);
                self.pending.insert(index, id);
                self.maybe_commit(out);
                self.broadcast_append(out);
            }
            Proposal::Change(change) => {
                let checked =
                    if !self.is_ready_leader() && !self.cfg.bugs.change_before_own_term_commit {
                        Err(SolidError::grid(
                            code::NO_LEADER,
                            "the leader has not yet committed an entry of its term; try again",
                        ))
                    } else if let Some(t) = &self.change {
                        Err(membership::change_in_progress(t.prepare, &t.change))
                    } else {
                        match &self.topology.in_flight {
                            Some((p, c)) => Err(membership::change_in_progress(*p, c)),
                            None => Ok(()),
                        }
                    };
                if let Err(e) = checked {
                    out.push(Command::Reply { id, result: Err(e) });
                    return;
                }
                self.start_change(change, Some(id), out);
            }
        }
    }

    /// Appends the PREPARE of `change` and starts driving it to a decision.
    fn start_change(&mut self, change: Change, request: Option<RequestId>, out: &mut Vec<Command>) {
        let index = self.append_local(Payload::Prepare(change.clone()), out);
        tracing::info!(
            node = self.id,
            index,
            kind = change.kind.as_str(),
            target = change.node.id,
            "PREPARE appended"
        );
        self.change = Some(ChangeTracking {
            prepare: index,
            change,
            deadline_ms: self.now_ms + self.cfg.change_timeout_ms,
            request,
            decided: None,
        });
        self.maybe_commit(out);
        self.broadcast_append(out);
        self.drive_change(out);
    }

    /// Pauses or resumes failure detection (an orderly grid shutdown marks nobody failed).
    pub fn set_failure_detection(&mut self, on: bool) {
        self.failure_detection = on;
    }

    /// Failure detection on the leader (design §5.4): an online member silent past the
    /// failure timeout is marked failed (`MEMBER_DISCONNECTING → MEMBER_FAILED`); a failed
    /// member that answers again is brought back (`MEMBER_RECONNECTING → MEMBER_ONLINE`).
    /// Both are ordinary membership changes; a rolled-back one is retried after a back-off.
    fn detect_failures(&mut self, out: &mut Vec<Command>) {
        let timeout = self.cfg.node_failure_timeout_ms;
        if timeout == 0
            || !self.failure_detection
            || !self.is_ready_leader()
            || self.change.is_some()
            || self.log_topology.in_flight.is_some()
        {
            return;
        }
        let now = self.now_ms;
        let answered_lately = 3 * self.cfg.heartbeat_interval_ms.max(1);
        let mut pick = None;
        for m in self.log_topology.members.values() {
            if m.id == self.id
                || self
                    .detection_backoff_ms
                    .get(&m.id)
                    .is_some_and(|&until| now < until)
            {
                continue;
            }
            let reply = self.progress.get(&m.id).and_then(|p| p.last_reply_ms);
            let silent_for = now.saturating_sub(reply.unwrap_or(self.became_leader_ms));
            match m.state {
                MemberState::Online if silent_for > timeout => {
                    pick = Some((ChangeKind::Fail, m.clone()));
                    break;
                }
                MemberState::Failed if reply.is_some() && silent_for <= answered_lately => {
                    pick = Some((ChangeKind::Online, m.clone()));
                    break;
                }
                _ => {}
            }
        }
        let Some((kind, node)) = pick else {
            return;
        };
        self.detection_backoff_ms
            .insert(node.id, now + self.cfg.change_timeout_ms + timeout);
        let change = Change {
            kind,
            from: node.state,
            node,
        };
        if membership::transition(change.kind, change.from).is_none() {
            return;
        }
        tracing::warn!(
            node = self.id,
            target = change.node.id,
            kind = change.kind.as_str(),
            "failure detection proposes a membership change"
        );
        self.start_change(change, None, out);
    }

    /// Moves the membership change on: adopt an undecided PREPARE found in the committed
    /// log (new leader), decide COMMIT when the quorum rule holds, ABORT past the deadline.
    fn drive_change(&mut self, out: &mut Vec<Command>) {
        if self.role != Role::Leader || !self.is_ready_leader() {
            return;
        }
        if self.change.is_none()
            && !self.cfg.bugs.ignore_undecided_change
            && let Some((prepare, change)) = self.topology.in_flight.clone()
        {
            tracing::info!(
                node = self.id,
                prepare,
                "settling a PREPARE left undecided by an earlier leader"
            );
            self.change = Some(ChangeTracking {
                prepare,
                change,
                deadline_ms: self.now_ms + self.cfg.change_timeout_ms,
                request: None,
                decided: None,
            });
        }
        let Some(t) = &self.change else {
            return;
        };
        if t.decided.is_some() {
            return;
        }
        let prepare = t.prepare;
        let change = t.change.clone();
        let holds =
            membership::quorum_rule_holds(&self.topology, &change, |v| self.matched(v) >= prepare);
        let commit = if holds {
            true
        } else if self.now_ms >= t.deadline_ms {
            tracing::warn!(
                node = self.id,
                prepare,
                "membership change timed out: ABORT"
            );
            false
        } else {
            return;
        };
        let index = self.append_local(Payload::Decide { prepare, commit }, out);
        if let Some(t) = &mut self.change {
            t.decided = Some(index);
        }
        self.maybe_commit(out);
        self.broadcast_append(out);
    }
}
