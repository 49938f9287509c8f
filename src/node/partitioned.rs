//! Partitioned tables on a grid node (design §6): where a statement on a partitioned table
//! runs, the data plane between nodes, partition loads, and the Grid Availability Manager's
//! driver.
//!
//! **Writes.** Every write is still one entry of the single grid log, so it is durable on a
//! majority of the voters before it is acknowledged and every node applies the log in the
//! same order; what partitioning changes is *who plans* a write and *who stores* its rows.
//! A partition's primary plans the writes of that partition against its own copy (which
//! holds every committed write of it), serialised on the node, and proposes the record with
//! a `RequirePrimary` precondition per partition it touched; the leader only orders it. Each
//! node then keeps the rows of the partitions it has a copy of (`engine::localize`). If the
//! primary moved between planning and commit, every node skips the record alike and the
//! planner answers 13630 ("moved"), which the coordinator retries: nothing was applied.
//!
//! **Routing.** The node a client talks to coordinates: a keyed statement (INSERT, or a
//! WHERE that pins every partition-key column) goes to the primary of its partition — run
//! here when this node is that primary, forwarded for a grid connection, refused with 13630
//! on a direct connection. UPDATE/DELETE without a pinned key are *distributed by default*:
//! every primary runs the statement for its own partitions (atomic per primary, not across
//! them). SELECT reads every partition it needs from that partition's primary and
//! evaluates the query here.
//!
//! **Loads.** A copy placed on this node starts `Loading`: its writes are deferred while a
//! background task streams the partition from a ready copy (one read snapshot, throttled by
//! `[Grid] LoadRateLimit`), then `finish_load` applies the deferred writes newer than the
//! snapshot. The GAM on the leader sees the finished load (`LoadStatus`) and commits the
//! copy `Ready`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::error::{SolidError, SolidResult, code};
use crate::grid::core::{Outcome, Proposal};
use crate::grid::driver::{GridHandle, GridView};
use crate::grid::gam::{self, Action, GamConfig};
use crate::grid::peer::{PeerClient, PeerError, ScanStream, pb};
use crate::grid::placement::{CopyState, PartitionPlacement, TablePlacement};
use crate::grid::types::{MemberState, NodeId};
use crate::sql::ast::{Expr, Statement};
use crate::sql::exec::{self, Output, SessionUser};
use crate::storage::db::{Change, LogRecord, TableDef, decode_row, partition_of_key};

use super::{NodeRuntime, storage};

/// Bound on one data-plane call between nodes (a forwarded write, a proposal).
const DATA_RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one partition load's stream.
const LOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Encoded row bytes per scan chunk.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// How often the GAM and the load supervisor look at the placement.
const BACKGROUND_PERIOD: Duration = Duration::from_millis(300);
/// Retries of a write whose partition moved while it was planned.
const MOVED_RETRIES: usize = 20;
/// Partition loads the GAM runs at once.
const MAX_CONCURRENT_LOADS: usize = 4;

/// How a statement reached this node.
#[derive(Debug, Clone, Default)]
pub struct StatementContext {
    /// The statement's text (forwarded to other nodes as is).
    pub text: String,
    /// The client is a grid connection: keyed statements for partitions whose primary is
    /// elsewhere are forwarded rather than refused with 13630.
    pub grid_connection: bool,
}

/// A partition load running (or finished) on this node, for `LoadStatus`.
#[derive(Debug, Clone, Default)]
pub struct LoadState {
    pub source: NodeId,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub started: Option<Instant>,
    pub elapsed_ms: u64,
    pub finished: bool,
    pub running: bool,
    pub error: String,
}

/// What the leader's GAM last learnt about the loads in the grid (`grid status`).
#[derive(Debug, Clone)]
pub struct MoveStatus {
    pub table: String,
    pub partition: u32,
    pub from: NodeId,
    pub to: NodeId,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub elapsed_ms: u64,
    pub error: String,
}

fn not_primary(why: impl Into<String>) -> SolidError {
    SolidError::table(code::NOT_PRIMARY, why)
}

fn peer_error(e: PeerError, what: &str) -> SolidError {
    match e {
        PeerError::Refused(e) => e,
        other => SolidError::grid(code::NODE_UNREACHABLE, format!("{what}: {other}")),
    }
}

/// The table a statement reads or writes, if it is one of the DML statements.
fn dml_table(stmt: &Statement) -> Option<&str> {
    match stmt {
        Statement::Insert(s) => Some(&s.table),
        Statement::Update(s) => Some(&s.table),
        Statement::Delete(s) => Some(&s.table),
        Statement::Select(s) => Some(&s.from),
        _ => None,
    }
}

fn filter_of(stmt: &Statement) -> Option<&Expr> {
    match stmt {
        Statement::Update(s) => s.filter.as_ref(),
        Statement::Delete(s) => s.filter.as_ref(),
        Statement::Select(s) => s.filter.as_ref(),
        _ => None,
    }
}

