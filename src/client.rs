//! The client library: connect strings, a gRPC session with a node, and the conversions
//! between protobuf messages and domain types that the server shares.
//!
//! A [`ConnectString`] follows solidDB: `tcp [host] port` for one node, or
//! `grid tcp h1 p1, tcp h2 p2, …` for a seed list (design §2, §7.4). A [`Client`] talks to
//! one node (given a seed list, the first that answers); [`Client::topology`] returns the
//! node's view of its grid ([`GridTopology`]). Routing statements to the leader and
//! following leader changes is the grid client's job (`crate::grid_client`).
//!
//! A call that fails while its channel (re)connects never left this process, and is a
//! [`ClientError::Connect`]; a connection that fails after a statement was sent leaves its
//! outcome unknown and is a [`ClientError::Lost`].
//!
//! A [`Client`] owns a tonic `Channel` and, after [`Client::login`], a session token.
//! [`Client::execute`] reads the reply stream of one statement (an optional `Header`, zero
//! or more `RowBatch`, then exactly one `Done` or `Error`) and checks that the server kept to
//! that protocol. A stream that ends without its `Done` or `Error` means the statement's
//! outcome is unknown, and the error says so. Passwords are never logged.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tonic::transport::Channel;

use crate::error::{ErrorClass, SolidError};
use crate::pb;
use crate::pb::solid_client_client::SolidClientClient;
use crate::sql::value::Value;
pub use crate::tls::ClientTls;

/// Bound on establishing the connection to one node (TCP connect plus the HTTP/2
/// handshake). A node that does not answer within it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 keepalive ping interval while a call is in flight. Without keepalive a channel
/// never notices a silently dead server (ecosystem §10.5), and a long statement would hang.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long an unanswered keepalive ping may stay unanswered before the connection is
/// declared dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on the short calls (status, login, logout). `Execute` has none: a grid statement
/// such as `ALTER GRID … ADD NODE` may legitimately run for minutes, and keepalive detects
/// a dead server instead.
pub const SHORT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest reply message accepted. A `VARCHAR` value may hold 2^20 characters of up to four
/// bytes each, so tonic's 4 MiB default could refuse a single legal row.
pub const MAX_REPLY_MESSAGE_BYTES: usize = 32 << 20;

/// One node's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// The gRPC URI, `http://host:port` (IPv6 literals in brackets).
    pub fn uri(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    /// The gRPC URI for a TLS connection, `https://host:port`.
    pub fn tls_uri(&self) -> String {
        format!("https{}", &self.uri()["http".len()..])
    }
}

impl Endpoint {
    /// Parses a member address as the grid reports it, `host:port` (`[v6]:port` or
    /// `v6:port` for IPv6 literals).
    pub fn from_address(address: &str) -> Result<Endpoint, String> {
        let bad = || format!("bad node address \"{address}\": expected host:port");
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(bad)?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
        })
    }
}

/// Prints the connect-string form, `tcp host port`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp {} {}", self.host, self.port)
    }
}

/// A parsed connect string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectString {
    /// `tcp [host] port`: one node.
    Tcp(Endpoint),
    /// `grid tcp h1 p1, tcp h2 p2, …`: a seed list of grid nodes (never empty).
    Grid(Vec<Endpoint>),
}

/// The host used when a connect string names only a port.
pub const DEFAULT_HOST: &str = "localhost";

const EXPECTED_FORMS: &str =
    "expected \"tcp [host] port\" or \"grid tcp host port, tcp host port, ...\"";

impl ConnectString {
    /// Parses `tcp [host] port` or `grid tcp h1 p1, tcp h2 p2, …`. Keywords are
    /// case-insensitive; the error text names the offending part and the accepted forms.
    pub fn parse(s: &str) -> Result<ConnectString, String> {
        let text = s.trim();
        let (first, rest) = split_first_word(text);
        if first.eq_ignore_ascii_case("tcp") {
            parse_tcp(text).map(ConnectString::Tcp)
        } else if first.eq_ignore_ascii_case("grid") {
            if rest.is_empty() {
                return Err(format!(
                    "bad connect string \"{text}\": a grid connect string lists at least one \
                     node, {EXPECTED_FORMS}"
                ));
            }
            let seeds = rest
                .split(',')
                .map(|part| {
                    let part = part.trim();
                    if part.is_empty() {
                        Err(format!(
                            "bad connect string \"{text}\": empty entry in the seed list, \
                             {EXPECTED_FORMS}"
                        ))
                    } else {
                        parse_tcp(part)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ConnectString::Grid(seeds))
        } else if text.is_empty() {
            Err(format!("empty connect string: {EXPECTED_FORMS}"))
        } else {
            Err(format!("bad connect string \"{text}\": {EXPECTED_FORMS}"))
        }
    }

    /// The endpoints to try, in order: one for `tcp`, the seed list for `grid`.
    pub fn endpoints(&self) -> &[Endpoint] {
        match self {
            ConnectString::Tcp(e) => std::slice::from_ref(e),
            ConnectString::Grid(seeds) => seeds,
        }
    }
}

/// Prints the canonical connect string (host always present, single spaces).
impl fmt::Display for ConnectString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectString::Tcp(e) => write!(f, "{e}"),
            ConnectString::Grid(seeds) => {
                f.write_str("grid ")?;
                for (i, e) in seeds.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

fn split_first_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Parses one `tcp [host] port` entry.
fn parse_tcp(entry: &str) -> Result<Endpoint, String> {
    let words: Vec<&str> = entry.split_whitespace().collect();
    let (host, port) = match words.as_slice() {
        [kw, port] if kw.eq_ignore_ascii_case("tcp") => (DEFAULT_HOST, *port),
        [kw, host, port] if kw.eq_ignore_ascii_case("tcp") => (*host, *port),
        _ => return Err(format!("bad connect string \"{entry}\": {EXPECTED_FORMS}")),
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(format!(
                "bad port \"{port}\" in connect string \"{entry}\": a port is a number from 1 \
                 to 65535"
            ));
        }
    };
    let host_ok = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !host_ok {
        return Err(format!(
            "bad host \"{host}\" in connect string \"{entry}\": a host is a name or an IP address"
        ));
    }
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

/// What can go wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered the statement with a user-facing error.
    #[error(transparent)]
    Solid(SolidError),
    /// No node of the connect string (first field) could be reached; the second field
    /// says why.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The connection failed or the server broke the protocol after connecting.
    #[error("{0}")]
    Transport(String),
    /// The connection failed after the statement was sent: it may or may not have taken
    /// effect. Never retried for a statement that writes.
    #[error("{0}")]
    Lost(String),
}

impl From<SolidError> for ClientError {
    fn from(e: SolidError) -> Self {
        ClientError::Solid(e)
    }
}

/// The collected reply to one statement.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Column name and SQL type text (e.g. `VARCHAR(20)`); empty for statements that are
    /// not queries.
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Value>>,
    /// Rows inserted, updated or deleted (0 for DDL and queries).
    pub rows_affected: u64,
    /// The server's summary, e.g. `Command completed successfully, 3 rows affected.`
    pub message: String,
}

/// One member of a grid as a node reported it ([`Client::topology`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridMember {
    pub id: u64,
    pub name: String,
    /// `host:port`: where peers, and clients, reach the member.
    pub address: String,
    /// Membership state, e.g. `MEMBER_ONLINE`.
    pub state: String,
    /// `LEADER`, `FOLLOWER`, `LEARNER` or `NONE`.
    pub role: String,
}

