//! The node runtime: what one `solid` process is right now — standalone, an empty grid node
//! (`-x gridnode`), or a grid member — and the routing of every statement and peer request
//! to the engine or the grid driver.
//!
//! A node changes what it is at run time: `CREATE GRID` makes a standalone node the founder
//! of a one-node grid; a grid start from a leader turns an empty grid node into a joining
//! member; a rolled-back add turns it back into an empty node. `NodeRuntime` owns that state
//! behind one lock, and the client and peer services only hold an `Arc` of it.

mod partitioned;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

pub use partitioned::StatementContext;

use crate::config::Config;
use crate::engine::{Engine, StoragePaths};
use crate::error::{SolidError, SolidResult, code};
use crate::grid::core::{Core, CoreConfig, Outcome, Proposal, Restored, Role};
use crate::grid::driver::{self, DriverSettings, GridHandle, GridSnapshot, GridView, SelfEvent};
use crate::grid::membership::ChangeRequest;
use crate::grid::peer::{GridStart, PeerClient, PeerError, PeerHandler, ProbeInfo};
use crate::grid::store::{GridStore, HardState, RedbGridStore};
use crate::grid::types::{
    ChangeKind, Entry, Member, MemberState, Message, NodeId, Payload, Topology,
};
use crate::msglog::MessageLog;
use crate::sql::ast::{GridAction, Select, Statement};
use crate::sql::exec::{self, Output, SessionUser};
use crate::sql::value::{SqlType, Value};
use crate::storage::db::{ColumnMeta, LogRecord, TableDef};

/// Marks a node whose add has not committed yet: its database is provisional common data.
pub const JOIN_MARKER: &str = "solgrid.joining";
/// How long the leader waits for a probe answer from a node to add.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the leader waits for a joining node to store the common data.
const GRID_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `CREATE GRID` waits for the founder to become a ready leader.
const FOUNDING_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the system view of grid members.
pub const SYS_GRID_NODES: &str = "SYS_GRID_NODES";

#[derive(Default)]
struct State {
    engine: Option<Arc<Engine>>,
    grid: Option<GridHandle>,
}

/// One node process.
pub struct NodeRuntime {
    pub config: Config,
    pub name: String,
    /// `host:port` where peers reach this node.
    pub addr: String,
    paths: StoragePaths,
    workdir: PathBuf,
    msglog: Arc<MessageLog>,
    state: RwLock<State>,
    /// Serialises grid writes: plan on the applied state, replicate, apply, then the next.
    grid_write: tokio::sync::Mutex<()>,
    /// One membership operation at a time on this leader (probe and grid start included).
    membership_op: tokio::sync::Mutex<()>,
    fatal: Arc<tokio::sync::Notify>,
    /// Peer clients of the data plane, one per address (each keeps its connection).
    peer_clients: Mutex<HashMap<String, PeerClient>>,
    /// Partition loads on this node: `(table id, partition)` → progress.
    loads: Mutex<BTreeMap<(u64, u32), partitioned::LoadState>>,
    /// The moves the GAM saw last (leader), for `grid status`.
    moves: Mutex<Vec<partitioned::MoveStatus>>,
    /// Bumped whenever a grid driver starts, so the background task of an earlier one ends.
    grid_epoch: AtomicU64,
    /// When the next loaded bytes may come under `[Grid] LoadRateLimit` (all loads share it).
    load_pace: Mutex<std::time::Instant>,
}

impl std::fmt::Debug for NodeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeRuntime")
            .field("name", &self.name)
            .finish()
    }
}

fn storage(e: impl std::fmt::Display) -> SolidError {
    SolidError::server(code::STORAGE, e.to_string())
}

/// The peer address of a listen address: its host (localhost when it listens everywhere).
pub fn peer_addr(config: &Config) -> String {
    let host = match config.com.listen.host.as_deref() {
        None | Some("0.0.0.0") | Some("::") => "localhost",
        Some(h) => h,
    };
    format!("{host}:{}", config.com.listen.port)
}

