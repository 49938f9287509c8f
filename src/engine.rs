//! The storage engine of a node: statement execution over the transaction log and the
//! database file.
//!
//! Write path (one statement at a time, under the writer lock):
//! 1. take a snapshot that includes every earlier write;
//! 2. the executor computes the statement's changes (no I/O);
//! 3. the changes are appended to the transaction log as one record and **fsynced**;
//! 4. the record is applied to the database file (a non-durable commit);
//! 5. only then is the statement acknowledged.
//!
//! Reads run on their own snapshot without the writer lock. A failure of step 3 or 4 is
//! fatal: the node stops rather than guess what is durable (the fsyncgate lesson), and the
//! next start recovers from the log. A checkpoint (a durable commit of the database file)
//! lets the log drop the records it covers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::auth;
use crate::error::{SolidError, SolidResult, code};
use crate::grid::placement::{CopyState, PartitionPlacement};
use crate::msglog::MessageLog;
use crate::sql::ast::Statement;
use crate::sql::exec::{self, Output, SessionUser};
use crate::storage::db::{Change, Db, DbDump, DbError, LogRecord, Snapshot, TableDef, UserRecord};
use crate::storage::logfs::{DiskFs, LogFs};
use crate::storage::wal::{Wal, WalError};

/// Log bytes written since the last checkpoint that trigger the next one. Bounds both the
/// log's size on disk and the replay time after a crash.
pub const CHECKPOINT_LOG_BYTES: u64 = 32 * 1024 * 1024;

/// A condition that stops the node: its storage can no longer be trusted or written.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("{0}")]
    Setup(String),
}

/// Where a node keeps its database: the database file and the transaction log directory.
#[derive(Debug, Clone)]
pub struct StoragePaths {
    pub db_file: PathBuf,
    pub log_dir: PathBuf,
}

impl StoragePaths {
    /// Whether a database or transaction log is present (an empty `-x gridnode` node has
    /// neither).
    pub fn has_database(&self) -> bool {
        if self.db_file.exists() {
            return true;
        }
        match std::fs::read_dir(&self.log_dir) {
            Ok(entries) => entries.flatten().any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("sol") && name.ends_with(".log")
            }),
            Err(_) => false,
        }
    }
}

/// The first admin user of a new database.
pub struct InitialAdmin {
    pub user: String,
    pub password: String,
}

/// What recovery found, for the message log.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub checkpoint_seq: u64,
    pub replayed: usize,
    pub torn_tail: Option<String>,
    pub created: bool,
}

type FatalHook = Box<dyn Fn(&str) + Send + Sync>;

pub struct Engine {
    db: Db,
    wal: Mutex<Wal>,
    msglog: Arc<MessageLog>,
    on_fatal: FatalHook,
    /// Set once a fatal error happened; every later statement is refused.
    failed: Mutex<Option<String>>,
    /// Grid-log indexes of recently skipped records and why (for their proposers).
    rejections: Mutex<BTreeMap<u64, String>>,
}

/// What this node holds of a partition, as far as applying its writes goes.
enum LocalCopy {
    Ready,
    Loading,
}

/// How many skipped grid records [`Engine::rejection`] remembers.
const MAX_REMEMBERED_REJECTIONS: usize = 4096;