/// A node's view of its grid ([`Client::topology`]). A standalone node reports an empty
/// grid: no name, term 0, no members.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GridTopology {
    pub grid: String,
    /// The reporting node's term.
    pub term: u64,
    /// Grid-log index of the last membership change the reporting node applied.
    pub config_index: u64,
    /// The leader as the reporting node knows it; `None` while there is none (election).
    pub leader_id: Option<u64>,
    pub members: Vec<GridMember>,
    /// The reporting node's own id; `None` when it is not a grid member.
    pub node_id: Option<u64>,
}

impl GridTopology {
    /// Whether the reporting node is in a grid at all.
    pub fn is_grid(&self) -> bool {
        !self.members.is_empty()
    }

    pub fn member(&self, id: u64) -> Option<&GridMember> {
        self.members.iter().find(|m| m.id == id)
    }

    /// The leader, when the reporting node knows one and lists it.
    pub fn leader(&self) -> Option<&GridMember> {
        self.leader_id.and_then(|id| self.member(id))
    }

    /// The member with this address, if any.
    pub fn member_at(&self, endpoint: &Endpoint) -> Option<&GridMember> {
        self.members
            .iter()
            .find(|m| Endpoint::from_address(&m.address).is_ok_and(|e| &e == endpoint))
    }
}

impl From<pb::GridTopology> for GridTopology {
    fn from(t: pb::GridTopology) -> Self {
        let nonzero = |id: u64| (id != 0).then_some(id);
        GridTopology {
            grid: t.grid,
            term: t.term,
            config_index: t.config_index,
            leader_id: nonzero(t.leader_id),
            members: t
                .members
                .into_iter()
                .map(|m| GridMember {
                    id: m.id,
                    name: m.name,
                    address: m.address,
                    state: m.state,
                    role: m.role,
                })
                .collect(),
            node_id: nonzero(t.node_id),
        }
    }
}

/// A connection to one node, and a session once logged in.
pub struct Client {
    rpc: SolidClientClient<Channel>,
    endpoint: Endpoint,
    session: Option<String>,
    /// Connected over TLS without a client certificate: a connection the node closes right
    /// away most likely wanted one (TLS 1.3 reports that refusal only at the first call).
    tls_without_certificate: bool,
    /// Connected in plain text: a TLS node answers the first call with bytes that are not
    /// HTTP/2, or closes the connection.
    plain_text: bool,
    /// Statements say they come from a grid connection (design §7.4): the node forwards
    /// keyed statements to their partition's primary instead of answering 13630.
    grid_connection: bool,
}

/// Shows the endpoint and whether a session is open, never the session token.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("logged_in", &self.session.is_some())
            .finish()
    }
}

impl Client {
    /// Connects to the node of a `tcp` connect string, or to the first seed of a `grid`
    /// connect string that answers within [`CONNECT_TIMEOUT`].
    pub async fn connect(cs: &ConnectString) -> Result<Client, ClientError> {
        Self::connect_with_tls(cs, None).await
    }

