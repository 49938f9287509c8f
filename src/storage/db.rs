//! The database file: catalog, users and rows in a single redb file.
//!
//! The transaction log is the source of truth for acknowledged statements; the database file
//! is a materialisation of it. Every log record is applied here with a *non-durable* redb
//! commit that also stores the record's sequence number (`applied_seq`), so data and the
//! position in the log always move together. A checkpoint is a *durable* commit: after it,
//! every log record up to `applied_seq` may be deleted. On start, replaying the log records
//! after `applied_seq` brings the file back to the last acknowledged statement.
//!
//! Layout (redb tables):
//! - `meta`: `applied_seq`, `next_table_id`, `grid_applied_index` → u64
//! - `catalog`: table name → postcard [`TableDef`]
//! - `users`: user name → postcard [`UserRecord`]
//! - `rows`: `table_id (8 bytes, big-endian) ‖ row key` → postcard `Vec<Value>`; a
//!   partitioned table's row key starts with its partition (4 bytes, big-endian)
//! - `placement`: `table_id (8) ‖ partition (4)` → postcard [`PartitionPlacement`]: where a
//!   partitioned table's partition has its copies and primary (the same on every node)
//! - `load_state`: `table_id ‖ partition` → the grid index through which this node's
//!   loading copy holds the partition (set when its load finished; local to the node)
//! - `lost_copies`: `table_id ‖ partition` → the grid index at which this node's copy lost
//!   its rows (a snapshot from the leader replaced the database); reloaded like a new copy
//! - `deferred`: `table_id ‖ partition ‖ grid index ‖ ordinal` → postcard row [`Change`]:
//!   writes to a partition this node is still loading, applied when the load finishes
//!
//! The same redb file also holds the grid log (`grid_log`, `grid_meta`), owned by
//! `grid::store` through [`Db::redb`]; nothing here reads or clears those tables.
//!
//! A node joining a grid receives the grid's common data as a [`DbDump`] (taken by
//! [`Snapshot::dump`] from one read transaction) and installs it with [`Db::restore`], which
//! replaces catalog, users and rows in one durable commit.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::grid::placement::{PartitionPlacement, Partitioning, TablePlacement};
use crate::sql::value::{SqlType, Value};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");
const PLACEMENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("placement");
const LOAD_STATE: TableDefinition<&[u8], u64> = TableDefinition::new("load_state");
const DEFERRED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("deferred");
const LOST: TableDefinition<&[u8], u64> = TableDefinition::new("lost_copies");

const APPLIED_SEQ: &str = "applied_seq";
const NEXT_TABLE_ID: &str = "next_table_id";
const GRID_APPLIED_INDEX: &str = "grid_applied_index";

/// A table's definition as stored in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// Stable internal id; row keys are prefixed with it. Never reused.
    pub id: u64,
    pub name: String,
    pub columns: Vec<ColumnMeta>,
    /// Indexes into `columns` of the primary key, in key order; empty when the table has
    /// none (rows then get a key derived from their log position).
    pub primary_key: Vec<usize>,
    /// The grid clause: `None` for a shared table (a full copy on every node).
    pub partitioning: Option<Partitioning>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnMeta {
    pub name: String,
    pub sql_type: SqlType,
    pub not_null: bool,
}

impl TableDef {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The row's storage key: the primary-key encoding, prefixed by the row's partition
    /// (4 bytes, big-endian) in a partitioned table, so one partition is one key range.
    /// Values must already be coerced to column types.
    pub fn key_of(&self, row: &[Value]) -> Vec<u8> {
        let key: Vec<&Value> = self.primary_key.iter().map(|&i| &row[i]).collect();
        let encoded = postcard::to_stdvec(&key).expect("encoding values into a Vec cannot fail");
        match &self.partitioning {
            None => encoded,
            Some(p) => {
                let mut k = p.partition_of_row(row).to_be_bytes().to_vec();
                k.extend_from_slice(&encoded);
                k
            }
        }
    }

    /// The partition a storage key of this table belongs to (`None` for a shared table).
    pub fn partition_of_key(&self, key: &[u8]) -> Option<u32> {
        self.partitioning.as_ref()?;
        partition_of_key(key)
    }
}

/// The partition prefix of a partitioned table's storage key.
pub fn partition_of_key(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(..4)?.try_into().ok()?))
}

/// A database user.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    /// PHC string of a salted argon2id hash; never the password.
    pub password_hash: String,
    pub admin: bool,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// One effect of a statement. A statement's changes form one log record and are applied