/// The part of a replicated record this node stores (design §6): every change except rows
/// of partitions without a copy here. A row of a partition this node is loading is
/// deferred until the load finished (or, after it, applied when newer than the load's
/// snapshot). A placement change that takes this node's copy away, or starts a new load
/// of it, also drops its rows. `Err` when a `RequirePrimary` precondition fails: the record
/// is skipped whole.
fn localize(
    snap: &Snapshot,
    me: u64,
    index: u64,
    changes: Vec<Change>,
) -> Result<Result<Vec<Change>, String>, DbError> {
    let mut defs: HashMap<u64, Option<TableDef>> = HashMap::new();
    let mut placements: HashMap<(u64, u32), Option<PartitionPlacement>> = HashMap::new();
    fn def_of<'a>(
        snap: &Snapshot,
        defs: &'a mut HashMap<u64, Option<TableDef>>,
        id: u64,
    ) -> Result<&'a Option<TableDef>, DbError> {
        if let std::collections::hash_map::Entry::Vacant(e) = defs.entry(id) {
            e.insert(snap.table_by_id(id)?);
        }
        Ok(&defs[&id])
    }
    fn placement_of<'a>(
        snap: &Snapshot,
        placements: &'a mut HashMap<(u64, u32), Option<PartitionPlacement>>,
        table_id: u64,
        partition: u32,
    ) -> Result<&'a Option<PartitionPlacement>, DbError> {
        if let std::collections::hash_map::Entry::Vacant(e) =
            placements.entry((table_id, partition))
        {
            let all = snap.placement(table_id)?;
            e.insert(all.into_iter().nth(partition as usize));
        }
        Ok(&placements[&(table_id, partition)])
    }
    for c in &changes {
        if let Change::RequirePrimary {
            table_id,
            partition,
            node,
        } = c
        {
            let primary = placement_of(snap, &mut placements, *table_id, *partition)?
                .as_ref()
                .and_then(|p| p.primary);
            if primary != Some(*node) {
                return Ok(Err(format!(
                    "partition {partition} of table id {table_id} moved: its primary is {} now, not node {node}",
                    primary.map_or_else(|| "none".to_string(), |p| format!("node {p}"))
                )));
            }
        }
    }
    let mut out = Vec::with_capacity(changes.len());
    for (ordinal, c) in changes.into_iter().enumerate() {
        match c {
            Change::CreateTable(ref d) | Change::AlterTable(ref d) => {
                defs.insert(d.id, Some(d.clone()));
                out.push(c);
            }
            Change::PutRow {
                table_id, ref key, ..
            }
            | Change::DeleteRow {
                table_id, ref key, ..
            } => {
                let partition = match def_of(snap, &mut defs, table_id)? {
                    Some(def) => def.partition_of_key(key),
                    None => None,
                };
                let Some(partition) = partition else {
                    out.push(c);
                    continue;
                };
                let Some(placement) = placement_of(snap, &mut placements, table_id, partition)?
                else {
                    // A partitioned table without placement (created outside a grid and
                    // not placed yet): every node keeps its rows.
                    out.push(c);
                    continue;
                };
                let local = match placement.copies.get(&me) {
                    // A ready copy whose rows a snapshot install wiped loads like a new one.
                    Some(CopyState::Ready) if snap.is_lost(table_id, partition)? => {
                        Some(LocalCopy::Loading)
                    }
                    Some(CopyState::Ready) => Some(LocalCopy::Ready),
                    Some(CopyState::Loading { .. }) => Some(LocalCopy::Loading),
                    None => None,
                };
                match local {
                    Some(LocalCopy::Ready) => out.push(c),
                    Some(LocalCopy::Loading) => match snap.load_state(table_id, partition)? {
                        Some(through) if index > through => out.push(c),
                        Some(_) => {}
                        None => out.push(Change::DeferRow {
                            table_id,
                            partition,
                            index,
                            ordinal: ordinal as u32,
                            change: Box::new(c),
                        }),
                    },
                    None => {}
                }
            }
            Change::SetPlacement {
                table_id,
                partition,
                ref placement,
            } => {
                let before = placement_of(snap, &mut placements, table_id, partition)?
                    .as_ref()
                    .and_then(|p| p.copies.get(&me).copied());
                let after = placement.copies.get(&me).copied();
                placements.insert((table_id, partition), Some(placement.clone()));
                out.push(c);
                let starts_load = matches!(after, Some(CopyState::Loading { .. }))
                    && !matches!(before, Some(CopyState::Loading { .. }));
                if (before.is_some() && after.is_none()) || starts_load {
                    out.push(Change::DropPartitionRows {
                        table_id,
                        partition,
                    });
                }
                if before != after {
                    out.push(Change::ClearLoadState {
                        table_id,
                        partition,
                    });
                }
            }
            other => out.push(other),
        }
    }
    Ok(Ok(out))
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("db", &self.db).finish()
    }
}

