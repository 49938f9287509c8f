//! The peer (node-to-node) gRPC layer: the `SolidPeer` service of `proto/peer.proto`, its
//! conversions to and from the grid vocabulary ([`crate::grid::types`]), grid-secret
//! authentication, and [`PeerClient`], the caller's side.
//!
//! The layer is thin (conventions §2). The server decodes a request with `TryFrom` (missing
//! fields, unknown enum values and a node id of 0 where a sender is required are
//! [`PeerError::Malformed`] → `INVALID_ARGUMENT`, never a panic), forwards it to a
//! [`PeerHandler`] (the driver) and encodes the answer. A handler's refusal keeps its stable
//! code: for `Vote`/`Append` it travels as a `FAILED_PRECONDITION` status whose message is the
//! error as the console prints it (`SOLID Grid Error 18506: …`), for `GridStart`/`Abandon`
//! in the reply's `refused` field; [`PeerClient`] turns both back into
//! [`PeerError::Refused`].
//!
//! Every call carries the grid secret (`[Grid] Secret`, design §8) in the
//! [`SECRET_METADATA_KEY`] metadata entry. [`SecretCheck`] compares it in constant time
//! before the request body is decoded, so an unauthenticated caller cannot make the node
//! buffer a large message; a wrong or missing secret is `UNAUTHENTICATED` with the message
//! `SOLID Grid Error 18511: authentication between nodes failed`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};

use crate::error::{ErrorClass, SolidError, code};
use crate::grid::types::{
    Change, ChangeKind, Entry, Member, MemberState, Message, NodeId, Payload, Term,
};
pub use crate::tls::PeerTls;

/// Generated protobuf and gRPC code for `proto/peer.proto` (package `solidgrid.peer.v1`).
/// Its descriptors are part of [`crate::pb::FILE_DESCRIPTOR_SET`], so the node's reflection
/// service lists `SolidPeer` too.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("solidgrid.peer.v1");
}

use pb::solid_peer_client::SolidPeerClient;
use pb::solid_peer_server::{SolidPeer, SolidPeerServer};

/// The metadata entry that carries the grid secret on every peer RPC.
pub const SECRET_METADATA_KEY: &str = "x-solid-grid-secret";

/// Largest snapshot of the grid's common data (schema, users, configuration) a `GridStart`
/// may carry. The common data is small next to table data (which the GAM streams
/// separately), and the whole snapshot is held in memory on both sides, so it is bounded.
pub const MAX_SNAPSHOT_BYTES: usize = 256 * 1024 * 1024;

/// Largest peer message, in either direction: a maximal snapshot plus room for the other
/// fields of a `GridStart`. `Append` batches must stay far below it (the driver bounds
/// them). Only authenticated callers reach the decoder ([`SecretCheck`] runs first).
pub const MAX_PEER_MESSAGE_BYTES: usize = MAX_SNAPSHOT_BYTES + 1024 * 1024;

/// Longest error message carried back in a status: it travels in an HTTP/2 header, which
/// the transport limits to a few KiB; longer messages are cut at a character boundary.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4 * 1024;

/// How long [`PeerClient`] waits for a TCP connection. Each call's own timeout bounds it
/// further.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP/2 ping interval on a peer connection, busy or idle: without pings a connection to a
/// silently dead peer (partition, power loss) is never noticed and every later call on it
/// times out instead of reconnecting (ecosystem §10, pitfall 5).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// How long a ping may go unanswered before the connection is dropped and re-established on
/// the next call.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// At most one authentication-failure warning per interval (the rest are counted and
/// reported with the next one), so a misconfigured or hostile peer cannot flood the log.
const AUTH_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// The message (after the code) of an authentication failure; design §9, code 18511.
const AUTH_FAILED: &str = "authentication between nodes failed";

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a peer call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No usable answer: the connection failed or broke, the call timed out (tonic reports a
    /// client-side timeout as `Cancelled`, ecosystem pitfall 4), or the transport failed
    /// (`Unavailable`, `Cancelled`, `DeadlineExceeded`, `Unknown`, `Internal`, `Aborted`,
    /// `ResourceExhausted`). The peer may or may not have acted on the request.
    #[error("no answer: {0}")]
    Unreachable(String),
    /// The peer refused the grid secret (`UNAUTHENTICATED`/`PERMISSION_DENIED`), code 18511.
    #[error("{AUTH_FAILED}")]
    Auth,
    /// The peer's handler refused the request; its error comes back with code and class.
    #[error("{0}")]
    Refused(SolidError),
    /// A message that does not follow the protocol: a reply or request that cannot be
    /// decoded (missing field, unknown enum value, a sender id of 0, a snapshot over
    /// [`MAX_SNAPSHOT_BYTES`]), or the peer rejected ours as such (`INVALID_ARGUMENT`,
    /// `OUT_OF_RANGE` for an oversized message, `UNIMPLEMENTED` for a peer running another
    /// protocol version, any other status).
    #[error("malformed peer message: {0}")]
    Malformed(String),
    /// The node does not serve the peer protocol at all (`UNIMPLEMENTED`): a solidgrid node
    /// serves it only when `[Grid] GridEnabled = yes`.
    #[error("the node does not serve the grid peer protocol: {0}")]
    NotServed(String),
}

impl PeerError {
    /// The user-facing error for a failed peer call; `what` names the operation and the
    /// peer (e.g. `"ADD NODE n2: grid start on 10.0.0.2:1315"`). A refusal is returned as
    /// the peer sent it; an unreachable peer and a protocol violation are 18505 (the node
    /// did not answer usably); an authentication failure is 18511.
    pub fn to_solid(&self, what: &str) -> SolidError {
        match self {
            PeerError::Unreachable(why) => SolidError::grid(
                code::NODE_UNREACHABLE,
                format!("{what}: the node did not answer: {why}"),
            ),
            PeerError::Auth => SolidError::grid(
                code::PEER_AUTH,
                format!(
                    "{AUTH_FAILED} ({what}): [Grid] Secret must be the same on every node of the grid"
                ),
            ),
            PeerError::Refused(e) => e.clone(),
            PeerError::Malformed(why) => SolidError::grid(
                code::NODE_UNREACHABLE,
                format!("{what}: protocol error between nodes: {why}"),
            ),
            PeerError::NotServed(_) => SolidError::grid(
                code::GRID_NOT_ENABLED,
                format!(
                    "{what} is not grid-enabled: it does not serve the grid peer protocol ([Grid] GridEnabled = no)"
                ),
            ),
        }
    }
}

fn malformed(why: impl Into<String>) -> PeerError {
    PeerError::Malformed(why.into())
}

/// The error of a server-side decoding failure or handler refusal, as sent to the caller.
impl From<PeerError> for Status {
    fn from(e: PeerError) -> Status {
        match e {
            PeerError::Malformed(why) => Status::invalid_argument(bounded(why)),
            PeerError::Refused(e) => Status::failed_precondition(refusal_text(&e)),
            PeerError::Auth => Status::unauthenticated(auth_status_message()),
            PeerError::Unreachable(why) => Status::unavailable(bounded(why)),
            PeerError::NotServed(why) => Status::unimplemented(bounded(why)),
        }
    }
}

/// How the caller reads a status (see the variants of [`PeerError`]).
impl From<Status> for PeerError {
    fn from(status: Status) -> PeerError {
        let what = || {
            // A failed connection (refused, TLS handshake failed) only says "transport
            // error" in its message; the cause is in the source chain.
            let mut text = format!("{:?}: {}", status.code(), status.message());
            let mut next = std::error::Error::source(&status);
            while let Some(cause) = next {
                let part = cause.to_string();
                if !text.contains(&part) {
                    text.push_str(": ");
                    text.push_str(&part);
                }
                next = cause.source();
            }
            text
        };
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => PeerError::Auth,
            Code::Unimplemented => PeerError::NotServed(what()),
            Code::FailedPrecondition => match parse_refusal(status.message()) {
                Some(e) => PeerError::Refused(e),
                None => malformed(format!("a refusal without an error code: {}", what())),
            },
            Code::Unavailable
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
            | Code::ResourceExhausted => PeerError::Unreachable(what()),
            _ => malformed(what()),
        }
    }
}

/// `SOLID Grid Error 18511: authentication between nodes failed`.
fn auth_status_message() -> String {
    SolidError::grid(code::PEER_AUTH, AUTH_FAILED).to_string()
}

