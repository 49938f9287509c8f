//! The grid's vocabulary: node ids, terms, log indexes, membership states, members, the
//! topology, membership changes, grid-log entries and the peer messages of the protocol.
//!
//! Everything here is plain data (serde-encodable) with no I/O; the protocol core
//! (`grid::core`) and the driver share it, and the peer gRPC layer converts it to protobuf.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's id within one grid; assigned by the leader when the node is added (the founder
/// is 1). Never reused within a grid.
pub type NodeId = u64;
/// A leader term (Raft).
pub type Term = u64;
/// A position in the grid log, from 1.
pub type Index = u64;

/// The eight membership states of design §5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberState {
    NotMember,
    BeingAdded,
    Online,
    Disconnecting,
    Offline,
    Failed,
    Reconnecting,
    BeingDropped,
}

impl MemberState {
    /// The name shown to users (`MEMBER_ONLINE`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::NotMember => "NOT_MEMBER",
            MemberState::BeingAdded => "MEMBER_BEING_ADDED",
            MemberState::Online => "MEMBER_ONLINE",
            MemberState::Disconnecting => "MEMBER_DISCONNECTING",
            MemberState::Offline => "MEMBER_OFFLINE",
            MemberState::Failed => "MEMBER_FAILED",
            MemberState::Reconnecting => "MEMBER_RECONNECTING",
            MemberState::BeingDropped => "MEMBER_BEING_DROPPED",
        }
    }

    /// Whether the state is the middle of a change (a PREPARE without its decision).
    pub fn is_transitory(self) -> bool {
        matches!(
            self,
            MemberState::BeingAdded
                | MemberState::Disconnecting
                | MemberState::Reconnecting
                | MemberState::BeingDropped
        )
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grid member as recorded in the grid log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: NodeId,
    /// `[Srv] Name` of the node; unique in the grid.
    pub name: String,
    /// Where its peers reach it: `host:port`.
    pub addr: String,
    pub state: MemberState,
}

/// What a membership change does (design §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// `ADD NODE`: not in grid → BEING_ADDED → ONLINE / NOT_MEMBER.
    Add,
    /// `DROP NODE`: any member state → BEING_DROPPED → removed / previous.
    Drop,
    /// `SET NODE … OFFLINE`: ONLINE → DISCONNECTING → OFFLINE / ONLINE.
    Offline,
    /// Failure detection: ONLINE → DISCONNECTING → FAILED / ONLINE.
    Fail,
    /// `SET NODE … ONLINE`: OFFLINE/FAILED → RECONNECTING → ONLINE / previous.
    Online,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Add => "ADD NODE",
            ChangeKind::Drop => "DROP NODE",
            ChangeKind::Offline => "SET NODE OFFLINE",
            ChangeKind::Fail => "MARK NODE FAILED",
            ChangeKind::Online => "SET NODE ONLINE",
        }
    }
}

/// One membership change: the PREPARE's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    /// The affected node (for ADD: its assigned id, name and address; `state` is ignored).
    pub node: Member,
    /// The node's state before the change (NOT_MEMBER for an add); rollback restores it.
    pub from: MemberState,
}

/// The payload of a grid-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// The first entry of every leader term; committing it lets the leader know what is
    /// committed (Raft §5.4.2) before it proposes a membership change.
    Noop,
    /// `CREATE GRID`: the founder becomes the only member, online.
    CreateGrid { grid: String, founder: Member },
    /// Phase one of a membership change.
    Prepare(Change),
    /// Phase two: the decision on the PREPARE at `prepare` (COMMIT when `commit`, else ABORT).
    Decide { prepare: Index, commit: bool },
    /// A replicated database change (DDL, users, shared-table rows): an encoded
    /// `storage::db::LogRecord`.
    Data(Vec<u8>),
}

/// A grid-log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub payload: Payload,
}

/// The grid's membership as applied from the committed log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Empty until `CREATE GRID` is applied.
    pub grid: String,
    pub members: BTreeMap<NodeId, Member>,
    /// Index of the last committed entry that changed membership.
    pub config_index: Index,
    /// The change whose PREPARE is applied but whose decision is not: at most one.
    pub in_flight: Option<(Index, Change)>,
    /// Lowest node id never handed out: ids of rolled-back adds and dropped nodes are
    /// never reused, so a node with a stale view never mistakes one node for another.
    #[serde(default)]
    pub next_id: NodeId,
}

impl Topology {
    /// Voters: members whose committed state is ONLINE (design §5.3). During a change the
    /// affected node is counted by its state *before* the change.
    pub fn voters(&self) -> Vec<NodeId> {
        self.members
            .values()
            .filter(|m| self.stable_state(m.id) == MemberState::Online)
            .map(|m| m.id)
            .collect()
    }

    /// A member's state ignoring the in-flight change (what a rollback would restore).
    pub fn stable_state(&self, id: NodeId) -> MemberState {
        match &self.in_flight {
            Some((_, c)) if c.node.id == id => c.from,
            _ => self
                .members
                .get(&id)
                .map(|m| m.state)
                .unwrap_or(MemberState::NotMember),
        }
    }

    pub fn by_name(&self, name: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }

    pub fn by_addr(&self, addr: &str) -> Option<&Member> {
        self.members.values().find(|m| m.addr == addr)
    }

    /// The next node id to assign.
    pub fn next_node_id(&self) -> NodeId {
        let after_members = self.members.keys().next_back().map_or(1, |id| id + 1);
        after_members.max(self.next_id)
    }
}

/// A message of the peer protocol (carried by the peer gRPC service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Ask for a (pre-)vote. A pre-vote changes no state on the receiver.
    Vote {
        term: Term,
        candidate: NodeId,
        last_log_index: Index,
        last_log_term: Term,
        pre_vote: bool,
    },
    VoteReply {
        term: Term,
        granted: bool,
        pre_vote: bool,
    },
    /// Replicate entries after (`prev_index`, `prev_term`); empty = heartbeat.
    Append {
        term: Term,
        leader: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
    },
    /// `success`: the follower's log matches through `match_index` and that is durable.
    /// Otherwise `match_index` is a hint: the follower's last index.
    AppendReply {
        term: Term,
        success: bool,
        match_index: Index,
    },
}

impl Message {
    pub fn term(&self) -> Term {
        match self {
            Message::Vote { term, .. }
            | Message::VoteReply { term, .. }
            | Message::Append { term, .. }
            | Message::AppendReply { term, .. } => *term,
        }
    }
}