impl Engine {
    /// Opens the database at `paths`, recovering from the transaction log. When there is no
    /// database yet, creates one with `admin` (and refuses without it).
    pub fn open(
        paths: &StoragePaths,
        admin: Option<InitialAdmin>,
        msglog: Arc<MessageLog>,
    ) -> Result<(Engine, RecoveryReport), EngineError> {
        let fs = Self::log_fs(paths)?;
        Self::open_with(paths.has_database(), &paths.db_file, fs, admin, msglog)
    }

    /// Creates an empty database (no users yet) for a node joining a grid: the grid's
    /// common data is restored into it right after.
    pub fn create_for_join(
        paths: &StoragePaths,
        msglog: Arc<MessageLog>,
    ) -> Result<Engine, EngineError> {
        let fs = Self::log_fs(paths)?;
        Self::open_inner(false, &paths.db_file, fs, None, false, msglog).map(|(e, _)| e)
    }

    fn log_fs(paths: &StoragePaths) -> Result<Arc<dyn LogFs>, EngineError> {
        Ok(Arc::new(DiskFs::new(&paths.log_dir).map_err(|e| {
            EngineError::Setup(format!(
                "cannot open transaction log directory {}: {e}",
                paths.log_dir.display()
            ))
        })?))
    }

    /// [`Engine::open`] over any log file system (tests use a fault-injecting one).
    pub fn open_with(
        exists: bool,
        db_file: &Path,
        fs: Arc<dyn LogFs>,
        admin: Option<InitialAdmin>,
        msglog: Arc<MessageLog>,
    ) -> Result<(Engine, RecoveryReport), EngineError> {
        Self::open_inner(exists, db_file, fs, admin, true, msglog)
    }

    fn open_inner(
        exists: bool,
        db_file: &Path,
        fs: Arc<dyn LogFs>,
        admin: Option<InitialAdmin>,
        require_users: bool,
        msglog: Arc<MessageLog>,
    ) -> Result<(Engine, RecoveryReport), EngineError> {
        if require_users && !exists && admin.is_none() {
            return Err(EngineError::Setup(
                "no database found: start with -U user -P password to create one".into(),
            ));
        }
        let db = Db::open(db_file)?;
        let checkpoint_seq = db.snapshot()?.applied_seq()?;
        let (wal, recovery) = Wal::open(fs, checkpoint_seq)?;
        let mut report = RecoveryReport {
            checkpoint_seq,
            replayed: recovery.records.len(),
            torn_tail: recovery.torn_tail.as_ref().map(|t| {
                format!(
                    "{} bytes of a torn record at offset {} of {}",
                    t.bytes_dropped, t.offset, t.file
                )
            }),
            created: false,
        };
        for (seq, payload) in &recovery.records {
            let record = LogRecord::decode(payload)?;
            db.apply(*seq, &record)?;
        }
        let engine = Engine {
            db,
            wal: Mutex::new(wal),
            msglog,
            on_fatal: Box::new(|_| {}),
            failed: Mutex::new(None),
            rejections: Mutex::new(BTreeMap::new()),
        };
        let has_users = !engine.db.snapshot()?.users()?.is_empty();
        match (has_users, admin) {
            (true, _) => {}
            (false, Some(a)) => {
                auth::validate_new_password(&a.password)
                    .map_err(|m| EngineError::Setup(format!("-P: {m}")))?;
                let record = LogRecord {
                    changes: vec![Change::PutUser(UserRecord {
                        name: a.user.to_uppercase(),
                        password_hash: auth::hash_password(&a.password),
                        admin: true,
                    })],
                };
                engine.log_and_apply(&record)?;
                report.created = true;
            }
            (false, None) if !require_users => {}
            (false, None) => {
                return Err(EngineError::Setup(
                    "the database has no users (its creation did not finish): start with -U user -P password".into(),
                ));
            }
        }
        if report.replayed > 0 || report.created {
            engine.checkpoint()?;
        }
        Ok((engine, report))
    }

    /// Calls `hook` once when a fatal storage error happens (the server stops the node).
    pub fn set_fatal_hook(&mut self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.on_fatal = Box::new(hook);
    }