/// Cuts `text` to at most [`MAX_ERROR_MESSAGE_BYTES`] at a character boundary.
fn bounded(mut text: String) -> String {
    if text.len() > MAX_ERROR_MESSAGE_BYTES {
        let mut end = MAX_ERROR_MESSAGE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A refusal as the console prints it: `SOLID <Class> Error <code>: <message>`, bounded.
fn refusal_text(e: &SolidError) -> String {
    let e = SolidError {
        message: bounded(e.message.clone()),
        ..e.clone()
    };
    e.to_string()
}

/// Parses [`refusal_text`] back; `None` when the text is not in that form.
fn parse_refusal(text: &str) -> Option<SolidError> {
    let rest = text.strip_prefix("SOLID ")?;
    let (class, rest) = rest.split_once(" Error ")?;
    let class = ErrorClass::parse(class)?;
    let (code, message) = rest.split_once(':')?;
    let code = code.parse().ok()?;
    let message = message.strip_prefix(' ').unwrap_or(message);
    Some(SolidError::new(class, code, message))
}

// ---------------------------------------------------------------------------------------
// Conversions
// ---------------------------------------------------------------------------------------

impl From<MemberState> for pb::MemberState {
    fn from(s: MemberState) -> Self {
        match s {
            MemberState::NotMember => pb::MemberState::NotMember,
            MemberState::BeingAdded => pb::MemberState::BeingAdded,
            MemberState::Online => pb::MemberState::Online,
            MemberState::Disconnecting => pb::MemberState::Disconnecting,
            MemberState::Offline => pb::MemberState::Offline,
            MemberState::Failed => pb::MemberState::Failed,
            MemberState::Reconnecting => pb::MemberState::Reconnecting,
            MemberState::BeingDropped => pb::MemberState::BeingDropped,
        }
    }
}

impl TryFrom<pb::MemberState> for MemberState {
    type Error = PeerError;
    fn try_from(s: pb::MemberState) -> Result<Self, PeerError> {
        Ok(match s {
            pb::MemberState::Unspecified => return Err(malformed("member state not set")),
            pb::MemberState::NotMember => MemberState::NotMember,
            pb::MemberState::BeingAdded => MemberState::BeingAdded,
            pb::MemberState::Online => MemberState::Online,
            pb::MemberState::Disconnecting => MemberState::Disconnecting,
            pb::MemberState::Offline => MemberState::Offline,
            pb::MemberState::Failed => MemberState::Failed,
            pb::MemberState::Reconnecting => MemberState::Reconnecting,
            pb::MemberState::BeingDropped => MemberState::BeingDropped,
        })
    }
}

/// A member state from its wire value (`field` names it in the error).
fn member_state(value: i32, field: &str) -> Result<MemberState, PeerError> {
    pb::MemberState::try_from(value)
        .map_err(|_| malformed(format!("{field}: unknown member state {value}")))?
        .try_into()
        .map_err(|_| malformed(format!("{field}: member state not set")))
}

impl From<ChangeKind> for pb::ChangeKind {
    fn from(k: ChangeKind) -> Self {
        match k {
            ChangeKind::Add => pb::ChangeKind::Add,
            ChangeKind::Drop => pb::ChangeKind::Drop,
            ChangeKind::Offline => pb::ChangeKind::Offline,
            ChangeKind::Fail => pb::ChangeKind::Fail,
            ChangeKind::Online => pb::ChangeKind::Online,
        }
    }
}

impl TryFrom<pb::ChangeKind> for ChangeKind {
    type Error = PeerError;
    fn try_from(k: pb::ChangeKind) -> Result<Self, PeerError> {
        Ok(match k {
            pb::ChangeKind::Unspecified => return Err(malformed("change kind not set")),
            pb::ChangeKind::Add => ChangeKind::Add,
            pb::ChangeKind::Drop => ChangeKind::Drop,
            pb::ChangeKind::Offline => ChangeKind::Offline,
            pb::ChangeKind::Fail => ChangeKind::Fail,
            pb::ChangeKind::Online => ChangeKind::Online,
        })
    }
}

impl From<&Member> for pb::Member {
    fn from(m: &Member) -> Self {
        pb::Member {
            id: m.id,
            name: m.name.clone(),
            addr: m.addr.clone(),
            state: pb::MemberState::from(m.state).into(),
        }
    }
}

impl TryFrom<pb::Member> for Member {
    type Error = PeerError;
    fn try_from(m: pb::Member) -> Result<Self, PeerError> {
        Ok(Member {
            state: member_state(m.state, "member.state")?,
            id: m.id,
            name: m.name,
            addr: m.addr,
        })
    }
}

impl From<&Change> for pb::Change {
    fn from(c: &Change) -> Self {
        pb::Change {
            kind: pb::ChangeKind::from(c.kind).into(),
            node: Some((&c.node).into()),
            from: pb::MemberState::from(c.from).into(),
        }
    }
}

impl TryFrom<pb::Change> for Change {
    type Error = PeerError;
    fn try_from(c: pb::Change) -> Result<Self, PeerError> {
        let kind = pb::ChangeKind::try_from(c.kind)
            .map_err(|_| malformed(format!("change.kind: unknown change kind {}", c.kind)))?
            .try_into()?;
        Ok(Change {
            kind,
            node: c
                .node
                .ok_or_else(|| malformed("change.node not set"))?
                .try_into()?,
            from: member_state(c.from, "change.from")?,
        })
    }
}

impl From<&Payload> for pb::entry::Payload {
    fn from(p: &Payload) -> Self {
        use pb::entry::Payload as P;
        match p {
            Payload::Noop => P::Noop(pb::Noop {}),
            Payload::CreateGrid { grid, founder } => P::CreateGrid(pb::CreateGrid {
                grid: grid.clone(),
                founder: Some(founder.into()),
            }),
            Payload::Prepare(change) => P::Prepare(change.into()),
            Payload::Decide { prepare, commit } => P::Decide(pb::Decide {
                prepare: *prepare,
                commit: *commit,
            }),
            Payload::Data(bytes) => P::Data(bytes.clone()),
        }
    }
}

impl TryFrom<pb::entry::Payload> for Payload {
    type Error = PeerError;
    fn try_from(p: pb::entry::Payload) -> Result<Self, PeerError> {
        use pb::entry::Payload as P;
        Ok(match p {
            P::Noop(pb::Noop {}) => Payload::Noop,
            P::CreateGrid(c) => Payload::CreateGrid {
                grid: c.grid,
                founder: c
                    .founder
                    .ok_or_else(|| malformed("create_grid.founder not set"))?
                    .try_into()?,
            },
            P::Prepare(change) => Payload::Prepare(change.try_into()?),
            P::Decide(d) => Payload::Decide {
                prepare: d.prepare,
                commit: d.commit,
            },
            P::Data(bytes) => Payload::Data(bytes),
        })
    }
}

impl From<&Entry> for pb::Entry {
    fn from(e: &Entry) -> Self {
        pb::Entry {
            term: e.term,
            index: e.index,
            payload: Some((&e.payload).into()),
        }
    }
}

impl TryFrom<pb::Entry> for Entry {
    type Error = PeerError;
    fn try_from(e: pb::Entry) -> Result<Self, PeerError> {
        let payload = e
            .payload
            .ok_or_else(|| malformed(format!("entry {}: payload not set", e.index)))?;
        Ok(Entry {
            term: e.term,
            index: e.index,
            payload: payload.try_into()?,
        })
    }
}

/// A sender's node id; 0 (an unset field) is malformed.
fn sender(id: NodeId, field: &str) -> Result<NodeId, PeerError> {
    if id == 0 {
        return Err(malformed(format!("{field} not set (node id 0)")));
    }
    Ok(id)
}

fn wrong_kind(want: &str, msg: &Message) -> PeerError {
    malformed(format!("expected {want}, got {}", message_kind(msg)))
}

fn message_kind(msg: &Message) -> &'static str {
    match msg {
        Message::Vote { .. } => "Vote",
        Message::VoteReply { .. } => "VoteReply",
        Message::Append { .. } => "Append",
        Message::AppendReply { .. } => "AppendReply",
    }
}

impl TryFrom<&Message> for pb::VoteRequest {
    type Error = PeerError;
    fn try_from(msg: &Message) -> Result<Self, PeerError> {
        match *msg {
            Message::Vote {
                term,
                candidate,
                last_log_index,
                last_log_term,
                pre_vote,
            } => Ok(pb::VoteRequest {
                term,
                candidate,
                last_log_index,
                last_log_term,
                pre_vote,
            }),
            _ => Err(wrong_kind("Vote", msg)),
        }
    }
}

impl TryFrom<pb::VoteRequest> for Message {
    type Error = PeerError;
    fn try_from(v: pb::VoteRequest) -> Result<Self, PeerError> {
        Ok(Message::Vote {
            term: v.term,
            candidate: sender(v.candidate, "vote.candidate")?,
            last_log_index: v.last_log_index,
            last_log_term: v.last_log_term,
            pre_vote: v.pre_vote,
        })
    }
}

impl TryFrom<&Message> for pb::VoteReply {
    type Error = PeerError;
    fn try_from(msg: &Message) -> Result<Self, PeerError> {
        match *msg {
            Message::VoteReply {
                term,
                granted,
                pre_vote,
            } => Ok(pb::VoteReply {
                term,
                granted,
                pre_vote,
            }),
            _ => Err(wrong_kind("VoteReply", msg)),
        }
    }
}

impl From<pb::VoteReply> for Message {
    fn from(v: pb::VoteReply) -> Self {
        Message::VoteReply {
            term: v.term,
            granted: v.granted,
            pre_vote: v.pre_vote,
        }
    }
}

impl TryFrom<&Message> for pb::AppendRequest {
    type Error = PeerError;
    fn try_from(msg: &Message) -> Result<Self, PeerError> {
        match msg {
            Message::Append {
                term,
                leader,
                prev_index,
                prev_term,
                entries,
                leader_commit,
            } => Ok(pb::AppendRequest {
                term: *term,
                leader: *leader,
                prev_index: *prev_index,
                prev_term: *prev_term,
                entries: entries.iter().map(pb::Entry::from).collect(),
                leader_commit: *leader_commit,
            }),
            _ => Err(wrong_kind("Append", msg)),
        }
    }
}

impl TryFrom<pb::AppendRequest> for Message {
    type Error = PeerError;
    fn try_from(a: pb::AppendRequest) -> Result<Self, PeerError> {
        Ok(Message::Append {
            term: a.term,
            leader: sender(a.leader, "append.leader")?,
            prev_index: a.prev_index,
            prev_term: a.prev_term,
            entries: a
                .entries
                .into_iter()
                .map(Entry::try_from)
                .collect::<Result<_, _>>()?,
            leader_commit: a.leader_commit,
        })
    }
}

impl TryFrom<&Message> for pb::AppendReply {
    type Error = PeerError;
    fn try_from(msg: &Message) -> Result<Self, PeerError> {
        match *msg {
            Message::AppendReply {
                term,
                success,
                match_index,
            } => Ok(pb::AppendReply {
                term,
                success,
                match_index,
            }),
            _ => Err(wrong_kind("AppendReply", msg)),
        }
    }
}

impl From<pb::AppendReply> for Message {
    fn from(a: pb::AppendReply) -> Self {
        Message::AppendReply {
            term: a.term,
            success: a.success,
            match_index: a.match_index,
        }
    }
}

impl From<ErrorClass> for pb::ErrorClass {
    fn from(c: ErrorClass) -> Self {
        match c {
            ErrorClass::Syntax => pb::ErrorClass::Syntax,
            ErrorClass::Table => pb::ErrorClass::Table,
            ErrorClass::Server => pb::ErrorClass::Server,
            ErrorClass::Grid => pb::ErrorClass::Grid,
            ErrorClass::Auth => pb::ErrorClass::Auth,
        }
    }
}

impl From<&SolidError> for pb::PeerFailure {
    fn from(e: &SolidError) -> Self {
        pb::PeerFailure {
            code: e.code,
            class: pb::ErrorClass::from(e.class).into(),
            message: e.message.clone(),
        }
    }
}

impl TryFrom<pb::PeerFailure> for SolidError {
    type Error = PeerError;
    fn try_from(f: pb::PeerFailure) -> Result<Self, PeerError> {
        let class = match pb::ErrorClass::try_from(f.class) {
            Ok(pb::ErrorClass::Syntax) => ErrorClass::Syntax,
            Ok(pb::ErrorClass::Table) => ErrorClass::Table,
            Ok(pb::ErrorClass::Server) => ErrorClass::Server,
            Ok(pb::ErrorClass::Grid) => ErrorClass::Grid,
            Ok(pb::ErrorClass::Auth) => ErrorClass::Auth,
            Ok(pb::ErrorClass::Unspecified) | Err(_) => {
                return Err(malformed(format!(
                    "refusal {}: unknown error class {}",
                    f.code, f.class
                )));
            }
        };
        Ok(SolidError::new(class, f.code, f.message))
    }
}

/// What a node answers to the leader's validation probe (`ALTER GRID … ADD NODE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInfo {
    /// `[Srv] Name`.
    pub name: String,
    /// The solidgrid version the node runs ([`crate::VERSION`]).
    pub version: String,
    /// `[Grid] GridEnabled`.
    pub grid_enabled: bool,
    /// Whether the node has a database or transaction log.
    pub has_data: bool,
    /// The grid the node is a member of (`None` on the wire is an empty name).
    pub in_grid: Option<String>,
    /// The node's id in that grid (`None` on the wire is 0).
    pub node_id: Option<NodeId>,
    /// Where the node serves gRPC: `host:port`.
    pub listen_addr: String,
}