impl NodeRuntime {
    /// A cached peer client for `addr` (one HTTP/2 connection per peer).
    pub(super) fn peer_client(&self, addr: &str) -> Result<PeerClient, PeerError> {
        let mut peers = self.peer_clients.lock();
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let c = PeerClient::new(addr, &self.secret())?;
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// The partitioned table (with its placement) a DML statement works on, when this node
    /// is a grid member and the table is placed; `None` sends the statement down the
    /// ordinary path.
    pub(super) fn placed_table(
        &self,
        engine: &Engine,
        stmt: &Statement,
    ) -> SolidResult<Option<(TableDef, Vec<PartitionPlacement>)>> {
        let Some(name) = dml_table(stmt) else {
            return Ok(None);
        };
        if self.grid().is_none() {
            return Ok(None);
        }
        let snap = engine.read_snapshot()?;
        let Some(def) = snap.table(name).map_err(storage)? else {
            return Ok(None);
        };
        if def.partitioning.is_none() {
            return Ok(None);
        }
        let placement = snap.placement(def.id).map_err(storage)?;
        if placement.is_empty() {
            return Ok(None);
        }
        Ok(Some((def, placement)))
    }

    /// The partitions a statement on `def` touches (`None`: every partition).
    fn target_partitions(def: &TableDef, stmt: &Statement) -> SolidResult<Option<BTreeSet<u32>>> {
        let partitioning = def.partitioning.as_ref().expect("a partitioned table");
        match stmt {
            Statement::Insert(s) => Ok(Some(
                exec::insert_rows(def, s)?
                    .iter()
                    .map(|r| partitioning.partition_of_row(r))
                    .collect(),
            )),
            Statement::Update(s)
                if s.assignments.iter().any(|(col, _)| {
                    partitioning
                        .key
                        .iter()
                        .any(|&k| def.columns[k].name == *col)
                }) =>
            {
                Err(SolidError::table(
                    code::NOT_SUPPORTED_IN_GRID,
                    format!(
                        "UPDATE of a partition-key column of partitioned table {} is not supported: delete the row and insert it again",
                        def.name
                    ),
                ))
            }
            other => Ok(exec::pinned_partition(def, filter_of(other)).map(|p| [p].into())),
        }
    }

    /// Groups partitions by their primary; a partition without one cannot be served.
    fn by_primary(
        def: &TableDef,
        placement: &[PartitionPlacement],
        partitions: impl IntoIterator<Item = u32>,
    ) -> SolidResult<BTreeMap<NodeId, Vec<u32>>> {
        let mut out: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for p in partitions {
            let Some(primary) = placement.get(p as usize).and_then(|pl| pl.primary) else {
                return Err(not_primary(format!(
                    "partition {p} of table {} has no primary: no ready copy is on a live node",
                    def.name
                )));
            };
            out.entry(primary).or_default().push(p);
        }
        Ok(out)
    }

    fn member_addr(view: &GridView, node: NodeId) -> SolidResult<String> {
        view.topology
            .members
            .get(&node)
            .map(|m| m.addr.clone())
            .ok_or_else(|| {
                SolidError::grid(code::UNKNOWN_NODE, format!("node {node} is not a member"))
            })
    }

    fn member_name(view: &GridView, node: NodeId) -> String {
        view.topology.members.get(&node).map_or_else(
            || format!("node {node}"),
            |m| format!("{} at {}", m.name, m.addr),
        )
    }

    /// A write statement on a placed partitioned table (see the module comment).
    pub(super) async fn partitioned_write(
        self: &Arc<Self>,
        user: SessionUser,
        stmt: Statement,
        ctx: &StatementContext,
    ) -> SolidResult<Output> {
        let engine = self.require_engine()?;
        // Partitions still to write: a group refused because its partition moved changed
        // nothing, so only those partitions are tried again; the others are done.
        let mut remaining: Option<BTreeSet<u32>> = None;
        let mut total = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some((def, placement)) = self.placed_table(&engine, &stmt)? else {
                return Err(SolidError::table(
                    code::TABLE_NOT_FOUND,
                    "the partitioned table is gone",
                ));
            };
            let targets = match (&remaining, Self::target_partitions(&def, &stmt)?) {
                (Some(r), _) => r.clone(),
                (None, Some(t)) => t,
                (None, None) => (0..placement.len() as u32).collect(),
            };
            let distributed = matches!(stmt, Statement::Update(_) | Statement::Delete(_))
                && exec::pinned_partition(&def, filter_of(&stmt)).is_none();
            let groups = Self::by_primary(&def, &placement, targets)?;
            let view = self.grid().map(|g| g.view()).unwrap_or_default();
            let me = view.node_id;
            let remote = groups.keys().any(|&n| n != me);
            if remote && !distributed && !ctx.grid_connection {
                let (p, node) = groups
                    .iter()
                    .find(|(n, _)| **n != me)
                    .map(|(n, ps)| (ps[0], *n))
                    .expect("a remote group");
                return Err(not_primary(format!(
                    "this node holds no primary for the row: the primary of partition {p} of table {} is node {}; run the statement there or use a grid connection",
                    def.name,
                    Self::member_name(&view, node)
                )));
            }
            let min_applied = engine.grid_applied_index()?;
            let mut calls = tokio::task::JoinSet::new();
            for (node, partitions) in groups {
                let this = Arc::clone(self);
                let user = user.clone();
                let stmt = stmt.clone();
                let view = view.clone();
                let text = ctx.text.clone();
                calls.spawn(async move {
                    let result = if node == me {
                        this.execute_as_primary(&user, &stmt, &partitions).await
                    } else {
                        this.forward_to_primary(&view, node, &user, text, &partitions, min_applied)
                            .await
                    };
                    (partitions, result)
                });
            }
            let mut moved = BTreeSet::new();
            let mut last_moved = None;
            let mut failed = None;
            while let Some(r) = calls.join_next().await {
                let (partitions, result) = r.map_err(storage)?;
                match result {
                    Ok(n) => total += n,
                    Err(e) if e.code == code::NOT_PRIMARY => {
                        moved.extend(partitions);
                        last_moved = Some(e);
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            match last_moved {
                None => {
                    return Ok(Output::Write {
                        changes: Vec::new(),
                        rows_affected: total,
                    });
                }
                Some(e) if attempt < MOVED_RETRIES => {
                    tracing::debug!("partitions moved during a write, retrying them: {e}");
                    remaining = Some(moved);
                    tokio::time::sleep(Duration::from_millis(20 * attempt as u64)).await;
                }
                Some(e) => return Err(e),
            }
        }
    }

    /// Sends a write to the primary `node` of `partitions` (`PrimaryExecute`).
    async fn forward_to_primary(
        &self,
        view: &GridView,
        node: NodeId,
        user: &SessionUser,
        statement: String,
        partitions: &[u32],
        min_applied: u64,
    ) -> SolidResult<u64> {
        let addr = Self::member_addr(view, node)?;
        let client = self
            .peer_client(&addr)
            .map_err(|e| peer_error(e, "forwarding to the primary"))?;
        let req = pb::PrimaryExecuteRequest {
            from: view.node_id,
            user: user.name.clone(),
            statement,
            partitions: partitions.to_vec(),
            min_applied,
        };
        client
            .primary_execute(req, DATA_RPC_TIMEOUT)
            .await
            .map_err(|e| peer_error(e, "forwarding to the primary"))
    }

    /// Runs a write as the primary of `partitions`: plans it on this node's copies, keeps
    /// the rows of those partitions, and replicates it with a `RequirePrimary` per
    /// partition touched. Returns the rows affected.
    pub(super) async fn execute_as_primary(
        self: &Arc<Self>,
        user: &SessionUser,
        stmt: &Statement,
        partitions: &[u32],
    ) -> SolidResult<u64> {
        let engine = self.require_engine()?;
        let grid = self
            .grid()
            .ok_or_else(|| SolidError::grid(code::NO_LEADER, "this node is not in a grid"))?;
        let me = grid.view().node_id;
        // One write planned at a time on this node: a plan must see every earlier write of
        // the partitions it touches (duplicate keys, updates).
        let _serial = self.grid_write.lock().await;
        let Some((def, placement)) = self.placed_table(&engine, stmt)? else {
            return Err(not_primary("the table has no partition placement here"));
        };
        let wanted: BTreeSet<u32> = partitions.iter().copied().collect();
        let snap = engine.read_snapshot()?;
        for &p in &wanted {
            let primary = placement.get(p as usize).and_then(|pl| pl.primary);
            if primary != Some(me) || snap.is_lost(def.id, p).map_err(storage)? {
                return Err(not_primary(format!(
                    "partition {p} of table {} moved: this node is not its primary (or its copy is being loaded again)",
                    def.name
                )));
            }
        }
        drop(snap);
        // An INSERT plans only its rows of these partitions: the others belong to other
        // primaries, and checking them here against a secondary copy could see a row that
        // their primary inserted a moment ago.
        let stmt = match stmt {
            Statement::Insert(ins) => {
                let partitioning = def.partitioning.as_ref().expect("a partitioned table");
                let rows = exec::insert_rows(&def, ins)?;
                let mut mine = ins.clone();
                mine.rows = ins
                    .rows
                    .iter()
                    .zip(&rows)
                    .filter(|(_, r)| wanted.contains(&partitioning.partition_of_row(r)))
                    .map(|(e, _)| e.clone())
                    .collect();
                if mine.rows.is_empty() {
                    return Ok(0);
                }
                Statement::Insert(mine)
            }
            other => other.clone(),
        };
        let stmt = &stmt;
        let planner = engine.clone();
        let (plan_user, plan_stmt) = (user.clone(), stmt.clone());
        let output = tokio::task::spawn_blocking(move || planner.plan(&plan_user, &plan_stmt))
            .await
            .map_err(storage)??;
        let Output::Write { changes, .. } = output else {
            return Err(SolidError::server(
                code::BAD_REQUEST,
                "not a write statement",
            ));
        };
        let mut kept = Vec::with_capacity(changes.len());
        let mut touched = BTreeSet::new();
        let mut rows = 0;
        for c in changes {
            let key = match &c {
                Change::PutRow { table_id, key, .. } | Change::DeleteRow { table_id, key }
                    if *table_id == def.id =>
                {
                    key
                }
                _ => {
                    kept.push(c);
                    continue;
                }
            };
            let p = partition_of_key(key).expect("a partitioned key");
            if !wanted.contains(&p) {
                // Another primary writes it: an INSERT's row the coordinator sent there, or
                // a row of a copy this node holds as a secondary.
                continue;
            }
            let counts = match stmt {
                Statement::Delete(_) => matches!(c, Change::DeleteRow { .. }),
                _ => matches!(c, Change::PutRow { .. }),
            };
            rows += u64::from(counts);
            touched.insert(p);
            kept.push(c);
        }
        if kept.is_empty() {
            return Ok(0);
        }
        for &p in &touched {
            kept.push(Change::RequirePrimary {
                table_id: def.id,
                partition: p,
                node: me,
            });
        }
        let record = LogRecord { changes: kept };
        self.replicate_as_primary(&grid, &engine, record).await?;
        Ok(rows)
    }

    /// Has the leader replicate a planned record and waits until this node applied it.
    async fn replicate_as_primary(
        &self,
        grid: &GridHandle,
        engine: &Arc<Engine>,
        record: LogRecord,
    ) -> SolidResult<()> {
        let view = grid.view();
        let bytes = record.encode();
        let index = if view.is_leader() {
            match grid.propose(Proposal::Data(bytes)).await? {
                Outcome::Committed { index } | Outcome::ChangeCommitted { index, .. } => index,
            }
        } else {
            let Some(leader) = view.leader_member() else {
                return Err(view.not_leader_error());
            };
            let client = self
                .peer_client(&leader.addr)
                .map_err(|e| peer_error(e, "the grid leader"))?;
            match client.propose(view.node_id, bytes, DATA_RPC_TIMEOUT).await {
                Ok(index) => index,
                Err(PeerError::Refused(e)) => return Err(e),
                Err(e) => {
                    return Err(SolidError::grid(
                        code::OUTCOME_UNKNOWN,
                        format!(
                            "outcome unknown: the grid leader did not answer ({e}); check the row before writing it again"
                        ),
                    ));
                }
            }
        };
        // Acknowledged only once this primary applied it: a read here sees it.
        if !applied_within(engine, index).await? {
            return Err(SolidError::grid(
                code::OUTCOME_UNKNOWN,
                "outcome unknown: the write committed but this node did not apply it in time",
            ));
        }
        match engine.rejection(index) {
            None => Ok(()),
            Some(why) => Err(not_primary(why)),
        }
    }

    /// The leader's side of a primary's `Propose`.
    pub(super) async fn propose_from_peer(
        &self,
        from: NodeId,
        record: Vec<u8>,
    ) -> SolidResult<u64> {
        let (grid, _) = self.leader_grid()?;
        LogRecord::decode(&record).map_err(|e| {
            SolidError::server(code::BAD_REQUEST, format!("record from node {from}: {e}"))
        })?;
        match grid.propose(Proposal::Data(record)).await? {
            Outcome::Committed { index } | Outcome::ChangeCommitted { index, .. } => Ok(index),
        }
    }

    /// This node's grid handle and view when it leads (18503/18502 otherwise).
    fn leader_grid(&self) -> SolidResult<(GridHandle, GridView)> {
        let grid = self
            .grid()
            .ok_or_else(|| SolidError::grid(code::NO_LEADER, "this node is not in a grid"))?;
        let view = grid.view();
        if !view.is_leader() {
            return Err(view.not_leader_error());
        }
        Ok((grid, view))
    }

    /// A primary's side of `PrimaryExecute`.
    pub(super) async fn primary_execute_from_peer(
        self: &Arc<Self>,
        req: pb::PrimaryExecuteRequest,
    ) -> SolidResult<u64> {
        let engine = self.require_engine()?;
        wait_applied(&engine, req.min_applied).await?;
        let stmt = crate::sql::parser::parse_statement(&req.statement)?;
        if !matches!(
            stmt,
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
        ) {
            return Err(SolidError::server(
                code::BAD_REQUEST,
                "PrimaryExecute runs INSERT, UPDATE or DELETE only",
            ));
        }
        let who = SessionUser {
            name: req.user.clone(),
            admin: false,
        };
        let refresh = engine.clone();
        let user = tokio::task::spawn_blocking(move || refresh.refresh_user(&who))
            .await
            .map_err(storage)??;
        self.execute_as_primary(&user, &stmt, &req.partitions).await
    }

    /// SELECT on a placed partitioned table: every partition it needs, from its primary.
    pub(super) async fn partitioned_select(
        self: &Arc<Self>,
        stmt: &Statement,
    ) -> SolidResult<Output> {
        let engine = self.require_engine()?;
        let Statement::Select(s) = stmt else {
            return Err(SolidError::server(code::BAD_REQUEST, "not a SELECT"));
        };
        let Some((def, placement)) = self.placed_table(&engine, stmt)? else {
            return Err(SolidError::table(
                code::TABLE_NOT_FOUND,
                "the table is gone",
            ));
        };
        let targets: Vec<u32> = match exec::pinned_partition(&def, s.filter.as_ref()) {
            Some(p) => vec![p],
            None => (0..placement.len() as u32).collect(),
        };
        let groups = Self::by_primary(&def, &placement, targets)?;
        let view = self.grid().map(|g| g.view()).unwrap_or_default();
        let mut rows = Vec::new();
        for (node, partitions) in groups {
            let req = pb::ScanRequest {
                from: view.node_id,
                table_id: def.id,
                partitions,
                min_applied: 0,
                require_primary: true,
            };
            let raw = if node == view.node_id {
                collect_scan(self.scan(req).await?).await?
            } else {
                let addr = Self::member_addr(&view, node)?;
                let client = self
                    .peer_client(&addr)
                    .map_err(|e| peer_error(e, "reading from the primary"))?;
                let stream = client
                    .scan(req, DATA_RPC_TIMEOUT)
                    .await
                    .map_err(|e| peer_error(e, "reading from the primary"))?;
                collect_remote_scan(stream).await?
            };
            for (_, bytes) in raw {
                rows.push(decode_row(&def, &bytes).map_err(storage)?);
            }
        }
        exec::select_rows(&def, rows, s)
    }

    /// The rows of some partitions of a table from one read snapshot (see `ScanRequest`).
    pub(super) async fn scan(&self, req: pb::ScanRequest) -> SolidResult<ScanStream> {
        let engine = self.require_engine()?;
        let me = self.grid().map(|g| g.view().node_id).unwrap_or_default();
        wait_applied(&engine, req.min_applied).await?;
        let snap = engine.read_snapshot()?;
        let def = snap
            .table_by_id(req.table_id)
            .map_err(storage)?
            .ok_or_else(|| {
                SolidError::table(
                    code::TABLE_NOT_FOUND,
                    format!("table id {} does not exist", req.table_id),
                )
            })?;
        let placement = snap.placement(def.id).map_err(storage)?;
        for &p in &req.partitions {
            let pl = placement.get(p as usize).cloned().unwrap_or_default();
            let ok = if req.require_primary {
                pl.primary == Some(me)
            } else {
                pl.is_ready_on(me)
            } && !snap.is_lost(def.id, p).map_err(storage)?;
            if !ok {
                return Err(not_primary(format!(
                    "partition {p} of table {} moved: this node is not its {}",
                    def.name,
                    if req.require_primary {
                        "primary"
                    } else {
                        "ready copy"
                    }
                )));
            }
        }
        let applied_index = snap.grid_applied_index().map_err(storage)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let table_id = def.id;
        tokio::task::spawn_blocking(move || {
            let send_all = || -> SolidResult<()> {
                let mut bytes_total = 0u64;
                for &p in &req.partitions {
                    snap.for_each_raw_in_partition::<()>(table_id, p, |k, v| {
                        bytes_total += (k.len() + v.len()) as u64;
                        ControlFlow::Continue(())
                    })
                    .map_err(storage)?;
                }
                let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let mut batch_bytes = 0;
                let mut sent_any = false;
                let send = |batch: &mut Vec<(Vec<u8>, Vec<u8>)>| -> bool {
                    let rows = postcard::to_stdvec(&*batch).expect("encoding into a Vec");
                    batch.clear();
                    tx.blocking_send(Ok(pb::ScanChunk {
                        applied_index,
                        bytes_total,
                        rows,
                    }))
                    .is_ok()
                };
                for &p in &req.partitions {
                    let stopped = snap
                        .for_each_raw_in_partition(table_id, p, |k, v| {
                            batch_bytes += k.len() + v.len();
                            batch.push((k.to_vec(), v.to_vec()));
                            if batch_bytes >= SCAN_CHUNK_BYTES {
                                batch_bytes = 0;
                                sent_any = true;
                                if !send(&mut batch) {
                                    return ControlFlow::Break(());
                                }
                            }
                            ControlFlow::Continue(())
                        })
                        .map_err(storage)?;
                    if stopped.is_some() {
                        return Ok(());
                    }
                }
                if !batch.is_empty() || !sent_any {
                    send(&mut batch);
                }
                Ok(())
            };
            if let Err(e) = send_all() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(rx)
    }

    // ---- loads ---------------------------------------------------------------------------

    /// This node's loads, for `LoadStatus`.
    pub(super) fn load_progress(&self) -> Vec<pb::LoadProgress> {
        self.loads
            .lock()
            .iter()
            .map(|(&(table_id, partition), l)| pb::LoadProgress {
                table_id,
                partition,
                source: l.source,
                bytes_done: l.bytes_done,
                bytes_total: l.bytes_total,
                finished: l.finished,
                elapsed_ms: match l.started {
                    Some(s) if l.running => s.elapsed().as_millis() as u64,
                    _ => l.elapsed_ms,
                },
                error: l.error.clone(),
            })
            .collect()
    }

    /// Starts a load task for every copy placed on this node that is loading and has no
    /// task; forgets the progress of copies no longer loading.
    fn supervise_loads(self: &Arc<Self>, engine: &Arc<Engine>, view: &GridView) -> SolidResult<()> {
        let snap = engine.read_snapshot()?;
        let me = view.node_id;
        let mut loading = BTreeMap::new();
        for t in snap.placements().map_err(storage)? {
            for (p, pl) in t.partitions.iter().enumerate() {
                let source = match pl.copies.get(&me) {
                    Some(CopyState::Loading { source }) => *source,
                    // A ready copy a snapshot install wiped: load it from another ready
                    // copy, the primary first.
                    Some(CopyState::Ready)
                        if snap.is_lost(t.table_id, p as u32).map_err(storage)? =>
                    {
                        let others = pl.primary.into_iter().chain(pl.ready()).filter(|&n| {
                            n != me
                                && view
                                    .topology
                                    .members
                                    .get(&n)
                                    .is_some_and(|m| m.state == MemberState::Online)
                        });
                        match others.into_iter().next() {
                            Some(n) => n,
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                let finished = snap
                    .load_state(t.table_id, p as u32)
                    .map_err(storage)?
                    .is_some();
                loading.insert((t.table_id, p as u32), (source, finished));
            }
        }
        let mut loads = self.loads.lock();
        loads.retain(|k, _| loading.contains_key(k));
        for (key, (source, finished)) in loading {
            let l = loads.entry(key).or_default();
            l.finished = finished;
            if finished || l.running {
                continue;
            }
            if !l.error.is_empty()
                && l.started
                    .is_some_and(|s| s.elapsed() < Duration::from_secs(1))
            {
                continue; // back off a little after a failed attempt
            }
            let Some(addr) = view.topology.members.get(&source).map(|m| m.addr.clone()) else {
                l.error = format!("source node {source} is not a member");
                continue;
            };
            *l = LoadState {
                source,
                started: Some(Instant::now()),
                running: true,
                ..LoadState::default()
            };
            let this = Arc::clone(self);
            let engine = engine.clone();
            tokio::spawn(async move {
                let result = this.load_partition(&engine, me, key, &addr).await;
                let mut loads = this.loads.lock();
                if let Some(l) = loads.get_mut(&key) {
                    l.running = false;
                    l.elapsed_ms = l.started.map_or(0, |s| s.elapsed().as_millis() as u64);
                    match result {
                        Ok(()) => l.finished = true,
                        Err(e) => {
                            l.error = e.to_string();
                            this.msglog.warning(format!(
                                "loading partition {} of table id {} from {addr} failed (retrying): {e}",
                                key.1, key.0
                            ));
                        }
                    }
                }
            });
        }
        Ok(())
    }

    /// Streams one partition from `addr` into this node's copy, then finishes the load.
    async fn load_partition(
        &self,
        engine: &Arc<Engine>,
        me: NodeId,
        (table_id, partition): (u64, u32),
        addr: &str,
    ) -> SolidResult<()> {
        let reset = engine.clone();
        tokio::task::spawn_blocking(move || reset.reset_load(table_id, partition))
            .await
            .map_err(storage)??;
        let client = self
            .peer_client(addr)
            .map_err(|e| peer_error(e, "the load source"))?;
        let req = pb::ScanRequest {
            from: me,
            table_id,
            partitions: vec![partition],
            min_applied: engine.grid_applied_index()?,
            require_primary: false,
        };
        let mut stream = client
            .scan(req, LOAD_TIMEOUT)
            .await
            .map_err(|e| peer_error(e, "the load source"))?;
        let limit = self.config.grid.load_rate_limit_mb_per_s * 1024 * 1024;
        let started = Instant::now();
        let mut done = 0u64;
        let mut snapshot_index = None;
        loop {
            let chunk = match stream.message().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(status) => return Err(peer_error(PeerError::from(status), "the load source")),
            };
            snapshot_index = Some(chunk.applied_index);
            let rows = decode_chunk(&chunk)?;
            // Counted like the source's total: key and stored row bytes.
            let bytes: u64 = rows.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
            done += bytes;
            if !rows.is_empty() {
                let e = engine.clone();
                tokio::task::spawn_blocking(move || e.load_rows(table_id, &rows))
                    .await
                    .map_err(storage)??;
            }
            if let Some(l) = self.loads.lock().get_mut(&(table_id, partition)) {
                l.bytes_done = done;
                l.bytes_total = chunk.bytes_total.max(done);
            }
            if limit > 0 {
                // [Grid] LoadRateLimit caps this node's loading as a whole: every load
                // books its bytes on one schedule and sleeps until its turn.
                let cost = Duration::from_secs_f64(bytes as f64 / limit as f64);
                let wait = {
                    let mut next = self.load_pace.lock();
                    let now = Instant::now();
                    let start = (*next).max(now);
                    *next = start + cost;
                    start - now
                };
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        let Some(snapshot_index) = snapshot_index else {
            return Err(SolidError::server(
                code::BAD_REQUEST,
                "the load source sent nothing",
            ));
        };
        let e = engine.clone();
        tokio::task::spawn_blocking(move || e.finish_load(me, table_id, partition, snapshot_index))
            .await
            .map_err(storage)??;
        self.msglog.info(format!(
            "loaded partition {partition} of table id {table_id} from {addr}: {done} bytes in {} ms (through grid index {snapshot_index})",
            started.elapsed().as_millis()
        ));
        Ok(())
    }

    // ---- the GAM (leader) and the background loop ------------------------------------------

    /// Runs while this grid driver runs: every node supervises its loads; the leader also
    /// runs the GAM.
    pub(super) async fn run_partition_background(self: Arc<Self>, epoch: u64) {
        let mut ticker = tokio::time::interval(BACKGROUND_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.grid_epoch.load(Ordering::SeqCst) != epoch {
                return;
            }
            let (Some(engine), Some(grid)) = (self.engine(), self.grid()) else {
                return;
            };
            let view = grid.view();
            if let Err(e) = self.supervise_loads(&engine, &view) {
                tracing::warn!("partition loads: {e}");
            }
            if view.ready_leader
                && let Err(e) = self.gam_step(&engine, &grid, &view).await
            {
                tracing::warn!("GAM: {e}");
            }
        }
    }

    /// One round of the Grid Availability Manager on the leader: place new tables, mark
    /// finished loads ready, then commit what `gam::plan` asks for.
    async fn gam_step(
        &self,
        engine: &Arc<Engine>,
        grid: &GridHandle,
        view: &GridView,
    ) -> SolidResult<()> {
        let online: Vec<NodeId> = view.topology.voters();
        let members: Vec<NodeId> = view
            .topology
            .members
            .values()
            .filter(|m| m.state != MemberState::NotMember)
            .map(|m| m.id)
            .collect();
        if online.is_empty() {
            return Ok(());
        }
        let snap = engine.read_snapshot()?;
        let mut changes = Vec::new();
        let mut tables = snap.placements().map_err(storage)?;
        // Tables without placement (created before the grid): every copy is on this node.
        for def in snap.tables().map_err(storage)? {
            let Some(p) = &def.partitioning else { continue };
            if tables.iter().any(|t| t.table_id == def.id) {
                continue;
            }
            let placed =
                gam::initial_placement(&[view.node_id], def.id, &def.name, 1, p.partitions);
            changes.extend(placement_changes(&placed));
        }
        drop(snap);
        // Loads: ask every node with a loading copy how it goes.
        let mut statuses: BTreeMap<(NodeId, u64, u32), pb::LoadProgress> = BTreeMap::new();
        let loading_nodes: BTreeSet<NodeId> = tables
            .iter()
            .flat_map(|t| t.partitions.iter())
            .flat_map(|p| p.copies.iter())
            .filter(|(_, s)| matches!(s, CopyState::Loading { .. }))
            .map(|(n, _)| *n)
            .collect();
        for node in loading_nodes {
            let progress = if node == view.node_id {
                self.load_progress()
            } else {
                let Some(m) = view.topology.members.get(&node) else {
                    continue;
                };
                let Ok(client) = self.peer_client(&m.addr) else {
                    continue;
                };
                match client
                    .load_status(view.node_id, Duration::from_secs(2))
                    .await
                {
                    Ok(p) => p,
                    Err(_) => continue,
                }
            };
            for l in progress {
                statuses.insert((node, l.table_id, l.partition), l);
            }
        }
        let mut actions = Vec::new();
        for t in &tables {
            for (p, pl) in t.partitions.iter().enumerate() {
                for (&node, state) in &pl.copies {
                    if matches!(state, CopyState::Loading { .. })
                        && statuses
                            .get(&(node, t.table_id, p as u32))
                            .is_some_and(|l| l.finished)
                    {
                        actions.push(Action::CopyReady {
                            table_id: t.table_id,
                            partition: p as u32,
                            node,
                        });
                    }
                }
            }
        }
        self.remember_moves(&tables, &statuses);
        if self.config.grid.availability_manager_actions_enabled {
            let mut planned = tables.clone();
            for a in &actions {
                let _ = gam::apply(&mut planned, a);
            }
            actions.extend(gam::plan(
                &online,
                &members,
                &planned,
                &GamConfig {
                    max_concurrent_loads: MAX_CONCURRENT_LOADS,
                },
            ));
        }
        let before = tables.clone();
        for a in &actions {
            if let Err(why) = gam::apply(&mut tables, a) {
                tracing::debug!("GAM action {a:?} no longer applies: {why}");
            }
        }
        for (t, old) in tables.iter().zip(&before) {
            for (p, (new, old)) in t.partitions.iter().zip(&old.partitions).enumerate() {
                if new != old {
                    changes.push(Change::SetPlacement {
                        table_id: t.table_id,
                        partition: p as u32,
                        placement: new.clone(),
                    });
                }
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        for a in &actions {
            tracing::info!("GAM: {a:?}");
        }
        grid.propose(Proposal::Data(LogRecord { changes }.encode()))
            .await?;
        Ok(())
    }

    /// Keeps what `grid status` shows: every loading copy with its last known progress.
    fn remember_moves(
        &self,
        tables: &[TablePlacement],
        statuses: &BTreeMap<(NodeId, u64, u32), pb::LoadProgress>,
    ) {
        let mut moves = Vec::new();
        for t in tables {
            for (p, pl) in t.partitions.iter().enumerate() {
                for (&node, state) in &pl.copies {
                    if let CopyState::Loading { source } = state {
                        let l = statuses.get(&(node, t.table_id, p as u32));
                        moves.push(MoveStatus {
                            table: t.table.clone(),
                            partition: p as u32,
                            from: *source,
                            to: node,
                            bytes_done: l.map_or(0, |l| l.bytes_done),
                            bytes_total: l.map_or(0, |l| l.bytes_total),
                            elapsed_ms: l.map_or(0, |l| l.elapsed_ms),
                            error: l.map(|l| l.error.clone()).unwrap_or_default(),
                        });
                    }
                }
            }
        }
        *self.moves.lock() = moves;
    }

    /// `ADMIN COMMAND 'grid status'`: the placement summary per node, then every partition
    /// copy being loaded with its progress, rate and ETA (leader only: the GAM runs there).
    pub fn grid_status(&self) -> SolidResult<Output> {
        let engine = self.require_engine()?;
        let (_, view) = self.leader_grid()?;
        let name = |n: NodeId| {
            view.topology
                .members
                .get(&n)
                .map_or_else(|| format!("node {n}"), |m| m.name.clone())
        };
        let mut rows = Vec::new();
        let tables = engine.read_snapshot()?.placements().map_err(storage)?;
        for m in view.topology.members.values() {
            let (mut primaries, mut ready, mut loading) = (0, 0, 0);
            for t in &tables {
                for pl in &t.partitions {
                    primaries += usize::from(pl.primary == Some(m.id));
                    match pl.copies.get(&m.id) {
                        Some(CopyState::Ready) => ready += 1,
                        Some(CopyState::Loading { .. }) => loading += 1,
                        None => {}
                    }
                }
            }
            rows.push(vec![
                "NODE".to_string(),
                m.name.clone(),
                String::new(),
                String::new(),
                format!("{primaries} primaries, {ready} ready copies, {loading} loading"),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for mv in self.moves.lock().iter() {
            let secs = mv.elapsed_ms as f64 / 1000.0;
            let rate = if secs > 0.0 {
                mv.bytes_done as f64 / secs
            } else {
                0.0
            };
            let eta = if rate > 0.0 && mv.bytes_total >= mv.bytes_done {
                format!("{:.1} s", (mv.bytes_total - mv.bytes_done) as f64 / rate)
            } else {
                "-".to_string()
            };
            rows.push(vec![
                "LOAD".to_string(),
                mv.table.clone(),
                mv.partition.to_string(),
                format!("{} -> {}", name(mv.from), name(mv.to)),
                format!("{}/{} bytes", mv.bytes_done, mv.bytes_total),
                format!("{:.2} MB/s", rate / (1024.0 * 1024.0)),
                eta,
                mv.error.clone(),
            ]);
        }
        let header = [
            "KIND",
            "NAME",
            "PARTITION",
            "FROM_TO",
            "PROGRESS",
            "RATE",
            "ETA",
            "ERROR",
        ];
        Ok(exec::text_rows(&header, rows))
    }
}

/// Waits until this node applied the grid log through `index` (bounded).
async fn wait_applied(engine: &Engine, index: u64) -> SolidResult<()> {
    if applied_within(engine, index).await? {
        Ok(())
    } else {
        Err(SolidError::grid(
            code::NODE_UNREACHABLE,
            format!("this node did not reach grid index {index} in time"),
        ))
    }
}

/// Whether this node applies the grid log through `index` within [`DATA_RPC_TIMEOUT`].
async fn applied_within(engine: &Engine, index: u64) -> SolidResult<bool> {
    let deadline = Instant::now() + DATA_RPC_TIMEOUT;
    while engine.grid_applied_index()? < index {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(true)
}

/// The initial placement of every partitioned table that `changes` create, on `online`.
pub(super) fn new_table_placements(changes: &[Change], online: &[NodeId]) -> Vec<Change> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateTable(def) => def.partitioning.as_ref().map(|p| {
                gam::initial_placement(
                    online,
                    def.id,
                    &def.name,
                    p.replication_factor,
                    p.partitions,
                )
            }),
            _ => None,
        })
        .flat_map(|t| placement_changes(&t))
        .collect()
}

/// The `SetPlacement` changes of a whole table's placement.
fn placement_changes(t: &TablePlacement) -> Vec<Change> {
    t.partitions
        .iter()
        .enumerate()
        .map(|(p, pl)| Change::SetPlacement {
            table_id: t.table_id,
            partition: p as u32,
            placement: pl.clone(),
        })
        .collect()
}

async fn collect_scan(mut rx: ScanStream) -> SolidResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend(decode_chunk(&chunk?)?);
    }
    Ok(out)
}

async fn collect_remote_scan(
    mut stream: tonic::Streaming<pb::ScanChunk>,
) -> SolidResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => out.extend(decode_chunk(&chunk)?),
            Ok(None) => return Ok(out),
            Err(status) => {
                return Err(peer_error(
                    PeerError::from(status),
                    "reading from the primary",
                ));
            }
        }
    }
}

fn decode_chunk(chunk: &pb::ScanChunk) -> SolidResult<Vec<(Vec<u8>, Vec<u8>)>> {
    postcard::from_bytes(&chunk.rows)
        .map_err(|e| SolidError::server(code::BAD_REQUEST, format!("a row chunk: {e}")))
}