    /// Checks a user's credentials. The error never says which of the two was wrong.
    pub fn authenticate(&self, user: &str, password: &str) -> SolidResult<SessionUser> {
        let name = user.to_uppercase();
        let record = self.snapshot()?.user(&name).map_err(storage_error)?;
        // Verify against a dummy hash for unknown users too, so timing does not reveal
        // which user names exist.
        let hash = record
            .as_ref()
            .map(|r| r.password_hash.as_str())
            .unwrap_or(DUMMY_HASH);
        if auth::verify_password(password, hash)
            && let Some(r) = record
        {
            return Ok(SessionUser {
                name: r.name,
                admin: r.admin,
            });
        }
        Err(SolidError::auth(
            code::LOGIN_FAILED,
            "Illegal user name or password",
        ))
    }

    /// The current privileges of a logged-in user (a user may have been dropped or granted
    /// ADMIN since login).
    pub fn refresh_user(&self, user: &SessionUser) -> SolidResult<SessionUser> {
        match self.snapshot()?.user(&user.name).map_err(storage_error)? {
            Some(r) => Ok(SessionUser {
                name: r.name,
                admin: r.admin,
            }),
            None => Err(SolidError::auth(
                code::BAD_SESSION,
                format!("User {} no longer exists", user.name),
            )),
        }
    }

    /// A consistent read view of the database (refused once the engine failed).
    pub fn read_snapshot(&self) -> SolidResult<Snapshot> {
        self.snapshot()
    }

    fn snapshot(&self) -> SolidResult<Snapshot> {
        self.check_alive()?;
        self.db.snapshot().map_err(storage_error)
    }

    fn check_alive(&self) -> SolidResult<()> {
        match &*self.failed.lock() {
            None => Ok(()),
            Some(why) => Err(SolidError::server(
                code::STORAGE,
                format!("the node stopped accepting statements after a storage failure: {why}"),
            )),
        }
    }

    /// Executes one statement; a write is durable in the log before this returns `Ok`.
    pub fn execute(&self, user: &SessionUser, stmt: &Statement) -> SolidResult<Output> {
        if matches!(stmt, Statement::Select(_)) {
            return exec::execute(&self.snapshot()?, user, stmt);
        }
        let wal = self.wal.lock();
        let output = exec::execute(&self.snapshot()?, user, stmt)?;
        if let Output::Write { changes, .. } = &output
            && !changes.is_empty()
        {
            let record = LogRecord {
                changes: changes.clone(),
            };
            self.log_and_apply_locked(wal, &record)
                .map_err(|e| self.fail(e))?;
        }
        Ok(output)
    }

    fn log_and_apply(&self, record: &LogRecord) -> Result<(), EngineError> {
        self.log_and_apply_locked(self.wal.lock(), record)
    }

    fn log_and_apply_locked(
        &self,
        mut wal: parking_lot::MutexGuard<'_, Wal>,
        record: &LogRecord,
    ) -> Result<(), EngineError> {
        let seq = wal.append_sync(&record.encode())?;
        self.db.apply(seq, record)?;
        if wal.bytes_since_release() >= CHECKPOINT_LOG_BYTES {
            self.checkpoint_locked(&mut wal)?;
        }
        Ok(())
    }

    /// Makes the database file durable and lets the log drop what it covers.
    pub fn checkpoint(&self) -> Result<(), EngineError> {
        let mut wal = self.wal.lock();
        self.checkpoint_locked(&mut wal)
    }

    fn checkpoint_locked(&self, wal: &mut Wal) -> Result<(), EngineError> {
        let seq = self.db.checkpoint()?;
        wal.release_through(seq)?;
        self.msglog.info(format!(
            "checkpoint: database file durable through log record {seq}"
        ));
        Ok(())
    }

    /// Records a fatal error, tells the hook, and returns the error to report.
    fn fail(&self, e: EngineError) -> SolidError {
        let why = e.to_string();
        let first = {
            let mut failed = self.failed.lock();
            let first = failed.is_none();
            if first {
                *failed = Some(why.clone());
            }
            first
        };
        if first {
            self.msglog
                .error(format!("storage failure, the node stops: {why}"));
            (self.on_fatal)(&why);
        }
        SolidError::server(code::STORAGE, format!("storage failure: {why}"))
    }

    /// Checkpoints before a clean stop.
    pub fn close(&self) -> Result<(), EngineError> {
        if self.failed.lock().is_some() {
            return Ok(());
        }
        self.checkpoint()
    }
}

