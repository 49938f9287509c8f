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
//! - `meta`: `applied_seq`, `next_table_id`, `created_at` → u64
//! - `catalog`: table name → postcard [`TableDef`]
//! - `users`: user name → postcard [`UserRecord`]
//! - `rows`: `table_id (8 bytes, big-endian) ‖ row key` → postcard `Vec<Value>`

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::sql::value::{SqlType, Value};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");

const APPLIED_SEQ: &str = "applied_seq";
const NEXT_TABLE_ID: &str = "next_table_id";

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

    /// The row's primary-key encoding. Values must already be coerced to column types.
    pub fn key_of(&self, row: &[Value]) -> Vec<u8> {
        let key: Vec<&Value> = self.primary_key.iter().map(|&i| &row[i]).collect();
        postcard::to_stdvec(&key).expect("encoding values into a Vec cannot fail")
    }
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

/// A failure of the database file. All of these are fatal for the node.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
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

/// The database file.
pub struct Db {
    db: Database,
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
            db,
            path: path.to_path_buf(),
        };
        let mut txn = this.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        txn.open_table(META)?;
        txn.open_table(CATALOG)?;
        txn.open_table(USERS)?;
        txn.open_table(ROWS)?;
        txn.commit()?;
        Ok(this)
    }

    pub fn path(&self) -> &Path {
        &self.path
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
}

fn apply_changes(txn: &WriteTransaction, seq: u64, changes: &[Change]) -> Result<(), DbError> {
    let mut meta = txn.open_table(META)?;
    let mut catalog = txn.open_table(CATALOG)?;
    let mut users = txn.open_table(USERS)?;
    let mut rows = txn.open_table(ROWS)?;
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
            }
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

    pub fn table(&self, name: &str) -> Result<Option<TableDef>, DbError> {
        let catalog = self.txn.open_table(CATALOG)?;
        match catalog.get(name)? {
            Some(v) => Ok(Some(decode("catalog entry", v.value())?)),
            None => Ok(None),
        }
    }

    pub fn tables(&self) -> Result<Vec<TableDef>, DbError> {
        let catalog = self.txn.open_table(CATALOG)?;
        let mut out = Vec::new();
        for entry in catalog.iter()? {
            let (_, v) = entry?;
            out.push(decode("catalog entry", v.value())?);
        }
        Ok(out)
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, DbError> {
        let users = self.txn.open_table(USERS)?;
        match users.get(name)? {
            Some(v) => Ok(Some(decode("user entry", v.value())?)),
            None => Ok(None),
        }
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, DbError> {
        let users = self.txn.open_table(USERS)?;
        let mut out = Vec::new();
        for entry in users.iter()? {
            let (_, v) = entry?;
            out.push(decode("user entry", v.value())?);
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

    #[test]
    fn log_records_round_trip() {
        let rec = LogRecord {
            changes: vec![Change::DropUser { name: "U".into() }],
        };
        assert_eq!(LogRecord::decode(&rec.encode()).unwrap(), rec);
        assert!(LogRecord::decode(&[0xff, 0xff, 0xff]).is_err());
    }
}
