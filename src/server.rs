//! The node server: start-up (configuration, lock file, recovery), the client gRPC service,
//! and a clean stop.
//!
//! The gRPC services only translate between protobuf and domain types and forward to the
//! [`Engine`] on a blocking thread (redb and fsync block); they hold no logic of their own.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status};

use crate::client::{error_to_pb, value_to_pb};
use crate::config::{Config, ConfigError};
use crate::engine::{Engine, InitialAdmin, StoragePaths};
use crate::error::{SolidError, SolidResult, code};
use crate::grid::driver::GridView;
use crate::grid::peer::peer_service;
use crate::msglog::MessageLog;
use crate::node::{NodeRuntime, NodeRuntimeHandle, StatementContext, role_of};
use crate::pb;
use crate::pb::solid_client_server::{SolidClient, SolidClientServer};
use crate::sql::ast::Statement;
use crate::sql::exec::{Output, SessionUser};
use crate::sql::parser::parse_statement;

/// The lock file that keeps a second process off the same working directory.
pub const LOCK_FILE_NAME: &str = "solid.lck";
/// Largest request or reply message accepted; bounds memory per RPC.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Longest statement text accepted.
pub const MAX_STATEMENT_BYTES: usize = 8 * 1024 * 1024;
/// Most concurrent sessions; a login beyond it is refused (14503).
pub const MAX_SESSIONS: usize = 1024;
/// Rows per streamed batch: large enough to amortise framing, small enough for latency.
pub const ROWS_PER_BATCH: usize = 500;
/// Bytes after which a row batch is sent even if it has fewer rows; keeps every reply
/// message far below [`MAX_MESSAGE_BYTES`] (a single row is bounded by the statement size).
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Reply parts buffered per streaming statement before back-pressure applies.
const REPLY_BUFFER: usize = 4;
/// How long a stopping node waits for open client connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Concurrent RPCs on one client connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// How `solid` was asked to start.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub workdir: PathBuf,
    /// `-x gridnode`: start without a database and wait to be added to a grid.
    pub gridnode: bool,
    /// `-U`/`-P`: the first admin user when a database is created.
    pub admin_user: Option<String>,
    pub admin_password: Option<String>,
}

/// Why the node could not start or had to stop. Printed to stderr and `solmsg.out`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Other(String),
}

/// Holds the working directory for this process; released when dropped (or by the OS when
/// the process dies, so a `kill -9` never leaves a stale lock).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(workdir: &Path) -> Result<DirLock, String> {
        let path = workdir.join(LOCK_FILE_NAME);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(format!(
                    "another solid process (pid {}) is using the working directory {}",
                    holder.trim(),
                    workdir.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(|e| format!("cannot write lock file {}: {e}", path.display()))?;
        Ok(DirLock { _file: file })
    }
}

/// Runs a node until `shutdown` completes or a fatal error stops it.
pub async fn run(
    opts: NodeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let msglog = Arc::new(
        MessageLog::open(&opts.workdir)
            .map_err(|e| StartError::Other(format!("cannot open solmsg.out: {e}")))?,
    );
    let result = async {
        let config = Config::load(&opts.workdir)?;
        let _lock = DirLock::acquire(&opts.workdir).map_err(StartError::Other)?;
        serve(&opts, &config, msglog.clone(), shutdown).await
    }
    .await;
    if let Err(e) = &result {
        msglog.error(e.to_string());
    }
    result
}