fn storage_error(e: DbError) -> SolidError {
    SolidError::server(code::STORAGE, e.to_string())
}

/// A valid argon2id hash of a random string, verified against for unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29saWRncmlkZHVtbXk$3H6r8nY0zqK3b5lR0i9Sx5XJm3bqO1wq4x2dEXrLq0Q";

impl Engine {
    /// The database file (the grid layer keeps its log in it too).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Computes a statement's changes without writing them: in a grid the leader replicates
    /// them through the grid log and every node applies them with [`Engine::apply_replicated`].
    /// The caller serialises planning and applying (one grid write at a time).
    pub fn plan(&self, user: &SessionUser, stmt: &Statement) -> SolidResult<Output> {
        exec::execute(&self.snapshot()?, user, stmt)
    }

    /// The last grid-log index applied to this database (0 outside a grid).
    pub fn grid_applied_index(&self) -> SolidResult<u64> {
        self.snapshot()?.grid_applied_index().map_err(storage_error)
    }

    /// Applies consecutive committed grid-log data entries `(index, record)`, each recording
    /// its index in the same local log record, with **one** fsync for the whole batch
    /// (before any of them reaches the database file): the grid log already holds them
    /// durably, so the batch costs one fsync rather than one per entry — a leader applying
    /// hundreds of entries would otherwise stall its heartbeats for seconds. Entries at or
    /// below the recorded index were applied before a restart and are skipped, so replaying
    /// the grid log is exact.
    ///
    /// `me` is this node's id in a grid: rows of partitioned tables are kept only where the
    /// placement has a copy of their partition on this node (see [`localize`]). For each
    /// entry, returns why the record was skipped whole when one of its `RequirePrimary`
    /// preconditions failed (the planner was no longer the partition's primary); every node
    /// decides that alike, because they all apply the same placement at the same index.
    pub fn apply_replicated_batch(
        &self,
        entries: Vec<(u64, LogRecord)>,
        me: Option<u64>,
    ) -> SolidResult<Vec<Option<String>>> {
        let mut wal = self.wal.lock();
        let mut applied = self.grid_applied_index()?;
        let mut outcomes = Vec::with_capacity(entries.len());
        for (index, record) in entries {
            if index <= applied {
                outcomes.push(self.rejections.lock().get(&index).cloned());
                continue;
            }
            let (mut changes, rejected) = match me {
                None => (record.changes, None),
                Some(me) => {
                    let snap = self.snapshot()?;
                    match localize(&snap, me, index, record.changes).map_err(storage_error)? {
                        Ok(changes) => (changes, None),
                        Err(why) => (Vec::new(), Some(why)),
                    }
                }
            };
            if let Some(why) = &rejected {
                let mut r = self.rejections.lock();
                r.insert(index, why.clone());
                while r.len() > MAX_REMEMBERED_REJECTIONS {
                    r.pop_first();
                }
            }
            changes.push(Change::SetGridApplied(index));
            let record = LogRecord { changes };
            // Appended without a sync, and applied at once (a non-durable commit) so the
            // next record is localized against it. Nothing here becomes durable in the
            // database file before the sync below: only a checkpoint makes it durable, and
            // checkpoints take the log lock held here.
            let seq = wal
                .append(&record.encode())
                .map_err(|e| self.fail(e.into()))?;
            self.db
                .apply(seq, &record)
                .map_err(|e| self.fail(e.into()))?;
            applied = index;
            outcomes.push(rejected);
        }
        wal.sync().map_err(|e| self.fail(e.into()))?;
        if wal.bytes_since_release() >= CHECKPOINT_LOG_BYTES {
            self.checkpoint_locked(&mut wal).map_err(|e| self.fail(e))?;
        }
        Ok(outcomes)
    }

    /// Why the grid-log entry at `index` was skipped, if it was and is still remembered.
    pub fn rejection(&self, index: u64) -> Option<String> {
        self.rejections.lock().get(&index).cloned()
    }

    /// Stores a batch of loaded rows of a partition (see [`Db::load_rows`]).
    pub fn load_rows(&self, table_id: u64, rows: &[(Vec<u8>, Vec<u8>)]) -> SolidResult<()> {
        self.check_alive()?;
        self.db.load_rows(table_id, rows).map_err(storage_error)
    }