    /// Like [`Client::connect`]; with `tls`, over TLS (`https://host:port`): the node's
    /// certificate must be signed by the settings' CA and name the host of the connect
    /// string, and the settings' client certificate (if any) is presented to the node. A
    /// node that requires a client certificate refuses a client without one; the refusal
    /// may only show at the first call (TLS 1.3 checks the client's certificate after the
    /// client considers the handshake done).
    pub async fn connect_with_tls(
        cs: &ConnectString,
        tls: Option<&ClientTls>,
    ) -> Result<Client, ClientError> {
        let mut failures = Vec::new();
        for endpoint in cs.endpoints() {
            match Self::connect_endpoint(endpoint, tls).await {
                Ok(client) => return Ok(client),
                Err(why) => failures.push((endpoint, why)),
            }
        }
        let detail = match (cs, failures.as_slice()) {
            (ConnectString::Tcp(_), [(_, why)]) => why.clone(),
            _ => failures
                .iter()
                .map(|(e, why)| format!("{e}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        Err(ClientError::Connect(cs.to_string(), detail))
    }

    /// Connects to one node; the error says why not (the caller names the node).
    pub async fn connect_endpoint(
        endpoint: &Endpoint,
        tls: Option<&ClientTls>,
    ) -> Result<Client, String> {
        match connect_channel(endpoint, tls).await {
            Ok(channel) => {
                tracing::debug!(%endpoint, "connected");
                let rpc = SolidClientClient::new(channel)
                    .max_decoding_message_size(MAX_REPLY_MESSAGE_BYTES);
                Ok(Client {
                    rpc,
                    endpoint: endpoint.clone(),
                    session: None,
                    tls_without_certificate: tls.is_some_and(|t| !t.has_identity()),
                    plain_text: tls.is_none(),
                    grid_connection: false,
                })
            }
            Err(why) => {
                tracing::debug!(%endpoint, %why, "connect failed");
                Err(why)
            }
        }
    }

    /// [`call_failed`] for the calls that open a conversation (status, login), with a hint
    /// when a TLS connection without a client certificate was closed, or a plain-text
    /// connection broke (a TLS node answers plain text with a handshake alert and closes).
    fn first_call_failed(&self, call: &str, s: &tonic::Status) -> ClientError {
        match call_failed(call, s) {
            ClientError::Transport(text)
                if self.tls_without_certificate && is_connection_failure(s.code()) =>
            {
                ClientError::Transport(format!(
                    "{text}; the node may require a client certificate ([Security] \
                     ClientCertificateRequired = yes; solsql --cert and --key)"
                ))
            }
            ClientError::Transport(text)
                if self.plain_text
                    && matches!(
                        s.code(),
                        tonic::Code::Internal
                            | tonic::Code::Unknown
                            | tonic::Code::Unavailable
                            | tonic::Code::Cancelled
                    ) =>
            {
                ClientError::Transport(format!(
                    "{text}; the node may serve TLS only ([Security] Certificate; solsql --ca)"
                ))
            }
            other => other,
        }
    }

    /// The node this client is connected to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether [`Client::login`] succeeded and no logout followed.
    /// Marks this connection as part of a grid connection: keyed statements for partitions
    /// whose primary is elsewhere are forwarded by the node (design §7.4).
    pub fn set_grid_connection(&mut self, on: bool) {
        self.grid_connection = on;
    }

    pub fn is_logged_in(&self) -> bool {
        self.session.is_some()
    }

    /// The node's unauthenticated status probe.
    pub async fn status(&mut self) -> Result<pb::StatusReply, ClientError> {
        let reply = self
            .rpc
            .status(short_call(pb::StatusRequest {}))
            .await
            .map_err(|s| self.first_call_failed("status", &s))?;
        Ok(reply.into_inner())
    }

    /// Logs in; the session token is kept for the following statements.
    pub async fn login(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        tracing::debug!(user, endpoint = %self.endpoint, "logging in");
        let request = pb::LoginRequest {
            user: user.to_string(),
            password: password.to_string(),
        };
        let reply = self
            .rpc
            .login(short_call(request))
            .await
            .map_err(|s| self.unsent_or(&s, |s| self.first_call_failed("login", s)))?
            .into_inner();
        match reply.result {
            Some(pb::login_reply::Result::Session(token)) => {
                self.session = Some(token);
                Ok(())
            }
            Some(pb::login_reply::Result::Error(e)) => Err(ClientError::Solid(error_from_pb(e))),
            None => Err(protocol_violation(
                "the login reply has neither session nor error",
            )),
        }
    }

    /// The grid as the node sees it: members, roles, the leader (needs a session).
    pub async fn topology(&mut self) -> Result<GridTopology, ClientError> {
        let request = pb::TopologyRequest {
            session: self.session.clone().unwrap_or_default(),
        };
        let reply = self
            .rpc
            .topology(short_call(request))
            .await
            .map_err(|s| self.unsent_or(&s, |s| call_failed("topology", s)))?
            .into_inner();
        match reply.result {
            Some(pb::topology_reply::Result::Topology(t)) => Ok(t.into()),
            Some(pb::topology_reply::Result::Error(e)) => Err(ClientError::Solid(error_from_pb(e))),
            None => Err(protocol_violation(
                "the topology reply has neither topology nor error",
            )),
        }
    }

    /// A call's failure: [`ClientError::Connect`] when the channel could not (re)connect to
    /// the node, so the request never left this process; `otherwise` for the rest.
    fn unsent_or(
        &self,
        s: &tonic::Status,
        otherwise: impl FnOnce(&tonic::Status) -> ClientError,
    ) -> ClientError {
        if is_connect_failure(s) {
            ClientError::Connect(self.endpoint.to_string(), describe_status(s))
        } else {
            otherwise(s)
        }
    }

    /// Runs one statement (without its `;`) and collects the whole reply.
    pub async fn execute(&mut self, statement: &str) -> Result<QueryResult, ClientError> {
        let mut rows = Vec::new();
        let (columns, rows_affected, message) = self
            .execute_inner(statement, |_, batch| rows.extend(batch))
            .await?;
        Ok(QueryResult {
            columns,
            rows,
            rows_affected,
            message,
        })
    }

    /// Runs one statement and hands each batch of rows to `on_rows` as it arrives, with the
    /// result's columns, so a large result never sits in memory as a whole. Returns the
    /// number of rows affected and the server's summary message.
    pub async fn execute_streaming(
        &mut self,
        statement: &str,
        on_rows: impl FnMut(&[(String, String)], Vec<Vec<Value>>),
    ) -> Result<(u64, String), ClientError> {
        let (_, rows_affected, message) = self.execute_inner(statement, on_rows).await?;
        Ok((rows_affected, message))
    }

    /// Ends the session. Without a session this does nothing.
    pub async fn logout(&mut self) -> Result<(), ClientError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.rpc
            .logout(short_call(pb::LogoutRequest { session }))
            .await
            .map_err(|s| call_failed("logout", &s))?;
        Ok(())
    }

    /// Drives the reply stream of one statement; returns the columns, rows affected and
    /// message.
    async fn execute_inner(
        &mut self,
        statement: &str,
        mut on_rows: impl FnMut(&[(String, String)], Vec<Vec<Value>>),
    ) -> Result<(Vec<(String, String)>, u64, String), ClientError> {
        use pb::execute_reply::Part;

        let request = pb::ExecuteRequest {
            session: self.session.clone().unwrap_or_default(),
            statement: statement.to_string(),
            grid_connection: self.grid_connection,
        };
        let mut stream = match self.rpc.execute(request).await {
            Ok(reply) => reply.into_inner(),
            Err(s) => return Err(self.unsent_or(&s, statement_failed)),
        };
        let mut columns: Option<Vec<(String, String)>> = None;
        let mut saw_rows = false;
        loop {
            let reply = match stream.message().await {
                Ok(Some(reply)) => reply,
                Ok(None) => {
                    return Err(ClientError::Lost(
                        "connection lost: outcome unknown (the reply ended before the \
                         statement finished)"
                            .to_string(),
                    ));
                }
                Err(s) => return Err(statement_failed(&s)),
            };
            match reply.part {
                Some(Part::Header(h)) => {
                    if columns.is_some() || saw_rows {
                        return Err(protocol_violation("a header after the first reply part"));
                    }
                    columns = Some(
                        h.columns
                            .into_iter()
                            .map(|c| (c.name, c.sql_type))
                            .collect(),
                    );
                }
                Some(Part::Rows(batch)) => {
                    let Some(cols) = columns.as_deref() else {
                        return Err(protocol_violation("rows without a header"));
                    };
                    let mut rows = Vec::with_capacity(batch.rows.len());
                    for row in batch.rows {
                        if row.values.len() != cols.len() {
                            return Err(protocol_violation(&format!(
                                "a row of {} values for {} columns",
                                row.values.len(),
                                cols.len()
                            )));
                        }
                        rows.push(row.values.into_iter().map(value_into_domain).collect());
                    }
                    saw_rows = true;
                    on_rows(cols, rows);
                }
                Some(Part::Done(done)) => {
                    return Ok((
                        columns.unwrap_or_default(),
                        done.rows_affected,
                        done.message,
                    ));
                }
                Some(Part::Error(e)) => return Err(ClientError::Solid(error_from_pb(e))),
                None => return Err(protocol_violation("an empty reply part")),
            }
        }
    }
}

/// Opens a channel to one endpoint, or says why not.
async fn connect_channel(endpoint: &Endpoint, tls: Option<&ClientTls>) -> Result<Channel, String> {
    let mut builder = match tls {
        Some(tls) => tonic::transport::Endpoint::from_shared(endpoint.tls_uri())
            .map_err(|e| error_chain(&e))?
            .tls_config(tls.tls_config())
            .map_err(|e| error_chain(&e))?,
        None => {
            tonic::transport::Endpoint::from_shared(endpoint.uri()).map_err(|e| error_chain(&e))?
        }
    };
    builder = builder
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(false)
        .tcp_nodelay(true);
    // The connect timeout covers the TCP connect only; this one covers the handshake too.
    match tokio::time::timeout(CONNECT_TIMEOUT, builder.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

fn short_call<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(SHORT_CALL_TIMEOUT);
    request
}

/// An error and its sources as one line, skipping a source whose text repeats its parent's.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// A gRPC status in one line: its code name, message and underlying cause.
fn describe_status(s: &tonic::Status) -> String {
    let mut text = format!("{:?}", s.code());
    if !s.message().is_empty() {
        text.push_str(": ");
        text.push_str(s.message());
    }
    if let Some(cause) = s.source() {
        let cause = error_chain(cause);
        if !s.message().contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Whether a call failed while its channel was (re)connecting to the node: tonic reports
/// the connector's [`tonic::ConnectError`] in the status's source chain. Such a request was
/// never sent, so it is safe to send again elsewhere (the grid client relies on this).
fn is_connect_failure(s: &tonic::Status) -> bool {
    let mut next: Option<&(dyn StdError + 'static)> = s.source();
    while let Some(e) = next {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether a status means the call may have reached the server before the connection
/// failed, rather than the server rejecting it.
fn is_connection_failure(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Aborted
    )
}

/// Maps the failure of a short call (status, login, logout).
fn call_failed(call: &str, s: &tonic::Status) -> ClientError {
    if is_connection_failure(s.code()) {
        ClientError::Transport(format!(
            "connection lost during {call} ({})",
            describe_status(s)
        ))
    } else {
        ClientError::Transport(format!(
            "the server refused {call} ({})",
            describe_status(s)
        ))
    }
}

/// Maps the failure of an `Execute` call: a broken connection leaves the outcome unknown.
fn statement_failed(s: &tonic::Status) -> ClientError {
    if is_connection_failure(s.code()) {
        ClientError::Lost(format!(
            "connection lost: outcome unknown ({})",
            describe_status(s)
        ))
    } else {
        ClientError::Transport(format!(
            "the server refused the statement ({})",
            describe_status(s)
        ))
    }
}

fn protocol_violation(what: &str) -> ClientError {
    ClientError::Transport(format!("protocol violation by the server: {what}"))
}

/// Converts a wire value to a SQL value; an unset value is NULL.
pub fn value_from_pb(v: &pb::Value) -> Value {
    use pb::value::Value as V;
    match &v.value {
        None => Value::Null,
        Some(V::Int(i)) => Value::Int(*i),
        Some(V::Double(d)) => Value::Double(*d),
        Some(V::Text(s)) => Value::Text(s.clone()),
        Some(V::Boolean(b)) => Value::Bool(*b),
        Some(V::TimestampMicros(t)) => Value::Timestamp(*t),
    }
}

/// [`value_from_pb`] for an owned value, without copying text.
fn value_into_domain(v: pb::Value) -> Value {
    match v.value {
        Some(pb::value::Value::Text(s)) => Value::Text(s),
        _ => value_from_pb(&v),
    }
}

/// Converts a SQL value to its wire form; NULL is an unset value.
pub fn value_to_pb(v: &Value) -> pb::Value {
    use pb::value::Value as V;
    let value = match v {
        Value::Null => None,
        Value::Int(i) => Some(V::Int(*i)),
        Value::Double(d) => Some(V::Double(*d)),
        Value::Text(s) => Some(V::Text(s.clone())),
        Value::Bool(b) => Some(V::Boolean(*b)),
        Value::Timestamp(t) => Some(V::TimestampMicros(*t)),
    };
    pb::Value { value }
}

/// Converts a wire error to a [`SolidError`]. An unknown class becomes
/// [`ErrorClass::Server`]; the code and message are kept as sent.
pub fn error_from_pb(e: pb::SolidError) -> SolidError {
    let class = ErrorClass::parse(&e.class).unwrap_or(ErrorClass::Server);
    SolidError {
        code: e.code,
        class,
        message: e.message,
    }
}

/// Converts a [`SolidError`] to its wire form.
pub fn error_to_pb(e: &SolidError) -> pb::SolidError {
    pb::SolidError {
        code: e.code,
        class: e.class.as_str().to_string(),
        message: e.message.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::code;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn tcp_connect_strings_parse() {
        assert_eq!(
            ConnectString::parse("tcp 1315").unwrap(),
            ConnectString::Tcp(ep("localhost", 1315))
        );
        assert_eq!(
            ConnectString::parse("  TCP   db1.example.com\t2315 ").unwrap(),
            ConnectString::Tcp(ep("db1.example.com", 2315))
        );
        assert_eq!(
            ConnectString::parse("Tcp 10.0.0.7 1").unwrap(),
            ConnectString::Tcp(ep("10.0.0.7", 1))
        );
        assert_eq!(
            ConnectString::parse("tcp ::1 1315").unwrap(),
            ConnectString::Tcp(ep("::1", 1315))
        );
    }

    #[test]
    fn grid_connect_strings_parse() {
        let cs = ConnectString::parse("grid tcp h1 1315, TCP h2 1316,tcp 1317").unwrap();
        assert_eq!(
            cs,
            ConnectString::Grid(vec![ep("h1", 1315), ep("h2", 1316), ep("localhost", 1317)])
        );
        assert_eq!(cs.endpoints().len(), 3);
        assert_eq!(
            cs.to_string(),
            "grid tcp h1 1315, tcp h2 1316, tcp localhost 1317"
        );
        assert_eq!(
            ConnectString::parse("GRID tcp h1 1").unwrap(),
            ConnectString::Grid(vec![ep("h1", 1)])
        );
    }

    #[test]
    fn bad_connect_strings_are_refused_with_the_reason() {
        let cases = [
            ("", "empty connect string"),
            ("   ", "empty connect string"),
            ("1315", "expected \"tcp [host] port\""),
            ("udp h 1315", "expected \"tcp [host] port\""),
            ("tcp", "expected \"tcp [host] port\""),
            ("tcp h 1 2", "expected \"tcp [host] port\""),
            ("tcp h port", "bad port \"port\""),
            ("tcp h 0", "bad port \"0\""),
            ("tcp h 65536", "bad port \"65536\""),
            ("tcp h -1", "bad port \"-1\""),
            ("tcp h/x 1315", "bad host \"h/x\""),
            ("grid", "at least one node"),
            ("grid tcp h1 1,", "empty entry"),
            ("grid tcp h1 1,, tcp h2 2", "empty entry"),
            ("grid h1 1", "expected \"tcp [host] port\""),
            ("grid tcp h1 1 tcp h2 2", "expected \"tcp [host] port\""),
        ];
        for (input, expected) in cases {
            let err = ConnectString::parse(input).unwrap_err();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn endpoint_uri_and_display() {
        assert_eq!(ep("h", 1315).uri(), "http://h:1315");
        assert_eq!(ep("::1", 1315).uri(), "http://[::1]:1315");
        assert_eq!(ep("[::1]", 1315).uri(), "http://[::1]:1315");
        assert_eq!(ep("h", 1315).to_string(), "tcp h 1315");
        assert_eq!(
            ConnectString::parse("tcp 9").unwrap().to_string(),
            "tcp localhost 9"
        );
    }

    #[test]
    fn values_round_trip_through_protobuf() {
        for v in [
            Value::Null,
            Value::Int(-7),
            Value::Int(i64::MAX),
            Value::Double(2.5),
            Value::Text("it's".into()),
            Value::Text(String::new()),
            Value::Bool(true),
            Value::Bool(false),
            Value::Timestamp(-1),
        ] {
            assert_eq!(value_from_pb(&value_to_pb(&v)), v);
            assert_eq!(value_into_domain(value_to_pb(&v)), v);
        }
        assert_eq!(value_to_pb(&Value::Null), pb::Value { value: None });
    }

    #[test]
    fn errors_round_trip_and_unknown_classes_become_server() {
        let e = SolidError::grid(code::NOT_LEADER, "run it on the leader n1");
        assert_eq!(error_from_pb(error_to_pb(&e)), e);
        let odd = error_from_pb(pb::SolidError {
            code: 99_999,
            class: "Martian".into(),
            message: "?".into(),
        });
        assert_eq!(odd.class, ErrorClass::Server);
        assert_eq!(odd.code, 99_999);
        assert_eq!(odd.message, "?");
    }

    /// A tiny in-test server with canned replies, to exercise the stream handling and the
    /// error mapping without the real node.
    pub(crate) mod fake {
        use std::pin::Pin;
        use std::sync::{Arc, Mutex};

        use tokio_stream::Stream;
        use tokio_stream::wrappers::TcpListenerStream;
        use tonic::{Request, Response, Status};

        use crate::pb;
        use crate::pb::execute_reply::Part;
        use crate::pb::solid_client_server::{SolidClient, SolidClientServer};

        pub const SESSION: &str = "s-1";

        #[derive(Default)]
        pub struct Fake {
            /// Session tokens received by logout.
            pub logouts: Arc<Mutex<Vec<String>>>,
        }

        fn part(p: Part) -> Result<pb::ExecuteReply, Status> {
            Ok(pb::ExecuteReply { part: Some(p) })
        }

        fn header(cols: &[(&str, &str)]) -> Part {
            Part::Header(pb::Header {
                columns: cols
                    .iter()
                    .map(|(n, t)| pb::Column {
                        name: n.to_string(),
                        sql_type: t.to_string(),
                    })
                    .collect(),
            })
        }

        fn rows(rows: Vec<Vec<pb::value::Value>>) -> Part {
            Part::Rows(pb::RowBatch {
                rows: rows
                    .into_iter()
                    .map(|r| pb::Row {
                        values: r
                            .into_iter()
                            .map(|v| pb::Value { value: Some(v) })
                            .collect(),
                    })
                    .collect(),
            })
        }

        fn error(code: u32, class: &str, message: &str) -> pb::SolidError {
            pb::SolidError {
                code,
                class: class.into(),
                message: message.into(),
            }
        }

        #[tonic::async_trait]
        impl SolidClient for Fake {
            async fn login(
                &self,
                request: Request<pb::LoginRequest>,
            ) -> Result<Response<pb::LoginReply>, Status> {
                use pb::login_reply::Result as R;
                let r = request.into_inner();
                let result = if r.user == "admin" && r.password == "secret" {
                    R::Session(SESSION.into())
                } else {
                    R::Error(error(28000, "Auth", "login failed"))
                };
                Ok(Response::new(pb::LoginReply {
                    result: Some(result),
                }))
            }

            async fn logout(
                &self,
                request: Request<pb::LogoutRequest>,
            ) -> Result<Response<pb::LogoutReply>, Status> {
                self.logouts
                    .lock()
                    .unwrap()
                    .push(request.into_inner().session);
                Ok(Response::new(pb::LogoutReply {}))
            }

            type ExecuteStream =
                Pin<Box<dyn Stream<Item = Result<pb::ExecuteReply, Status>> + Send + 'static>>;

            async fn execute(
                &self,
                request: Request<pb::ExecuteRequest>,
            ) -> Result<Response<Self::ExecuteStream>, Status> {
                use pb::value::Value as V;
                let r = request.into_inner();
                let parts = if r.session != SESSION {
                    vec![part(Part::Error(error(28004, "Auth", "not logged in")))]
                } else {
                    match r.statement.as_str() {
                        "SELECT * FROM T" => vec![
                            part(header(&[("ID", "INTEGER"), ("NAME", "VARCHAR(10)")])),
                            part(rows(vec![vec![V::Int(1), V::Text("one".into())]])),
                            part(Part::Rows(pb::RowBatch {
                                rows: vec![pb::Row {
                                    values: vec![
                                        pb::Value {
                                            value: Some(V::Int(2)),
                                        },
                                        pb::Value { value: None },
                                    ],
                                }],
                            })),
                            part(Part::Done(pb::Done {
                                rows_affected: 0,
                                message: String::new(),
                            })),
                        ],
                        "SELECT * FROM EMPTY" => vec![
                            part(header(&[("X", "BOOLEAN")])),
                            part(Part::Done(pb::Done::default())),
                        ],
                        "INSERT" => vec![part(Part::Done(pb::Done {
                            rows_affected: 3,
                            message: "Command completed successfully, 3 rows affected.".into(),
                        }))],
                        "FAIL" => vec![
                            part(header(&[("A", "INTEGER")])),
                            part(rows(vec![vec![V::Int(1)]])),
                            part(Part::Error(error(13011, "Table", "Table name T not found"))),
                        ],
                        "ODD CLASS" => vec![part(Part::Error(error(77_777, "Cosmic", "ray")))],
                        "TRUNCATED" => vec![
                            part(header(&[("A", "INTEGER")])),
                            part(rows(vec![vec![V::Int(1)]])),
                        ],
                        "ROWS FIRST" => vec![part(rows(vec![vec![V::Int(1)]]))],
                        "RAGGED" => vec![
                            part(header(&[("A", "INTEGER")])),
                            part(rows(vec![vec![V::Int(1), V::Int(2)]])),
                        ],
                        "STATUS ERROR" => vec![Err(Status::internal("boom"))],
                        "REFUSED" => return Err(Status::invalid_argument("statement too long")),
                        other => vec![part(Part::Error(error(
                            10001,
                            "Syntax",
                            &format!("unexpected {other}"),
                        )))],
                    }
                };
                Ok(Response::new(Box::pin(tokio_stream::iter(parts))))
            }

            async fn topology(
                &self,
                request: Request<pb::TopologyRequest>,
            ) -> Result<Response<pb::TopologyReply>, Status> {
                use pb::topology_reply::Result as R;
                let result = if request.into_inner().session == SESSION {
                    R::Topology(pb::GridTopology {
                        grid: "G".into(),
                        term: 3,
                        config_index: 7,
                        leader_id: 2,
                        members: vec![
                            pb::GridMember {
                                id: 1,
                                name: "n1".into(),
                                address: "127.0.0.1:1".into(),
                                state: "MEMBER_ONLINE".into(),
                                role: "FOLLOWER".into(),
                            },
                            pb::GridMember {
                                id: 2,
                                name: "n2".into(),
                                address: "[::1]:2".into(),
                                state: "MEMBER_ONLINE".into(),
                                role: "LEADER".into(),
                            },
                        ],
                        node_id: 1,
                    })
                } else {
                    R::Error(error(28004, "Auth", "not logged in"))
                };
                Ok(Response::new(pb::TopologyReply {
                    result: Some(result),
                }))
            }

            async fn status(
                &self,
                _request: Request<pb::StatusRequest>,
            ) -> Result<Response<pb::StatusReply>, Status> {
                Ok(Response::new(pb::StatusReply {
                    node_name: "n1".into(),
                    version: "0.1.0".into(),
                    mode: "gridnode".into(),
                    has_database: false,
                    grid_enabled: true,
                }))
            }
        }

        /// Like [`serve`], stopping (gracefully, so open connections are closed) when the
        /// sender fires; the handle finishes once the server is gone.
        pub async fn serve_stoppable(
            fake: Fake,
        ) -> (
            u16,
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        ) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let handle = tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(SolidClientServer::new(fake))
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                        let _ = rx.await;
                    })
                    .await;
            });
            (port, tx, handle)
        }

        /// Serves `fake` on 127.0.0.1 at an ephemeral port; returns the port.
        pub async fn serve(fake: Fake) -> u16 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(SolidClientServer::new(fake))
                    .serve_with_incoming(TcpListenerStream::new(listener)),
            );
            port
        }
    }

    async fn logged_in_client() -> Client {
        let port = fake::serve(fake::Fake::default()).await;
        let cs = ConnectString::Tcp(ep("127.0.0.1", port));
        let mut client = Client::connect(&cs).await.unwrap();
        client.login("admin", "secret").await.unwrap();
        client
    }

    /// A port on which nothing listens (bound, then released).
    async fn dead_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_query_collects_header_and_all_batches() {
        let mut client = logged_in_client().await;
        let r = client.execute("SELECT * FROM T").await.unwrap();
        assert_eq!(
            r.columns,
            vec![
                ("ID".to_string(), "INTEGER".to_string()),
                ("NAME".to_string(), "VARCHAR(10)".to_string())
            ]
        );
        assert_eq!(
            r.rows,
            vec![
                vec![Value::Int(1), Value::Text("one".into())],
                vec![Value::Int(2), Value::Null]
            ]
        );
        assert_eq!(r.rows_affected, 0);

        let r = client.execute("SELECT * FROM EMPTY").await.unwrap();
        assert_eq!(r.columns.len(), 1);
        assert!(r.rows.is_empty());
    }

    #[tokio::test]
    async fn a_statement_returns_rows_affected_and_message() {
        let mut client = logged_in_client().await;
        let r = client.execute("INSERT").await.unwrap();
        assert!(r.columns.is_empty());
        assert_eq!(r.rows_affected, 3);
        assert_eq!(
            r.message,
            "Command completed successfully, 3 rows affected."
        );
    }

    #[tokio::test]
    async fn streaming_hands_over_each_batch() {
        let mut client = logged_in_client().await;
        let mut batches = Vec::new();
        let (affected, _) = client
            .execute_streaming("SELECT * FROM T", |cols, rows| {
                assert_eq!(cols.len(), 2);
                batches.push(rows.len());
            })
            .await
            .unwrap();
        assert_eq!(affected, 0);
        assert_eq!(batches, vec![1, 1]);
    }

    #[tokio::test]
    async fn a_server_error_part_becomes_a_solid_error() {
        let mut client = logged_in_client().await;
        match client.execute("FAIL").await {
            Err(ClientError::Solid(e)) => {
                assert_eq!(e.code, code::TABLE_NOT_FOUND);
                assert_eq!(e.class, ErrorClass::Table);
                assert_eq!(
                    e.to_string(),
                    "SOLID Table Error 13011: Table name T not found"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        match client.execute("ODD CLASS").await {
            Err(ClientError::Solid(e)) => {
                assert_eq!((e.class, e.code), (ErrorClass::Server, 77_777));
            }
            other => panic!("unexpected {other:?}"),
        }
        // The session survives a failed statement.
        assert!(client.execute("INSERT").await.is_ok());
    }

    #[tokio::test]
    async fn broken_streams_are_transport_errors() {
        let mut client = logged_in_client().await;
        let expect = [
            ("TRUNCATED", "connection lost: outcome unknown"),
            (
                "ROWS FIRST",
                "protocol violation by the server: rows without a header",
            ),
            (
                "RAGGED",
                "protocol violation by the server: a row of 2 values for 1 columns",
            ),
            (
                "STATUS ERROR",
                "the server refused the statement (Internal: boom",
            ),
            (
                "REFUSED",
                "the server refused the statement (InvalidArgument: statement too long",
            ),
        ];
        for (statement, text) in expect {
            match client.execute(statement).await {
                Err(ClientError::Transport(t)) if statement != "TRUNCATED" => {
                    assert!(t.starts_with(text), "{statement}: {t}")
                }
                Err(ClientError::Lost(t)) if statement == "TRUNCATED" => {
                    assert!(t.starts_with(text), "{statement}: {t}")
                }
                other => panic!("{statement}: unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn login_failure_and_missing_session_are_auth_errors() {
        let port = fake::serve(fake::Fake::default()).await;
        let mut client = Client::connect(&ConnectString::Tcp(ep("127.0.0.1", port)))
            .await
            .unwrap();
        match client.execute("INSERT").await {
            Err(ClientError::Solid(e)) => assert_eq!(e.code, code::BAD_SESSION),
            other => panic!("unexpected {other:?}"),
        }
        match client.login("admin", "wrong").await {
            Err(ClientError::Solid(e)) => {
                assert_eq!((e.class, e.code), (ErrorClass::Auth, code::LOGIN_FAILED));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!client.is_logged_in());
    }

    #[tokio::test]
    async fn status_needs_no_login_and_logout_ends_the_session() {
        let fake = fake::Fake::default();
        let logouts = fake.logouts.clone();
        let port = fake::serve(fake).await;
        let mut client = Client::connect(&ConnectString::Tcp(ep("127.0.0.1", port)))
            .await
            .unwrap();
        let s = client.status().await.unwrap();
        assert_eq!((s.node_name.as_str(), s.mode.as_str()), ("n1", "gridnode"));
        assert!(s.grid_enabled && !s.has_database);

        client.login("admin", "secret").await.unwrap();
        assert!(client.is_logged_in());
        client.logout().await.unwrap();
        assert!(!client.is_logged_in());
        client.logout().await.unwrap();
        assert_eq!(*logouts.lock().unwrap(), vec![fake::SESSION.to_string()]);
    }

    #[tokio::test]
    async fn topology_is_converted_and_needs_a_session() {
        let port = fake::serve(fake::Fake::default()).await;
        let mut client = Client::connect(&ConnectString::Tcp(ep("127.0.0.1", port)))
            .await
            .unwrap();
        match client.topology().await {
            Err(ClientError::Solid(e)) => assert_eq!(e.code, code::BAD_SESSION),
            other => panic!("unexpected {other:?}"),
        }
        client.login("admin", "secret").await.unwrap();
        let t = client.topology().await.unwrap();
        assert_eq!((t.grid.as_str(), t.term, t.config_index), ("G", 3, 7));
        assert_eq!((t.leader_id, t.node_id), (Some(2), Some(1)));
        assert!(t.is_grid());
        let leader = t.leader().unwrap();
        assert_eq!(
            (leader.name.as_str(), leader.role.as_str()),
            ("n2", "LEADER")
        );
        assert_eq!(Endpoint::from_address(&leader.address), Ok(ep("::1", 2)));
        assert_eq!(t.member_at(&ep("127.0.0.1", 1)).map(|m| m.id), Some(1));
        assert!(
            GridTopology::from(pb::GridTopology::default())
                .leader()
                .is_none()
        );
    }

    #[test]
    fn member_addresses_parse() {
        assert_eq!(Endpoint::from_address("h1:1315"), Ok(ep("h1", 1315)));
        assert_eq!(Endpoint::from_address("[::1]:9"), Ok(ep("::1", 9)));
        assert_eq!(Endpoint::from_address("::1:9"), Ok(ep("::1", 9)));
        for bad in ["", "h1", "h1:", ":1315", "h1:0", "h1:70000", "h1:x"] {
            let e = Endpoint::from_address(bad).unwrap_err();
            assert!(e.contains("expected host:port"), "{bad}: {e}");
        }
    }

    /// A statement sent to a node that went away is refused at the (re)connect: the client
    /// knows it never left, so it is a connect error, not "outcome unknown".
    #[tokio::test]
    async fn a_statement_to_a_stopped_node_is_a_connect_error() {
        let (port, stop, server) = fake::serve_stoppable(fake::Fake::default()).await;
        let cs = ConnectString::Tcp(ep("127.0.0.1", port));
        let mut client = Client::connect(&cs).await.unwrap();
        client.login("admin", "secret").await.unwrap();
        assert!(client.execute("INSERT").await.is_ok());
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the fake server stops")
            .unwrap();
        match client.execute("INSERT").await {
            Err(ClientError::Connect(target, why)) => {
                assert_eq!(target, format!("tcp 127.0.0.1 {port}"));
                assert!(!why.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn connect_failure_names_the_connect_string() {
        let port = dead_port().await;
        let cs = ConnectString::Tcp(ep("127.0.0.1", port));
        match Client::connect(&cs).await {
            Err(ClientError::Connect(target, why)) => {
                assert_eq!(target, format!("tcp 127.0.0.1 {port}"));
                assert!(!why.is_empty());
            }
            Ok(_) => panic!("connected to a dead port"),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_grid_connect_string_uses_the_first_seed_that_answers() {
        let dead = dead_port().await;
        let live = fake::serve(fake::Fake::default()).await;
        let cs = ConnectString::Grid(vec![ep("127.0.0.1", dead), ep("127.0.0.1", live)]);
        let mut client = Client::connect(&cs).await.unwrap();
        assert_eq!(client.endpoint(), &ep("127.0.0.1", live));
        assert_eq!(client.status().await.unwrap().node_name, "n1");

        let all_dead = ConnectString::Grid(vec![ep("127.0.0.1", dead), ep("127.0.0.1", dead)]);
        match Client::connect(&all_dead).await {
            Err(ClientError::Connect(target, why)) => {
                assert!(target.starts_with("grid tcp 127.0.0.1"));
                assert_eq!(why.matches(&format!("tcp 127.0.0.1 {dead}: ")).count(), 2);
            }
            Ok(_) => panic!("connected to dead seeds"),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
}