async fn serve(
    opts: &NodeOptions,
    config: &Config,
    msglog: Arc<MessageLog>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let name = config.node_name();
    // TLS files are read (and parsed) before anything else happens, so a bad one stops the
    // start at once, naming the file.
    let server_tls =
        crate::tls::server_tls_from_config(config, &opts.workdir).map_err(StartError::Other)?;
    if config.grid.grid_enabled {
        let peer_tls =
            crate::tls::peer_tls_from_config(config, &opts.workdir).map_err(StartError::Other)?;
        crate::tls::set_peer_tls(peer_tls);
    }
    let paths = StoragePaths {
        db_file: config.db_path(&opts.workdir),
        log_dir: config.log_dir(&opts.workdir),
    };
    let fatal = Arc::new(Notify::new());
    let engine = if opts.gridnode && !paths.has_database() {
        msglog.info(format!(
            "solidgrid {} node {name} starting as an empty grid node (-x gridnode): no database, waiting to be added to a grid",
            crate::VERSION
        ));
        None
    } else {
        if opts.gridnode {
            msglog.info("-x gridnode: a database exists, opening it");
        }
        let admin = match (&opts.admin_user, &opts.admin_password) {
            (Some(u), Some(p)) => Some(InitialAdmin {
                user: u.clone(),
                password: p.clone(),
            }),
            (None, None) => None,
            _ => return Err(StartError::Other("-U and -P must be given together".into())),
        };
        msglog.info(format!(
            "solidgrid {} node {name} starting in {}",
            crate::VERSION,
            opts.workdir.display()
        ));
        let opened = Engine::open(&paths, admin, msglog.clone());
        let joining = opts.workdir.join(crate::node::JOIN_MARKER);
        let (mut engine, report) = match opened {
            Ok(opened) => opened,
            // A crash in the middle of storing the common data of an add leaves a
            // provisional database that may not open: the add never committed, so the
            // node discards it and waits, empty, to be added again.
            Err(e) if opts.gridnode && joining.exists() => {
                msglog.warning(format!(
                    "the provisional data of an unfinished add cannot be opened ({e}): discarding it"
                ));
                crate::engine::remove_database(&paths).map_err(|e| {
                    StartError::Other(format!("cannot remove the provisional database: {e}"))
                })?;
                let _ = std::fs::remove_file(&joining);
                return Box::pin(serve(opts, config, msglog, shutdown)).await;
            }
            Err(e) => return Err(StartError::Other(format!("cannot open the database: {e}"))),
        };
        if report.created {
            msglog.info(format!(
                "created a new database {}",
                paths.db_file.display()
            ));
        } else {
            msglog.info(format!(
                "recovery: database file durable through log record {}, {} log records replayed",
                report.checkpoint_seq, report.replayed
            ));
        }
        if let Some(t) = &report.torn_tail {
            msglog.warning(format!("recovery: truncated the torn end of the log: {t}"));
        }
        let notify = fatal.clone();
        engine.set_fatal_hook(move |_| notify.notify_one());
        Some(Arc::new(engine))
    };

    let bind = config.com.listen.bind_addr();
    let listener = TcpListener::bind(&bind)
        .await
        .map_err(|e| StartError::Other(format!("cannot listen on {bind}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| StartError::Other(format!("cannot read the listen address: {e}")))?;
    match &server_tls {
        Some(_) => msglog.info(format!(
            "listening on {local} ({})",
            crate::tls::describe_server_tls(config)
        )),
        None => msglog.info(format!("listening on {local}")),
    }

    let node = NodeRuntime::new(
        config.clone(),
        paths.clone(),
        opts.workdir.clone(),
        engine.clone(),
        msglog.clone(),
        fatal.clone(),
    );
    node.resume_grid()
        .map_err(|e| StartError::Other(format!("cannot resume grid membership: {e}")))?;
    let peer = config
        .grid
        .secret
        .as_ref()
        .filter(|_| config.grid.grid_enabled)
        .map(|secret| peer_service(Arc::new(NodeRuntimeHandle(node.clone())), secret.clone()));
    let service = ClientService {
        inner: Arc::new(ServiceState {
            node: node.clone(),
            msglog: msglog.clone(),
            sessions: Mutex::new(HashMap::new()),
        }),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SolidClientServer<ClientService>>()
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Other(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| StartError::Other(format!("reflection: {e}")))?;

    let incoming = limited_incoming(
        listener,
        config.com.max_connections as usize,
        msglog.clone(),
    );
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = {
        let fatal = fatal.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = fatal.notified() => {}
            }
            let _ = stopping_tx.send(());
        }
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = server_tls {
        // tonic runs the TLS handshake on every connection of the incoming stream, the
        // connection cap's included (transport::server::io_stream).
        builder = builder
            .tls_config(tls)
            .map_err(|e| StartError::Other(format!("TLS: {e}")))?;
    }
    let server = builder
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .add_service(
            SolidClientServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_optional_service(peer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, stop);
    // Graceful shutdown waits for open connections; idle clients may keep theirs open for
    // ever, so after a grace period the node closes them and stops anyway.
    let grace_expired = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => {
            result.map_err(|e| StartError::Other(format!("server error: {e}")))?;
        }
        _ = grace_expired => {
            msglog.info(format!(
                "closing client connections still open {} s after the stop request",
                SHUTDOWN_GRACE.as_secs()
            ));
        }
    }

    node.stop().await;
    if let Some(engine) = &node.engine() {
        if let Some(why) = engine.failure() {
            return Err(StartError::Other(format!(
                "stopped after a storage failure: {why}"
            )));
        }
        let engine = engine.clone();
        tokio::task::spawn_blocking(move || engine.close())
            .await
            .map_err(|e| StartError::Other(format!("shutdown: {e}")))?
            .map_err(|e| StartError::Other(format!("final checkpoint failed: {e}")))?;
    }
    msglog.info("shutdown complete");
    Ok(())
}

/// Accepts connections, refusing (closing) those beyond `max` open at once.
fn limited_incoming(
    listener: TcpListener,
    max: usize,
    msglog: Arc<MessageLog>,
) -> impl tokio_stream::Stream<Item = std::io::Result<LimitedStream>> {
    let permits = Arc::new(Semaphore::new(max));
    TcpListenerStream::new(listener).filter_map(move |conn| match conn {
        Err(e) => {
            tracing::warn!("accept failed: {e}");
            None
        }
        Ok(stream) => match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let _ = stream.set_nodelay(true);
                Some(Ok(LimitedStream {
                    stream,
                    _permit: permit,
                }))
            }
            Err(_) => {
                msglog.warning(format!(
                    "refused a connection from {}: {max} connections are open ([Com] MaxConnections)",
                    stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "?".into())
                ));
                None
            }
        },
    })
}