    /// Ends a partition load whose rows reflect the grid log through `snapshot_index`: makes
    /// the loaded rows durable, then logs `FinishLoad` (which applies the writes deferred
    /// during the load). Refused — the caller starts over — when the copy is no longer
    /// loading here or a finished load is already recorded.
    pub fn finish_load(
        &self,
        me: u64,
        table_id: u64,
        partition: u32,
        snapshot_index: u64,
    ) -> SolidResult<()> {
        let wal = self.wal.lock();
        let snap = self.snapshot()?;
        let placement = snap.placement(table_id).map_err(storage_error)?;
        let loading = match placement
            .get(partition as usize)
            .and_then(|p| p.copies.get(&me))
        {
            Some(CopyState::Loading { .. }) => true,
            Some(CopyState::Ready) => snap.is_lost(table_id, partition).map_err(storage_error)?,
            None => false,
        };
        if !loading
            || snap
                .load_state(table_id, partition)
                .map_err(storage_error)?
                .is_some()
        {
            return Err(SolidError::server(
                code::STORAGE,
                format!("partition {partition} of table id {table_id} is no longer loading here"),
            ));
        }
        drop(snap);
        self.db.checkpoint().map_err(|e| self.fail(e.into()))?;
        let record = LogRecord {
            changes: vec![Change::FinishLoad {
                table_id,
                partition,
                snapshot_index,
            }],
        };
        self.log_and_apply_locked(wal, &record)
            .map_err(|e| self.fail(e))
    }

    /// After a snapshot from the leader replaced the database (this member was too far
    /// behind): every copy placed on this node lost its rows, so each is marked lost and
    /// loaded again like a new copy.
    pub fn mark_lost_copies(&self, me: u64, index: u64) -> SolidResult<()> {
        let snap = self.snapshot()?;
        let mut changes = Vec::new();
        for t in snap.placements().map_err(storage_error)? {
            for (p, pl) in t.partitions.iter().enumerate() {
                if pl.copies.contains_key(&me) {
                    changes.push(Change::MarkLost {
                        table_id: t.table_id,
                        partition: p as u32,
                        index,
                    });
                }
            }
        }
        drop(snap);
        if changes.is_empty() {
            return Ok(());
        }
        self.msglog.warning(format!(
            "the snapshot from the leader replaced this node's partition copies: {} will be loaded again",
            changes.len()
        ));
        self.log_and_apply(&LogRecord { changes })
            .map_err(|e| self.fail(e))
    }

    /// Discards this node's rows and deferred writes of a partition whose load did not
    /// finish (before a new attempt).
    pub fn reset_load(&self, table_id: u64, partition: u32) -> SolidResult<()> {
        let record = LogRecord {
            changes: vec![Change::DropPartitionRows {
                table_id,
                partition,
            }],
        };
        self.log_and_apply(&record).map_err(|e| self.fail(e))
    }

    /// Like [`Engine::dump`] without the rows of partitioned tables: the grid's common data
    /// (catalog, users, shared rows, placement) as a joining node receives it.
    pub fn dump_shared(&self) -> SolidResult<DbDump> {
        self.snapshot()?
            .dump_rows_of(|def| def.partitioning.is_none())
            .map_err(storage_error)
    }

    /// A consistent copy of catalog, users and rows: the common data a joining node gets.
    pub fn dump(&self) -> SolidResult<DbDump> {
        self.snapshot()?.dump().map_err(storage_error)
    }

    /// Replaces the whole database with `dump` (a joining node storing the grid's common
    /// data), durably, and records `grid_index` as applied.
    pub fn restore(&self, dump: &DbDump, grid_index: u64) -> Result<(), EngineError> {
        let mut wal = self.wal.lock();
        let seq = self.db.snapshot()?.applied_seq()?;
        self.db.restore(dump, seq)?;
        let record = LogRecord {
            changes: vec![Change::SetGridApplied(grid_index)],
        };
        let seq = wal.append_sync(&record.encode())?;
        self.db.apply(seq, &record)?;
        self.checkpoint_locked(&mut wal)
    }

