//! The grid client: one logical session with a whole grid (design §7.4).
//!
//! A [`GridClient`] starts from a seed list (`grid tcp h1 p1, tcp h2 p2, …`), logs in on the
//! first seed that answers and asks it for the grid's topology (the client service's
//! `Topology` RPC). From then on it routes each statement by what it does
//! ([`classify`]): statements that write — DDL, users, rows — and grid statements go to the
//! leader; reads stay on the node in use (the node that ran the last statement, so a read
//! after a write sees it). It keeps one connection per node, opened and logged in on first
//! use, with the credentials it was given.
//!
//! When the leader changes or a node dies, [`GridClient::execute`] refreshes the topology
//! from any node it knows (the seeds and every member it has learned) and tries again, with
//! a short back-off, for at most [`RETRY_BOUND`] — long enough for an election. Only
//! failures that prove the statement did not run are retried ([`retry_policy`]): the
//! connection could not be opened, the node answered 18503 (not the leader) or 18502 (no
//! leader) — the server refuses with those before doing anything (`node::NodeRuntime`,
//! `grid::core`) — or it lost the session (28004) or has no database (14501). A connection
//! that broke after a write was sent, and 18510, leave the outcome unknown: the error goes
//! back to the caller, who decides. A read is retried after a lost connection too. A
//! connection that sat idle is probed before a statement that must not be sent twice
//! ([`PROBE_WHEN_IDLE`]), so a node that died meanwhile is found before the statement
//! leaves.
//!
//! After every successful grid statement (`ALTER GRID … ADD NODE` and the like) the client
//! refreshes the topology, so the nodes it adds are known when the ones it started from die.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::{
    Client, ClientError, ClientTls, ConnectString, Endpoint, GridMember, GridTopology, QueryResult,
};
use crate::error::{SolidError, code};
use crate::pb;
use crate::sql::ast::Statement;
use crate::sql::parser::parse_statement;

/// How long one statement may be retried on other nodes. An election takes well under a
/// second with the default timeouts, and the leader's failure detection a few seconds; 15 s
/// covers both with room, while a grid that stays without a leader still gets a prompt
/// answer (the last error).
pub const RETRY_BOUND: Duration = Duration::from_secs(15);

/// The first pause before a retry; doubled after each one up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// The longest pause between two retries: an election is noticed within this.
pub const MAX_BACKOFF: Duration = Duration::from_millis(1000);

/// Most node addresses remembered (seeds plus learned members); a grid has far fewer, and
/// the bound keeps a long session with many membership changes from growing for ever.
pub const MAX_KNOWN_NODES: usize = 256;

/// Most connections kept open at once, one per node.
pub const MAX_OPEN_CONNECTIONS: usize = 64;

/// Bound on one logout at the end of a session: the server expires sessions anyway.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection idle this long is probed (the status RPC) before a statement that may not
/// be sent twice goes over it. A node that died while the connection was idle is then
/// found dead *before* the statement leaves — otherwise a single-threaded runtime can write
/// the statement into the dead socket before it sees the close, and the outcome would be
/// "unknown" for a statement that never reached a server. Statements in quick succession
/// skip the probe (its cost is one round trip).
pub const PROBE_WHEN_IDLE: Duration = Duration::from_millis(100);

/// A logged-in connection to one node.
struct NodeSession {
    client: Client,
    last_used: Instant,
}

/// Where a statement must run, and whether it may be sent twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementClass {
    /// Changes nothing (`SELECT`, the `SYS_` views, `ADMIN COMMAND 'grid nodeinfo'`,
    /// `'grid status'`, `'parameter grid'`, `'status'`, `'version'`): runs on the node in
    /// use, and is retried elsewhere even after a connection broke mid-reply.
    Read,
    /// Changes the database (DDL, users, rows), and anything that does not parse (the
    /// leader reports the error): runs on the leader, retried only when it surely did not
    /// run.
    Write,
    /// A grid statement (`CREATE`/`ALTER`/`DROP GRID`, `ADMIN COMMAND 'grid shutdown'`):
    /// like [`StatementClass::Write`], and the topology is refreshed after it succeeds.
    Grid,
    /// Acts on the node that runs it only (`ADMIN COMMAND 'makecp'`): runs on the node in
    /// use and is retried like a write.
    NodeLocal,
}