/// atomically, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    CreateTable(TableDef),
    DropTable {
        name: String,
        id: u64,
    },
    /// Replaces the definition (ADD COLUMN); existing rows are read padded with NULLs.
    AlterTable(TableDef),
    /// Insert or replace the row with this primary key.
    PutRow {
        table_id: u64,
        key: Vec<u8>,
        row: Vec<Value>,
    },
    /// Insert a row into a table without a primary key; its key is derived from the log
    /// sequence number and `ordinal`, so replay gives it the same key.
    InsertAutoKey {
        table_id: u64,
        ordinal: u32,
        row: Vec<Value>,
    },
    DeleteRow {
        table_id: u64,
        key: Vec<u8>,
    },
    PutUser(UserRecord),
    DropUser {
        name: String,
    },
    /// Sets where a partition's copies and primary are (grid only; every node stores the
    /// whole placement).
    SetPlacement {
        table_id: u64,
        partition: u32,
        placement: PartitionPlacement,
    },
    /// Deletes this node's rows of one partition (its copy was dropped or its load
    /// restarts).
    DropPartitionRows {
        table_id: u64,
        partition: u32,
    },
    /// A write to a partition this node is loading, kept until the load finishes
    /// (`change` is a `PutRow` or `DeleteRow`; `index` its grid-log index).
    DeferRow {
        table_id: u64,
        partition: u32,
        index: u64,
        ordinal: u32,
        change: Box<Change>,
    },
    /// A partition load finished: the loaded rows reflect the grid log through
    /// `snapshot_index`. Applies the deferred writes after it in order, forgets the deferred
    /// ones, and records the load state (later writes apply directly).
    FinishLoad {
        table_id: u64,
        partition: u32,
        snapshot_index: u64,
    },
    /// This node's copy of a partition lost its rows (a snapshot install replaced the
    /// database): until it is loaded again it defers writes and serves nothing.
    MarkLost {
        table_id: u64,
        partition: u32,
        index: u64,
    },
    /// Forgets a partition's load state and deferred writes (its copy here was dropped,
    /// became ready, or a new load starts).
    ClearLoadState {
        table_id: u64,
        partition: u32,
    },
    /// A precondition of a partitioned write: `node` is the partition's primary. Checked
    /// before the record is applied (`Engine::apply_replicated`): a record whose planner
    /// is no longer the primary is skipped whole on every node. Stores nothing.
    RequirePrimary {
        table_id: u64,
        partition: u32,
        node: u64,
    },
    /// Records the last grid-log index applied to this database (stored in `meta`). A grid
    /// entry's database changes carry it in the same record, so data and grid position move
    /// together.
    SetGridApplied(u64),
}

/// A log record: the changes of one statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub changes: Vec<Change>,
}

impl LogRecord {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding into a Vec cannot fail")
    }

    pub fn decode(bytes: &[u8]) -> Result<LogRecord, DbError> {
        postcard::from_bytes(bytes).map_err(|e| DbError::Decode(format!("log record: {e}")))
    }
}

/// A failure of the database file. All of these but [`DbError::InvalidDump`] are fatal for
/// the node.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A dump handed to [`Db::restore`] is inconsistent (it came from a peer); nothing was
    /// changed.
    #[error("invalid database dump: {0}")]
    InvalidDump(String),
    #[error("database file {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("database file: {0}")]
    Redb(String),
    #[error("database file holds undecodable data: {0}")]
    Decode(String),
}

macro_rules! redb_err {
    ($($t:ty),*) => {$(
        impl From<$t> for DbError {
            fn from(e: $t) -> Self { DbError::Redb(e.to_string()) }
        }
    )*};
}
redb_err!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

fn table_prefix(table_id: u64) -> [u8; 8] {
    table_id.to_be_bytes()
}

fn row_key(table_id: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&table_prefix(table_id));
    k.extend_from_slice(key);
    k
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, DbError> {
    postcard::from_bytes(bytes).map_err(|e| DbError::Decode(format!("{what}: {e}")))
}

/// The grid's common data, as a joining node receives it: catalog, users and rows, plus the
/// grid-log position they reflect. Rows are `(table id, primary-key encoding, values as
/// stored)`; rows written before an `ADD COLUMN` stay short and read padded, as here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbDump {
    pub next_table_id: u64,
    /// The last grid-log index applied to the dumped data (0 when none).
    pub grid_applied_index: u64,
    pub tables: Vec<TableDef>,
    pub users: Vec<UserRecord>,
    pub rows: Vec<(u64, Vec<u8>, Vec<Value>)>,
    /// `(table id, partition, placement)` of every partitioned table's partitions.
    pub placements: Vec<(u64, u32, PartitionPlacement)>,
}