impl From<&ProbeInfo> for pb::ProbeReply {
    fn from(p: &ProbeInfo) -> Self {
        pb::ProbeReply {
            name: p.name.clone(),
            version: p.version.clone(),
            grid_enabled: p.grid_enabled,
            has_data: p.has_data,
            in_grid: p.in_grid.clone().unwrap_or_default(),
            node_id: p.node_id.unwrap_or(0),
            listen_addr: p.listen_addr.clone(),
        }
    }
}

impl From<pb::ProbeReply> for ProbeInfo {
    fn from(p: pb::ProbeReply) -> Self {
        ProbeInfo {
            name: p.name,
            version: p.version,
            grid_enabled: p.grid_enabled,
            has_data: p.has_data,
            in_grid: Some(p.in_grid).filter(|g| !g.is_empty()),
            node_id: Some(p.node_id).filter(|&id| id != 0),
            listen_addr: p.listen_addr,
        }
    }
}

/// The leader's order to an empty node: join `grid` as `node_id` and store the grid's
/// common data from `snapshot` durably (design §5.2 step 2).
#[derive(Clone, PartialEq, Eq)]
pub struct GridStart {
    pub grid: String,
    /// The id the leader assigned to the receiving node; never 0.
    pub node_id: NodeId,
    /// The sending leader; never 0.
    pub leader_id: NodeId,
    pub leader_term: Term,
    /// A postcard-encoded snapshot made by the driver, opaque here; at most
    /// [`MAX_SNAPSHOT_BYTES`].
    pub snapshot: Vec<u8>,
}

impl fmt::Debug for GridStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GridStart")
            .field("grid", &self.grid)
            .field("node_id", &self.node_id)
            .field("leader_id", &self.leader_id)
            .field("leader_term", &self.leader_term)
            .field("snapshot_bytes", &self.snapshot.len())
            .finish()
    }
}

fn check_snapshot_len(len: usize) -> Result<(), PeerError> {
    if len > MAX_SNAPSHOT_BYTES {
        return Err(malformed(format!(
            "grid start snapshot of {len} bytes is larger than {MAX_SNAPSHOT_BYTES} bytes"
        )));
    }
    Ok(())
}

/// By value: a snapshot is too large to copy.
impl From<GridStart> for pb::GridStartRequest {
    fn from(g: GridStart) -> Self {
        pb::GridStartRequest {
            grid: g.grid,
            node_id: g.node_id,
            leader_id: g.leader_id,
            leader_term: g.leader_term,
            snapshot: g.snapshot,
        }
    }
}

impl TryFrom<pb::GridStartRequest> for GridStart {
    type Error = PeerError;
    fn try_from(g: pb::GridStartRequest) -> Result<Self, PeerError> {
        check_snapshot_len(g.snapshot.len())?;
        Ok(GridStart {
            node_id: sender(g.node_id, "grid_start.node_id")?,
            leader_id: sender(g.leader_id, "grid_start.leader_id")?,
            grid: g.grid,
            leader_term: g.leader_term,
            snapshot: g.snapshot,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// Compares two byte strings in time that depends only on `expected.len()`: every byte of
/// `expected` is compared whatever `presented` holds, and a length mismatch is folded in at
/// the end instead of returning early.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut diff = 0u8;
    for (i, &e) in expected.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(0);
        diff = std::hint::black_box(diff | (e ^ p));
    }
    let same_len = std::hint::black_box(expected.len() == presented.len());
    (diff == 0) & same_len
}

/// The server-side interceptor that admits only calls carrying the grid secret.
///
/// An empty configured secret admits nothing: a node without `[Grid] Secret` cannot be
/// talked to as a peer.
#[derive(Clone)]
pub struct SecretCheck {
    secret: Arc<[u8]>,
    warnings: Arc<Mutex<WarningLimit>>,
}

#[derive(Default)]
struct WarningLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl SecretCheck {
    pub fn new(secret: &str) -> SecretCheck {
        SecretCheck {
            secret: secret.as_bytes().into(),
            warnings: Arc::default(),
        }
    }

    fn admits(&self, presented: Option<&[u8]>) -> bool {
        let matches = constant_time_eq(&self.secret, presented.unwrap_or_default());
        matches & presented.is_some() & !self.secret.is_empty()
    }

    fn warn_refused(&self, peer: &str, missing: bool) {
        let suppressed = {
            let mut w = self.warnings.lock();
            let now = Instant::now();
            if w.last
                .is_some_and(|t| now.duration_since(t) < AUTH_WARNING_INTERVAL)
            {
                w.suppressed += 1;
                return;
            }
            w.last = Some(now);
            std::mem::take(&mut w.suppressed)
        };
        let why = if missing {
            "no grid secret"
        } else {
            "a wrong grid secret"
        };
        let more = if suppressed > 0 {
            format!(" ({suppressed} more refusals since the last warning)")
        } else {
            String::new()
        };
        tracing::warn!(
            "refused a node-to-node call from {peer}: it carried {why} (SOLID Grid Error {}){more}",
            code::PEER_AUTH
        );
    }
}

impl fmt::Debug for SecretCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCheck")
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl Interceptor for SecretCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get(SECRET_METADATA_KEY)
            .map(MetadataValue::as_bytes);
        if self.admits(presented) {
            return Ok(request);
        }
        let peer = request
            .remote_addr()
            .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
        self.warn_refused(&peer, presented.is_none());
        Err(Status::unauthenticated(auth_status_message()))
    }
}

// ---------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------