    /// Why the engine stopped accepting statements, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }
}

/// Deletes a node's database file and transaction log (a joining node whose add was rolled
/// back becomes empty again). The engine must be closed.
pub fn remove_database(paths: &StoragePaths) -> std::io::Result<()> {
    match std::fs::remove_file(&paths.db_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Ok(entries) = std::fs::read_dir(&paths.log_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if crate::storage::wal::parse_segment_name(&name.to_string_lossy()).is_some() {
                std::fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::sql::parser::parse_statement;
    use crate::sql::value::Value;
    use crate::storage::logfs::MemFs;

    fn open(dir: &Path, fs: &MemFs, create: bool) -> Result<(Engine, RecoveryReport), EngineError> {
        let admin = create.then(|| InitialAdmin {
            user: "dba".into(),
            password: "pw".into(),
        });
        Engine::open_with(
            !create,
            &dir.join("solid.db"),
            Arc::new(fs.clone()),
            admin,
            Arc::new(MessageLog::discard()),
        )
    }

    fn run(e: &Engine, sql: &str) -> SolidResult<Output> {
        let user = SessionUser {
            name: "DBA".into(),
            admin: true,
        };
        e.execute(&user, &parse_statement(sql).unwrap())
    }

    fn count(e: &Engine) -> Value {
        match run(e, "SELECT COUNT(*) FROM t").unwrap() {
            Output::Rows { rows, .. } => rows[0][0].clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn acknowledged_statements_survive_a_crash_that_drops_unsynced_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let fs = MemFs::new();
        let (e, report) = open(dir.path(), &fs, true).unwrap();
        assert!(report.created);
        run(&e, "CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
        for i in 0..10 {
            run(&e, &format!("INSERT INTO t VALUES ({i})")).unwrap();
        }
        drop(e); // no final checkpoint: a crash
        fs.crash();
        let (e, report) = open(dir.path(), &fs, false).unwrap();
        assert_eq!(count(&e), Value::Int(10));
        assert!(!report.created);
        assert!(e.authenticate("dba", "pw").is_ok());
    }

    #[test]
    fn a_failed_fsync_fails_the_statement_and_stops_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let fs = MemFs::new();
        let (mut e, _) = open(dir.path(), &fs, true).unwrap();
        let hooked = Arc::new(AtomicBool::new(false));
        let h = hooked.clone();
        e.set_fatal_hook(move |_| h.store(true, Ordering::SeqCst));
        run(&e, "CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
        run(&e, "INSERT INTO t VALUES (1)").unwrap();
        fs.fail_next_sync();
        let err = run(&e, "INSERT INTO t VALUES (2)").unwrap_err();
        assert_eq!(err.code, code::STORAGE);
        assert!(hooked.load(Ordering::SeqCst));
        assert!(e.failure().is_some());
        // Nothing more is accepted, not even reads.
        assert_eq!(
            run(&e, "SELECT COUNT(*) FROM t").unwrap_err().code,
            code::STORAGE
        );
        drop(e);
        fs.crash();
        let (e, _) = open(dir.path(), &fs, false).unwrap();
        assert_eq!(count(&e), Value::Int(1), "the unacknowledged row is gone");
    }

    #[test]
    fn checkpoint_lets_the_log_go_and_recovery_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let fs = MemFs::new();
        let (e, _) = open(dir.path(), &fs, true).unwrap();
        run(&e, "CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
        run(&e, "INSERT INTO t VALUES (1), (2)").unwrap();
        let before = fs.names();
        e.checkpoint().unwrap();
        let after = fs.names();
        assert!(
            before.iter().all(|n| !after.contains(n)),
            "segments covered by the checkpoint are deleted: {before:?} -> {after:?}"
        );
        run(&e, "INSERT INTO t VALUES (3)").unwrap();
        drop(e);
        fs.crash();
        let (e, _) = open(dir.path(), &fs, false).unwrap();
        assert_eq!(count(&e), Value::Int(3));
    }

    #[test]
    fn no_database_is_created_without_an_admin() {
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path(), &MemFs::new(), false).unwrap_err();
        assert!(err.to_string().contains("-U"), "{err}");
    }
}