impl NodeRuntime {
    pub fn new(
        config: Config,
        paths: StoragePaths,
        workdir: PathBuf,
        engine: Option<Arc<Engine>>,
        msglog: Arc<MessageLog>,
        fatal: Arc<tokio::sync::Notify>,
    ) -> Arc<NodeRuntime> {
        Arc::new(NodeRuntime {
            name: config.node_name(),
            addr: peer_addr(&config),
            config,
            paths,
            workdir,
            msglog,
            state: RwLock::new(State { engine, grid: None }),
            grid_write: tokio::sync::Mutex::new(()),
            membership_op: tokio::sync::Mutex::new(()),
            fatal,
            peer_clients: Mutex::new(HashMap::new()),
            loads: Mutex::new(BTreeMap::new()),
            moves: Mutex::new(Vec::new()),
            grid_epoch: AtomicU64::new(0),
            load_pace: Mutex::new(std::time::Instant::now()),
        })
    }

    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.state.read().engine.clone()
    }

    pub fn grid(&self) -> Option<GridHandle> {
        self.state.read().grid.clone()
    }

    pub fn is_joining(&self) -> bool {
        self.workdir.join(JOIN_MARKER).exists()
    }

    fn require_engine(&self) -> SolidResult<Arc<Engine>> {
        self.engine().ok_or_else(|| {
            SolidError::server(
                code::NO_DATABASE,
                format!(
                    "node {} has no database: it is an empty grid node (solid -x gridnode) waiting to be added to a grid",
                    self.name
                ),
            )
        })
    }

    fn core_config(&self) -> CoreConfig {
        let g = &self.config.grid;
        CoreConfig {
            election_timeout_ms: g.raft_election_timeout_ms,
            heartbeat_interval_ms: (g.raft_heartbeat_timeout_ms / 2).max(1),
            pre_vote: g.raft_pre_vote,
            change_timeout_ms: (g.raft_election_timeout_ms * 5).max(3000),
            node_failure_timeout_ms: g.node_failure_timeout_ms,
            bugs: Default::default(),
        }
    }

    fn secret(&self) -> String {
        self.config.grid.secret.clone().unwrap_or_default()
    }

    /// Resumes grid membership after a restart, when this node's database holds a grid log.
    pub fn resume_grid(self: &Arc<Self>) -> Result<(), SolidError> {
        let Some(engine) = self.engine() else {
            return Ok(());
        };
        let store = RedbGridStore::open(engine.db()).map_err(storage)?;
        let Some(node_id) = store.node_id().map_err(storage)? else {
            return Ok(());
        };
        self.start_driver(engine, store, node_id)?;
        let v = self.grid().map(|g| g.view()).unwrap_or_default();
        self.msglog.info(format!(
            "grid {}: resumed as node {node_id}, term {}, {} members",
            v.topology.grid,
            v.term,
            v.topology.members.len()
        ));
        Ok(())
    }

    fn start_driver(
        self: &Arc<Self>,
        engine: Arc<Engine>,
        store: RedbGridStore,
        node_id: NodeId,
    ) -> Result<(), SolidError> {
        let r = store.restore().map_err(storage)?;
        let restored = Restored {
            term: r.hard_state.term,
            voted_for: r.hard_state.voted_for,
            commit: r.hard_state.commit,
            snapshot_index: r.snapshot_index,
            snapshot_term: r.snapshot_term,
            snapshot_topology: r.snapshot_topology,
            entries: r.entries,
        };
        let seed = rand::random::<u64>();
        let core = Core::new(node_id, self.core_config(), restored, seed, 0);
        let settings = DriverSettings {
            node_id,
            secret: self.secret(),
            rpc_timeout: Duration::from_millis(self.config.grid.raft_election_timeout_ms.max(500)),
        };
        let (handle, mut events) = driver::spawn(
            settings,
            core,
            Box::new(store),
            engine,
            self.msglog.clone(),
            r.hard_state,
        )?;
        self.state.write().grid = Some(handle);
        let epoch = self.grid_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::spawn(Arc::clone(self).run_partition_background(epoch));
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    SelfEvent::JoinCommitted => {
                        let _ = std::fs::remove_file(me.workdir.join(JOIN_MARKER));
                        me.msglog
                            .info("this node's add committed: it is a grid member");
                    }
                    SelfEvent::JoinAborted => {
                        me.msglog.warning(
                            "this node's add was rolled back: becoming an empty grid node",
                        );
                        me.become_empty().await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Drops provisional common data and returns to an empty `-x gridnode` node.
    async fn become_empty(&self) {
        let (grid, engine) = {
            let mut s = self.state.write();
            (s.grid.take(), s.engine.take())
        };
        if let Some(g) = grid {
            g.stop().await;
        }
        drop(engine);
        // Give in-flight blocking work a moment to release its handles.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Err(e) = crate::engine::remove_database(&self.paths) {
            self.msglog
                .error(format!("cannot remove the provisional database: {e}"));
            return;
        }
        let _ = std::fs::remove_file(self.workdir.join(JOIN_MARKER));
        self.msglog
            .info("empty grid node again: waiting to be added to a grid");
    }

    pub async fn stop(&self) {
        if let Some(g) = self.grid() {
            g.stop().await;
        }
    }

    // ---- statements -----------------------------------------------------------------------

    /// Executes one statement for `user` (privileges already refreshed).
    pub async fn execute(
        self: &Arc<Self>,
        user: SessionUser,
        stmt: Statement,
        ctx: &StatementContext,
    ) -> SolidResult<Output> {
        if let Statement::CreateUnsupported(s) = &stmt
            && self.grid().is_some()
        {
            return Err(SolidError::table(
                code::NOT_SUPPORTED_IN_GRID,
                format!(
                    "cannot create {}: {} are not supported in a grid",
                    s.name,
                    s.object.as_str()
                ),
            ));
        }
        if matches!(
            stmt,
            Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
                | Statement::Select(_)
        ) && let Some(engine) = self.engine()
            && self.placed_table(&engine, &stmt)?.is_some()
        {
            return match stmt {
                Statement::Select(_) => self.partitioned_select(&stmt).await,
                _ => self.partitioned_write(user, stmt, ctx).await,
            };
        }
        match stmt {
            Statement::CreateGrid(s) => {
                require_admin(&user, "CREATE GRID")?;
                self.create_grid(&s.grid).await
            }
            Statement::DropGrid(s) => {
                require_admin(&user, "DROP GRID")?;
                self.drop_grid(&s.grid).await
            }
            Statement::AlterGrid(s) => {
                require_admin(&user, "ALTER GRID")?;
                self.alter_grid(&s.grid, s.action).await
            }
            Statement::Select(s) if s.from.eq_ignore_ascii_case(SYS_GRID_NODES) => {
                self.require_engine()?;
                let (def, rows) = self.grid_nodes_rows();
                exec::select_rows(&def, rows, &s)
            }
            Statement::Select(_) => {
                let engine = self.require_engine()?;
                tokio::task::spawn_blocking(move || engine.execute(&user, &stmt))
                    .await
                    .map_err(storage)?
            }
            stmt => self.write(user, stmt).await,
        }
    }

    /// A statement that changes the database: directly when standalone, through the grid
    /// log (leader only) in a grid.
    ///
    /// A follower answers 18503 (or 18502 without a known leader) before planning anything,
    /// and the leader's core refuses a proposal with them only before appending it; a grid
    /// client relies on that to retry both on the leader (`grid_client`).
    async fn write(&self, user: SessionUser, stmt: Statement) -> SolidResult<Output> {
        let engine = self.require_engine()?;
        let Some(grid) = self.grid() else {
            return tokio::task::spawn_blocking(move || engine.execute(&user, &stmt))
                .await
                .map_err(storage)?;
        };
        let view = grid.view();
        if !view.is_leader() {
            return Err(view.not_leader_error());
        }
        let _serial = self.grid_write.lock().await;
        let planner = engine.clone();
        let output = tokio::task::spawn_blocking(move || planner.plan(&user, &stmt))
            .await
            .map_err(storage)??;
        if let Output::Write { changes, .. } = &output
            && !changes.is_empty()
        {
            let mut changes = changes.clone();
            // A new partitioned table is placed in the same entry: its (empty) partitions
            // get their copies and primaries on the online members at once.
            let placements = partitioned::new_table_placements(&changes, &view.topology.voters());
            changes.extend(placements);
            let record = LogRecord { changes };
            grid.propose(Proposal::Data(record.encode())).await?;
        }
        Ok(output)
    }

    async fn create_grid(self: &Arc<Self>, grid_name: &str) -> SolidResult<Output> {
        if !self.config.grid.grid_enabled {
            return Err(SolidError::grid(
                code::GRID_NOT_ENABLED,
                format!(
                    "node {} is not grid-enabled: set [Grid] GridEnabled = yes in solid.ini",
                    self.name
                ),
            ));
        }
        let engine = self.require_engine()?;
        if let Some(g) = self.grid() {
            return Err(SolidError::grid(
                code::TRANSITION_NOT_ALLOWED,
                format!(
                    "node {} is already a member of grid {}",
                    self.name,
                    g.view().topology.grid
                ),
            ));
        }
        let _op = self.membership_op.lock().await;
        let store = RedbGridStore::open(engine.db()).map_err(storage)?;
        let founder = Member {
            id: 1,
            name: self.name.clone(),
            addr: self.addr.clone(),
            state: MemberState::Online,
        };
        let genesis = Entry {
            term: 1,
            index: 1,
            payload: Payload::CreateGrid {
                grid: grid_name.to_string(),
                founder,
            },
        };
        let mut store_w = store;
        tokio::task::block_in_place(|| -> Result<(), crate::grid::store::StoreError> {
            store_w.append(std::slice::from_ref(&genesis))?;
            store_w.set_hard_state(HardState {
                term: 1,
                voted_for: Some(1),
                commit: 1,
            })?;
            store_w.set_node_id(1)
        })
        .map_err(storage)?;
        self.start_driver(engine, store_w, 1)?;
        let grid = self
            .grid()
            .ok_or_else(|| storage("grid driver did not start"))?;
        if !grid.wait_ready_leader(FOUNDING_TIMEOUT).await {
            // Not 18502: the grid exists now, and clients retry 18502 as "refused before
            // anything happened" (a retried CREATE GRID would fail as a second grid).
            return Err(SolidError::grid(
                code::OUTCOME_UNKNOWN,
                "the grid was created but its founder did not become a ready leader in time; check ADMIN COMMAND 'grid nodeinfo'",
            ));
        }
        self.msglog.info(format!(
            "grid {grid_name} created: this node ({}) is its leader",
            self.name
        ));
        Ok(self.topology_output(&grid.view(), grid.view().topology.config_index))
    }

    async fn drop_grid(self: &Arc<Self>, grid_name: &str) -> SolidResult<Output> {
        let grid = self.member_grid(grid_name)?;
        let view = grid.view();
        if !view.is_leader() {
            return Err(view.not_leader_error());
        }
        if view.topology.members.len() != 1 {
            return Err(SolidError::grid(
                code::TRANSITION_NOT_ALLOWED,
                format!(
                    "DROP GRID needs a one-node grid; grid {} has {} nodes: drop the others first",
                    view.topology.grid,
                    view.topology.members.len()
                ),
            ));
        }
        let _op = self.membership_op.lock().await;
        let _serial = self.grid_write.lock().await;
        let engine = self.require_engine()?;
        grid.stop().await;
        self.state.write().grid = None;
        let mut store = RedbGridStore::open(engine.db()).map_err(storage)?;
        tokio::task::block_in_place(|| store.clear()).map_err(storage)?;
        self.msglog.info(format!(
            "grid {grid_name} dropped: this node is a standalone server again"
        ));
        Ok(Output::Write {
            changes: Vec::new(),
            rows_affected: 0,
        })
    }

    fn member_grid(&self, grid_name: &str) -> SolidResult<GridHandle> {
        let grid = self.grid().ok_or_else(|| {
            SolidError::grid(
                code::UNKNOWN_NODE,
                format!("node {} is not a member of any grid", self.name),
            )
        })?;
        let view = grid.view();
        if !view.topology.grid.eq_ignore_ascii_case(grid_name) {
            return Err(SolidError::grid(
                code::UNKNOWN_NODE,
                format!(
                    "unknown grid {grid_name}: this node is in grid {}",
                    view.topology.grid
                ),
            ));
        }
        Ok(grid)
    }

    async fn alter_grid(
        self: &Arc<Self>,
        grid_name: &str,
        action: GridAction,
    ) -> SolidResult<Output> {
        let grid = self.member_grid(grid_name)?;
        let view = grid.view();
        if !view.is_leader() {
            return Err(view.not_leader_error());
        }
        let Ok(_op) = self.membership_op.try_lock() else {
            return Err(SolidError::grid(
                code::CHANGE_IN_PROGRESS,
                "another membership change is in progress on this leader; try again when it has finished",
            ));
        };
        match action {
            GridAction::AddNode { node, connect } => {
                let addr = format!("{}:{}", connect.host, connect.port);
                self.add_node(&grid, &node, &addr).await
            }
            GridAction::DropNode { node, recycle } => self.drop_node(&grid, &node, recycle).await,
            GridAction::SetNode { node, online } => {
                let kind = if online {
                    ChangeKind::Online
                } else {
                    ChangeKind::Offline
                };
                self.change(&grid, kind, &node).await
            }
        }
    }

    /// DROP NODE: the same transaction as every change; once it committed, the dropped
    /// node (if alive) is told it is out — it may have missed the decision, since the leader
    /// stops replicating to it — and, with RECYCLE, to become an empty grid node.
    async fn drop_node(&self, grid: &GridHandle, node: &str, recycle: bool) -> SolidResult<Output> {
        let change = grid
            .check_change(ChangeRequest {
                kind: ChangeKind::Drop,
                name: node.to_string(),
                addr: None,
            })
            .await?;
        let output = self.run_change(grid, change.clone()).await?;
        let view = grid.view();
        let told = match PeerClient::new(&change.node.addr, &self.secret()) {
            Ok(client) => client
                .dropped(
                    view.node_id,
                    &view.topology.grid,
                    change.node.id,
                    recycle,
                    PROBE_TIMEOUT,
                )
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = told {
            self.msglog.warning(format!(
                "node {} was dropped from grid {} but could not be told ({e}); it learns it when it is next reached",
                change.node.name, view.topology.grid
            ));
        }
        Ok(output)
    }

    /// `ADMIN COMMAND 'grid shutdown'` on the leader: stop every member in order — failure
    /// detection paused so nobody is marked failed, the followers first, the leader last —
    /// so that starting all nodes again gives back the same grid.
    pub async fn grid_shutdown(self: &Arc<Self>) -> SolidResult<Output> {
        let grid = self.grid().ok_or_else(|| {
            SolidError::grid(
                code::UNKNOWN_NODE,
                format!("node {} is not a member of any grid", self.name),
            )
        })?;
        let view = grid.view();
        if !view.is_leader() {
            return Err(view.not_leader_error());
        }
        let _op = self.membership_op.lock().await;
        grid.set_failure_detection(false).await;
        self.msglog.info(format!(
            "grid {}: orderly shutdown of the whole grid requested",
            view.topology.grid
        ));
        let mut rows = Vec::new();
        for m in view
            .topology
            .members
            .values()
            .filter(|m| m.id != view.node_id)
        {
            let result = match PeerClient::new(&m.addr, &self.secret()) {
                Ok(client) => client
                    .shutdown(view.node_id, &view.topology.grid, m.id, PROBE_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let status = match result {
                Ok(()) => "stopping".to_string(),
                Err(e) => format!("not reached: {e}"),
            };
            rows.push(vec![Value::Text(m.name.clone()), Value::Text(status)]);
        }
        rows.push(vec![
            Value::Text(self.name.clone()),
            Value::Text("stopping (leader, last)".into()),
        ]);
        // Reply first, then stop this node.
        let me = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            me.msglog.info("grid shutdown: the leader stops");
            me.fatal.notify_one();
        });
        Ok(Output::Rows {
            columns: vec![
                ("NODE".into(), "VARCHAR".into()),
                ("SHUTDOWN".into(), "VARCHAR".into()),
            ],
            rows,
        })
    }

    /// Leaves the grid after a DROP NODE of this node: the driver stops and the grid log is
    /// cleared; with `recycle` the database goes too and the node is an empty grid node.
    async fn leave_grid(&self, recycle: bool) {
        if recycle {
            self.become_empty().await;
            return;
        }
        let grid = self.state.write().grid.take();
        if let Some(g) = grid {
            g.stop().await;
        }
        if let Some(engine) = self.engine() {
            let result = RedbGridStore::open(engine.db()).and_then(|mut s| s.clear());
            if let Err(e) = result {
                self.msglog
                    .error(format!("cannot clear the grid log after the drop: {e}"));
                return;
            }
        }
        self.msglog
            .info("dropped from the grid: this node is a standalone server with its data");
    }

    async fn change(&self, grid: &GridHandle, kind: ChangeKind, node: &str) -> SolidResult<Output> {
        let change = grid
            .check_change(ChangeRequest {
                kind,
                name: node.to_string(),
                addr: None,
            })
            .await?;
        self.run_change(grid, change).await
    }

    async fn run_change(
        &self,
        grid: &GridHandle,
        change: crate::grid::types::Change,
    ) -> SolidResult<Output> {
        match grid.propose(Proposal::Change(change)).await? {
            Outcome::ChangeCommitted { index, topology } => {
                // The reply shows the topology as committed, not the view of a moment ago.
                let mut view = grid.view();
                view.topology = topology;
                Ok(self.topology_output(&view, index))
            }
            Outcome::Committed { index } => Ok(self.topology_output(&grid.view(), index)),
        }
    }

    async fn add_node(&self, grid: &GridHandle, name: &str, addr: &str) -> SolidResult<Output> {
        let change = grid
            .check_change(ChangeRequest {
                kind: ChangeKind::Add,
                name: name.to_string(),
                addr: Some(addr.to_string()),
            })
            .await?;
        let me = grid.view().node_id;
        let client =
            PeerClient::new(addr, &self.secret()).map_err(|e| peer_failure(e, name, addr))?;
        let probe = client
            .probe(me, PROBE_TIMEOUT)
            .await
            .map_err(|e| peer_failure(e, name, addr))?;
        if !probe.grid_enabled {
            return Err(SolidError::grid(
                code::GRID_NOT_ENABLED,
                format!("node {name} at {addr} is not grid-enabled ([Grid] GridEnabled = no)"),
            ));
        }
        if probe.has_data {
            return Err(SolidError::grid(
                code::NODE_HAS_DATA,
                format!(
                    "node {name} at {addr} already has a database or transaction log; only an empty node (solid -x gridnode) can be added"
                ),
            ));
        }
        if !probe.name.is_empty() && !probe.name.eq_ignore_ascii_case(name) {
            return Err(SolidError::grid(
                code::UNKNOWN_NODE,
                format!("the node at {addr} is named {}, not {name}", probe.name),
            ));
        }
        // The common data, consistent with the topology it is taken at; no grid write runs
        // meanwhile, so the joining node starts exactly where the log continues.
        let snapshot = {
            let _serial = self.grid_write.lock().await;
            grid.snapshot().await?
        };
        let view = grid.view();
        let start = GridStart {
            grid: snapshot.grid.clone(),
            node_id: change.node.id,
            leader_id: view.node_id,
            leader_term: view.term,
            snapshot: postcard::to_stdvec(&snapshot).map_err(storage)?,
        };
        client
            .grid_start(start, GRID_START_TIMEOUT)
            .await
            .map_err(|e| peer_failure(e, name, addr))?;
        self.msglog.info(format!(
            "grid {}: node {name} at {addr} stored the common data (index {}); preparing ADD NODE",
            snapshot.grid, snapshot.index
        ));
        let result = self.run_change(grid, change.clone()).await;
        if let Err(e) = &result
            && e.code == code::ROLLED_BACK
        {
            // Best effort: the node may be dead; a later add replaces its provisional data.
            if let Err(err) = client
                .abandon(me, &snapshot.grid, change.node.id, PROBE_TIMEOUT)
                .await
            {
                tracing::info!("abandon of {name} failed: {err}");
            }
        }
        result
    }

    // ---- views -------------------------------------------------------------------------

    fn grid_nodes_def() -> TableDef {
        let col = |name: &str, sql_type| ColumnMeta {
            name: name.into(),
            sql_type,
            not_null: false,
        };
        TableDef {
            id: 0,
            name: SYS_GRID_NODES.into(),
            columns: vec![
                col("NODE_ID", SqlType::BigInt),
                col("NAME", SqlType::Varchar(64)),
                col("ADDRESS", SqlType::Varchar(300)),
                col("STATE", SqlType::Varchar(32)),
                col("ROLE", SqlType::Varchar(16)),
                col("TERM", SqlType::BigInt),
                col("LAST_HEARD_MS", SqlType::BigInt),
                col("CONFIG_INDEX", SqlType::BigInt),
            ],
            primary_key: vec![0],
            partitioning: None,
        }
    }

    fn grid_nodes_rows(&self) -> (TableDef, Vec<Vec<Value>>) {
        match self.grid() {
            Some(grid) => Self::grid_nodes_rows_of(&grid.view()),
            None => (Self::grid_nodes_def(), Vec::new()),
        }
    }

    fn grid_nodes_rows_of(v: &GridView) -> (TableDef, Vec<Vec<Value>>) {
        let def = Self::grid_nodes_def();
        let rows = v
            .topology
            .members
            .values()
            .map(|m| {
                vec![
                    Value::Int(m.id as i64),
                    Value::Text(m.name.clone()),
                    Value::Text(m.addr.clone()),
                    Value::Text(m.state.as_str().into()),
                    Value::Text(role_of(v, m).into()),
                    Value::Int(v.term as i64),
                    v.last_heard_ago_ms
                        .get(&m.id)
                        .map_or(Value::Null, |t| Value::Int(*t as i64)),
                    Value::Int(v.topology.config_index as i64),
                ]
            })
            .collect();
        (def, rows)
    }

    fn topology_output(&self, view: &GridView, index: u64) -> Output {
        let (def, rows) = Self::grid_nodes_rows_of(view);
        let mut columns = vec![("CONFIG_INDEX".to_string(), "BIGINT".to_string())];
        columns.extend(
            def.columns
                .iter()
                .filter(|c| c.name != "CONFIG_INDEX" && c.name != "LAST_HEARD_MS")
                .map(|c| (c.name.clone(), c.sql_type.to_string())),
        );
        let rows = rows
            .into_iter()
            .map(|r| {
                let mut out = vec![Value::Int(index as i64)];
                out.extend(r.into_iter().take(6));
                out
            })
            .collect();
        Output::Rows { columns, rows }
    }

    /// `ADMIN COMMAND 'grid nodeinfo'`.
    pub fn nodeinfo(&self) -> SolidResult<Output> {
        if self.grid().is_none() {
            return Err(SolidError::grid(
                code::UNKNOWN_NODE,
                format!("node {} is not a member of any grid", self.name),
            ));
        }
        let (def, rows) = self.grid_nodes_rows();
        let select = Select {
            items: vec![crate::sql::ast::SelectItem::Wildcard],
            from: SYS_GRID_NODES.into(),
            filter: None,
            order_by: Vec::new(),
            limit: None,
        };
        exec::select_rows(&def, rows, &select)
    }

    pub fn probe_info(&self) -> ProbeInfo {
        let view = self.grid().map(|g| g.view());
        let has_data = self.engine().is_some() && !self.is_joining();
        ProbeInfo {
            name: self.name.clone(),
            version: crate::VERSION.to_string(),
            grid_enabled: self.config.grid.grid_enabled,
            has_data,
            in_grid: view
                .as_ref()
                .filter(|_| !self.is_joining())
                .map(|v| v.topology.grid.clone()),
            node_id: view.map(|v| v.node_id),
            listen_addr: self.addr.clone(),
        }
    }

    async fn join(self: &Arc<Self>, req: GridStart) -> SolidResult<()> {
        // A member that fell too far behind gets the same common data as a snapshot.
        if let Some(grid) = self.grid() {
            let view = grid.view();
            if view.node_id == req.node_id
                && view.topology.grid.eq_ignore_ascii_case(&req.grid)
                && !self.is_joining()
            {
                let snapshot: GridSnapshot = postcard::from_bytes(&req.snapshot)
                    .map_err(|e| SolidError::server(code::BAD_REQUEST, format!("snapshot: {e}")))?;
                return grid.install_snapshot(snapshot, req.leader_term).await;
            }
        }
        if !self.config.grid.grid_enabled {
            return Err(SolidError::grid(
                code::GRID_NOT_ENABLED,
                "this node is not grid-enabled",
            ));
        }
        if self.engine().is_some() && !self.is_joining() {
            return Err(SolidError::grid(
                code::NODE_HAS_DATA,
                "this node already has a database; it obeys a grid start only while empty",
            ));
        }
        if self.is_joining() {
            // A new add replaces provisional data left by one that did not commit.
            self.become_empty().await;
        }
        let snapshot: GridSnapshot = postcard::from_bytes(&req.snapshot).map_err(|e| {
            SolidError::server(code::BAD_REQUEST, format!("grid start snapshot: {e}"))
        })?;
        std::fs::write(
            self.workdir.join(JOIN_MARKER),
            format!("{} {}", snapshot.grid, req.node_id),
        )
        .map_err(storage)?;
        let paths = self.paths.clone();
        let msglog = self.msglog.clone();
        let engine = tokio::task::spawn_blocking(move || -> SolidResult<Arc<Engine>> {
            let engine = Engine::create_for_join(&paths, msglog).map_err(storage)?;
            engine
                .restore(&snapshot.dump, snapshot.index)
                .map_err(storage)?;
            let mut store = RedbGridStore::open(engine.db()).map_err(storage)?;
            store
                .reset_to_snapshot(snapshot.index, snapshot.term)
                .map_err(storage)?;
            store
                .set_snapshot_topology(&snapshot.topology)
                .map_err(storage)?;
            store
                .set_hard_state(HardState {
                    term: req.leader_term,
                    voted_for: None,
                    commit: snapshot.index,
                })
                .map_err(storage)?;
            store.set_node_id(req.node_id).map_err(storage)?;
            Ok(Arc::new(engine))
        })
        .await
        .map_err(storage)??;
        crate::grid::fault::point("joiner-after-common-data");
        self.state.write().engine = Some(engine.clone());
        let store = RedbGridStore::open(engine.db()).map_err(storage)?;
        self.start_driver(engine, store, req.node_id)?;
        self.msglog.info(format!(
            "grid start from leader {}: stored the common data of grid {} as node {}",
            req.leader_id, req.grid, req.node_id
        ));
        Ok(())
    }
}

/// A member's role as `v`'s node sees it: `LEADER`, `FOLLOWER`, `LEARNER` (being added or
/// reconnecting) or `NONE` (offline, failed, …). Shown by `SYS_GRID_NODES` and the client
/// service's `Topology`.
pub fn role_of(v: &GridView, m: &Member) -> &'static str {
    if v.leader == Some(m.id) {
        "LEADER"
    } else {
        match m.state {
            MemberState::Online | MemberState::Disconnecting | MemberState::BeingDropped => {
                "FOLLOWER"
            }
            MemberState::BeingAdded | MemberState::Reconnecting => "LEARNER",
            _ => "NONE",
        }
    }
}