impl StatementClass {
    /// Whether the statement must run on the leader.
    pub fn needs_leader(self) -> bool {
        matches!(self, StatementClass::Write | StatementClass::Grid)
    }
}

/// Classifies one statement (without its `;`) with the SQL parser. A statement that does
/// not parse counts as a write, so it goes to the leader, which reports the syntax error.
pub fn classify(statement: &str) -> StatementClass {
    match parse_statement(statement) {
        Ok(Statement::Select(_)) => StatementClass::Read,
        Ok(Statement::AdminCommand(c)) => classify_admin_command(&c.command),
        Ok(Statement::CreateGrid(_) | Statement::DropGrid(_) | Statement::AlterGrid(_)) => {
            StatementClass::Grid
        }
        Ok(_) | Err(_) => StatementClass::Write,
    }
}

/// The class of an `ADMIN COMMAND` by its text (as the server reads it: words,
/// case-insensitive). An unknown command is sent to the leader, which reports it.
fn classify_admin_command(text: &str) -> StatementClass {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["grid", "nodeinfo"]
        | ["grid", "status"]
        | ["parameter", "grid"]
        | ["status"]
        | ["version"] => StatementClass::Read,
        ["makecp"] | ["checkpoint"] => StatementClass::NodeLocal,
        ["grid", "shutdown"] => StatementClass::Grid,
        _ => StatementClass::Write,
    }
}

/// What to do after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The statement did not run: refresh the topology and try again, on the leader for a
    /// write, on any reachable node for a read.
    Elsewhere,
    /// The node lost this client's session (it restarted): log in again and try again.
    Relogin,
    /// Give the error to the caller: the statement ran and failed, or its outcome is
    /// unknown.
    No,
}

/// The retry policy. Retried are the failures that prove the statement did not run:
/// no connection could be opened ([`ClientError::Connect`], the request never left), and
/// the refusals the server gives before doing anything — 18503 (not the leader), 18502 (no
/// leader), 14501 (no database: an empty node), 28004 (unknown session). A connection lost
/// after the statement was sent ([`ClientError::Lost`]) is retried for a read only; for a
/// write it, like 18510 (outcome unknown) and every other error, goes to the caller.
pub fn retry_policy(class: StatementClass, error: &ClientError) -> Retry {
    match error {
        ClientError::Connect(..) => Retry::Elsewhere,
        ClientError::Solid(e) => match e.code {
            code::NOT_LEADER | code::NO_LEADER | code::NO_DATABASE => Retry::Elsewhere,
            code::BAD_SESSION => Retry::Relogin,
            _ => Retry::No,
        },
        ClientError::Lost(_) if class == StatementClass::Read => Retry::Elsewhere,
        ClientError::Lost(_) | ClientError::Transport(_) => Retry::No,
    }
}

/// The pause before retry number `retry` (from 0): [`FIRST_BACKOFF`] doubled each time, at
/// most [`MAX_BACKOFF`].
pub fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << retry.min(16))
        .min(MAX_BACKOFF)
}

/// The node a statement of `class` goes to: the leader for a write when the topology names
/// one (none while an election runs: `None`), the node in use for a read unless it just
/// failed, then the leader or another member. Outside a grid (a standalone node, before
/// `CREATE GRID`) everything runs on the node in use.
pub fn pick_target(
    class: StatementClass,
    topology: &GridTopology,
    current: &Endpoint,
    failed: &HashSet<Endpoint>,
) -> Option<Endpoint> {
    let usable = |e: &Endpoint| !failed.contains(e);
    if !topology.is_grid() {
        return usable(current).then(|| current.clone());
    }
    let leader = topology
        .leader()
        .and_then(|m| Endpoint::from_address(&m.address).ok());
    if class.needs_leader() {
        // Even a leader that just failed: the topology was refreshed since, and it still
        // names that node only until the grid has elected another (the back-off paces it).
        return leader;
    }
    if usable(current) {
        return Some(current.clone());
    }
    if let Some(leader) = leader.filter(usable) {
        return Some(leader);
    }
    topology
        .members
        .iter()
        .filter(|m| m.role == "FOLLOWER" || m.role == "LEADER")
        .filter_map(|m| Endpoint::from_address(&m.address).ok())
        .find(usable)
}