/// A client connection holding one of the connection permits until it closes.
struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

struct ServiceState {
    node: Arc<NodeRuntime>,
    msglog: Arc<MessageLog>,
    sessions: Mutex<HashMap<String, SessionUser>>,
}

/// The client gRPC service.
#[derive(Clone)]
pub struct ClientService {
    inner: Arc<ServiceState>,
}

fn new_session_token() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ServiceState {
    fn engine(&self) -> SolidResult<Arc<Engine>> {
        self.node.engine().ok_or_else(|| {
            SolidError::server(
                code::NO_DATABASE,
                format!(
                    "node {} has no database: it is an empty grid node (solid -x gridnode) waiting to be added to a grid",
                    self.node.name
                ),
            )
        })
    }

    fn session(&self, token: &str) -> SolidResult<SessionUser> {
        self.sessions.lock().get(token).cloned().ok_or_else(|| {
            SolidError::auth(
                code::BAD_SESSION,
                "unknown or expired session: log in again",
            )
        })
    }

    async fn login(&self, user: String, password: String) -> SolidResult<String> {
        let engine = self.engine()?;
        let who = user.clone();
        let session = tokio::task::spawn_blocking(move || engine.authenticate(&user, &password))
            .await
            .map_err(|e| SolidError::server(code::STORAGE, e.to_string()))?;
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                self.msglog
                    .warning(format!("login failed for user {}", who.to_uppercase()));
                return Err(e);
            }
        };
        let mut sessions = self.sessions.lock();
        if sessions.len() >= MAX_SESSIONS {
            return Err(SolidError::server(
                code::OVERLOADED,
                format!("too many sessions ({MAX_SESSIONS}); try again later"),
            ));
        }
        let token = new_session_token();
        sessions.insert(token.clone(), session);
        Ok(token)
    }

    /// Runs one statement and returns what to stream back.
    async fn execute(
        &self,
        token: &str,
        text: String,
        grid_connection: bool,
    ) -> SolidResult<Output> {
        let engine = self.engine()?;
        let session = self.session(token)?;
        if text.len() > MAX_STATEMENT_BYTES {
            return Err(SolidError::server(
                code::TOO_LARGE,
                format!("statement longer than {MAX_STATEMENT_BYTES} bytes"),
            ));
        }
        let stmt = parse_statement(&text)?;
        let state_engine = engine.clone();
        let user = tokio::task::spawn_blocking(move || state_engine.refresh_user(&session))
            .await
            .map_err(|e| SolidError::server(code::STORAGE, e.to_string()))??;
        if let Statement::AdminCommand(cmd) = &stmt {
            if !user.admin {
                return Err(SolidError::not_permitted("ADMIN COMMAND"));
            }
            return self.admin_command(&engine, &cmd.command).await;
        }
        let ctx = StatementContext {
            text,
            grid_connection,
        };
        self.node.execute(user, stmt, &ctx).await
    }

    async fn admin_command(&self, engine: &Arc<Engine>, text: &str) -> SolidResult<Output> {
        let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let text_rows = crate::sql::exec::text_rows;
        match words.as_slice() {
            ["makecp"] | ["checkpoint"] => {
                let engine = engine.clone();
                tokio::task::spawn_blocking(move || engine.checkpoint())
                    .await
                    .map_err(|e| SolidError::server(code::STORAGE, e.to_string()))?
                    .map_err(|e| SolidError::server(code::STORAGE, e.to_string()))?;
                Ok(Output::Write {
                    changes: Vec::new(),
                    rows_affected: 0,
                })
            }
            ["version"] => Ok(text_rows(
                &["VERSION"],
                vec![vec![format!("solidgrid {}", crate::VERSION)]],
            )),
            ["status"] => Ok(text_rows(
                &["NAME", "VALUE"],
                vec![
                    vec!["node".into(), self.node.name.clone()],
                    vec!["version".into(), crate::VERSION.into()],
                    vec!["mode".into(), self.node.mode().into()],
                    vec!["sessions".into(), self.sessions.lock().len().to_string()],
                    vec![
                        "grid enabled".into(),
                        if self.node.config.grid.grid_enabled {
                            "yes"
                        } else {
                            "no"
                        }
                        .into(),
                    ],
                ],
            )),
            ["parameter", "grid"] => Ok(text_rows(
                &["PARAMETER", "VALUE"],
                self.node
                    .config
                    .grid_parameters()
                    .into_iter()
                    .map(|(k, v)| vec![k, v])
                    .collect(),
            )),
            ["grid", "nodeinfo"] => self.node.nodeinfo(),
            ["grid", "status"] => self.node.grid_status(),
            ["grid", "shutdown"] => self.node.grid_shutdown().await,
            _ => Err(SolidError::server(
                code::UNKNOWN_ADMIN_COMMAND,
                format!(
                    "unknown ADMIN COMMAND '{text}' (known: makecp, status, version, parameter grid, grid nodeinfo, grid status, grid shutdown)"
                ),
            )),
        }
    }
}