/// The node's side of the peer protocol: the driver implements it.
///
/// A handler future may be dropped before it completes (the caller's deadline passed or it
/// went away), so each method must be cancel-safe: hand the work to the task that owns the
/// node's state and await its answer, rather than mutating state across an `.await`.
#[tonic::async_trait]
pub trait PeerHandler: Send + Sync + 'static {
    /// A protocol message from node `from`: `Vote` must be answered with `VoteReply`,
    /// `Append` with `AppendReply`. Acknowledgements are sent only after the state they
    /// depend on is durable (conventions §3).
    async fn message(&self, from: NodeId, msg: Message) -> Result<Message, SolidError>;
    /// Answers the leader's validation probe honestly; changes nothing.
    async fn probe(&self) -> ProbeInfo;
    /// Obeys a grid start request: only while the node is empty (design §8).
    async fn grid_start(&self, req: GridStart) -> Result<(), SolidError>;
    /// Drops the provisional common data of a rolled-back add of this node as `node_id` to
    /// `grid`, leaving the node empty again.
    async fn abandon(&self, grid: String, node_id: NodeId) -> Result<(), SolidError>;

    /// A DROP NODE of this member (`node_id` in `grid`) committed: stop acting as a member;
    /// with `recycle`, also delete the database and become an empty grid node.
    /// The leader runs `ADMIN COMMAND 'grid shutdown'`: stop this member cleanly.
    async fn shutdown(&self, grid: String, node_id: NodeId) -> Result<(), SolidError> {
        let _ = (grid, node_id);
        Err(SolidError::grid(
            code::UNKNOWN_NODE,
            "this node does not handle grid shutdown",
        ))
    }

    async fn dropped(
        &self,
        grid: String,
        node_id: NodeId,
        recycle: bool,
    ) -> Result<(), SolidError> {
        let _ = (grid, node_id, recycle);
        Err(SolidError::grid(
            code::UNKNOWN_NODE,
            "this node does not handle member drops",
        ))
    }

    /// Partitioned tables: a primary's planned write (an encoded `LogRecord`) to replicate;
    /// answers the committed grid-log index. Only the leader accepts it.
    async fn propose(&self, from: NodeId, record: Vec<u8>) -> Result<u64, SolidError> {
        let _ = (from, record);
        Err(not_served("Propose"))
    }

    /// Partitioned tables: runs a write statement as the primary of `partitions`.
    async fn primary_execute(&self, req: pb::PrimaryExecuteRequest) -> Result<u64, SolidError> {
        let _ = req;
        Err(not_served("PrimaryExecute"))
    }

    /// Partitioned tables: the rows of some partitions, as a stream of chunks.
    async fn scan(&self, req: pb::ScanRequest) -> Result<ScanStream, SolidError> {
        let _ = req;
        Err(not_served("Scan"))
    }

    /// The partition loads running on this node.
    async fn load_status(&self) -> Vec<pb::LoadProgress> {
        Vec::new()
    }
}

/// The chunks of a [`PeerHandler::scan`]; an error ends the stream.
pub type ScanStream = tokio::sync::mpsc::Receiver<Result<pb::ScanChunk, SolidError>>;

fn not_served(rpc: &str) -> SolidError {
    SolidError::grid(
        code::UNKNOWN_NODE,
        format!("this node does not handle {rpc}"),
    )
}

/// The `SolidPeer` gRPC service over a [`PeerHandler`]; see [`peer_service`].
#[derive(Clone)]
pub struct PeerService {
    handler: Arc<dyn PeerHandler>,
}

/// The peer service with grid-secret authentication in front, ready for
/// `tonic::transport::Server::add_service`.
pub type PeerServer = InterceptedService<SolidPeerServer<PeerService>, SecretCheck>;

/// Builds the peer service: requests are authenticated with `secret` (`[Grid] Secret`) and
/// bounded by [`MAX_PEER_MESSAGE_BYTES`], then forwarded to `handler`.
pub fn peer_service(handler: Arc<dyn PeerHandler>, secret: String) -> PeerServer {
    let server = SolidPeerServer::new(PeerService { handler })
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    InterceptedService::new(server, SecretCheck::new(&secret))
}

fn peer_addr<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "an unknown address".to_owned(), |a| a.to_string())
}

/// Decodes a request, logging why when it is malformed.
fn decode<P, D>(rpc: &str, request: Request<P>) -> Result<D, Status>
where
    D: TryFrom<P, Error = PeerError>,
{
    let peer = peer_addr(&request);
    D::try_from(request.into_inner()).map_err(|e| {
        tracing::warn!("refused a malformed {rpc} request from {peer}: {e}");
        Status::from(e)
    })
}

impl PeerService {
    /// Forwards a Vote or Append and checks the handler answered with the matching reply.
    async fn exchange<R>(&self, rpc: &str, from: NodeId, msg: Message) -> Result<R, Status>
    where
        R: for<'a> TryFrom<&'a Message, Error = PeerError>,
    {
        let reply = self.handler.message(from, msg).await.map_err(|e| {
            tracing::debug!("{rpc} from node {from} refused: {e}");
            Status::from(PeerError::Refused(e))
        })?;
        R::try_from(&reply).map_err(|e| {
            tracing::error!("bug: the peer handler answered a {rpc} wrongly: {e}");
            Status::internal(format!("the node answered a {rpc} wrongly: {e}"))
        })
    }
}

/// A handler's result as the `outcome` of a GridStart/Abandon reply (in the body, so the
/// message needs no [`MAX_ERROR_MESSAGE_BYTES`] cut).
fn outcome(rpc: &str, result: Result<(), SolidError>) -> Result<pb::Accepted, pb::PeerFailure> {
    result.map(|()| pb::Accepted {}).map_err(|e| {
        tracing::debug!("{rpc} refused: {e}");
        pb::PeerFailure::from(&e)
    })
}

#[tonic::async_trait]
impl SolidPeer for PeerService {
    type ScanStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::ScanChunk, Status>> + Send + 'static>,
    >;

    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeReply>, Status> {
        let req = request.into_inner();
        let from = sender(req.from, "propose.from").map_err(Status::from)?;
        let index = self
            .handler
            .propose(from, req.record)
            .await
            .map_err(|e| Status::from(PeerError::Refused(e)))?;
        Ok(Response::new(pb::ProposeReply { index }))
    }