impl DbDump {
    /// Checks the dump is self-consistent: unique table ids (below `next_table_id`) and
    /// names, primary keys naming existing columns, unique user names, and every row in a
    /// dumped table and no wider than it.
    pub fn validate(&self) -> Result<(), String> {
        let mut widths = std::collections::HashMap::new();
        let mut names = std::collections::HashSet::new();
        for def in &self.tables {
            if def.id >= self.next_table_id {
                return Err(format!(
                    "table {} has id {} but next_table_id is {}",
                    def.name, def.id, self.next_table_id
                ));
            }
            if widths.insert(def.id, def.columns.len()).is_some() {
                return Err(format!("table id {} appears twice", def.id));
            }
            if !names.insert(def.name.as_str()) {
                return Err(format!("table {} appears twice", def.name));
            }
            if let Some(&i) = def.primary_key.iter().find(|&&i| i >= def.columns.len()) {
                return Err(format!(
                    "table {}: primary key column {i} of {} columns",
                    def.name,
                    def.columns.len()
                ));
            }
        }
        let mut users = std::collections::HashSet::new();
        for user in &self.users {
            if !users.insert(user.name.as_str()) {
                return Err(format!("user {} appears twice", user.name));
            }
        }
        for (table_id, partition, _) in &self.placements {
            if !widths.contains_key(table_id) {
                return Err(format!(
                    "placement of partition {partition} of table id {table_id}, which is not dumped"
                ));
            }
        }
        for (table_id, _, row) in &self.rows {
            match widths.get(table_id) {
                None => return Err(format!("a row of table id {table_id}, which is not dumped")),
                Some(&w) if row.len() > w => {
                    return Err(format!(
                        "a row of table id {table_id} has {} values for {w} columns",
                        row.len()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// The database file.
pub struct Db {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens the database file, creating it (with its tables) when missing.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let db = Database::create(path).map_err(|e| DbError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let this = Db {
            db: Arc::new(db),
            path: path.to_path_buf(),
        };
        let mut txn = this.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.open_table(META)?;
        txn.open_table(CATALOG)?;
        txn.open_table(USERS)?;
        txn.open_table(ROWS)?;
        txn.open_table(PLACEMENT)?;
        txn.open_table(LOAD_STATE)?;
        txn.open_table(DEFERRED)?;
        txn.open_table(LOST)?;
        txn.commit()?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying redb database, shared with the grid-log store (`grid::store`), which
    /// keeps its own tables in the same file. redb runs one write transaction at a time, so
    /// the two writers serialise; a durable commit by either makes every earlier commit of
    /// both durable.
    pub fn redb(&self) -> &Arc<Database> {
        &self.db
    }

    /// A consistent read view of the last applied record.
    pub fn snapshot(&self) -> Result<Snapshot, DbError> {
        Ok(Snapshot {
            txn: self.db.begin_read()?,
        })
    }

    /// Applies one log record (sequence `seq`) atomically, without forcing it to disk: the
    /// log already holds it durably.
    pub fn apply(&self, seq: u64, record: &LogRecord) -> Result<(), DbError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        apply_changes(&txn, seq, &record.changes)?;
        txn.commit()?;
        Ok(())
    }

    /// Stores rows of a partition being loaded from another node, without the transaction
    /// log and without forcing them to disk: until the load's `FinishLoad` record, which
    /// follows a durable commit ([`Db::checkpoint`]), a restart discards them and loads
    /// again.
    /// `rows` are `(storage key, stored row bytes)` as [`Snapshot::for_each_raw_in_partition`]
    /// reads them on the source.
    pub fn load_rows(&self, table_id: u64, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DbError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        {
            let mut t = txn.open_table(ROWS)?;
            for (key, row) in rows {
                decode::<Vec<Value>>("a loaded row", row)?;
                t.insert(row_key(table_id, key).as_slice(), row.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Makes everything applied so far durable in the database file. Afterwards the log
    /// records up to the returned `applied_seq` are no longer needed.
    pub fn checkpoint(&self) -> Result<u64, DbError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        let seq = {
            let meta = txn.open_table(META)?;
            meta.get(APPLIED_SEQ)?.map(|v| v.value()).unwrap_or(0)
        };
        txn.commit()?;
        Ok(seq)
    }

    /// Replaces the whole catalog, every user and every row by `dump`'s, and sets
    /// `applied_seq` (the local transaction-log position the new contents stand for),
    /// `next_table_id` and `grid_applied_index` from it: one durable commit, so a crash leaves
    /// either the old contents or the new ones. The grid-log tables are not touched.
    /// An inconsistent dump ([`DbDump::validate`]) is refused with [`DbError::InvalidDump`]
    /// before anything changes.
    pub fn restore(&self, dump: &DbDump, applied_seq: u64) -> Result<(), DbError> {
        dump.validate().map_err(DbError::InvalidDump)?;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut meta = txn.open_table(META)?;
            let mut catalog = txn.open_table(CATALOG)?;
            let mut users = txn.open_table(USERS)?;
            let mut rows = txn.open_table(ROWS)?;
            let mut placement = txn.open_table(PLACEMENT)?;
            catalog.retain(|_, _| false)?;
            users.retain(|_, _| false)?;
            rows.retain(|_, _| false)?;
            placement.retain(|_, _| false)?;
            for (table_id, partition, p) in &dump.placements {
                let bytes = postcard::to_stdvec(p).expect("encoding into a Vec cannot fail");
                placement.insert(
                    placement_key(*table_id, *partition).as_slice(),
                    bytes.as_slice(),
                )?;
            }
            for def in &dump.tables {
                let bytes = postcard::to_stdvec(def).expect("encoding into a Vec cannot fail");
                catalog.insert(def.name.as_str(), bytes.as_slice())?;
            }
            for user in &dump.users {
                let bytes = postcard::to_stdvec(user).expect("encoding into a Vec cannot fail");
                users.insert(user.name.as_str(), bytes.as_slice())?;
            }
            for (table_id, key, row) in &dump.rows {
                let bytes = postcard::to_stdvec(row).expect("encoding into a Vec cannot fail");
                rows.insert(row_key(*table_id, key).as_slice(), bytes.as_slice())?;
            }
            meta.insert(NEXT_TABLE_ID, dump.next_table_id)?;
            meta.insert(GRID_APPLIED_INDEX, dump.grid_applied_index)?;
            meta.insert(APPLIED_SEQ, applied_seq)?;
        }
        txn.commit()?;
        Ok(())
    }
}

fn placement_key(table_id: u64, partition: u32) -> [u8; 12] {
    let mut k = [0; 12];
    k[..8].copy_from_slice(&table_id.to_be_bytes());
    k[8..].copy_from_slice(&partition.to_be_bytes());
    k
}

/// The keys of one partition's entries in the tables keyed `table_id ‖ partition ‖ …`
/// (`placement`, `load_state`, `deferred`, `lost_copies`): `from..to`.
fn partition_keys(table_id: u64, partition: u32) -> ([u8; 12], [u8; 12]) {
    let from = placement_key(table_id, partition);
    let to = match partition.checked_add(1) {
        Some(next) => placement_key(table_id, next),
        None => placement_key(table_id + 1, 0),
    };
    (from, to)
}

fn partition_range(table_id: u64, partition: u32) -> (Vec<u8>, Vec<u8>) {
    let from = row_key(table_id, &partition.to_be_bytes());
    let to = match partition.checked_add(1) {
        Some(next) => row_key(table_id, &next.to_be_bytes()),
        None => table_prefix(table_id + 1).to_vec(),
    };
    (from, to)
}

fn apply_changes(txn: &WriteTransaction, seq: u64, changes: &[Change]) -> Result<(), DbError> {
    let mut meta = txn.open_table(META)?;
    let mut catalog = txn.open_table(CATALOG)?;
    let mut users = txn.open_table(USERS)?;
    let mut rows = txn.open_table(ROWS)?;
    let mut placement = txn.open_table(PLACEMENT)?;
    let mut load_state = txn.open_table(LOAD_STATE)?;
    let mut deferred = txn.open_table(DEFERRED)?;
    let mut lost = txn.open_table(LOST)?;
    for change in changes {
        match change {
            Change::CreateTable(def) | Change::AlterTable(def) => {
                let bytes = postcard::to_stdvec(def).expect("encoding into a Vec cannot fail");
                catalog.insert(def.name.as_str(), bytes.as_slice())?;
                let next = meta.get(NEXT_TABLE_ID)?.map(|v| v.value()).unwrap_or(1);
                if def.id >= next {
                    meta.insert(NEXT_TABLE_ID, def.id + 1)?;
                }
            }
            Change::DropTable { name, id } => {
                catalog.remove(name.as_str())?;
                let from = table_prefix(*id);
                let to = table_prefix(id + 1);
                rows.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
                let from = placement_key(*id, 0);
                let to = placement_key(id + 1, 0);
                placement.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
                load_state.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
                deferred.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
                lost.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
            }
            Change::MarkLost {
                table_id,
                partition,
                index,
            } => {
                let (k, to) = partition_keys(*table_id, *partition);
                lost.insert(k.as_slice(), *index)?;
                load_state.remove(k.as_slice())?;
                deferred.retain_in(k.as_slice()..to.as_slice(), |_, _| false)?;
            }
            Change::DeferRow {
                table_id,
                partition,
                index,
                ordinal,
                change,
            } => {
                let mut k = placement_key(*table_id, *partition).to_vec();
                k.extend_from_slice(&index.to_be_bytes());
                k.extend_from_slice(&ordinal.to_be_bytes());
                let bytes = postcard::to_stdvec(change).expect("encoding into a Vec cannot fail");
                deferred.insert(k.as_slice(), bytes.as_slice())?;
            }
            Change::FinishLoad {
                table_id,
                partition,
                snapshot_index,
            } => {
                let (from, to) = partition_keys(*table_id, *partition);
                let mut later = Vec::new();
                for entry in deferred.range(from.as_slice()..to.as_slice())? {
                    let (k, v) = entry?;
                    let index = u64::from_be_bytes(k.value()[12..20].try_into().expect("key"));
                    if index > *snapshot_index {
                        later.push(decode::<Change>("deferred write", v.value())?);
                    }
                }
                for c in later {
                    match c {
                        Change::PutRow { table_id, key, row } => {
                            let bytes =
                                postcard::to_stdvec(&row).expect("encoding into a Vec cannot fail");
                            rows.insert(row_key(table_id, &key).as_slice(), bytes.as_slice())?;
                        }
                        Change::DeleteRow { table_id, key } => {
                            rows.remove(row_key(table_id, &key).as_slice())?;
                        }
                        other => {
                            return Err(DbError::Decode(format!(
                                "a deferred write must be a row change, not {other:?}"
                            )));
                        }
                    }
                }
                deferred.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
                load_state.insert(from.as_slice(), *snapshot_index)?;
                lost.remove(from.as_slice())?;
            }
            Change::ClearLoadState {
                table_id,
                partition,
            } => {
                let (from, to) = partition_keys(*table_id, *partition);
                deferred.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
                load_state.remove(from.as_slice())?;
                lost.remove(from.as_slice())?;
            }
            Change::SetPlacement {
                table_id,
                partition,
                placement: p,
            } => {
                let bytes = postcard::to_stdvec(p).expect("encoding into a Vec cannot fail");
                placement.insert(
                    placement_key(*table_id, *partition).as_slice(),
                    bytes.as_slice(),
                )?;
            }
            Change::DropPartitionRows {
                table_id,
                partition,
            } => {
                let (from, to) = partition_range(*table_id, *partition);
                rows.retain_in(from.as_slice()..to.as_slice(), |_, _| false)?;
            }
            Change::RequirePrimary { .. } => {}
            Change::PutRow { table_id, key, row } => {
                let bytes = postcard::to_stdvec(row).expect("encoding into a Vec cannot fail");
                rows.insert(row_key(*table_id, key).as_slice(), bytes.as_slice())?;
            }
            Change::InsertAutoKey {
                table_id,
                ordinal,
                row,
            } => {
                let mut key = seq.to_be_bytes().to_vec();
                key.extend_from_slice(&ordinal.to_be_bytes());
                let bytes = postcard::to_stdvec(row).expect("encoding into a Vec cannot fail");
                rows.insert(row_key(*table_id, &key).as_slice(), bytes.as_slice())?;
            }
            Change::DeleteRow { table_id, key } => {
                rows.remove(row_key(*table_id, key).as_slice())?;
            }
            Change::PutUser(user) => {
                let bytes = postcard::to_stdvec(user).expect("encoding into a Vec cannot fail");
                users.insert(user.name.as_str(), bytes.as_slice())?;
            }
            Change::DropUser { name } => {
                users.remove(name.as_str())?;
            }
            Change::SetGridApplied(index) => {
                meta.insert(GRID_APPLIED_INDEX, *index)?;
            }
        }
    }
    meta.insert(APPLIED_SEQ, seq)?;
    Ok(())
}

/// A read-only, consistent view of the database.
pub struct Snapshot {
    txn: ReadTransaction,
}

impl Snapshot {
    pub fn applied_seq(&self) -> Result<u64, DbError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta.get(APPLIED_SEQ)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn next_table_id(&self) -> Result<u64, DbError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta.get(NEXT_TABLE_ID)?.map(|v| v.value()).unwrap_or(1))
    }

    /// The last grid-log index applied to this database; 0 when none was.
    pub fn grid_applied_index(&self) -> Result<u64, DbError> {
        let meta = self.txn.open_table(META)?;
        Ok(meta
            .get(GRID_APPLIED_INDEX)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    /// Everything a joining node needs: catalog, users and all rows, as of this snapshot.
    pub fn dump(&self) -> Result<DbDump, DbError> {
        self.dump_rows_of(|_| true)
    }

    /// Like [`Snapshot::dump`], with the rows of only the tables `include_rows` selects (the
    /// grid copies shared tables whole; partitions travel separately). Every table's
    /// definition is included either way.
    pub fn dump_rows_of(
        &self,
        mut include_rows: impl FnMut(&TableDef) -> bool,
    ) -> Result<DbDump, DbError> {
        let tables = self.tables()?;
        let users = self.users()?;
        let rows_table = self.txn.open_table(ROWS)?;
        let mut rows = Vec::new();
        for def in &tables {
            if !include_rows(def) {
                continue;
            }
            let from = table_prefix(def.id);
            let to = table_prefix(def.id + 1);
            for entry in rows_table.range(from.as_slice()..to.as_slice())? {
                let (k, v) = entry?;
                let row: Vec<Value> = decode("row", v.value())?;
                rows.push((def.id, k.value()[8..].to_vec(), row));
            }
        }
        Ok(DbDump {
            next_table_id: self.next_table_id()?,
            grid_applied_index: self.grid_applied_index()?,
            tables,
            users,
            rows,
            placements: self.placement_entries()?,
        })
    }

    fn placement_entries(&self) -> Result<Vec<(u64, u32, PartitionPlacement)>, DbError> {
        let t = self.txn.open_table(PLACEMENT)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let k = k.value();
            let table_id = u64::from_be_bytes(k[..8].try_into().expect("12-byte key"));
            let partition = u32::from_be_bytes(k[8..12].try_into().expect("12-byte key"));
            out.push((table_id, partition, decode("placement", v.value())?));
        }
        Ok(out)
    }

    /// The placement of every partition of `table_id`, indexed by partition (empty when
    /// the table has none: a shared table, or a partitioned one outside a grid).
    pub fn placement(&self, table_id: u64) -> Result<Vec<PartitionPlacement>, DbError> {
        let t = self.txn.open_table(PLACEMENT)?;
        let from = placement_key(table_id, 0);
        let to = placement_key(table_id + 1, 0);
        let mut out = Vec::new();
        for entry in t.range(from.as_slice()..to.as_slice())? {
            let (_, v) = entry?;
            out.push(decode("placement", v.value())?);
        }
        Ok(out)
    }

    /// The placement of every partitioned table that has one, in table-id order.
    pub fn placements(&self) -> Result<Vec<TablePlacement>, DbError> {
        let by_id: std::collections::BTreeMap<u64, TableDef> = self
            .tables()?
            .into_iter()
            .filter(|d| d.partitioning.is_some())
            .map(|d| (d.id, d))
            .collect();
        let mut out: Vec<TablePlacement> = Vec::new();
        for (table_id, _, p) in self.placement_entries()? {
            let Some(def) = by_id.get(&table_id) else {
                continue;
            };
            match out.last_mut() {
                Some(t) if t.table_id == table_id => t.partitions.push(p),
                _ => out.push(TablePlacement {
                    table_id,
                    table: def.name.clone(),
                    replication_factor: def
                        .partitioning
                        .as_ref()
                        .map_or(1, |p| p.replication_factor),
                    partitions: vec![p],
                }),
            }
        }
        Ok(out)
    }

    /// The grid index through which this node's loading copy of a partition holds it, once
    /// its load finished (`None` before).
    pub fn load_state(&self, table_id: u64, partition: u32) -> Result<Option<u64>, DbError> {
        let t = self.txn.open_table(LOAD_STATE)?;
        Ok(t.get(placement_key(table_id, partition).as_slice())?
            .map(|v| v.value()))
    }

    /// Whether this node's copy of a partition lost its rows and waits to be loaded again.
    pub fn is_lost(&self, table_id: u64, partition: u32) -> Result<bool, DbError> {
        let t = self.txn.open_table(LOST)?;
        Ok(t.get(placement_key(table_id, partition).as_slice())?
            .is_some())
    }

    /// The table with id `id`, if any.
    pub fn table_by_id(&self, id: u64) -> Result<Option<TableDef>, DbError> {
        Ok(self.tables()?.into_iter().find(|d| d.id == id))
    }

    /// Calls `f(key, stored row bytes)` for every row of one partition, in key order, until
    /// it breaks (no decoding: what a partition load copies).
    pub fn for_each_raw_in_partition<E>(
        &self,
        table_id: u64,
        partition: u32,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<E>,
    ) -> Result<Option<E>, DbError> {
        let rows = self.txn.open_table(ROWS)?;
        let (from, to) = partition_range(table_id, partition);
        for entry in rows.range(from.as_slice()..to.as_slice())? {
            let (k, v) = entry?;
            if let ControlFlow::Break(e) = f(&k.value()[8..], v.value()) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    /// Calls `f(key, row)` for every row of one partition of a partitioned table, in key
    /// order, until it breaks.
    pub fn for_each_row_in_partition<E>(
        &self,
        table: &TableDef,
        partition: u32,
        mut f: impl FnMut(&[u8], Vec<Value>) -> ControlFlow<E>,
    ) -> Result<Option<E>, DbError> {
        let rows = self.txn.open_table(ROWS)?;
        let (from, to) = partition_range(table.id, partition);
        for entry in rows.range(from.as_slice()..to.as_slice())? {
            let (k, v) = entry?;
            let row = padded(table, decode("row", v.value())?);
            if let ControlFlow::Break(e) = f(&k.value()[8..], row) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    pub fn table(&self, name: &str) -> Result<Option<TableDef>, DbError> {
        self.get_decoded(CATALOG, name, "catalog entry")
    }

    pub fn tables(&self) -> Result<Vec<TableDef>, DbError> {
        self.all_decoded(CATALOG, "catalog entry")
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, DbError> {
        self.get_decoded(USERS, name, "user entry")
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, DbError> {
        self.all_decoded(USERS, "user entry")
    }

    /// One postcard value of a name-keyed table.
    fn get_decoded<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, DbError> {
        let t = self.txn.open_table(table)?;
        match t.get(name)? {
            Some(v) => Ok(Some(decode(what, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every postcard value of a name-keyed table, in name order.
    fn all_decoded<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        what: &str,
    ) -> Result<Vec<T>, DbError> {
        let t = self.txn.open_table(table)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (_, v) = entry?;
            out.push(decode(what, v.value())?);
        }
        Ok(out)
    }

    /// The row stored under `key`, padded to the table's current width.
    pub fn row(&self, table: &TableDef, key: &[u8]) -> Result<Option<Vec<Value>>, DbError> {
        let rows = self.txn.open_table(ROWS)?;
        match rows.get(row_key(table.id, key).as_slice())? {
            Some(v) => Ok(Some(padded(table, decode("row", v.value())?))),
            None => Ok(None),
        }
    }

    /// Calls `f(key, row)` for every row of `table` in key order until it breaks.
    pub fn for_each_row<E>(
        &self,
        table: &TableDef,
        mut f: impl FnMut(&[u8], Vec<Value>) -> ControlFlow<E>,
    ) -> Result<Option<E>, DbError> {
        let rows = self.txn.open_table(ROWS)?;
        let from = table_prefix(table.id);
        let to = table_prefix(table.id + 1);
        for entry in rows.range(from.as_slice()..to.as_slice())? {
            let (k, v) = entry?;
            let row = padded(table, decode("row", v.value())?);
            if let ControlFlow::Break(e) = f(&k.value()[8..], row) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }
}

/// Decodes a row as stored (see [`Snapshot::for_each_raw_in_partition`]), padded to the
/// table's width.
pub fn decode_row(table: &TableDef, bytes: &[u8]) -> Result<Vec<Value>, DbError> {
    Ok(padded(table, decode("row", bytes)?))
}

/// Rows written before an `ADD COLUMN` are shorter than the table: the new columns read NULL.
fn padded(table: &TableDef, mut row: Vec<Value>) -> Vec<Value> {
    row.resize(table.columns.len(), Value::Null);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(id: u64, name: &str) -> TableDef {
        TableDef {
            id,
            name: name.into(),
            columns: vec![
                ColumnMeta {
                    name: "ID".into(),
                    sql_type: SqlType::Integer,
                    not_null: true,
                },
                ColumnMeta {
                    name: "V".into(),
                    sql_type: SqlType::Varchar(10),
                    not_null: false,
                },
            ],
            primary_key: vec![0],
            partitioning: None,
        }
    }

    fn rows_of(snap: &Snapshot, t: &TableDef) -> Vec<Vec<Value>> {
        let mut out = Vec::new();
        snap.for_each_row::<()>(t, |_, r| {
            out.push(r);
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn apply_and_reopen_after_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("solid.db");
        let t = def(1, "T");
        {
            let db = Db::open(&path).unwrap();
            let row = vec![Value::Int(1), Value::Text("a".into())];
            db.apply(
                1,
                &LogRecord {
                    changes: vec![
                        Change::CreateTable(t.clone()),
                        Change::PutRow {
                            table_id: 1,
                            key: t.key_of(&row),
                            row,
                        },
                    ],
                },
            )
            .unwrap();
            assert_eq!(db.checkpoint().unwrap(), 1);
        }
        let db = Db::open(&path).unwrap();
        let snap = db.snapshot().unwrap();
        assert_eq!(snap.applied_seq().unwrap(), 1);
        assert_eq!(snap.next_table_id().unwrap(), 2);
        assert_eq!(snap.table("T").unwrap(), Some(t.clone()));
        assert_eq!(
            rows_of(&snap, &t),
            vec![vec![Value::Int(1), Value::Text("a".into())]]
        );
    }

    #[test]
    fn drop_table_removes_only_its_rows_and_add_column_pads() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("solid.db")).unwrap();
        let a = def(1, "A");
        let b = def(2, "B");
        let r = vec![Value::Int(7), Value::Null];
        db.apply(
            1,
            &LogRecord {
                changes: vec![
                    Change::CreateTable(a.clone()),
                    Change::CreateTable(b.clone()),
                    Change::PutRow {
                        table_id: 1,
                        key: a.key_of(&r),
                        row: r.clone(),
                    },
                    Change::PutRow {
                        table_id: 2,
                        key: b.key_of(&r),
                        row: r.clone(),
                    },
                ],
            },
        )
        .unwrap();
        let mut b2 = b.clone();
        b2.columns.push(ColumnMeta {
            name: "W".into(),
            sql_type: SqlType::Boolean,
            not_null: false,
        });
        db.apply(
            2,
            &LogRecord {
                changes: vec![
                    Change::DropTable {
                        name: "A".into(),
                        id: 1,
                    },
                    Change::AlterTable(b2.clone()),
                ],
            },
        )
        .unwrap();
        let snap = db.snapshot().unwrap();
        assert_eq!(snap.table("A").unwrap(), None);
        assert!(rows_of(&snap, &a).is_empty());
        assert_eq!(
            rows_of(&snap, &b2),
            vec![vec![Value::Int(7), Value::Null, Value::Null]]
        );
        assert_eq!(snap.applied_seq().unwrap(), 2);
    }

    fn user(name: &str, admin: bool) -> UserRecord {
        UserRecord {
            name: name.into(),
            password_hash: format!("$hash-of-{name}"),
            admin,
        }
    }

    fn put(t: &TableDef, id: i64, v: &str) -> Change {
        let row = vec![Value::Int(id), Value::Text(v.into())];
        Change::PutRow {
            table_id: t.id,
            key: t.key_of(&row),
            row,
        }
    }

    /// Everything a snapshot shows, for comparing two databases.
    #[derive(Debug, PartialEq)]
    struct Contents {
        next_table_id: u64,
        grid_applied_index: u64,
        tables: Vec<TableDef>,
        users: Vec<UserRecord>,
        /// The rows of each table in `tables`, in key order, as reads see them.
        rows: Vec<Vec<Vec<Value>>>,
    }

    fn contents(db: &Db) -> Contents {
        let snap = db.snapshot().unwrap();
        let tables = snap.tables().unwrap();
        let rows = tables.iter().map(|t| rows_of(&snap, t)).collect();
        Contents {
            next_table_id: snap.next_table_id().unwrap(),
            grid_applied_index: snap.grid_applied_index().unwrap(),
            tables,
            users: snap.users().unwrap(),
            rows,
        }
    }

    /// A database with two tables (one altered after its first row, one without a primary
    /// key), a dropped table, two users and a grid position.
    fn populated(path: &Path) -> Db {
        let db = Db::open(path).unwrap();
        let a = def(1, "A");
        let gone = def(2, "GONE");
        let mut c = def(3, "C");
        c.primary_key.clear();
        db.apply(
            1,
            &LogRecord {
                changes: vec![
                    Change::CreateTable(a.clone()),
                    Change::CreateTable(gone.clone()),
                    Change::CreateTable(c.clone()),
                    put(&a, 1, "one"),
                    put(&a, 2, "two"),
                    put(&gone, 9, "nine"),
                    Change::InsertAutoKey {
                        table_id: 3,
                        ordinal: 0,
                        row: vec![Value::Int(5), Value::Null],
                    },
                    Change::PutUser(user("DBA", true)),
                    Change::PutUser(user("BOB", false)),
                ],
            },
        )
        .unwrap();
        let mut a2 = a.clone();
        a2.columns.push(ColumnMeta {
            name: "W".into(),
            sql_type: SqlType::Boolean,
            not_null: false,
        });
        db.apply(
            2,
            &LogRecord {
                changes: vec![
                    Change::AlterTable(a2.clone()),
                    Change::PutRow {
                        table_id: 1,
                        key: a2.key_of(&[Value::Int(3)]),
                        row: vec![Value::Int(3), Value::Null, Value::Bool(true)],
                    },
                    Change::DropTable {
                        name: "GONE".into(),
                        id: 2,
                    },
                    Change::SetGridApplied(17),
                ],
            },
        )
        .unwrap();
        db
    }

    #[test]
    fn dump_restored_into_a_fresh_file_shows_the_same_contents() {
        let dir = tempfile::tempdir().unwrap();
        let source = populated(&dir.path().join("a.db"));
        let dump = source.snapshot().unwrap().dump().unwrap();
        assert_eq!(dump.next_table_id, 4);
        assert_eq!(dump.grid_applied_index, 17);
        assert_eq!(dump.rows.len(), 4, "{dump:?}");
        dump.validate().unwrap();

        let path = dir.path().join("b.db");
        {
            let target = Db::open(&path).unwrap();
            target.restore(&dump, 5).unwrap();
            assert_eq!(contents(&target), contents(&source));
            assert_eq!(target.snapshot().unwrap().applied_seq().unwrap(), 5);
            assert_eq!(target.snapshot().unwrap().dump().unwrap(), dump);
        }
        // The restore was one durable commit: it survives reopening without a checkpoint.
        let reopened = Db::open(&path).unwrap();
        assert_eq!(contents(&reopened), contents(&source));
        assert_eq!(reopened.snapshot().unwrap().applied_seq().unwrap(), 5);
    }

    #[test]
    fn restore_replaces_previous_contents() {
        let dir = tempfile::tempdir().unwrap();
        let db = populated(&dir.path().join("a.db"));
        let t = def(7, "OTHER");
        let dump = DbDump {
            next_table_id: 8,
            grid_applied_index: 40,
            tables: vec![t.clone()],
            users: vec![user("CAROL", true)],
            rows: vec![(7, t.key_of(&[Value::Int(1)]), vec![Value::Int(1)])],
            placements: vec![],
        };
        db.restore(&dump, 0).unwrap();
        let snap = db.snapshot().unwrap();
        assert_eq!(snap.tables().unwrap(), vec![t.clone()]);
        assert_eq!(snap.table("A").unwrap(), None);
        assert!(rows_of(&snap, &def(1, "A")).is_empty(), "old rows are gone");
        assert_eq!(snap.users().unwrap(), vec![user("CAROL", true)]);
        assert_eq!(snap.user("DBA").unwrap(), None);
        assert_eq!(rows_of(&snap, &t), vec![vec![Value::Int(1), Value::Null]]);
        assert_eq!(snap.next_table_id().unwrap(), 8);
        assert_eq!(snap.grid_applied_index().unwrap(), 40);
        assert_eq!(snap.applied_seq().unwrap(), 0);
    }

    #[test]
    fn dump_rows_of_selects_tables_but_keeps_every_definition() {
        let dir = tempfile::tempdir().unwrap();
        let db = populated(&dir.path().join("a.db"));
        let dump = db
            .snapshot()
            .unwrap()
            .dump_rows_of(|t| t.name == "C")
            .unwrap();
        assert_eq!(dump.tables.len(), 2);
        assert_eq!(dump.rows.len(), 1);
        assert_eq!(dump.rows[0].0, 3);
    }

    #[test]
    fn an_inconsistent_dump_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = populated(&dir.path().join("a.db"));
        let before = contents(&db);
        let good = db.snapshot().unwrap().dump().unwrap();
        let mut orphan_row = good.clone();
        orphan_row.rows.push((99, vec![1], vec![Value::Int(1)]));
        let mut low_next_id = good.clone();
        low_next_id.next_table_id = 2;
        let mut twice = good.clone();
        twice.users.push(user("DBA", false));
        let mut bad_key = good.clone();
        bad_key.tables[0].primary_key = vec![5];
        let mut wide_row = good.clone();
        wide_row.rows[0].2.extend(vec![Value::Null; 5]);
        for bad in [orphan_row, low_next_id, twice, bad_key, wide_row] {
            let err = db.restore(&bad, 9).unwrap_err();
            assert!(matches!(err, DbError::InvalidDump(_)), "{err}");
            assert_eq!(contents(&db), before);
        }
    }

    #[test]
    fn grid_applied_index_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("solid.db");
        {
            let db = Db::open(&path).unwrap();
            assert_eq!(db.snapshot().unwrap().grid_applied_index().unwrap(), 0);
            let set = |seq, index| {
                db.apply(
                    seq,
                    &LogRecord {
                        changes: vec![Change::SetGridApplied(index)],
                    },
                )
                .unwrap()
            };
            set(1, 3);
            assert_eq!(db.snapshot().unwrap().grid_applied_index().unwrap(), 3);
            set(2, 12);
            let snap = db.snapshot().unwrap();
            assert_eq!(snap.grid_applied_index().unwrap(), 12);
            assert_eq!(snap.applied_seq().unwrap(), 2);
            db.checkpoint().unwrap();
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.snapshot().unwrap().grid_applied_index().unwrap(), 12);
        let rec = LogRecord {
            changes: vec![Change::SetGridApplied(u64::MAX)],
        };
        assert_eq!(LogRecord::decode(&rec.encode()).unwrap(), rec);
    }

    #[test]
    fn log_records_round_trip() {
        let rec = LogRecord {
            changes: vec![Change::DropUser { name: "U".into() }],
        };
        assert_eq!(LogRecord::decode(&rec.encode()).unwrap(), rec);
        assert!(LogRecord::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