/// The client service's `Topology` reply for a node's grid view; `None` (a standalone or
/// empty node) gives an empty grid.
fn topology_to_pb(view: Option<&GridView>) -> pb::GridTopology {
    let Some(v) = view else {
        return pb::GridTopology::default();
    };
    pb::GridTopology {
        grid: v.topology.grid.clone(),
        term: v.term,
        config_index: v.topology.config_index,
        leader_id: v.leader.unwrap_or(0),
        members: v
            .topology
            .members
            .values()
            .map(|m| pb::GridMember {
                id: m.id,
                name: m.name.clone(),
                address: m.addr.clone(),
                state: m.state.as_str().to_string(),
                role: role_of(v, m).to_string(),
            })
            .collect(),
        node_id: v.node_id,
    }
}

fn error_reply(e: &SolidError) -> pb::ExecuteReply {
    pb::ExecuteReply {
        part: Some(pb::execute_reply::Part::Error(error_to_pb(e))),
    }
}

fn done_message(output: &Output) -> (u64, String) {
    match output {
        Output::Rows { rows, .. } => (0, format!("{} rows fetched.", rows.len())),
        Output::Write { rows_affected, .. } => (
            *rows_affected,
            format!("Command completed successfully, {rows_affected} rows affected."),
        ),
    }
}