    async fn primary_execute(
        &self,
        request: Request<pb::PrimaryExecuteRequest>,
    ) -> Result<Response<pb::PrimaryExecuteReply>, Status> {
        let req = request.into_inner();
        sender(req.from, "primary_execute.from").map_err(Status::from)?;
        let rows_affected = self
            .handler
            .primary_execute(req)
            .await
            .map_err(|e| Status::from(PeerError::Refused(e)))?;
        Ok(Response::new(pb::PrimaryExecuteReply { rows_affected }))
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<Self::ScanStream>, Status> {
        let req = request.into_inner();
        sender(req.from, "scan.from").map_err(Status::from)?;
        let rx = self
            .handler
            .scan(req)
            .await
            .map_err(|e| Status::from(PeerError::Refused(e)))?;
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            |chunk| chunk.map_err(|e| Status::from(PeerError::Refused(e))),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn load_status(
        &self,
        _request: Request<pb::LoadStatusRequest>,
    ) -> Result<Response<pb::LoadStatusReply>, Status> {
        Ok(Response::new(pb::LoadStatusReply {
            loads: self.handler.load_status().await,
        }))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteReply>, Status> {
        let from = request.get_ref().candidate;
        let msg: Message = decode("Vote", request)?;
        self.exchange("Vote", from, msg).await.map(Response::new)
    }

    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendReply>, Status> {
        let from = request.get_ref().leader;
        let msg: Message = decode("Append", request)?;
        self.exchange("Append", from, msg).await.map(Response::new)
    }

    async fn probe(
        &self,
        request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeReply>, Status> {
        tracing::debug!(
            "probe from node {} at {}",
            request.get_ref().from,
            peer_addr(&request)
        );
        let info = self.handler.probe().await;
        Ok(Response::new((&info).into()))
    }

    async fn grid_start(
        &self,
        request: Request<pb::GridStartRequest>,
    ) -> Result<Response<pb::GridStartReply>, Status> {
        let req: GridStart = decode("GridStart", request)?;
        tracing::debug!("grid start request: {req:?}");
        let outcome = match outcome("GridStart", self.handler.grid_start(req).await) {
            Ok(a) => pb::grid_start_reply::Outcome::Accepted(a),
            Err(f) => pb::grid_start_reply::Outcome::Refused(f),
        };
        Ok(Response::new(pb::GridStartReply {
            outcome: Some(outcome),
        }))
    }

    async fn abandon(
        &self,
        request: Request<pb::AbandonRequest>,
    ) -> Result<Response<pb::AbandonReply>, Status> {
        let peer = peer_addr(&request);
        let req = request.into_inner();
        let node_id = sender(req.node_id, "abandon.node_id").map_err(|e| {
            tracing::warn!("refused a malformed Abandon request from {peer}: {e}");
            Status::from(e)
        })?;
        tracing::debug!(
            "abandon request from node {} at {peer}: grid {} node {node_id}",
            req.from,
            req.grid
        );
        let handled = if req.grid_shutdown {
            self.handler.shutdown(req.grid, node_id).await
        } else if req.member_dropped {
            self.handler.dropped(req.grid, node_id, req.recycle).await
        } else {
            self.handler.abandon(req.grid, node_id).await
        };
        let outcome = match outcome("Abandon", handled) {
            Ok(a) => pb::abandon_reply::Outcome::Accepted(a),
            Err(f) => pb::abandon_reply::Outcome::Refused(f),
        };
        Ok(Response::new(pb::AbandonReply {
            outcome: Some(outcome),
        }))
    }
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// The caller's side of the peer protocol for one remote node. Cheap to clone (clones share
/// one HTTP/2 connection); connects lazily on the first call and reconnects after a failure.
#[derive(Clone)]
pub struct PeerClient {
    addr: Arc<str>,
    secret: MetadataValue<Ascii>,
    rpc: SolidPeerClient<Channel>,
}

impl fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client for the node at `addr` (`host:port`, as in `Member::addr`) that
    /// authenticates with `secret` (`[Grid] Secret`). Nothing is connected yet.
    ///
    /// Must be called within a tokio runtime: the channel's worker task is spawned on it.
    /// An address that is not a valid URI authority is [`PeerError::Unreachable`]; a secret
    /// that is not printable ASCII (the configuration rejects those) is
    /// [`PeerError::Malformed`].
    ///
    /// The connection uses the process-wide peer TLS settings ([`crate::tls::peer_tls`],
    /// installed by the server at start from `[Security]`), plain text when there are none.
    pub fn new(addr: &str, secret: &str) -> Result<PeerClient, PeerError> {
        Self::with_tls(addr, secret, crate::tls::peer_tls().as_deref())
    }

    /// Like [`PeerClient::new`] with explicit TLS settings: with `Some`, the connection is
    /// `https://addr`, the peer's certificate must be signed by the settings' CA and name the
    /// host of `addr`, and the settings' identity is presented to the peer; with `None` it is
    /// plain text. The grid secret is sent either way.
    pub fn with_tls(
        addr: &str,
        secret: &str,
        tls: Option<&PeerTls>,
    ) -> Result<PeerClient, PeerError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| PeerError::Unreachable(format!("invalid peer address {addr:?}: {e}")))?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls.tls_config()).map_err(|e| {
                PeerError::Unreachable(format!(
                    "TLS settings for {addr}: {}",
                    crate::tls::error_chain(&e)
                ))
            })?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        let secret = MetadataValue::try_from(secret)
            .map_err(|_| malformed("the grid secret is not printable ASCII"))?;
        let rpc = SolidPeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        Ok(PeerClient {
            addr: addr.into(),
            secret,
            rpc,
        })
    }

    /// The remote node's address, as given to [`PeerClient::new`].
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends a `Vote` or `Append` and returns the peer's `VoteReply` or `AppendReply`.
    /// Passing a reply is [`PeerError::Malformed`] (a caller bug; nothing is sent).
    pub async fn message(&self, msg: Message, timeout: Duration) -> Result<Message, PeerError> {
        match &msg {
            Message::Vote { .. } => {
                let req = self.request(pb::VoteRequest::try_from(&msg)?, timeout);
                let mut rpc = self.rpc.clone();
                let reply = self.call("Vote", timeout, rpc.vote(req)).await?;
                Ok(reply.into())
            }
            Message::Append { .. } => {
                let req = self.request(pb::AppendRequest::try_from(&msg)?, timeout);
                let mut rpc = self.rpc.clone();
                let reply = self.call("Append", timeout, rpc.append(req)).await?;
                Ok(reply.into())
            }
            Message::VoteReply { .. } | Message::AppendReply { .. } => Err(malformed(format!(
                "{} is a reply, not a request",
                message_kind(&msg)
            ))),
        }
    }

    /// The validation probe; `from` is the asking node's id (0 if it has none), for the
    /// peer's log.
    pub async fn probe(&self, from: NodeId, timeout: Duration) -> Result<ProbeInfo, PeerError> {
        let req = self.request(pb::ProbeRequest { from }, timeout);
        let mut rpc = self.rpc.clone();
        let reply = self.call("Probe", timeout, rpc.probe(req)).await?;
        Ok(reply.into())
    }

    /// Sends a grid start request. A snapshot over [`MAX_SNAPSHOT_BYTES`] is
    /// [`PeerError::Malformed`] and nothing is sent.
    pub async fn grid_start(&self, req: GridStart, timeout: Duration) -> Result<(), PeerError> {
        check_snapshot_len(req.snapshot.len())?;
        let req = self.request(pb::GridStartRequest::from(req), timeout);
        let mut rpc = self.rpc.clone();
        let reply = self.call("GridStart", timeout, rpc.grid_start(req)).await?;
        match reply.outcome {
            Some(pb::grid_start_reply::Outcome::Accepted(pb::Accepted {})) => Ok(()),
            Some(pb::grid_start_reply::Outcome::Refused(f)) => {
                Err(PeerError::Refused(f.try_into()?))
            }
            None => Err(malformed("grid start reply without an outcome")),
        }
    }

    /// Tells the peer to drop the provisional data of its rolled-back add as `node_id` to
    /// `grid`; `from` is the asking node's id, for the peer's log.
    pub async fn abandon(
        &self,
        from: NodeId,
        grid: &str,
        node_id: NodeId,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        let req = pb::AbandonRequest {
            grid: grid.to_owned(),
            node_id,
            from,
            member_dropped: false,
            recycle: false,
            grid_shutdown: false,
        };
        self.send_abandon(req, timeout).await
    }

    /// Tells a member whose DROP NODE committed that it is out of `grid` (it may have
    /// missed the decision); with `recycle` it deletes its database and becomes empty.
    pub async fn dropped(
        &self,
        from: NodeId,
        grid: &str,
        node_id: NodeId,
        recycle: bool,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        let req = pb::AbandonRequest {
            grid: grid.to_owned(),
            node_id,
            from,
            member_dropped: true,
            recycle,
            grid_shutdown: false,
        };
        self.send_abandon(req, timeout).await
    }

    /// Asks member `node_id` of `grid` to stop cleanly (`ADMIN COMMAND 'grid shutdown'`).
    pub async fn shutdown(
        &self,
        from: NodeId,
        grid: &str,
        node_id: NodeId,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        let req = pb::AbandonRequest {
            grid: grid.to_owned(),
            node_id,
            from,
            member_dropped: false,
            recycle: false,
            grid_shutdown: true,
        };
        self.send_abandon(req, timeout).await
    }

    /// Sends one `Abandon` request (a rolled-back add, a committed drop, or a grid shutdown).
    async fn send_abandon(
        &self,
        req: pb::AbandonRequest,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        let req = self.request(req, timeout);
        let mut rpc = self.rpc.clone();
        let reply = self.call("Abandon", timeout, rpc.abandon(req)).await?;
        match reply.outcome {
            Some(pb::abandon_reply::Outcome::Accepted(pb::Accepted {})) => Ok(()),
            Some(pb::abandon_reply::Outcome::Refused(f)) => Err(PeerError::Refused(f.try_into()?)),
            None => Err(malformed("abandon reply without an outcome")),
        }
    }

    /// A request carrying the grid secret and the deadline (so the peer stops working on it
    /// when the caller stops waiting).
    fn request<T>(&self, msg: T, timeout: Duration) -> Request<T> {
        let mut request = Request::new(msg);
        request.set_timeout(timeout);
        request
            .metadata_mut()
            .insert(SECRET_METADATA_KEY, self.secret.clone());
        request
    }

    /// Partitioned tables: asks the leader to replicate a planned write; returns its index.
    pub async fn propose(
        &self,
        from: NodeId,
        record: Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, PeerError> {
        let req = self.request(pb::ProposeRequest { from, record }, timeout);
        let mut rpc = self.rpc.clone();
        let reply = self.call("Propose", timeout, rpc.propose(req)).await?;
        Ok(reply.index)
    }

    /// Partitioned tables: runs a write as the primary of `partitions`; returns the rows
    /// affected.
    pub async fn primary_execute(
        &self,
        req: pb::PrimaryExecuteRequest,
        timeout: Duration,
    ) -> Result<u64, PeerError> {
        let req = self.request(req, timeout);
        let mut rpc = self.rpc.clone();
        let reply = self
            .call("PrimaryExecute", timeout, rpc.primary_execute(req))
            .await?;
        Ok(reply.rows_affected)
    }

    /// Partitioned tables: opens a row stream (`timeout` bounds the whole stream).
    pub async fn scan(
        &self,
        req: pb::ScanRequest,
        timeout: Duration,
    ) -> Result<tonic::Streaming<pb::ScanChunk>, PeerError> {
        let req = self.request(req, timeout);
        let mut rpc = self.rpc.clone();
        self.call("Scan", timeout, rpc.scan(req)).await
    }

    /// The partition loads running on the node.
    pub async fn load_status(
        &self,
        from: NodeId,
        timeout: Duration,
    ) -> Result<Vec<pb::LoadProgress>, PeerError> {
        let req = self.request(pb::LoadStatusRequest { from }, timeout);
        let mut rpc = self.rpc.clone();
        let reply = self
            .call("LoadStatus", timeout, rpc.load_status(req))
            .await?;
        Ok(reply.loads)
    }

    /// Runs one call under `timeout` (connecting included) and classifies its failure.
    async fn call<R>(
        &self,
        rpc: &str,
        timeout: Duration,
        call: impl Future<Output = Result<Response<R>, Status>>,
    ) -> Result<R, PeerError> {
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(match PeerError::from(status) {
                PeerError::Unreachable(why) => {
                    PeerError::Unreachable(format!("{rpc} to {}: {why}", self.addr))
                }
                PeerError::Malformed(why) => {
                    PeerError::Malformed(format!("{rpc} to {}: {why}", self.addr))
                }
                other => other,
            }),
            Err(_) => Err(PeerError::Unreachable(format!(
                "{rpc} to {}: no answer within {} ms",
                self.addr,
                timeout.as_millis()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use prost::Message as _;
    use tokio::net::TcpListener;
    use tokio_stream::wrappers::TcpListenerStream;

    const SECRET: &str = "grid-secret-for-tests";
    const TIMEOUT: Duration = Duration::from_secs(5);
    /// A Vote in this term makes the fake handler refuse.
    const REFUSE_TERM: Term = 666;
    /// A Vote in this term makes the fake handler never answer.
    const HANG_TERM: Term = 777;
    /// A Vote in this term makes the fake handler refuse with a 100 KiB non-ASCII message.
    const LONG_REFUSAL_TERM: Term = 888;

    // ---- strategies -------------------------------------------------------------------

    fn member_state() -> impl Strategy<Value = MemberState> {
        prop_oneof![
            Just(MemberState::NotMember),
            Just(MemberState::BeingAdded),
            Just(MemberState::Online),
            Just(MemberState::Disconnecting),
            Just(MemberState::Offline),
            Just(MemberState::Failed),
            Just(MemberState::Reconnecting),
            Just(MemberState::BeingDropped),
        ]
    }

    fn change_kind() -> impl Strategy<Value = ChangeKind> {
        prop_oneof![
            Just(ChangeKind::Add),
            Just(ChangeKind::Drop),
            Just(ChangeKind::Offline),
            Just(ChangeKind::Fail),
            Just(ChangeKind::Online),
        ]
    }

    fn member() -> impl Strategy<Value = Member> {
        (
            any::<u64>(),
            "\\PC{0,12}",
            "[a-z0-9.:]{0,20}",
            member_state(),
        )
            .prop_map(|(id, name, addr, state)| Member {
                id,
                name,
                addr,
                state,
            })
    }

    fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            Just(Payload::Noop),
            ("\\PC{0,12}", member())
                .prop_map(|(grid, founder)| Payload::CreateGrid { grid, founder }),
            (change_kind(), member(), member_state())
                .prop_map(|(kind, node, from)| Payload::Prepare(Change { kind, node, from })),
            (any::<u64>(), any::<bool>())
                .prop_map(|(prepare, commit)| Payload::Decide { prepare, commit }),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Payload::Data),
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (any::<u64>(), any::<u64>(), payload()).prop_map(|(term, index, payload)| Entry {
            term,
            index,
            payload,
        })
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<u64>(),
                1..=u64::MAX,
                any::<u64>(),
                any::<u64>(),
                any::<bool>()
            )
                .prop_map(
                    |(term, candidate, last_log_index, last_log_term, pre_vote)| Message::Vote {
                        term,
                        candidate,
                        last_log_index,
                        last_log_term,
                        pre_vote,
                    }
                ),
            (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(term, granted, pre_vote)| {
                Message::VoteReply {
                    term,
                    granted,
                    pre_vote,
                }
            }),
            (
                any::<u64>(),
                1..=u64::MAX,
                any::<u64>(),
                any::<u64>(),
                proptest::collection::vec(entry(), 0..6),
                any::<u64>()
            )
                .prop_map(
                    |(term, leader, prev_index, prev_term, entries, leader_commit)| {
                        Message::Append {
                            term,
                            leader,
                            prev_index,
                            prev_term,
                            entries,
                            leader_commit,
                        }
                    }
                ),
            (any::<u64>(), any::<bool>(), any::<u64>()).prop_map(|(term, success, match_index)| {
                Message::AppendReply {
                    term,
                    success,
                    match_index,
                }
            }),
        ]
    }

    /// Encodes `msg` as its proto message, through bytes, and decodes it back.
    fn through_the_wire(msg: &Message) -> Result<Message, PeerError> {
        fn bytes<P: prost::Message + Default>(p: P) -> P {
            P::decode(p.encode_to_vec().as_slice()).expect("our own encoding decodes")
        }
        match msg {
            Message::Vote { .. } => bytes(pb::VoteRequest::try_from(msg)?).try_into(),
            Message::VoteReply { .. } => Ok(bytes(pb::VoteReply::try_from(msg)?).into()),
            Message::Append { .. } => bytes(pb::AppendRequest::try_from(msg)?).try_into(),
            Message::AppendReply { .. } => Ok(bytes(pb::AppendReply::try_from(msg)?).into()),
        }
    }

    proptest! {
        #[test]
        fn every_message_round_trips(msg in message()) {
            prop_assert_eq!(through_the_wire(&msg)?, msg);
        }

        #[test]
        fn probe_info_round_trips(
            name in "\\PC{0,12}",
            in_grid in proptest::option::of("\\PC{1,12}"),
            node_id in proptest::option::of(1..=u64::MAX),
            grid_enabled in any::<bool>(),
            has_data in any::<bool>(),
        ) {
            let info = ProbeInfo {
                name,
                version: crate::VERSION.to_owned(),
                grid_enabled,
                has_data,
                in_grid,
                node_id,
                listen_addr: "127.0.0.1:1315".to_owned(),
            };
            let wire = pb::ProbeReply::decode(pb::ProbeReply::from(&info).encode_to_vec().as_slice()).unwrap();
            prop_assert_eq!(ProbeInfo::from(wire), info);
        }

        #[test]
        fn refusals_round_trip_through_a_status(code in any::<u32>(), message in "\\PC{0,40}") {
            for class in [ErrorClass::Syntax, ErrorClass::Table, ErrorClass::Server, ErrorClass::Grid, ErrorClass::Auth] {
                let e = SolidError::new(class, code, message.clone());
                prop_assert_eq!(PeerError::from(Status::from(PeerError::Refused(e.clone()))), PeerError::Refused(e.clone()));
                prop_assert_eq!(SolidError::try_from(pb::PeerFailure::from(&e))?, e);
            }
        }
    }

    #[test]
    fn every_message_kind_and_payload_round_trips() {
        let member = |id, state| Member {
            id,
            name: format!("n{id}"),
            addr: format!("127.0.0.1:{}", 1314 + id),
            state,
        };
        let entries = vec![
            Entry {
                term: 1,
                index: 1,
                payload: Payload::CreateGrid {
                    grid: "g".into(),
                    founder: member(1, MemberState::Online),
                },
            },
            Entry {
                term: 2,
                index: 2,
                payload: Payload::Noop,
            },
            Entry {
                term: 2,
                index: 3,
                payload: Payload::Prepare(Change {
                    kind: ChangeKind::Add,
                    node: member(2, MemberState::BeingAdded),
                    from: MemberState::NotMember,
                }),
            },
            Entry {
                term: 2,
                index: 4,
                payload: Payload::Decide {
                    prepare: 3,
                    commit: false,
                },
            },
            Entry {
                term: 2,
                index: 5,
                payload: Payload::Data(Vec::new()),
            },
            Entry {
                term: 2,
                index: 6,
                payload: Payload::Data(vec![0, 1, 2, 255]),
            },
        ];
        for msg in [
            Message::Vote {
                term: 3,
                candidate: 2,
                last_log_index: 6,
                last_log_term: 2,
                pre_vote: true,
            },
            Message::VoteReply {
                term: 3,
                granted: true,
                pre_vote: true,
            },
            Message::Append {
                term: 2,
                leader: 1,
                prev_index: 0,
                prev_term: 0,
                entries,
                leader_commit: 4,
            },
            Message::Append {
                term: 2,
                leader: 1,
                prev_index: 6,
                prev_term: 2,
                entries: Vec::new(),
                leader_commit: 6,
            },
            Message::AppendReply {
                term: 2,
                success: false,
                match_index: 3,
            },
        ] {
            assert_eq!(through_the_wire(&msg).unwrap(), msg);
        }
    }

    fn assert_malformed<T: fmt::Debug>(result: Result<T, PeerError>, needle: &str) {
        match result {
            Err(PeerError::Malformed(why)) => assert!(why.contains(needle), "{why}"),
            other => panic!("expected Malformed({needle}), got {other:?}"),
        }
    }

    #[test]
    fn malformed_wire_data_is_an_error_not_a_panic() {
        let vote = pb::VoteRequest {
            term: 1,
            candidate: 0,
            ..Default::default()
        };
        assert_malformed(Message::try_from(vote), "vote.candidate");
        let append = |entries| pb::AppendRequest {
            term: 1,
            leader: 1,
            entries,
            ..Default::default()
        };
        assert_malformed(
            Message::try_from(pb::AppendRequest {
                leader: 0,
                ..append(Vec::new())
            }),
            "append.leader",
        );
        let entry = |payload| pb::Entry {
            term: 1,
            index: 7,
            payload: Some(payload),
        };
        assert_malformed(
            Message::try_from(append(vec![pb::Entry {
                payload: None,
                ..entry(pb::entry::Payload::Noop(pb::Noop {}))
            }])),
            "entry 7: payload not set",
        );
        let member = pb::Member {
            id: 2,
            name: "n2".into(),
            addr: "h:1".into(),
            state: pb::MemberState::Online.into(),
        };
        let change = pb::Change {
            kind: pb::ChangeKind::Add.into(),
            node: Some(member.clone()),
            from: pb::MemberState::NotMember.into(),
        };
        let prepare = |c| Message::try_from(append(vec![entry(pb::entry::Payload::Prepare(c))]));
        assert!(prepare(change.clone()).is_ok());
        assert_malformed(
            prepare(pb::Change {
                node: None,
                ..change.clone()
            }),
            "change.node not set",
        );
        assert_malformed(
            prepare(pb::Change {
                kind: 0,
                ..change.clone()
            }),
            "change kind not set",
        );
        assert_malformed(
            prepare(pb::Change {
                kind: 99,
                ..change.clone()
            }),
            "unknown change kind 99",
        );
        assert_malformed(
            prepare(pb::Change {
                from: 42,
                ..change.clone()
            }),
            "change.from: unknown member state 42",
        );
        assert_malformed(
            prepare(pb::Change {
                node: Some(pb::Member {
                    state: 0,
                    ..member.clone()
                }),
                ..change.clone()
            }),
            "member.state: member state not set",
        );
        assert_malformed(
            Message::try_from(append(vec![entry(pb::entry::Payload::CreateGrid(
                pb::CreateGrid {
                    grid: "g".into(),
                    founder: None,
                },
            ))])),
            "create_grid.founder",
        );
        let start = pb::GridStartRequest {
            grid: "g".into(),
            node_id: 2,
            leader_id: 1,
            leader_term: 3,
            snapshot: vec![1, 2, 3],
        };
        assert!(GridStart::try_from(start.clone()).is_ok());
        assert_malformed(
            GridStart::try_from(pb::GridStartRequest {
                node_id: 0,
                ..start.clone()
            }),
            "grid_start.node_id",
        );
        assert_malformed(
            GridStart::try_from(pb::GridStartRequest {
                leader_id: 0,
                ..start
            }),
            "grid_start.leader_id",
        );
        assert!(check_snapshot_len(MAX_SNAPSHOT_BYTES).is_ok());
        assert_malformed(check_snapshot_len(MAX_SNAPSHOT_BYTES + 1), "larger than");
        assert_malformed(
            SolidError::try_from(pb::PeerFailure {
                code: 18506,
                class: 17,
                message: "x".into(),
            }),
            "unknown error class 17",
        );
        // The wrong kind of message for a proto type.
        assert_malformed(
            pb::VoteRequest::try_from(&Message::AppendReply {
                term: 1,
                success: true,
                match_index: 1,
            }),
            "expected Vote, got AppendReply",
        );
    }

    #[test]
    fn statuses_are_classified() {
        for code in [
            Code::Unavailable,
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Internal,
            Code::Aborted,
            Code::ResourceExhausted,
        ] {
            assert!(matches!(
                PeerError::from(Status::new(code, "x")),
                PeerError::Unreachable(_)
            ));
        }
        for code in [Code::Unauthenticated, Code::PermissionDenied] {
            assert_eq!(PeerError::from(Status::new(code, "x")), PeerError::Auth);
        }
        for code in [Code::InvalidArgument, Code::OutOfRange, Code::NotFound] {
            assert!(matches!(
                PeerError::from(Status::new(code, "x")),
                PeerError::Malformed(_)
            ));
        }
        // A node without the peer service (not grid-enabled) is told apart: 18501.
        let not_served = PeerError::from(Status::new(Code::Unimplemented, "x"));
        assert!(matches!(not_served, PeerError::NotServed(_)));
        assert_eq!(not_served.to_solid("node n").code, code::GRID_NOT_ENABLED);
        // A refusal whose text carries no error code.
        assert_malformed(
            Err::<(), _>(PeerError::from(Status::failed_precondition("nope"))),
            "without an error code",
        );
        // Colons inside the message and an empty message survive.
        for message in ["a: b: c", ""] {
            let e = SolidError::grid(code::NOT_LEADER, message);
            assert_eq!(parse_refusal(&refusal_text(&e)), Some(e));
        }
    }

    #[test]
    fn long_refusal_messages_are_bounded_at_a_char_boundary() {
        let e = SolidError::grid(code::ROLLED_BACK, "é".repeat(MAX_ERROR_MESSAGE_BYTES));
        let status = Status::from(PeerError::Refused(e));
        assert!(status.message().len() <= MAX_ERROR_MESSAGE_BYTES + 64);
        match PeerError::from(status) {
            PeerError::Refused(back) => {
                assert_eq!(back.code, code::ROLLED_BACK);
                assert!(back.message.chars().all(|c| c == 'é'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn to_solid_keeps_refusal_codes_and_maps_the_rest() {
        let refused = SolidError::grid(code::NODE_HAS_DATA, "has a database");
        assert_eq!(
            PeerError::Refused(refused.clone()).to_solid("ADD NODE n2"),
            refused
        );
        let auth = PeerError::Auth.to_solid("ADD NODE n2");
        assert_eq!(auth.code, code::PEER_AUTH);
        assert!(
            auth.to_string()
                .starts_with("SOLID Grid Error 18511: authentication between nodes failed"),
            "{auth}"
        );
        assert_eq!(
            PeerError::Unreachable("x".into()).to_solid("w").code,
            code::NODE_UNREACHABLE
        );
        assert_eq!(
            PeerError::Malformed("x".into()).to_solid("w").code,
            code::NODE_UNREACHABLE
        );
    }

    #[test]
    fn constant_time_eq_compares_whole_secrets() {
        assert!(constant_time_eq(b"secret-1", b"secret-1"));
        assert!(!constant_time_eq(b"secret-1", b"secret-2"));
        assert!(!constant_time_eq(b"secret-1", b"secret-"));
        assert!(!constant_time_eq(b"secret-1", b"secret-12"));
        assert!(!constant_time_eq(b"secret-1", b""));
        assert!(!constant_time_eq(b"ab", b"ab\0"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn secret_check_admits_only_the_configured_secret() {
        let check = SecretCheck::new(SECRET);
        assert!(check.admits(Some(SECRET.as_bytes())));
        assert!(!check.admits(Some(b"grid-secret-for-test")));
        assert!(!check.admits(None));
        let empty = SecretCheck::new("");
        assert!(!empty.admits(Some(b"")));
        assert!(!empty.admits(None));
        assert!(!format!("{check:?}").contains(SECRET));
    }

    // ---- the service over loopback ----------------------------------------------------

    #[derive(Default)]
    struct Fake {
        started: Mutex<Vec<GridStart>>,
        abandoned: Mutex<Vec<(String, NodeId)>>,
    }

    #[tonic::async_trait]
    impl PeerHandler for Fake {
        async fn message(&self, from: NodeId, msg: Message) -> Result<Message, SolidError> {
            match msg {
                Message::Vote { term, .. } if term == REFUSE_TERM => Err(SolidError::grid(
                    code::CHANGE_IN_PROGRESS,
                    format!("busy: vote from node {from}"),
                )),
                Message::Vote { term, .. } if term == LONG_REFUSAL_TERM => {
                    Err(SolidError::grid(code::ROLLED_BACK, "é".repeat(50 * 1024)))
                }
                Message::Vote { term, .. } if term == HANG_TERM => std::future::pending().await,
                Message::Vote {
                    term,
                    candidate,
                    pre_vote,
                    ..
                } => Ok(Message::VoteReply {
                    term,
                    granted: candidate == from && candidate == 2,
                    pre_vote,
                }),
                Message::Append {
                    term,
                    prev_index,
                    entries,
                    ..
                } => Ok(Message::AppendReply {
                    term,
                    success: true,
                    match_index: prev_index + entries.len() as u64,
                }),
                other => Err(SolidError::server(
                    code::BAD_REQUEST,
                    format!("not a request: {other:?}"),
                )),
            }
        }

        async fn probe(&self) -> ProbeInfo {
            ProbeInfo {
                name: "n2".into(),
                version: crate::VERSION.into(),
                grid_enabled: true,
                has_data: false,
                in_grid: None,
                node_id: None,
                listen_addr: "127.0.0.1:1316".into(),
            }
        }

        async fn grid_start(&self, req: GridStart) -> Result<(), SolidError> {
            if req.grid == "refuse" {
                return Err(SolidError::grid(
                    code::NODE_HAS_DATA,
                    "node n2 already has a database",
                ));
            }
            self.started.lock().push(req);
            Ok(())
        }

        async fn abandon(&self, grid: String, node_id: NodeId) -> Result<(), SolidError> {
            if node_id == 99 {
                return Err(SolidError::grid(
                    code::UNKNOWN_NODE,
                    "node 99 was never added",
                ));
            }
            self.abandoned.lock().push((grid, node_id));
            Ok(())
        }
    }

    /// Serves a fake handler on 127.0.0.1:0; returns its address.
    async fn serve() -> (String, Arc<Fake>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let fake = Arc::new(Fake::default());
        let service = peer_service(fake.clone(), SECRET.to_owned());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (addr, fake)
    }

    fn vote(term: Term) -> Message {
        Message::Vote {
            term,
            candidate: 2,
            last_log_index: 5,
            last_log_term: 1,
            pre_vote: false,
        }
    }

    #[tokio::test]
    async fn vote_and_append_round_trip() {
        let (addr, _) = serve().await;
        let client = PeerClient::new(&addr, SECRET).unwrap();
        assert_eq!(
            client.message(vote(4), TIMEOUT).await.unwrap(),
            Message::VoteReply {
                term: 4,
                granted: true,
                pre_vote: false
            }
        );
        let entries = vec![
            Entry {
                term: 4,
                index: 6,
                payload: Payload::Noop,
            },
            Entry {
                term: 4,
                index: 7,
                payload: Payload::Data(vec![7; 100]),
            },
        ];
        let append = Message::Append {
            term: 4,
            leader: 1,
            prev_index: 5,
            prev_term: 1,
            entries,
            leader_commit: 5,
        };
        assert_eq!(
            client.clone().message(append, TIMEOUT).await.unwrap(),
            Message::AppendReply {
                term: 4,
                success: true,
                match_index: 7
            }
        );
        // A reply is not something to send.
        let reply = Message::AppendReply {
            term: 1,
            success: true,
            match_index: 1,
        };
        assert!(matches!(
            client.message(reply, TIMEOUT).await,
            Err(PeerError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn probe_and_abandon_round_trip() {
        let (addr, fake) = serve().await;
        let client = PeerClient::new(&addr, SECRET).unwrap();
        let info = client.probe(1, TIMEOUT).await.unwrap();
        assert_eq!(info, fake.probe().await);
        client.abandon(1, "g", 2, TIMEOUT).await.unwrap();
        assert_eq!(*fake.abandoned.lock(), vec![("g".to_owned(), 2)]);
    }

    /// A CA and a certificate for 127.0.0.1 signed by it: (CA PEM, cert PEM, key PEM).
    fn test_pki() -> (String, String, String) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &*ca)
            .unwrap();
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    /// Serves the fake handler over mutual TLS (client certificates required).
    async fn serve_tls(ca: &str, cert: &str, key: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let tls = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key))
            .client_ca_root(tonic::transport::Certificate::from_pem(ca));
        let service = peer_service(Arc::new(Fake::default()), SECRET.to_owned());
        tokio::spawn(
            tonic::transport::Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    }

    #[tokio::test]
    async fn peers_talk_over_mutual_tls_and_refuse_a_foreign_ca() {
        let (ca, cert, key) = test_pki();
        let addr = serve_tls(&ca, &cert, &key).await;
        let tls = PeerTls::new(
            ca.clone().into_bytes(),
            Some((cert.clone().into_bytes(), key.clone().into_bytes())),
        )
        .unwrap();
        let client = PeerClient::with_tls(&addr, SECRET, Some(&tls)).unwrap();
        client.probe(1, TIMEOUT).await.unwrap();
        // The secret still applies over TLS.
        let wrong = PeerClient::with_tls(&addr, "not-the-grid-secret", Some(&tls)).unwrap();
        assert_eq!(wrong.probe(1, TIMEOUT).await, Err(PeerError::Auth));
        // Plain text does not reach a TLS peer.
        let plain = PeerClient::with_tls(&addr, SECRET, None).unwrap();
        assert!(plain.probe(1, TIMEOUT).await.is_err());
        // A peer whose certificate another CA signed is refused in the handshake.
        let (other_ca, other_cert, other_key) = test_pki();
        let foreign = PeerTls::new(
            other_ca.into_bytes(),
            Some((other_cert.into_bytes(), other_key.into_bytes())),
        )
        .unwrap();
        let client = PeerClient::with_tls(&addr, SECRET, Some(&foreign)).unwrap();
        match client.probe(1, TIMEOUT).await {
            Err(PeerError::Unreachable(why)) => assert!(why.contains("certificate"), "{why}"),
            other => panic!("expected a refused handshake, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_wrong_secret_is_an_authentication_failure() {
        let (addr, fake) = serve().await;
        let client = PeerClient::new(&addr, "not-the-grid-secret").unwrap();
        assert_eq!(client.message(vote(4), TIMEOUT).await, Err(PeerError::Auth));
        assert_eq!(client.probe(1, TIMEOUT).await, Err(PeerError::Auth));
        let start = GridStart {
            grid: "g".into(),
            node_id: 2,
            leader_id: 1,
            leader_term: 4,
            snapshot: vec![1],
        };
        assert_eq!(
            client.grid_start(start, TIMEOUT).await,
            Err(PeerError::Auth)
        );
        assert_eq!(
            client.abandon(1, "g", 2, TIMEOUT).await,
            Err(PeerError::Auth)
        );
        assert!(fake.started.lock().is_empty() && fake.abandoned.lock().is_empty());
        // A prefix of the secret is not the secret.
        let prefix = PeerClient::new(&addr, &SECRET[..SECRET.len() - 1]).unwrap();
        assert_eq!(prefix.probe(1, TIMEOUT).await, Err(PeerError::Auth));
    }

    #[tokio::test]
    async fn a_missing_secret_is_an_authentication_failure() {
        let (addr, _) = serve().await;
        let mut raw = SolidPeerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let status = raw
            .probe(pb::ProbeRequest { from: 1 })
            .await
            .expect_err("no secret, no answer");
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(
            status.message(),
            "SOLID Grid Error 18511: authentication between nodes failed"
        );
        assert_eq!(PeerError::from(status), PeerError::Auth);
    }

    #[tokio::test]
    async fn a_malformed_request_is_invalid_argument() {
        let (addr, _) = serve().await;
        let mut raw = SolidPeerClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let mut request = Request::new(pb::VoteRequest {
            term: 1,
            candidate: 0,
            ..Default::default()
        });
        request
            .metadata_mut()
            .insert(SECRET_METADATA_KEY, SECRET.parse().unwrap());
        let status = raw.vote(request).await.expect_err("candidate 0");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(matches!(PeerError::from(status), PeerError::Malformed(_)));
    }

    #[tokio::test]
    async fn handler_refusals_keep_their_codes() {
        let (addr, _) = serve().await;
        let client = PeerClient::new(&addr, SECRET).unwrap();
        assert_eq!(
            client.message(vote(REFUSE_TERM), TIMEOUT).await,
            Err(PeerError::Refused(SolidError::grid(
                code::CHANGE_IN_PROGRESS,
                "busy: vote from node 2"
            )))
        );
        let start = GridStart {
            grid: "refuse".into(),
            node_id: 2,
            leader_id: 1,
            leader_term: 4,
            snapshot: Vec::new(),
        };
        assert_eq!(
            client.grid_start(start, TIMEOUT).await,
            Err(PeerError::Refused(SolidError::grid(
                code::NODE_HAS_DATA,
                "node n2 already has a database"
            )))
        );
        // A long refusal is cut short, not lost with its code.
        match client.message(vote(LONG_REFUSAL_TERM), TIMEOUT).await {
            Err(PeerError::Refused(e)) => {
                assert_eq!((e.code, e.class), (code::ROLLED_BACK, ErrorClass::Grid));
                assert!(e.message.len() <= MAX_ERROR_MESSAGE_BYTES);
                assert!(e.message.starts_with("éé"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
        let err = client.abandon(1, "g", 99, TIMEOUT).await.unwrap_err();
        assert_eq!(err.to_solid("abandon").code, code::UNKNOWN_NODE);
        assert_eq!(
            err.to_solid("abandon").to_string(),
            "SOLID Grid Error 18507: node 99 was never added"
        );
    }

    /// A port that nothing listens on.
    async fn dead_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        addr
    }

    async fn assert_unreachable_within<T: fmt::Debug>(
        timeout: Duration,
        call: impl Future<Output = Result<T, PeerError>>,
    ) {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed();
        assert!(
            matches!(result, Err(PeerError::Unreachable(_))),
            "{result:?}"
        );
        assert!(
            took < timeout + Duration::from_secs(1),
            "took {took:?} with a {timeout:?} timeout"
        );
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_reported_within_the_timeout() {
        let timeout = Duration::from_millis(500);
        let client = PeerClient::new(&dead_port().await, SECRET).unwrap();
        assert_unreachable_within(timeout, client.message(vote(1), timeout)).await;
        // The lazily connected channel tries again on the next call.
        assert_unreachable_within(timeout, client.probe(1, timeout)).await;
        let err = client.probe(1, timeout).await.unwrap_err();
        assert_eq!(err.to_solid("ADD NODE n2").code, code::NODE_UNREACHABLE);
    }

    #[tokio::test]
    async fn a_silent_peer_is_reported_within_the_timeout() {
        // Accepts TCP connections (the kernel does, from the backlog) but never speaks HTTP/2.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let timeout = Duration::from_millis(500);
        let client = PeerClient::new(&addr, SECRET).unwrap();
        assert_unreachable_within(timeout, client.message(vote(1), timeout)).await;
        // A handler that never answers.
        let (addr, _) = serve().await;
        let client = PeerClient::new(&addr, SECRET).unwrap();
        assert_unreachable_within(timeout, client.message(vote(HANG_TERM), timeout)).await;
        drop(silent);
    }

    #[tokio::test]
    async fn a_grid_start_carries_a_large_snapshot() {
        let (addr, fake) = serve().await;
        let client = PeerClient::new(&addr, SECRET).unwrap();
        let snapshot: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let start = GridStart {
            grid: "g".into(),
            node_id: 2,
            leader_id: 1,
            leader_term: 4,
            snapshot,
        };
        client
            .grid_start(start.clone(), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(*fake.started.lock(), vec![start]);
    }

    #[tokio::test]
    async fn an_invalid_address_is_refused_at_construction() {
        assert!(matches!(
            PeerClient::new("bad host:1", SECRET),
            Err(PeerError::Unreachable(_))
        ));
        assert!(matches!(
            PeerClient::new("127.0.0.1:1", "bad\nsecret"),
            Err(PeerError::Malformed(_))
        ));
    }
}