fn require_admin(user: &SessionUser, what: &str) -> SolidResult<()> {
    if user.admin {
        Ok(())
    } else {
        Err(SolidError::not_permitted(what))
    }
}

fn peer_failure(e: PeerError, name: &str, addr: &str) -> SolidError {
    match e {
        PeerError::Unreachable(why) => SolidError::grid(
            code::NODE_UNREACHABLE,
            format!("node {name} at {addr} is unreachable or did not answer in time: {why}"),
        ),
        other => other.to_solid(&format!("node {name} at {addr}")),
    }
}

#[tonic::async_trait]
impl PeerHandler for NodeRuntimeHandle {
    async fn message(&self, from: NodeId, msg: Message) -> Result<Message, SolidError> {
        match self.0.grid() {
            Some(g) => g.peer_message(from, msg).await,
            None => Err(SolidError::grid(
                code::UNKNOWN_NODE,
                format!("node {} is not a member of any grid", self.0.name),
            )),
        }
    }

    async fn probe(&self) -> ProbeInfo {
        self.0.probe_info()
    }

    async fn grid_start(&self, req: GridStart) -> Result<(), SolidError> {
        let _op = self.0.membership_op.lock().await;
        self.0.join(req).await
    }

    async fn dropped(
        &self,
        grid: String,
        node_id: NodeId,
        recycle: bool,
    ) -> Result<(), SolidError> {
        self.0.check_identity(&grid, node_id)?;
        self.0.msglog.warning(format!(
            "grid {grid}: this node was dropped from the grid{}",
            if recycle {
                " (RECYCLE: deleting its database)"
            } else {
                ""
            }
        ));
        let runtime = Arc::clone(&self.0);
        // Answer first; the node leaves right after.
        tokio::spawn(async move { runtime.leave_grid(recycle).await });
        Ok(())
    }