/// Streams one statement's output: header, row batches, then `Done`.
async fn stream_output(output: Output, tx: mpsc::Sender<Result<pb::ExecuteReply, Status>>) {
    let (rows_affected, message) = done_message(&output);
    if let Output::Rows { columns, rows } = output {
        let header = pb::Header {
            columns: columns
                .into_iter()
                .map(|(name, sql_type)| pb::Column { name, sql_type })
                .collect(),
        };
        let part = pb::execute_reply::Part::Header(header);
        if tx
            .send(Ok(pb::ExecuteReply { part: Some(part) }))
            .await
            .is_err()
        {
            return;
        }
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut rows = rows.into_iter().peekable();
        while let Some(row) = rows.next() {
            let row = pb::Row {
                values: row.iter().map(value_to_pb).collect(),
            };
            batch_bytes += prost::Message::encoded_len(&row);
            batch.push(row);
            let full = batch.len() >= ROWS_PER_BATCH || batch_bytes >= BATCH_BYTES;
            if full || rows.peek().is_none() {
                let part = pb::execute_reply::Part::Rows(pb::RowBatch {
                    rows: std::mem::take(&mut batch),
                });
                batch_bytes = 0;
                if tx
                    .send(Ok(pb::ExecuteReply { part: Some(part) }))
                    .await
                    .is_err()
                {
                    return; // the client went away
                }
            }
        }
    }
    let done = pb::execute_reply::Part::Done(pb::Done {
        rows_affected,
        message,
    });
    let _ = tx.send(Ok(pb::ExecuteReply { part: Some(done) })).await;
}

type ReplyStream = ReceiverStream<Result<pb::ExecuteReply, Status>>;

#[tonic::async_trait]
impl SolidClient for ClientService {
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginReply>, Status> {
        let req = request.into_inner();
        let result = match self.inner.login(req.user, req.password).await {
            Ok(token) => pb::login_reply::Result::Session(token),
            Err(e) => pb::login_reply::Result::Error(error_to_pb(&e)),
        };
        Ok(Response::new(pb::LoginReply {
            result: Some(result),
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutReply>, Status> {
        self.inner
            .sessions
            .lock()
            .remove(&request.into_inner().session);
        Ok(Response::new(pb::LogoutReply {}))
    }

    type ExecuteStream = ReplyStream;

    async fn execute(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(REPLY_BUFFER);
        let state = self.inner.clone();
        tokio::spawn(async move {
            match state
                .execute(&req.session, req.statement, req.grid_connection)
                .await
            {
                Ok(output) => stream_output(output, tx).await,
                Err(e) => {
                    if e.class != crate::error::ErrorClass::Syntax {
                        tracing::debug!("statement failed: {e}");
                    }
                    let _ = tx.send(Ok(error_reply(&e))).await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn topology(
        &self,
        request: Request<pb::TopologyRequest>,
    ) -> Result<Response<pb::TopologyReply>, Status> {
        use pb::topology_reply::Result as R;
        let token = request.into_inner().session;
        let result = match self.inner.session(&token) {
            Ok(_) => R::Topology(topology_to_pb(self.inner.node.view().as_ref())),
            Err(e) => R::Error(error_to_pb(&e)),
        };
        Ok(Response::new(pb::TopologyReply {
            result: Some(result),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let node = &self.inner.node;
        Ok(Response::new(pb::StatusReply {
            node_name: node.name.clone(),
            version: crate::VERSION.to_string(),
            mode: node.mode().to_string(),
            has_database: node.engine().is_some(),
            grid_enabled: node.config.grid.grid_enabled,
        }))
    }
}