/// One logical session with a grid: see the module documentation.
pub struct GridClient {
    seeds: Vec<Endpoint>,
    tls: Option<ClientTls>,
    user: String,
    password: String,
    /// Open connections, each logged in.
    sessions: HashMap<Endpoint, NodeSession>,
    /// Seeds first, then learned members, without repeats; at most [`MAX_KNOWN_NODES`].
    known: Vec<Endpoint>,
    topology: GridTopology,
    /// The node that ran the last statement; reads go here.
    current: Endpoint,
    retry_bound: Duration,
}

/// Shows where the client is, never the password or session tokens.
impl fmt::Debug for GridClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GridClient")
            .field("user", &self.user)
            .field("current", &self.current)
            .field("grid", &self.topology.grid)
            .field("leader", &self.topology.leader_id)
            .field("known", &self.known.len())
            .field("open", &self.sessions.len())
            .finish()
    }
}

impl GridClient {
    /// Logs in on the first seed of `cs` that answers (a `tcp` connect string is a seed list
    /// of one) and learns the grid's topology from it. A refused login (wrong password) is
    /// returned at once; an unreachable seed, or an empty one (14501), is skipped.
    pub async fn connect(
        cs: &ConnectString,
        tls: Option<&ClientTls>,
        user: &str,
        password: &str,
    ) -> Result<GridClient, ClientError> {
        let seeds = cs.endpoints().to_vec();
        let mut client = GridClient {
            known: Vec::new(),
            current: seeds[0].clone(),
            seeds,
            tls: tls.cloned(),
            user: user.to_string(),
            password: password.to_string(),
            sessions: HashMap::new(),
            topology: GridTopology::default(),
            retry_bound: RETRY_BOUND,
        };
        client.remember(client.seeds.clone());
        let mut failures = Vec::new();
        for seed in client.seeds.clone() {
            match client.session(&seed).await {
                Ok(_) => {
                    client.current = seed;
                    // The seed answered the login; a failed topology call leaves the
                    // topology empty, and the next statement refreshes it.
                    if let Err(e) = client.refresh_topology().await {
                        tracing::debug!("no topology at connect: {e}");
                    }
                    return Ok(client);
                }
                // Unreachable, or an empty node: try the next seed. A refused login is
                // the same on every node.
                Err(e) if retry_policy(StatementClass::Read, &e) == Retry::Elsewhere => {
                    failures.push(e.to_string())
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Connect(cs.to_string(), failures.join("; ")))
    }

    /// Sets how long one statement may be retried (default [`RETRY_BOUND`]).
    pub fn set_retry_bound(&mut self, bound: Duration) {
        self.retry_bound = bound;
    }

    /// The last topology learned.
    pub fn topology(&self) -> &GridTopology {
        &self.topology
    }

    /// The leader as last learned.
    pub fn leader(&self) -> Option<&GridMember> {
        self.topology.leader()
    }

    /// The node that ran the last statement (or answered the login).
    pub fn current(&self) -> &Endpoint {
        &self.current
    }

    /// The member at the node in use, when the topology lists it.
    pub fn current_member(&self) -> Option<&GridMember> {
        self.topology.member_at(&self.current)
    }

    /// Every node address the client would ask for the topology: seeds, then learned
    /// members.
    pub fn known_nodes(&self) -> &[Endpoint] {
        &self.known
    }

    /// One line for the console: the node in use and the leader.
    pub fn describe(&self) -> String {
        let node = |e: &Endpoint| match self.topology.member_at(e) {
            Some(m) => format!("{} ({e})", m.name),
            None => e.to_string(),
        };
        if !self.topology.is_grid() {
            return format!("node {} (not in a grid)", node(&self.current));
        }
        let leader = match self.leader() {
            Some(m) => match Endpoint::from_address(&m.address) {
                Ok(e) => node(&e),
                Err(_) => m.name.clone(),
            },
            None => "none known (election in progress?)".to_string(),
        };
        format!(
            "grid {}: using node {}, leader {leader}",
            self.topology.grid,
            node(&self.current)
        )
    }

    /// The status probe of the node in use.
    pub async fn status(&mut self) -> Result<pb::StatusReply, ClientError> {
        let current = self.current.clone();
        self.session(&current).await?.client.status().await
    }

    /// Runs one statement (without its `;`) where it belongs, following leader changes;
    /// see the module documentation for the routing and [`retry_policy`].
    pub async fn execute(&mut self, statement: &str) -> Result<QueryResult, ClientError> {
        let class = classify(statement);
        let deadline = Instant::now() + self.retry_bound;
        let mut failed: HashSet<Endpoint> = HashSet::new();
        let mut retry = 0u32;
        loop {
            let error = match pick_target(class, &self.topology, &self.current, &failed) {
                Some(target) => match self.attempt(&target, statement, class).await {
                    Ok(result) => {
                        self.current = target;
                        if class == StatementClass::Grid
                            && let Err(e) = self.refresh_topology().await
                        {
                            // The statement succeeded; the next one refreshes again.
                            tracing::debug!("no topology after a grid statement: {e}");
                        }
                        return Ok(result);
                    }
                    Err(e) => {
                        let decision = retry_policy(class, &e);
                        tracing::debug!(%target, ?class, ?decision, "attempt failed: {e}");
                        match decision {
                            Retry::No => return Err(e),
                            Retry::Relogin => {
                                self.sessions.remove(&target);
                            }
                            Retry::Elsewhere => {
                                if matches!(e, ClientError::Connect(..) | ClientError::Lost(_)) {
                                    self.sessions.remove(&target);
                                }
                                // Reads avoid it for this statement; a write follows the
                                // topology (see `pick_target`).
                                failed.insert(target);
                            }
                        }
                        e
                    }
                },
                None => ClientError::Solid(SolidError::grid(
                    code::NO_LEADER,
                    format!(
                        "no grid leader known: the nodes of grid {} reachable from here know none \
                         (an election may be in progress)",
                        self.topology.grid
                    ),
                )),
            };
            let pause = backoff(retry);
            retry += 1;
            if Instant::now() + pause >= deadline {
                return Err(gave_up(error, self.retry_bound));
            }
            tokio::time::sleep(pause).await;
            if let Err(e) = self.refresh_topology_avoiding(&failed).await {
                tracing::debug!("topology refresh failed: {e}");
            }
        }
    }

    /// Asks the known nodes for the topology (the node in use first, then the leader, the
    /// members and the seeds) and keeps the best answer: the first that names a leader,
    /// else the grid view with the highest term, else a standalone node's empty one.
    pub async fn refresh_topology(&mut self) -> Result<(), ClientError> {
        self.refresh_topology_avoiding(&HashSet::new()).await
    }

    async fn refresh_topology_avoiding(
        &mut self,
        failed: &HashSet<Endpoint>,
    ) -> Result<(), ClientError> {
        let mut candidates: Vec<Endpoint> = vec![self.current.clone()];
        candidates.extend(
            self.topology
                .leader()
                .and_then(|m| Endpoint::from_address(&m.address).ok()),
        );
        candidates.extend(self.member_endpoints());
        candidates.extend(self.known.iter().cloned());
        let mut seen = HashSet::new();
        candidates.retain(|e| seen.insert(e.clone()));
        // Nodes that just failed are asked last.
        candidates.sort_by_key(|e| failed.contains(e));

        let mut best: Option<GridTopology> = None;
        let mut last_error = None;
        for endpoint in candidates {
            let answer = match self.session(&endpoint).await {
                Ok(session) => {
                    let answer = session.client.topology().await;
                    if answer.is_ok() {
                        session.last_used = Instant::now();
                    }
                    answer
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(t) if t.leader().is_some() => {
                    best = Some(t);
                    break;
                }
                Ok(t) => {
                    let better = match &best {
                        None => true,
                        Some(b) => (t.is_grid(), t.term) > (b.is_grid(), b.term),
                    };
                    if better {
                        best = Some(t);
                    }
                }
                Err(e) => {
                    if matches!(e, ClientError::Connect(..) | ClientError::Lost(_)) {
                        self.sessions.remove(&endpoint);
                    }
                    last_error = Some(e);
                }
            }
        }
        match best {
            Some(t) => {
                self.topology = t;
                self.remember(self.member_endpoints());
                Ok(())
            }
            None => Err(last_error.unwrap_or_else(|| {
                ClientError::Connect(self.seed_string(), "no node to ask".into())
            })),
        }
    }

    /// Logs out of every node (each bounded by a short timeout; errors are ignored: the
    /// server expires sessions anyway).
    pub async fn logout(&mut self) {
        for (_, mut session) in self.sessions.drain() {
            let _ = tokio::time::timeout(LOGOUT_TIMEOUT, session.client.logout()).await;
        }
    }

    /// Sends the statement to `target` (after a liveness probe when it must not be sent
    /// twice and the connection was idle: see [`PROBE_WHEN_IDLE`]).
    async fn attempt(
        &mut self,
        target: &Endpoint,
        statement: &str,
        class: StatementClass,
    ) -> Result<QueryResult, ClientError> {
        let session = self.session(target).await?;
        if class != StatementClass::Read
            && session.last_used.elapsed() >= PROBE_WHEN_IDLE
            && let Err(e) = session.client.status().await
        {
            return Err(ClientError::Connect(
                target.to_string(),
                format!("the node did not answer before the statement was sent: {e}"),
            ));
        }
        let result = session.client.execute(statement).await;
        session.last_used = Instant::now();
        result
    }

    /// The logged-in connection to `endpoint`, opening it first if needed. A login that
    /// fails on the way (not the server's refusal) is a [`ClientError::Connect`]: nothing
    /// was run there.
    async fn session(&mut self, endpoint: &Endpoint) -> Result<&mut NodeSession, ClientError> {
        if !self.sessions.contains_key(endpoint) {
            let mut client = Client::connect_endpoint(endpoint, self.tls.as_ref())
                .await
                .map_err(|why| ClientError::Connect(endpoint.to_string(), why))?;
            // Keyed statements on partitioned tables are forwarded to their primary.
            client.set_grid_connection(true);
            match client.login(&self.user, &self.password).await {
                Ok(()) => {}
                Err(ClientError::Transport(why) | ClientError::Lost(why)) => {
                    return Err(ClientError::Connect(
                        endpoint.to_string(),
                        format!("login failed: {why}"),
                    ));
                }
                Err(e) => return Err(e),
            }
            if self.sessions.len() >= MAX_OPEN_CONNECTIONS {
                let spare = self.sessions.keys().find(|e| **e != self.current).cloned();
                if let Some(spare) = spare
                    && let Some(mut old) = self.sessions.remove(&spare)
                {
                    let _ = tokio::time::timeout(LOGOUT_TIMEOUT, old.client.logout()).await;
                }
            }
            let session = NodeSession {
                client,
                last_used: Instant::now(),
            };
            self.sessions.insert(endpoint.clone(), session);
        }
        Ok(self
            .sessions
            .get_mut(endpoint)
            .expect("the session was opened above"))
    }

    fn member_endpoints(&self) -> Vec<Endpoint> {
        self.topology
            .members
            .iter()
            .filter_map(|m| Endpoint::from_address(&m.address).ok())
            .collect()
    }

    /// Adds node addresses to the known list; past [`MAX_KNOWN_NODES`] the oldest learned
    /// address that is neither a seed nor a current member goes.
    fn remember(&mut self, endpoints: Vec<Endpoint>) {
        for e in endpoints {
            if self.known.contains(&e) {
                continue;
            }
            if self.known.len() >= MAX_KNOWN_NODES {
                let members = self.member_endpoints();
                let stale = self
                    .known
                    .iter()
                    .position(|k| !self.seeds.contains(k) && !members.contains(k));
                match stale {
                    Some(i) => {
                        self.known.remove(i);
                    }
                    None => return,
                }
            }
            self.known.push(e);
        }
    }

    fn seed_string(&self) -> String {
        ConnectString::Grid(self.seeds.clone()).to_string()
    }
}

/// The last error of a statement whose retries ran out, saying so.
fn gave_up(error: ClientError, bound: Duration) -> ClientError {
    let spent = if bound.subsec_millis() == 0 {
        format!("{} s", bound.as_secs())
    } else {
        format!("{} ms", bound.as_millis())
    };
    let note = format!("(gave up after retrying for {spent})");
    match error {
        ClientError::Solid(mut e) => {
            e.message = format!("{} {note}", e.message);
            ClientError::Solid(e)
        }
        ClientError::Connect(target, why) => ClientError::Connect(target, format!("{why} {note}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn member(id: u64, port: u16, role: &str) -> GridMember {
        GridMember {
            id,
            name: format!("n{id}"),
            address: format!("127.0.0.1:{port}"),
            state: "MEMBER_ONLINE".into(),
            role: role.into(),
        }
    }

    fn grid(leader: Option<u64>) -> GridTopology {
        let role = |id| {
            if leader == Some(id) {
                "LEADER"
            } else {
                "FOLLOWER"
            }
        };
        GridTopology {
            grid: "G".into(),
            term: 2,
            config_index: 5,
            leader_id: leader,
            members: (1..=3)
                .map(|id| member(id, 1000 + id as u16, role(id)))
                .collect(),
            node_id: Some(1),
        }
    }

    fn solid(code: u32) -> ClientError {
        ClientError::Solid(SolidError::new(ErrorClass::Grid, code, "x"))
    }

    #[test]
    fn reads_writes_and_grid_statements_are_told_apart() {
        use StatementClass::*;
        let cases = [
            ("SELECT * FROM t", Read),
            ("select count(*) from t where id = 1", Read),
            (
                "SELECT NAME FROM SYS_GRID_NODES WHERE ROLE = 'LEADER'",
                Read,
            ),
            ("ADMIN COMMAND 'grid nodeinfo'", Read),
            ("admin command 'GRID  STATUS'", Read),
            ("ADMIN COMMAND 'parameter grid'", Read),
            ("ADMIN COMMAND 'status'", Read),
            ("ADMIN COMMAND 'version'", Read),
            ("ADMIN COMMAND 'makecp'", NodeLocal),
            ("ADMIN COMMAND 'grid shutdown'", Grid),
            ("ADMIN COMMAND 'frobnicate'", Write),
            ("CREATE TABLE t (id INTEGER PRIMARY KEY)", Write),
            ("DROP TABLE t", Write),
            ("ALTER TABLE t ADD COLUMN v INTEGER", Write),
            ("INSERT INTO t VALUES (1)", Write),
            ("UPDATE t SET id = 2 WHERE id = 1", Write),
            ("DELETE FROM t WHERE id = 1", Write),
            ("CREATE USER u IDENTIFIED BY 'pw'", Write),
            ("DROP USER u", Write),
            ("GRANT ADMIN TO u", Write),
            ("CREATE GRID g", Grid),
            (
                "ALTER GRID g ADD NODE n4 CONNECT 'tcp 127.0.0.1 1318'",
                Grid,
            ),
            ("ALTER GRID g DROP NODE n4", Grid),
            ("ALTER GRID g SET NODE n4 OFFLINE", Grid),
            ("DROP GRID g", Grid),
            // Does not parse: the leader reports the syntax error.
            ("SELEKT * FROM t", Write),
            ("", Write),
        ];
        for (statement, class) in cases {
            assert_eq!(classify(statement), class, "{statement}");
        }
        assert!(Write.needs_leader() && Grid.needs_leader());
        assert!(!Read.needs_leader() && !NodeLocal.needs_leader());
    }

    #[test]
    fn only_failures_that_prove_nothing_ran_are_retried() {
        use StatementClass::*;
        let connect = ClientError::Connect("tcp h 1".into(), "refused".into());
        let lost = ClientError::Lost("connection lost: outcome unknown".into());
        let transport = ClientError::Transport("protocol violation".into());
        for class in [Read, Write, Grid, NodeLocal] {
            assert_eq!(retry_policy(class, &connect), Retry::Elsewhere, "{class:?}");
            for c in [code::NOT_LEADER, code::NO_LEADER, code::NO_DATABASE] {
                assert_eq!(
                    retry_policy(class, &solid(c)),
                    Retry::Elsewhere,
                    "{class:?} {c}"
                );
            }
            assert_eq!(
                retry_policy(class, &solid(code::BAD_SESSION)),
                Retry::Relogin
            );
            for c in [
                code::OUTCOME_UNKNOWN,
                code::ROLLED_BACK,
                code::CHANGE_IN_PROGRESS,
                code::TABLE_NOT_FOUND,
                code::LOGIN_FAILED,
                code::NOT_PERMITTED,
                code::SYNTAX,
            ] {
                assert_eq!(retry_policy(class, &solid(c)), Retry::No, "{class:?} {c}");
            }
            assert_eq!(retry_policy(class, &transport), Retry::No, "{class:?}");
        }
        // A lost connection after sending: a read runs again, a write's outcome is unknown.
        assert_eq!(retry_policy(Read, &lost), Retry::Elsewhere);
        for class in [Write, Grid, NodeLocal] {
            assert_eq!(retry_policy(class, &lost), Retry::No, "{class:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(1), FIRST_BACKOFF * 2);
        assert_eq!(backoff(2), FIRST_BACKOFF * 4);
        assert_eq!(backoff(5), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        // Retries within the bound: enough of them to span an election several times.
        let mut total = Duration::ZERO;
        let mut n = 0;
        while total < RETRY_BOUND {
            total += backoff(n);
            n += 1;
        }
        assert!(n >= 15, "{n} retries");
    }

    #[test]
    fn writes_go_to_the_leader_and_reads_stay_on_the_node_in_use() {
        use StatementClass::*;
        let t = grid(Some(2));
        let none = HashSet::new();
        let current = ep(1001);
        for class in [Write, Grid] {
            assert_eq!(pick_target(class, &t, &current, &none), Some(ep(1002)));
        }
        for class in [Read, NodeLocal] {
            assert_eq!(pick_target(class, &t, &current, &none), Some(ep(1001)));
        }
        // The node in use failed: a read moves to the leader, then to another member.
        let failed: HashSet<_> = [ep(1001)].into();
        assert_eq!(pick_target(Read, &t, &current, &failed), Some(ep(1002)));
        let failed: HashSet<_> = [ep(1001), ep(1002)].into();
        assert_eq!(pick_target(Read, &t, &current, &failed), Some(ep(1003)));
        let failed: HashSet<_> = [ep(1001), ep(1002), ep(1003)].into();
        assert_eq!(pick_target(Read, &t, &current, &failed), None);
        // A write waits for a leader (election): no target until the topology names one.
        assert_eq!(pick_target(Write, &grid(None), &current, &none), None);
        // A leader that just failed is tried again only as long as the topology names it.
        let failed: HashSet<_> = [ep(1002)].into();
        assert_eq!(pick_target(Write, &t, &current, &failed), Some(ep(1002)));
    }

    #[test]
    fn outside_a_grid_everything_runs_on_the_node_in_use() {
        let standalone = GridTopology::default();
        let current = ep(7);
        for class in [
            StatementClass::Read,
            StatementClass::Write,
            StatementClass::Grid,
        ] {
            assert_eq!(
                pick_target(class, &standalone, &current, &HashSet::new()),
                Some(ep(7))
            );
        }
        let failed: HashSet<_> = [ep(7)].into();
        assert_eq!(
            pick_target(StatementClass::Write, &standalone, &current, &failed),
            None
        );
    }

    /// Against the in-test fake node of `client`'s tests: it reports a grid whose leader
    /// (`[::1]:2`) cannot be reached.
    #[tokio::test]
    async fn seeds_are_tried_in_order_and_a_write_without_a_reachable_leader_gives_up() {
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let live = crate::client::tests::fake::serve(Default::default()).await;
        let cs = ConnectString::Grid(vec![ep(dead), ep(live)]);
        match GridClient::connect(&cs, None, "admin", "wrong").await {
            Err(ClientError::Solid(e)) => assert_eq!(e.code, code::LOGIN_FAILED),
            other => panic!("unexpected {other:?}"),
        }
        let mut client = GridClient::connect(&cs, None, "admin", "secret")
            .await
            .unwrap();
        assert_eq!(client.current(), &ep(live));
        assert_eq!(client.topology().grid, "G");
        assert_eq!(client.leader().map(|m| m.name.as_str()), Some("n2"));
        // Seeds first, then the learned members.
        let known = client.known_nodes().to_vec();
        assert_eq!(&known[..2], &[ep(dead), ep(live)]);
        assert!(known.contains(&Endpoint::from_address("[::1]:2").unwrap()));
        assert!(
            client.describe().contains("leader n2"),
            "{}",
            client.describe()
        );

        // A read stays on the node in use.
        let r = client.execute("SELECT * FROM T").await.unwrap();
        assert_eq!(r.rows.len(), 2);
        // A write goes to the leader, which cannot be reached: retried until the bound.
        client.set_retry_bound(Duration::from_millis(600));
        let started = std::time::Instant::now();
        match client.execute("INSERT INTO T VALUES (1)").await {
            Err(ClientError::Connect(target, why)) => {
                assert_eq!(target, "tcp ::1 2");
                assert!(
                    why.ends_with("(gave up after retrying for 600 ms)"),
                    "{why}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(300));
        client.logout().await;
    }

    #[test]
    fn giving_up_says_so_and_keeps_the_code() {
        match gave_up(solid(code::NO_LEADER), RETRY_BOUND) {
            ClientError::Solid(e) => {
                assert_eq!(e.code, code::NO_LEADER);
                assert!(e.message.ends_with("(gave up after retrying for 15 s)"));
            }
            other => panic!("{other:?}"),
        }
    }
}