    async fn shutdown(&self, grid: String, node_id: NodeId) -> Result<(), SolidError> {
        self.0.check_identity(&grid, node_id)?;
        self.0.msglog.info(format!(
            "grid {grid}: the leader shuts the grid down; stopping"
        ));
        if let Some(g) = self.0.grid() {
            g.set_failure_detection(false).await;
        }
        self.0.fatal.notify_one();
        Ok(())
    }

    async fn propose(&self, from: NodeId, record: Vec<u8>) -> Result<u64, SolidError> {
        self.0.propose_from_peer(from, record).await
    }

    async fn primary_execute(
        &self,
        req: crate::grid::peer::pb::PrimaryExecuteRequest,
    ) -> Result<u64, SolidError> {
        self.0.primary_execute_from_peer(req).await
    }

    async fn scan(
        &self,
        req: crate::grid::peer::pb::ScanRequest,
    ) -> Result<crate::grid::peer::ScanStream, SolidError> {
        self.0.scan(req).await
    }

    async fn load_status(&self) -> Vec<crate::grid::peer::pb::LoadProgress> {
        self.0.load_progress()
    }

    async fn abandon(&self, grid: String, node_id: NodeId) -> Result<(), SolidError> {
        if !self.0.is_joining() {
            return Ok(());
        }
        let view = self.0.grid().map(|g| g.view()).unwrap_or_default();
        if view.node_id == node_id && view.topology.grid.eq_ignore_ascii_case(&grid) {
            self.0.msglog.warning(format!(
                "grid {grid}: the add of this node was rolled back by the leader"
            ));
            self.0.become_empty().await;
        }
        Ok(())
    }
}

impl NodeRuntime {
    /// Refuses a leader's request meant for another node or grid.
    fn check_identity(&self, grid: &str, node_id: NodeId) -> SolidResult<()> {
        let view = self.grid().map(|g| g.view()).unwrap_or_default();
        if view.node_id != node_id || !view.topology.grid.eq_ignore_ascii_case(grid) {
            return Err(SolidError::grid(
                code::UNKNOWN_NODE,
                format!("this node is not node {node_id} of grid {grid}"),
            ));
        }
        Ok(())
    }
}

/// The peer handler: a thin wrapper so the runtime can be shared with the peer service.
pub struct NodeRuntimeHandle(pub Arc<NodeRuntime>);

/// Fatal-hook plumbing for the server.
impl NodeRuntime {
    pub fn fatal(&self) -> Arc<tokio::sync::Notify> {
        self.fatal.clone()
    }

    pub fn view(&self) -> Option<GridView> {
        self.grid().map(|g| g.view())
    }

    pub fn topology(&self) -> Option<Topology> {
        self.view().map(|v| v.topology)
    }

    pub fn role(&self) -> Option<Role> {
        self.view().and_then(|v| v.role)
    }
}

impl NodeRuntime {
    /// `standalone`, `gridnode` (empty, waiting to be added), `joining` or `grid member`.
    pub fn mode(&self) -> &'static str {
        match (
            self.engine().is_some(),
            self.grid().is_some(),
            self.is_joining(),
        ) {
            (false, _, _) => "gridnode",
            (true, true, true) => "joining",
            (true, true, false) => "grid member",
            (true, false, _) => "standalone",
        }
    }
}
