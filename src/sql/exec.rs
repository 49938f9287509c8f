//! The statement executor: turns a parsed statement and a consistent read view of the
//! database into either a result set (queries) or a list of [`Change`]s (writes).
//!
//! It does no I/O of its own and never writes: the engine logs the changes durably, applies
//! them, and only then acknowledges. That keeps every statement atomic (one log record) and
//! makes the executor testable against any snapshot.
//!
//! A `SELECT` is checked before any row is read (`Query::new`), then fed one matching row
//! at a time (`Query::push`) and finished (`Query::finish`): projection, aggregates,
//! `ORDER BY` and `LIMIT` are the same whether the rows come from a table (a primary-key
//! point lookup or a streaming scan, see `scan`) or from the caller ([`select_rows`], for
//! system views such as `SYS_GRID_NODES` that the server builds in memory).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::auth;
use crate::error::{SolidError, SolidResult, code};
use crate::grid::placement::{DEFAULT_PARTITIONS, Partitioning};
use crate::sql::ast::{
    AggregateFunc, AlterTableAddColumn, BinaryOp, ColumnDef, CreateTable, CreateUser, Delete,
    DropTable, DropUser, Expr, GrantAdmin, Insert, Literal, PartitionClause, Select, SelectItem,
    Statement, UnaryOp, Update,
};
use crate::sql::value::{SqlType, Value};
use crate::storage::db::{Change, ColumnMeta, DbError, Snapshot, TableDef, UserRecord};

/// Most columns a table may have.
pub const MAX_COLUMNS: usize = 1000;
/// Most rows one INSERT may carry; bounds the size of one log record.
pub const MAX_INSERT_ROWS: usize = 100_000;

/// Who runs the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub name: String,
    pub admin: bool,
}

/// What a statement produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A query result.
    Rows {
        columns: Vec<(String, String)>,
        rows: Vec<Vec<Value>>,
    },
    /// Changes to log and apply, with the summary to report once they are durable.
    Write {
        changes: Vec<Change>,
        rows_affected: u64,
    },
}

fn storage(e: DbError) -> SolidError {
    SolidError::server(code::STORAGE, e.to_string())
}

fn require_admin(user: &SessionUser, what: &str) -> SolidResult<()> {
    if user.admin {
        Ok(())
    } else {
        Err(SolidError::not_permitted(what))
    }
}

fn table_not_found(name: &str) -> SolidError {
    SolidError::table(
        code::TABLE_NOT_FOUND,
        format!("Table {name} does not exist"),
    )
}

fn get_table(snap: &Snapshot, name: &str) -> SolidResult<TableDef> {
    snap.table(name)
        .map_err(storage)?
        .ok_or_else(|| table_not_found(name))
}

/// A result of text columns (what the `ADMIN COMMAND`s answer).
pub fn text_rows(header: &[&str], rows: Vec<Vec<String>>) -> Output {
    Output::Rows {
        columns: header
            .iter()
            .map(|h| (h.to_string(), "VARCHAR".to_string()))
            .collect(),
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(Value::Text).collect())
            .collect(),
    }
}

/// Executes one statement against `snap`. `ADMIN COMMAND` and the grid statements are the
/// server's business (it intercepts them before calling this) and are refused here.
pub fn execute(snap: &Snapshot, user: &SessionUser, stmt: &Statement) -> SolidResult<Output> {
    match stmt {
        Statement::CreateTable(s) => create_table(snap, user, s),
        Statement::DropTable(s) => drop_table(snap, user, s),
        Statement::AlterTableAddColumn(s) => add_column(snap, user, s),
        Statement::Insert(s) => insert(snap, s),
        Statement::Select(s) => select(snap, s),
        Statement::Update(s) => update(snap, s),
        Statement::Delete(s) => delete(snap, s),
        Statement::CreateUser(s) => create_user(snap, user, s),
        Statement::DropUser(s) => drop_user(snap, user, s),
        Statement::GrantAdmin(s) => grant_admin(snap, user, s),
        Statement::AdminCommand(_) => Err(SolidError::server(
            code::UNKNOWN_ADMIN_COMMAND,
            "ADMIN COMMAND is handled by the server",
        )),
        Statement::CreateUnsupported(s) => Err(SolidError::table(
            code::BAD_TABLE_DEFINITION,
            format!(
                "cannot create {}: {} are not supported by solidgrid",
                s.name,
                s.object.as_str()
            ),
        )),
        Statement::CreateGrid(_) | Statement::DropGrid(_) | Statement::AlterGrid(_) => {
            Err(SolidError::server(
                code::BAD_REQUEST,
                "grid statements are handled by the grid layer",
            ))
        }
    }
}

fn column_meta(c: &ColumnDef) -> ColumnMeta {
    ColumnMeta {
        name: c.name.clone(),
        sql_type: c.sql_type,
        not_null: c.not_null,
    }
}

/// Most copies of a partition a table may ask for.
pub const MAX_REPLICATION_FACTOR: u64 = 7;

/// Validates `PARTITION BY (cols) REPLICATION FACTOR n`: the partition key is the primary
/// key or its leading columns (so every row of one key lives in one partition, and a
/// keyed statement names its partition), and the factor is 1 to
/// [`MAX_REPLICATION_FACTOR`].
fn partitioning(
    s: &CreateTable,
    p: &PartitionClause,
    primary_key: &[usize],
    columns: &[ColumnMeta],
) -> SolidResult<Partitioning> {
    let bad = |why: String| {
        SolidError::table(
            code::BAD_TABLE_DEFINITION,
            format!("PARTITION BY of table {}: {why}", s.name),
        )
    };
    let mut key = Vec::with_capacity(p.columns.len());
    for name in &p.columns {
        let Some(i) = columns.iter().position(|c| &c.name == name) else {
            return Err(SolidError::table(
                code::COLUMN_NOT_FOUND,
                format!(
                    "Partition key column {name} is not a column of table {}",
                    s.name
                ),
            ));
        };
        key.push(i);
    }
    if primary_key.is_empty() || !primary_key.starts_with(&key) {
        return Err(bad(format!(
            "the partition key ({}) must be the primary key or its leading columns",
            p.columns.join(", ")
        )));
    }
    if !(1..=MAX_REPLICATION_FACTOR).contains(&p.replication_factor) {
        return Err(bad(format!(
            "REPLICATION FACTOR must be 1 to {MAX_REPLICATION_FACTOR}, not {}",
            p.replication_factor
        )));
    }
    Ok(Partitioning {
        key,
        replication_factor: p.replication_factor as u32,
        partitions: DEFAULT_PARTITIONS,
    })
}

fn create_table(snap: &Snapshot, user: &SessionUser, s: &CreateTable) -> SolidResult<Output> {
    require_admin(user, "CREATE TABLE")?;
    if snap.table(&s.name).map_err(storage)?.is_some() {
        return Err(SolidError::table(
            code::TABLE_EXISTS,
            format!("Table {} already exists", s.name),
        ));
    }
    if s.columns.is_empty() || s.columns.len() > MAX_COLUMNS {
        return Err(SolidError::table(
            code::BAD_TABLE_DEFINITION,
            format!("a table needs 1 to {MAX_COLUMNS} columns"),
        ));
    }
    let mut seen = HashSet::new();
    for c in &s.columns {
        if !seen.insert(c.name.as_str()) {
            return Err(SolidError::table(
                code::DUPLICATE_COLUMN,
                format!("Column {} is defined twice in table {}", c.name, s.name),
            ));
        }
    }
    let mut columns: Vec<ColumnMeta> = s.columns.iter().map(column_meta).collect();
    let mut primary_key = Vec::with_capacity(s.primary_key.len());
    for name in &s.primary_key {
        let Some(i) = columns.iter().position(|c| &c.name == name) else {
            return Err(SolidError::table(
                code::COLUMN_NOT_FOUND,
                format!(
                    "Primary key column {name} is not a column of table {}",
                    s.name
                ),
            ));
        };
        if primary_key.contains(&i) {
            return Err(SolidError::table(
                code::BAD_TABLE_DEFINITION,
                format!("Column {name} appears twice in the primary key"),
            ));
        }
        columns[i].not_null = true;
        primary_key.push(i);
    }
    let partitioning = s
        .partition
        .as_ref()
        .map(|p| partitioning(s, p, &primary_key, &columns))
        .transpose()?;
    if let Some(cols) = s.unique.first() {
        let why = if partitioning.is_some() {
            "UNIQUE constraints are not allowed on a partitioned table (its rows live on different nodes); only the primary key is unique"
        } else {
            "UNIQUE constraints are not supported; make the columns the PRIMARY KEY"
        };
        return Err(SolidError::table(
            code::BAD_TABLE_DEFINITION,
            format!("UNIQUE ({}) on table {}: {why}", cols.join(", "), s.name),
        ));
    }
    let def = TableDef {
        id: snap.next_table_id().map_err(storage)?,
        name: s.name.clone(),
        columns,
        primary_key,
        partitioning,
    };
    Ok(Output::Write {
        changes: vec![Change::CreateTable(def)],
        rows_affected: 0,
    })
}

fn drop_table(snap: &Snapshot, user: &SessionUser, s: &DropTable) -> SolidResult<Output> {
    require_admin(user, "DROP TABLE")?;
    let def = get_table(snap, &s.name)?;
    Ok(Output::Write {
        changes: vec![Change::DropTable {
            name: def.name,
            id: def.id,
        }],
        rows_affected: 0,
    })
}

fn add_column(snap: &Snapshot, user: &SessionUser, s: &AlterTableAddColumn) -> SolidResult<Output> {
    require_admin(user, "ALTER TABLE")?;
    let mut def = get_table(snap, &s.table)?;
    if def.column_index(&s.column.name).is_some() {
        return Err(SolidError::table(
            code::DUPLICATE_COLUMN,
            format!(
                "Column {} already exists in table {}",
                s.column.name, s.table
            ),
        ));
    }
    if def.columns.len() >= MAX_COLUMNS {
        return Err(SolidError::table(
            code::BAD_TABLE_DEFINITION,
            format!("a table has at most {MAX_COLUMNS} columns"),
        ));
    }
    if s.column.not_null {
        let has_rows = snap
            .for_each_row(&def, |_, _| ControlFlow::Break(()))
            .map_err(storage)?
            .is_some();
        if has_rows {
            return Err(SolidError::table(
                code::NOT_NULL_VIOLATION,
                format!(
                    "cannot add NOT NULL column {} to table {}: it has rows, which would hold NULL",
                    s.column.name, s.table
                ),
            ));
        }
    }
    def.columns.push(column_meta(&s.column));
    Ok(Output::Write {
        changes: vec![Change::AlterTable(def)],
        rows_affected: 0,
    })
}

/// Coerces a full row to the table's types and checks NOT NULL.
fn check_row(def: &TableDef, row: Vec<Value>) -> SolidResult<Vec<Value>> {
    row.into_iter()
        .zip(&def.columns)
        .map(|(v, c)| {
            let v = v.coerce_to(c.sql_type, &c.name)?;
            if v.is_null() && c.not_null {
                return Err(SolidError::table(
                    code::NOT_NULL_VIOLATION,
                    format!("Column {} of table {} cannot be NULL", c.name, def.name),
                ));
            }
            Ok(v)
        })
        .collect()
}

fn duplicate_key(def: &TableDef, row: &[Value]) -> SolidError {
    let key: Vec<String> = def.primary_key.iter().map(|&i| row[i].literal()).collect();
    SolidError::table(
        code::DUPLICATE_KEY,
        format!(
            "Unique constraint violation: primary key ({}) already exists in table {}",
            key.join(", "),
            def.name
        ),
    )
}

fn insert(snap: &Snapshot, s: &Insert) -> SolidResult<Output> {
    let def = get_table(snap, &s.table)?;
    let rows = insert_rows(&def, s)?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut keys = HashSet::new();
    for (ordinal, row) in rows.into_iter().enumerate() {
        if def.primary_key.is_empty() {
            changes.push(Change::InsertAutoKey {
                table_id: def.id,
                ordinal: ordinal as u32,
                row,
            });
        } else {
            let key = def.key_of(&row);
            if !keys.insert(key.clone()) || snap.row(&def, &key).map_err(storage)?.is_some() {
                return Err(duplicate_key(&def, &row));
            }
            changes.push(Change::PutRow {
                table_id: def.id,
                key,
                row,
            });
        }
    }
    let n = changes.len() as u64;
    Ok(Output::Write {
        changes,
        rows_affected: n,
    })
}

/// The rows an INSERT into `def` would write, coerced and checked (types, NOT NULL,
/// lengths), without looking at the table's contents.
pub fn insert_rows(def: &TableDef, s: &Insert) -> SolidResult<Vec<Vec<Value>>> {
    if s.rows.len() > MAX_INSERT_ROWS {
        return Err(SolidError::server(
            code::TOO_LARGE,
            format!("one INSERT may carry at most {MAX_INSERT_ROWS} rows"),
        ));
    }
    let targets: Vec<usize> = match &s.columns {
        None => (0..def.columns.len()).collect(),
        Some(names) => {
            let mut idx = Vec::with_capacity(names.len());
            for n in names {
                let i = def
                    .column_index(n)
                    .ok_or_else(|| column_not_found(n, def))?;
                if idx.contains(&i) {
                    return Err(SolidError::table(
                        code::DUPLICATE_COLUMN,
                        format!("Column {n} is listed twice"),
                    ));
                }
                idx.push(i);
            }
            idx
        }
    };
    let mut rows = Vec::with_capacity(s.rows.len());
    for (ordinal, exprs) in s.rows.iter().enumerate() {
        if exprs.len() != targets.len() {
            return Err(SolidError::table(
                code::VALUE_COUNT,
                format!(
                    "row {} has {} values for {} columns",
                    ordinal + 1,
                    exprs.len(),
                    targets.len()
                ),
            ));
        }
        let mut row = vec![Value::Null; def.columns.len()];
        for (e, &i) in exprs.iter().zip(&targets) {
            row[i] = eval_constant(e)?;
        }
        rows.push(check_row(def, row)?);
    }
    Ok(rows)
}

/// The partition of a partitioned table that a WHERE clause pins down: a conjunction that
/// includes `col = constant` for every partition-key column. `None` when it does not (the
/// statement reaches every partition).
pub fn pinned_partition(def: &TableDef, filter: Option<&Expr>) -> Option<u32> {
    let p = def.partitioning.as_ref()?;
    let mut pinned: Vec<Option<Value>> = vec![None; def.columns.len()];
    collect_equalities(filter?, def, &mut pinned);
    let mut row = vec![Value::Null; def.columns.len()];
    for &i in &p.key {
        let v = pinned[i]
            .take()?
            .coerce_to(def.columns[i].sql_type, &def.columns[i].name)
            .ok()?;
        if v.is_null() {
            return None;
        }
        row[i] = v;
    }
    Some(p.partition_of_row(&row))
}

fn column_not_found(name: &str, def: &TableDef) -> SolidError {
    SolidError::table(
        code::COLUMN_NOT_FOUND,
        format!("Column {name} not found in table {}", def.name),
    )
}

/// Rows of `def` for which `filter` holds, with their keys (for UPDATE and DELETE).
fn matching_rows(
    snap: &Snapshot,
    def: &TableDef,
    filter: Option<&Expr>,
) -> SolidResult<Vec<(Vec<u8>, Vec<Value>)>> {
    check_filter(def, filter)?;
    let mut out = Vec::new();
    scan(snap, def, filter, |key, row| {
        out.push((key.to_vec(), row));
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(out)
}

/// Feeds `visit` every row of `def` for which `filter` holds, with its key, in key order,
/// until `visit` breaks or fails. A filter that pins the whole primary key reads that one
/// row; any other streams through the table without holding it in memory. The caller has
/// checked the filter ([`check_filter`]).
fn scan(
    snap: &Snapshot,
    def: &TableDef,
    filter: Option<&Expr>,
    mut visit: impl FnMut(&[u8], Vec<Value>) -> SolidResult<ControlFlow<()>>,
) -> SolidResult<()> {
    if let Some(key) = filter.and_then(|f| point_key(f, def)) {
        // Every primary-key column is pinned by `col = constant`: read one row.
        if let Some(row) = snap.row(def, &key).map_err(storage)?
            && passes(def, filter, &row)?
        {
            // The only row: whether `visit` wants more does not matter.
            let _ = visit(&key, row)?;
        }
        return Ok(());
    }
    // Breaks with `Some(error)` on a failure, `None` when `visit` has seen enough.
    let stopped = snap
        .for_each_row(def, |key, row| {
            let step = match passes(def, filter, &row) {
                Ok(true) => visit(key, row),
                Ok(false) => Ok(ControlFlow::Continue(())),
                Err(e) => Err(e),
            };
            match step {
                Ok(ControlFlow::Continue(())) => ControlFlow::Continue(()),
                Ok(ControlFlow::Break(())) => ControlFlow::Break(None),
                Err(e) => ControlFlow::Break(Some(e)),
            }
        })
        .map_err(storage)?;
    match stopped {
        Some(Some(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Refuses a WHERE clause that names unknown columns or uses aggregates, before any row is
/// read.
fn check_filter(def: &TableDef, filter: Option<&Expr>) -> SolidResult<()> {
    let Some(f) = filter else {
        return Ok(());
    };
    check_columns(f, def)?;
    if f.has_aggregate() {
        return Err(SolidError::syntax(
            "aggregate functions are not allowed in WHERE",
        ));
    }
    Ok(())
}

/// Whether `row` satisfies the (checked) WHERE clause: TRUE passes, FALSE and NULL do not.
fn passes(def: &TableDef, filter: Option<&Expr>, row: &[Value]) -> SolidResult<bool> {
    match filter {
        None => Ok(true),
        Some(f) => truth(&eval(f, def, row)?, "WHERE"),
    }
}

/// The primary key a filter pins down, when it is a conjunction that includes
/// `pk_col = constant` for every key column (constants coerced to the column types).
fn point_key(filter: &Expr, def: &TableDef) -> Option<Vec<u8>> {
    if def.primary_key.is_empty() {
        return None;
    }
    let mut pinned: Vec<Option<Value>> = vec![None; def.columns.len()];
    collect_equalities(filter, def, &mut pinned);
    let mut row = vec![Value::Null; def.columns.len()];
    for &i in &def.primary_key {
        let v = pinned[i].take()?;
        row[i] = v
            .coerce_to(def.columns[i].sql_type, &def.columns[i].name)
            .ok()?;
        if row[i].is_null() {
            return None;
        }
    }
    Some(def.key_of(&row))
}

fn collect_equalities(e: &Expr, def: &TableDef, pinned: &mut [Option<Value>]) {
    match e {
        Expr::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            collect_equalities(left, def, pinned);
            collect_equalities(right, def, pinned);
        }
        Expr::Binary {
            op: BinaryOp::Eq,
            left,
            right,
        } => {
            let (col, constant) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(l)) | (Expr::Literal(l), Expr::Column(c)) => (c, l),
                _ => return,
            };
            if let Some(i) = def.column_index(col) {
                pinned[i] = Some(literal(constant));
            }
        }
        _ => {}
    }
}

fn update(snap: &Snapshot, s: &Update) -> SolidResult<Output> {
    let def = get_table(snap, &s.table)?;
    let mut assignments = Vec::with_capacity(s.assignments.len());
    for (name, e) in &s.assignments {
        let i = def
            .column_index(name)
            .ok_or_else(|| column_not_found(name, &def))?;
        check_columns(e, &def)?;
        if e.has_aggregate() {
            return Err(SolidError::syntax(
                "aggregate functions are not allowed in SET",
            ));
        }
        if assignments.iter().any(|(j, _)| *j == i) {
            return Err(SolidError::table(
                code::DUPLICATE_COLUMN,
                format!("Column {name} is assigned twice"),
            ));
        }
        assignments.push((i, e));
    }
    let matched = matching_rows(snap, &def, s.filter.as_ref())?;
    let mut updated = Vec::with_capacity(matched.len());
    for (key, old) in matched {
        let mut new = old.clone();
        for (i, e) in &assignments {
            new[*i] = eval(e, &def, &old)?;
        }
        updated.push((key, check_row(&def, new)?));
    }
    // A primary-key change moves the row: delete every moved row's old key first, then put
    // the new rows, refusing a key that a row not being updated still holds.
    let old_keys: HashSet<&[u8]> = updated.iter().map(|(k, _)| k.as_slice()).collect();
    let mut new_keys = HashSet::new();
    let mut deletes = Vec::new();
    let mut puts = Vec::with_capacity(updated.len());
    for (old_key, row) in &updated {
        let key = if def.primary_key.is_empty() {
            old_key.clone()
        } else {
            def.key_of(row)
        };
        if !new_keys.insert(key.clone()) {
            return Err(duplicate_key(&def, row));
        }
        if key != *old_key {
            if !old_keys.contains(key.as_slice())
                && snap.row(&def, &key).map_err(storage)?.is_some()
            {
                return Err(duplicate_key(&def, row));
            }
            deletes.push(Change::DeleteRow {
                table_id: def.id,
                key: old_key.clone(),
            });
        }
        puts.push(Change::PutRow {
            table_id: def.id,
            key,
            row: row.clone(),
        });
    }
    let n = puts.len() as u64;
    deletes.extend(puts);
    Ok(Output::Write {
        changes: deletes,
        rows_affected: n,
    })
}

fn delete(snap: &Snapshot, s: &Delete) -> SolidResult<Output> {
    let def = get_table(snap, &s.table)?;
    let changes: Vec<Change> = matching_rows(snap, &def, s.filter.as_ref())?
        .into_iter()
        .map(|(key, _)| Change::DeleteRow {
            table_id: def.id,
            key,
        })
        .collect();
    let n = changes.len() as u64;
    Ok(Output::Write {
        changes,
        rows_affected: n,
    })
}

fn create_user(snap: &Snapshot, user: &SessionUser, s: &CreateUser) -> SolidResult<Output> {
    require_admin(user, "CREATE USER")?;
    if snap.user(&s.name).map_err(storage)?.is_some() {
        return Err(SolidError::auth(
            code::USER_EXISTS,
            format!("User {} already exists", s.name),
        ));
    }
    auth::validate_new_password(&s.password)
        .map_err(|m| SolidError::auth(code::NOT_PERMITTED, m))?;
    Ok(Output::Write {
        changes: vec![Change::PutUser(UserRecord {
            name: s.name.clone(),
            password_hash: auth::hash_password(&s.password),
            admin: false,
        })],
        rows_affected: 0,
    })
}

fn user_not_found(name: &str) -> SolidError {
    SolidError::auth(code::USER_NOT_FOUND, format!("User {name} does not exist"))
}

fn drop_user(snap: &Snapshot, user: &SessionUser, s: &DropUser) -> SolidResult<Output> {
    require_admin(user, "DROP USER")?;
    let target = snap
        .user(&s.name)
        .map_err(storage)?
        .ok_or_else(|| user_not_found(&s.name))?;
    if target.name == user.name {
        return Err(SolidError::auth(
            code::LAST_ADMIN,
            "a user cannot drop itself",
        ));
    }
    if target.admin {
        let admins = snap
            .users()
            .map_err(storage)?
            .iter()
            .filter(|u| u.admin)
            .count();
        if admins <= 1 {
            return Err(SolidError::auth(
                code::LAST_ADMIN,
                format!("User {} is the last admin user", s.name),
            ));
        }
    }
    Ok(Output::Write {
        changes: vec![Change::DropUser {
            name: s.name.clone(),
        }],
        rows_affected: 0,
    })
}

fn grant_admin(snap: &Snapshot, user: &SessionUser, s: &GrantAdmin) -> SolidResult<Output> {
    require_admin(user, "GRANT ADMIN")?;
    let mut target = snap
        .user(&s.user)
        .map_err(storage)?
        .ok_or_else(|| user_not_found(&s.user))?;
    target.admin = true;
    Ok(Output::Write {
        changes: vec![Change::PutUser(target)],
        rows_affected: 0,
    })
}

// ---------------------------------------------------------------------------------------
// Queries

fn select(snap: &Snapshot, s: &Select) -> SolidResult<Output> {
    let def = get_table(snap, &s.from)?;
    let mut query = Query::new(&def, s)?;
    scan(snap, &def, s.filter.as_ref(), |_, row| query.push(row))?;
    query.finish()
}

/// Runs a SELECT over rows supplied by the caller (a system view), with the same semantics
/// as a table scan.
///
/// `def` describes the view's columns: names for `*`, `WHERE` and `ORDER BY`, types for the
/// result header, and the table name used in error messages. `s.from` is not consulted (the
/// caller chose `def` by it). Each row holds one value per column of `def`, in column order;
/// a missing trailing value reads as NULL, as for a column added to a table after its rows.
pub fn select_rows(def: &TableDef, rows: Vec<Vec<Value>>, s: &Select) -> SolidResult<Output> {
    let mut query = Query::new(def, s)?;
    for row in rows {
        debug_assert!(
            row.len() <= def.columns.len(),
            "a row of {} has {} values for {} columns",
            def.name,
            row.len(),
            def.columns.len()
        );
        if passes(def, s.filter.as_ref(), &row)? && query.push(row)?.is_break() {
            break;
        }
    }
    query.finish()
}

/// One SELECT being answered: checked up front, fed the rows that pass its WHERE clause one
/// at a time, then finished into the result.
struct Query<'a> {
    def: &'a TableDef,
    select: &'a Select,
    /// Select items with `*` expanded, each with its output column name.
    items: Vec<(Expr, String)>,
    /// `LIMIT n` of a query without ORDER BY or aggregates: after `n` rows the result is
    /// complete, and the rows still to come need not be read.
    enough: Option<usize>,
    /// What has been gathered so far.
    rows: Gathered,
}

/// The rows a [`Query`] keeps until it finishes.
enum Gathered {
    /// An aggregate query (no GROUP BY, one result row): the matching rows, which every
    /// aggregate is evaluated over at the end.
    Aggregate(Vec<Vec<Value>>),
    /// Any other query: each matching row projected, with its ORDER BY sort key.
    Projected(Vec<(Vec<Value>, Vec<Value>)>),
}

impl<'a> Query<'a> {
    /// Checks everything that can be checked without rows: the select items' and the
    /// filter's columns, aggregates in WHERE, and bare columns beside aggregates.
    fn new(def: &'a TableDef, select: &'a Select) -> SolidResult<Query<'a>> {
        let items = expand_items(def, &select.items);
        for (e, _) in &items {
            check_columns(e, def)?;
        }
        check_filter(def, select.filter.as_ref())?;
        let rows = if items.iter().any(|(e, _)| e.has_aggregate()) {
            for (e, _) in &items {
                check_aggregate_item(e)?;
            }
            Gathered::Aggregate(Vec::new())
        } else {
            Gathered::Projected(Vec::new())
        };
        let enough = match rows {
            Gathered::Projected(_) if select.order_by.is_empty() => select
                .limit
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            _ => None,
        };
        Ok(Query {
            def,
            select,
            items,
            enough,
            rows,
        })
    }

    /// Takes one row that passed the WHERE clause. Breaks once later rows cannot change the
    /// result (see `enough`), so `LIMIT` without ORDER BY also ends a table scan early.
    fn push(&mut self, row: Vec<Value>) -> SolidResult<ControlFlow<()>> {
        let enough = self.enough.unwrap_or(usize::MAX);
        match &mut self.rows {
            Gathered::Aggregate(all) => {
                all.push(row);
                Ok(ControlFlow::Continue(()))
            }
            Gathered::Projected(keyed) => {
                if keyed.len() >= enough {
                    return Ok(ControlFlow::Break(()));
                }
                let projected = self
                    .items
                    .iter()
                    .map(|(e, _)| eval(e, self.def, &row))
                    .collect::<SolidResult<Vec<_>>>()?;
                let sort_key = self
                    .select
                    .order_by
                    .iter()
                    .map(|o| order_value(&o.expr, self.def, &row, &projected, &self.items))
                    .collect::<SolidResult<Vec<_>>>()?;
                keyed.push((sort_key, projected));
                Ok(if keyed.len() >= enough {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            }
        }
    }

    /// The result: the aggregate row, or the projected rows sorted (stably, so ties keep
    /// the order the rows came in) and cut to the limit.
    fn finish(self) -> SolidResult<Output> {
        let columns: Vec<(String, String)> = self
            .items
            .iter()
            .map(|(e, name)| (name.clone(), infer_type(e, self.def)))
            .collect();
        let mut rows = match self.rows {
            Gathered::Aggregate(all) => {
                let row = self
                    .items
                    .iter()
                    .map(|(e, _)| eval_aggregate(e, self.def, &all))
                    .collect::<SolidResult<Vec<_>>>()?;
                vec![row]
            }
            Gathered::Projected(mut keyed) => {
                let order_by = &self.select.order_by;
                if !order_by.is_empty() {
                    keyed.sort_by(|(a, _), (b, _)| {
                        for ((x, y), o) in a.iter().zip(b).zip(order_by) {
                            let ord = x.order_cmp(y);
                            let ord = if o.descending { ord.reverse() } else { ord };
                            if ord != Ordering::Equal {
                                return ord;
                            }
                        }
                        Ordering::Equal
                    });
                }
                keyed.into_iter().map(|(_, r)| r).collect()
            }
        };
        if let Some(limit) = self.select.limit {
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(Output::Rows { columns, rows })
    }
}

/// Select items with `*` expanded, each with its output column name.
fn expand_items(def: &TableDef, items: &[SelectItem]) -> Vec<(Expr, String)> {
    let mut out = Vec::new();
    for item in items {
        match item {
            SelectItem::Wildcard => out.extend(
                def.columns
                    .iter()
                    .map(|c| (Expr::Column(c.name.clone()), c.name.clone())),
            ),
            SelectItem::Expr { expr, alias } => {
                let name = alias.clone().unwrap_or_else(|| expr_text(expr));
                out.push((expr.clone(), name));
            }
        }
    }
    out
}

/// A sort key: a table column, else a select-list alias, else `ORDER BY n` (1-based).
fn order_value(
    e: &Expr,
    def: &TableDef,
    row: &[Value],
    projected: &[Value],
    items: &[(Expr, String)],
) -> SolidResult<Value> {
    match e {
        Expr::Column(name) if def.column_index(name).is_none() => items
            .iter()
            .position(|(_, n)| n == name)
            .map(|i| projected[i].clone())
            .ok_or_else(|| column_not_found(name, def)),
        Expr::Literal(Literal::Integer(n)) => usize::try_from(*n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| projected.get(i).cloned())
            .ok_or_else(|| {
                SolidError::syntax(format!("ORDER BY position {n} is not in the select list"))
            }),
        _ => {
            check_columns(e, def)?;
            eval(e, def, row)
        }
    }
}

fn check_aggregate_item(e: &Expr) -> SolidResult<()> {
    match e {
        Expr::Aggregate { .. } | Expr::Literal(_) => Ok(()),
        Expr::Column(c) => Err(SolidError::syntax(format!(
            "column {c} must appear inside an aggregate function (there is no GROUP BY)"
        ))),
        Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } => check_aggregate_item(expr),
        Expr::Binary { left, right, .. } => {
            check_aggregate_item(left)?;
            check_aggregate_item(right)
        }
    }
}

/// Evaluates an item of an aggregate query over all matching rows.
fn eval_aggregate(e: &Expr, def: &TableDef, rows: &[Vec<Value>]) -> SolidResult<Value> {
    match e {
        Expr::Aggregate { func, arg } => {
            let values: Vec<Value> = match arg {
                None => return Ok(Value::Int(rows.len() as i64)),
                Some(a) => {
                    if a.has_aggregate() {
                        return Err(SolidError::syntax("aggregate functions cannot be nested"));
                    }
                    let mut vs = Vec::with_capacity(rows.len());
                    for r in rows {
                        let v = eval(a, def, r)?;
                        if !v.is_null() {
                            vs.push(v);
                        }
                    }
                    vs
                }
            };
            aggregate(*func, values)
        }
        Expr::Literal(_) => eval(e, def, &[]),
        Expr::Unary { op, expr } => unary(*op, eval_aggregate(expr, def, rows)?),
        Expr::IsNull { expr, negated } => Ok(Value::Bool(
            eval_aggregate(expr, def, rows)?.is_null() != *negated,
        )),
        Expr::Binary { op, left, right } => binary(
            *op,
            eval_aggregate(left, def, rows)?,
            eval_aggregate(right, def, rows)?,
        ),
        Expr::Column(_) => unreachable!("rejected by check_aggregate_item"),
    }
}

fn aggregate(func: AggregateFunc, values: Vec<Value>) -> SolidResult<Value> {
    match func {
        AggregateFunc::Count => Ok(Value::Int(values.len() as i64)),
        AggregateFunc::Min | AggregateFunc::Max => {
            let mut best: Option<Value> = None;
            for v in values {
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let ord = v.sql_cmp(b).ok_or_else(|| {
                            SolidError::type_mismatch(format!(
                                "{} cannot compare {} with {}",
                                func.name(),
                                v.literal(),
                                b.literal()
                            ))
                        })?;
                        if func == AggregateFunc::Min {
                            ord == Ordering::Less
                        } else {
                            ord == Ordering::Greater
                        }
                    }
                };
                if better {
                    best = Some(v);
                }
            }
            Ok(best.unwrap_or(Value::Null))
        }
        AggregateFunc::Sum | AggregateFunc::Avg => {
            if values.is_empty() {
                return Ok(Value::Null);
            }
            let n = values.len();
            let mut sum = Value::Int(0);
            for v in values {
                if !matches!(v, Value::Int(_) | Value::Double(_)) {
                    return Err(SolidError::type_mismatch(format!(
                        "{} needs numbers, got {}",
                        func.name(),
                        v.literal()
                    )));
                }
                sum = binary(BinaryOp::Add, sum, v)?;
            }
            if func == AggregateFunc::Sum {
                return Ok(sum);
            }
            let total = match sum {
                Value::Int(i) => i as f64,
                Value::Double(d) => d,
                _ => unreachable!("sum of numbers is a number"),
            };
            Ok(Value::Double(total / n as f64))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Expressions

/// Refuses references to columns the table does not have, before any row is read.
fn check_columns(e: &Expr, def: &TableDef) -> SolidResult<()> {
    match e {
        Expr::Column(c) => def
            .column_index(c)
            .map(|_| ())
            .ok_or_else(|| column_not_found(c, def)),
        Expr::Literal(_) => Ok(()),
        Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } => check_columns(expr, def),
        Expr::Binary { left, right, .. } => {
            check_columns(left, def)?;
            check_columns(right, def)
        }
        Expr::Aggregate { arg, .. } => arg.as_deref().map_or(Ok(()), |a| check_columns(a, def)),
    }
}

/// Evaluates an expression that may not reference columns (INSERT values).
fn eval_constant(e: &Expr) -> SolidResult<Value> {
    let empty = TableDef {
        id: 0,
        name: String::new(),
        columns: Vec::new(),
        primary_key: Vec::new(),
        partitioning: None,
    };
    match e {
        Expr::Column(c) => Err(SolidError::syntax(format!(
            "column reference {c} is not allowed in VALUES"
        ))),
        e if e.has_aggregate() => Err(SolidError::syntax(
            "aggregate functions are not allowed in VALUES",
        )),
        e => eval(e, &empty, &[]),
    }
}

fn eval(e: &Expr, def: &TableDef, row: &[Value]) -> SolidResult<Value> {
    Ok(match e {
        Expr::Literal(l) => literal(l),
        Expr::Column(c) => {
            let i = def
                .column_index(c)
                .ok_or_else(|| column_not_found(c, def))?;
            row.get(i).cloned().unwrap_or(Value::Null)
        }
        Expr::Unary { op, expr } => unary(*op, eval(expr, def, row)?)?,
        Expr::IsNull { expr, negated } => Value::Bool(eval(expr, def, row)?.is_null() != *negated),
        Expr::Binary { op, left, right } => {
            // AND/OR short-circuit only where three-valued logic allows.
            let l = eval(left, def, row)?;
            match (op, &l) {
                (BinaryOp::And, Value::Bool(false)) => return Ok(Value::Bool(false)),
                (BinaryOp::Or, Value::Bool(true)) => return Ok(Value::Bool(true)),
                _ => {}
            }
            binary(*op, l, eval(right, def, row)?)?
        }
        Expr::Aggregate { func, .. } => {
            return Err(SolidError::syntax(format!(
                "{} is not allowed here",
                func.name()
            )));
        }
    })
}

fn literal(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Integer(i) => Value::Int(*i),
        Literal::Float(f) => Value::Double(*f),
        Literal::String(s) => Value::Text(s.clone()),
        Literal::Boolean(b) => Value::Bool(*b),
        Literal::Timestamp(t) => Value::Timestamp(*t),
    }
}

/// SQL truth of a condition: TRUE passes; FALSE and NULL (unknown) do not.
fn truth(v: &Value, clause: &str) -> SolidResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        other => Err(SolidError::type_mismatch(format!(
            "{clause} condition must be a boolean, got {}",
            other.literal()
        ))),
    }
}

fn unary(op: UnaryOp, v: Value) -> SolidResult<Value> {
    Ok(match (op, v) {
        (_, Value::Null) => Value::Null,
        (UnaryOp::Not, Value::Bool(b)) => Value::Bool(!b),
        (UnaryOp::Neg, Value::Int(i)) => Value::Int(
            i.checked_neg()
                .ok_or_else(|| SolidError::table(code::ARITHMETIC, "integer overflow"))?,
        ),
        (UnaryOp::Neg, Value::Double(d)) => Value::Double(-d),
        (op, v) => {
            return Err(SolidError::type_mismatch(format!(
                "{} cannot be applied to {}",
                if op == UnaryOp::Not { "NOT" } else { "unary -" },
                v.literal()
            )));
        }
    })
}

fn binary(op: BinaryOp, l: Value, r: Value) -> SolidResult<Value> {
    use BinaryOp::*;
    match op {
        And | Or => {
            let as_bool = |v: &Value| match v {
                Value::Bool(b) => Ok(Some(*b)),
                Value::Null => Ok(None),
                other => Err(SolidError::type_mismatch(format!(
                    "{} needs booleans, got {}",
                    if op == And { "AND" } else { "OR" },
                    other.literal()
                ))),
            };
            let (a, b) = (as_bool(&l)?, as_bool(&r)?);
            Ok(match (op, a, b) {
                (And, Some(false), _) | (And, _, Some(false)) => Value::Bool(false),
                (And, Some(true), Some(true)) => Value::Bool(true),
                (Or, Some(true), _) | (Or, _, Some(true)) => Value::Bool(true),
                (Or, Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            })
        }
        Eq | NotEq | Lt | LtEq | Gt | GtEq => {
            if l.is_null() || r.is_null() {
                return Ok(Value::Null);
            }
            let ord = l.sql_cmp(&r).ok_or_else(|| {
                SolidError::type_mismatch(format!(
                    "cannot compare {} with {}",
                    l.literal(),
                    r.literal()
                ))
            })?;
            Ok(Value::Bool(match op {
                Eq => ord == Ordering::Equal,
                NotEq => ord != Ordering::Equal,
                Lt => ord == Ordering::Less,
                LtEq => ord != Ordering::Greater,
                Gt => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
        Add | Sub | Mul | Div => arithmetic(op, l, r),
    }
}

fn arithmetic(op: BinaryOp, l: Value, r: Value) -> SolidResult<Value> {
    let overflow = || SolidError::table(code::ARITHMETIC, "integer overflow");
    let div_zero = || SolidError::table(code::ARITHMETIC, "division by zero");
    Ok(match (l, r) {
        (Value::Null, _) | (_, Value::Null) => Value::Null,
        (Value::Int(a), Value::Int(b)) => Value::Int(match op {
            BinaryOp::Add => a.checked_add(b).ok_or_else(overflow)?,
            BinaryOp::Sub => a.checked_sub(b).ok_or_else(overflow)?,
            BinaryOp::Mul => a.checked_mul(b).ok_or_else(overflow)?,
            _ => {
                if b == 0 {
                    return Err(div_zero());
                }
                a.checked_div(b).ok_or_else(overflow)?
            }
        }),
        (l @ (Value::Int(_) | Value::Double(_)), r @ (Value::Int(_) | Value::Double(_))) => {
            let f = |v: Value| match v {
                Value::Int(i) => i as f64,
                Value::Double(d) => d,
                _ => unreachable!("matched as a number"),
            };
            let (a, b) = (f(l), f(r));
            let v = match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                _ => {
                    if b == 0.0 {
                        return Err(div_zero());
                    }
                    a / b
                }
            };
            if !v.is_finite() {
                return Err(SolidError::table(
                    code::ARITHMETIC,
                    "floating-point overflow",
                ));
            }
            Value::Double(v)
        }
        (l, r) => {
            return Err(SolidError::type_mismatch(format!(
                "arithmetic needs numbers, got {} and {}",
                l.literal(),
                r.literal()
            )));
        }
    })
}

/// The result column type shown to clients; best effort for computed expressions.
fn infer_type(e: &Expr, def: &TableDef) -> String {
    match e {
        Expr::Column(c) => def
            .column_index(c)
            .map(|i| def.columns[i].sql_type.to_string())
            .unwrap_or_default(),
        Expr::Literal(l) => match l {
            Literal::Null => "NULL".into(),
            Literal::Integer(_) => SqlType::BigInt.to_string(),
            Literal::Float(_) => SqlType::Double.to_string(),
            Literal::String(s) => SqlType::Varchar(s.chars().count().max(1) as u32).to_string(),
            Literal::Boolean(_) => SqlType::Boolean.to_string(),
            Literal::Timestamp(_) => SqlType::Timestamp.to_string(),
        },
        Expr::IsNull { .. } => SqlType::Boolean.to_string(),
        Expr::Unary {
            op: UnaryOp::Not, ..
        } => SqlType::Boolean.to_string(),
        Expr::Unary { expr, .. } => infer_type(expr, def),
        Expr::Binary { op, left, right } => match op {
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                let (a, b) = (infer_type(left, def), infer_type(right, def));
                if a == "DOUBLE" || b == "DOUBLE" {
                    SqlType::Double.to_string()
                } else {
                    SqlType::BigInt.to_string()
                }
            }
            _ => SqlType::Boolean.to_string(),
        },
        Expr::Aggregate { func, arg } => match (func, arg) {
            (AggregateFunc::Count, _) => SqlType::BigInt.to_string(),
            (AggregateFunc::Avg, _) => SqlType::Double.to_string(),
            (AggregateFunc::Sum, Some(a)) => match infer_type(a, def).as_str() {
                "DOUBLE" => SqlType::Double.to_string(),
                _ => SqlType::BigInt.to_string(),
            },
            (_, Some(a)) => infer_type(a, def),
            (_, None) => String::new(),
        },
    }
}

/// The text of an expression, used as a result column name.
pub fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Literal(l) => literal(l).literal(),
        Expr::Column(c) => c.clone(),
        Expr::Unary {
            op: UnaryOp::Not,
            expr,
        } => format!("NOT {}", expr_text(expr)),
        Expr::Unary {
            op: UnaryOp::Neg,
            expr,
        } => format!("-{}", expr_text(expr)),
        Expr::IsNull { expr, negated } => format!(
            "{} IS {}NULL",
            expr_text(expr),
            if *negated { "NOT " } else { "" }
        ),
        Expr::Binary { op, left, right } => {
            let sym = match op {
                BinaryOp::And => "AND",
                BinaryOp::Or => "OR",
                BinaryOp::Eq => "=",
                BinaryOp::NotEq => "<>",
                BinaryOp::Lt => "<",
                BinaryOp::LtEq => "<=",
                BinaryOp::Gt => ">",
                BinaryOp::GtEq => ">=",
                BinaryOp::Add => "+",
                BinaryOp::Sub => "-",
                BinaryOp::Mul => "*",
                BinaryOp::Div => "/",
            };
            format!("{} {sym} {}", expr_text(left), expr_text(right))
        }
        Expr::Aggregate { func, arg } => match arg {
            None => format!("{}(*)", func.name()),
            Some(a) => format!("{}({})", func.name(), expr_text(a)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parser::parse_statement;
    use crate::storage::db::{Db, LogRecord};

    struct Fixture {
        _dir: tempfile::TempDir,
        db: Db,
        seq: u64,
        admin: SessionUser,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(&dir.path().join("t.db")).unwrap();
            Fixture {
                _dir: dir,
                db,
                seq: 0,
                admin: SessionUser {
                    name: "DBA".into(),
                    admin: true,
                },
            }
        }

        fn run_as(&mut self, user: &SessionUser, sql: &str) -> SolidResult<Output> {
            let stmt = parse_statement(sql)?;
            let out = execute(&self.db.snapshot().unwrap(), user, &stmt)?;
            if let Output::Write { changes, .. } = &out {
                self.seq += 1;
                self.db
                    .apply(
                        self.seq,
                        &LogRecord {
                            changes: changes.clone(),
                        },
                    )
                    .unwrap();
            }
            Ok(out)
        }

        fn run(&mut self, sql: &str) -> SolidResult<Output> {
            let admin = self.admin.clone();
            self.run_as(&admin, sql)
        }

        fn rows(&mut self, sql: &str) -> Vec<Vec<Value>> {
            match self.run(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
                Output::Rows { rows, .. } => rows,
                other => panic!("{sql}: not a query: {other:?}"),
            }
        }

        fn affected(&mut self, sql: &str) -> u64 {
            match self.run(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
                Output::Write { rows_affected, .. } => rows_affected,
                other => panic!("{sql}: not a write: {other:?}"),
            }
        }

        fn code(&mut self, sql: &str) -> u32 {
            self.run(sql).expect_err(sql).code
        }
    }

    fn ints(v: &[i64]) -> Vec<Vec<Value>> {
        v.iter().map(|i| vec![Value::Int(*i)]).collect()
    }

    #[test]
    fn primary_key_updates_may_shift_keys_but_not_collide() {
        let mut f = Fixture::new();
        f.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
            .unwrap();
        f.affected("INSERT INTO t VALUES (1, 10), (2, 20), (3, 30)");
        // Every key moves onto a key another moving row frees: allowed.
        assert_eq!(f.affected("UPDATE t SET id = id + 1"), 3);
        assert_eq!(f.rows("SELECT id FROM t ORDER BY id"), ints(&[2, 3, 4]));
        // Moving onto a key a row keeps: refused, nothing changes.
        assert_eq!(
            f.code("UPDATE t SET id = 4 WHERE id = 2"),
            code::DUPLICATE_KEY
        );
        // Two rows onto one key: refused.
        assert_eq!(f.code("UPDATE t SET id = 9"), code::DUPLICATE_KEY);
        assert_eq!(f.rows("SELECT v FROM t ORDER BY id"), ints(&[10, 20, 30]));
    }

    #[test]
    fn point_lookups_and_scans_agree() {
        let mut f = Fixture::new();
        f.run("CREATE TABLE t (a INTEGER, b VARCHAR(5), c DOUBLE, PRIMARY KEY (a, b))")
            .unwrap();
        f.affected("INSERT INTO t VALUES (1, 'x', 1.5), (1, 'y', 2.5), (2, 'x', NULL)");
        assert_eq!(
            f.rows("SELECT c FROM t WHERE a = 1 AND b = 'y'"),
            vec![vec![Value::Double(2.5)]]
        );
        assert_eq!(
            f.rows("SELECT c FROM t WHERE 'y' = b AND a = 1.0 AND c > 2"),
            vec![vec![Value::Double(2.5)]]
        );
        assert!(
            f.rows("SELECT c FROM t WHERE a = 1 AND b = 'y' AND c < 0")
                .is_empty()
        );
        assert!(
            f.rows("SELECT c FROM t WHERE a = 1 AND b = 'zz'")
                .is_empty()
        );
        assert_eq!(f.rows("SELECT COUNT(*) FROM t WHERE a = 1"), ints(&[2]));
        assert_eq!(f.affected("DELETE FROM t WHERE a = 2 AND b = 'x'"), 1);
        assert_eq!(
            f.affected("UPDATE t SET c = c * 2 WHERE a = 1 AND b = 'x'"),
            1
        );
        assert_eq!(
            f.rows("SELECT c FROM t WHERE a = 1 ORDER BY b"),
            vec![vec![Value::Double(3.0)], vec![Value::Double(2.5)]]
        );
    }

    #[test]
    fn three_valued_logic_and_null_handling() {
        let mut f = Fixture::new();
        f.run("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)")
            .unwrap();
        f.affected("INSERT INTO t VALUES (1, 1), (2, NULL), (3, 3)");
        assert_eq!(f.rows("SELECT id FROM t WHERE x = NULL"), ints(&[]));
        assert_eq!(f.rows("SELECT id FROM t WHERE NOT (x = 1)"), ints(&[3]));
        assert_eq!(
            f.rows("SELECT id FROM t WHERE x = 1 OR x IS NULL"),
            ints(&[1, 2])
        );
        assert_eq!(
            f.rows("SELECT id FROM t WHERE x IS NOT NULL AND x > 1"),
            ints(&[3])
        );
        assert_eq!(
            f.rows("SELECT COUNT(*), COUNT(x), SUM(x), MIN(x), MAX(x), AVG(x) FROM t"),
            vec![vec![
                Value::Int(3),
                Value::Int(2),
                Value::Int(4),
                Value::Int(1),
                Value::Int(3),
                Value::Double(2.0)
            ]]
        );
        assert_eq!(
            f.rows("SELECT SUM(x), AVG(x), MIN(x) FROM t WHERE id > 100"),
            vec![vec![Value::Null, Value::Null, Value::Null]]
        );
    }

    #[test]
    fn order_by_alias_ordinal_and_nulls_first() {
        let mut f = Fixture::new();
        f.run("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)")
            .unwrap();
        f.affected("INSERT INTO t VALUES (1, 5), (2, NULL), (3, 1), (4, 5)");
        assert_eq!(
            f.rows("SELECT id FROM t ORDER BY x DESC, id LIMIT 3"),
            ints(&[1, 4, 3])
        );
        assert_eq!(
            f.rows("SELECT id FROM t ORDER BY x, id"),
            ints(&[2, 3, 1, 4])
        );
        assert_eq!(
            f.rows("SELECT id * 10 AS ten FROM t ORDER BY ten DESC LIMIT 2"),
            ints(&[40, 30])
        );
        assert_eq!(
            f.rows("SELECT id FROM t ORDER BY 1 DESC LIMIT 1"),
            ints(&[4])
        );
        assert_eq!(f.code("SELECT id FROM t ORDER BY 7"), code::SYNTAX);
    }

    #[test]
    fn value_errors_have_their_codes_and_change_nothing() {
        let mut f = Fixture::new();
        f.run("CREATE TABLE t (id INTEGER PRIMARY KEY, s VARCHAR(3) NOT NULL, ts TIMESTAMP)")
            .unwrap();
        assert_eq!(
            f.code("INSERT INTO t VALUES (1, 'abcd', NULL)"),
            code::VALUE_TOO_LONG
        );
        assert_eq!(
            f.code("INSERT INTO t VALUES (1, NULL, NULL)"),
            code::NOT_NULL_VIOLATION
        );
        assert_eq!(f.code("INSERT INTO t VALUES (1, 'a')"), code::VALUE_COUNT);
        assert_eq!(
            f.code("INSERT INTO t VALUES ('x', 'a', NULL)"),
            code::TYPE_MISMATCH
        );
        assert_eq!(
            f.code("INSERT INTO t VALUES (1, 'a', 'not a time')"),
            code::TYPE_MISMATCH
        );
        assert_eq!(
            f.code("INSERT INTO t VALUES (3000000000, 'a', NULL)"),
            code::ARITHMETIC
        );
        assert_eq!(
            f.code("INSERT INTO t VALUES (1, 'a', NULL), (1, 'b', NULL)"),
            code::DUPLICATE_KEY
        );
        assert_eq!(
            f.code("INSERT INTO t (id, nope) VALUES (1, 2)"),
            code::COLUMN_NOT_FOUND
        );
        assert_eq!(f.rows("SELECT COUNT(*) FROM t"), ints(&[0]));
        f.affected("INSERT INTO t VALUES (1, 'a', '2024-02-29 12:00:00')");
        assert_eq!(f.code("SELECT id / 0 FROM t"), code::ARITHMETIC);
        assert_eq!(
            f.rows("SELECT id FROM t WHERE ts > TIMESTAMP '2024-01-01 00:00:00'"),
            ints(&[1])
        );
        assert_eq!(f.code("SELECT id FROM t WHERE s > 1"), code::TYPE_MISMATCH);
        assert_eq!(f.code("SELECT id FROM t WHERE id"), code::TYPE_MISMATCH);
        assert_eq!(f.code("SELECT id, COUNT(*) FROM t"), code::SYNTAX);
    }

    #[test]
    fn ddl_rules() {
        let mut f = Fixture::new();
        assert_eq!(
            f.code("CREATE TABLE t (a INTEGER, a INTEGER)"),
            code::DUPLICATE_COLUMN
        );
        assert_eq!(
            f.code("CREATE TABLE t (a INTEGER, PRIMARY KEY (b))"),
            code::COLUMN_NOT_FOUND
        );
        f.run("CREATE TABLE t (a INTEGER)").unwrap();
        f.affected("INSERT INTO t VALUES (1), (1)");
        assert_eq!(f.rows("SELECT COUNT(*) FROM t"), ints(&[2]));
        assert_eq!(
            f.code("ALTER TABLE t ADD COLUMN b INTEGER NOT NULL"),
            code::NOT_NULL_VIOLATION
        );
        f.run("ALTER TABLE t ADD COLUMN b INTEGER").unwrap();
        assert_eq!(
            f.code("ALTER TABLE t ADD COLUMN b INTEGER"),
            code::DUPLICATE_COLUMN
        );
        assert_eq!(
            f.rows("SELECT b FROM t"),
            vec![vec![Value::Null], vec![Value::Null]]
        );
        f.run("DROP TABLE t").unwrap();
        assert_eq!(f.code("DROP TABLE t"), code::TABLE_NOT_FOUND);
        // A new table of the same name starts empty.
        f.run("CREATE TABLE t (a INTEGER)").unwrap();
        assert_eq!(f.rows("SELECT COUNT(*) FROM t"), ints(&[0]));
    }

    // --- Grid statements and rows supplied by the caller ------------------------------------

    #[test]
    fn grid_statements_are_refused_not_executed() {
        let mut f = Fixture::new();
        for sql in [
            "CREATE GRID g",
            "DROP GRID g",
            "ALTER GRID g ADD NODE n2 CONNECT 'tcp 1316'",
            "ALTER GRID g DROP NODE n2 RECYCLE",
            "ALTER GRID g SET NODE n2 OFFLINE",
        ] {
            let e = f.run(sql).unwrap_err();
            assert_eq!(
                (e.class, e.code),
                (crate::error::ErrorClass::Server, code::BAD_REQUEST),
                "{sql}"
            );
        }
    }

    /// A system view shaped like `SYS_GRID_NODES`.
    fn nodes_view() -> TableDef {
        let column = |name: &str, sql_type, not_null| ColumnMeta {
            name: name.into(),
            sql_type,
            not_null,
        };
        TableDef {
            id: 0,
            name: "SYS_GRID_NODES".into(),
            columns: vec![
                column("ID", SqlType::BigInt, true),
                column("NAME", SqlType::Varchar(64), true),
                column("STATE", SqlType::Varchar(20), true),
                column("TERM", SqlType::BigInt, false),
            ],
            primary_key: Vec::new(),
            partitioning: None,
        }
    }

    fn nodes() -> Vec<Vec<Value>> {
        let node = |id, name: &str, state: &str, term: Option<i64>| {
            vec![
                Value::Int(id),
                Value::Text(name.into()),
                Value::Text(state.into()),
                term.map_or(Value::Null, Value::Int),
            ]
        };
        vec![
            node(1, "node1", "ONLINE", Some(7)),
            node(3, "node3", "OFFLINE", None),
            node(2, "node2", "ONLINE", Some(5)),
        ]
    }

    fn view(sql: &str) -> SolidResult<Output> {
        let Statement::Select(s) = parse_statement(sql)? else {
            panic!("{sql}: not a SELECT");
        };
        select_rows(&nodes_view(), nodes(), &s)
    }

    fn view_rows(sql: &str) -> Vec<Vec<Value>> {
        match view(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
            Output::Rows { rows, .. } => rows,
            other => panic!("{sql}: {other:?}"),
        }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn select_rows_filters_and_projects() {
        assert_eq!(
            view("SELECT * FROM sys_grid_nodes WHERE state = 'ONLINE'").unwrap(),
            Output::Rows {
                columns: vec![
                    ("ID".into(), "BIGINT".into()),
                    ("NAME".into(), "VARCHAR(64)".into()),
                    ("STATE".into(), "VARCHAR(20)".into()),
                    ("TERM".into(), "BIGINT".into()),
                ],
                rows: vec![nodes()[0].clone(), nodes()[2].clone()],
            }
        );
        // No ORDER BY: the rows come in the order supplied.
        assert_eq!(
            view_rows("SELECT name, term + 1 AS next FROM sys_grid_nodes"),
            vec![
                vec![text("node1"), Value::Int(8)],
                vec![text("node3"), Value::Null],
                vec![text("node2"), Value::Int(6)],
            ]
        );
        // Three-valued logic: a NULL term is neither > 5 nor NOT > 5.
        assert_eq!(
            view_rows("SELECT id FROM sys_grid_nodes WHERE NOT term > 5"),
            ints(&[2])
        );
        assert_eq!(
            view_rows("SELECT id FROM sys_grid_nodes WHERE term IS NULL OR name = 'node1'"),
            ints(&[1, 3])
        );
        // A filter that pins the view's first column is an ordinary filter here.
        assert_eq!(
            view_rows("SELECT name FROM sys_grid_nodes WHERE id = 2"),
            vec![vec![text("node2")]]
        );
        assert_eq!(
            view_rows("SELECT id FROM sys_grid_nodes WHERE id = 9"),
            ints(&[])
        );
    }

    #[test]
    fn select_rows_orders_and_limits() {
        assert_eq!(
            view_rows("SELECT id FROM sys_grid_nodes ORDER BY name"),
            ints(&[1, 2, 3])
        );
        // NULL sorts first ascending, so last descending.
        assert_eq!(
            view_rows("SELECT id FROM sys_grid_nodes ORDER BY term DESC, id"),
            ints(&[1, 2, 3])
        );
        assert_eq!(
            view_rows("SELECT id, state s FROM sys_grid_nodes ORDER BY s, 1 DESC LIMIT 2"),
            vec![
                vec![Value::Int(3), text("OFFLINE")],
                vec![Value::Int(2), text("ONLINE")],
            ]
        );
        assert_eq!(
            view_rows("SELECT id FROM sys_grid_nodes LIMIT 2"),
            ints(&[1, 3])
        );
        assert_eq!(
            view_rows("SELECT id FROM sys_grid_nodes LIMIT 0"),
            ints(&[])
        );
        // Without ORDER BY, rows past the limit are never evaluated (node3's term is NULL,
        // node2's would divide by zero); with ORDER BY every row is.
        assert_eq!(
            view_rows("SELECT 10 / (term - 5) FROM sys_grid_nodes LIMIT 2"),
            vec![vec![Value::Int(5)], vec![Value::Null]]
        );
        assert_eq!(
            view("SELECT 10 / (term - 5) FROM sys_grid_nodes ORDER BY id LIMIT 1")
                .unwrap_err()
                .code,
            code::ARITHMETIC
        );
    }

    #[test]
    fn select_rows_aggregates() {
        assert_eq!(
            view(
                "SELECT COUNT(*), COUNT(term), MIN(name), MAX(term), SUM(term), AVG(term) \
                 FROM sys_grid_nodes"
            )
            .unwrap(),
            Output::Rows {
                columns: vec![
                    ("COUNT(*)".into(), "BIGINT".into()),
                    ("COUNT(TERM)".into(), "BIGINT".into()),
                    ("MIN(NAME)".into(), "VARCHAR(64)".into()),
                    ("MAX(TERM)".into(), "BIGINT".into()),
                    ("SUM(TERM)".into(), "BIGINT".into()),
                    ("AVG(TERM)".into(), "DOUBLE".into()),
                ],
                rows: vec![vec![
                    Value::Int(3),
                    Value::Int(2),
                    text("node1"),
                    Value::Int(7),
                    Value::Int(12),
                    Value::Double(6.0),
                ]],
            }
        );
        assert_eq!(
            view_rows("SELECT COUNT(*) AS online FROM sys_grid_nodes WHERE state = 'ONLINE'"),
            ints(&[2])
        );
        assert_eq!(
            view_rows("SELECT COUNT(*), MAX(id) FROM sys_grid_nodes WHERE id > 10"),
            vec![vec![Value::Int(0), Value::Null]]
        );
        // An empty view.
        let Statement::Select(s) = parse_statement("SELECT COUNT(*) FROM v").unwrap() else {
            unreachable!()
        };
        assert_eq!(
            select_rows(&nodes_view(), Vec::new(), &s).unwrap(),
            Output::Rows {
                columns: vec![("COUNT(*)".into(), "BIGINT".into())],
                rows: ints(&[0]),
            }
        );
    }

    #[test]
    fn select_rows_errors() {
        let e = view("SELECT nope FROM sys_grid_nodes").unwrap_err();
        assert_eq!(e.code, code::COLUMN_NOT_FOUND);
        assert_eq!(e.message, "Column NOPE not found in table SYS_GRID_NODES");
        for sql in [
            "SELECT id FROM sys_grid_nodes WHERE nope = 1",
            "SELECT id FROM sys_grid_nodes ORDER BY nope",
            "SELECT COUNT(nope) FROM sys_grid_nodes",
        ] {
            assert_eq!(view(sql).unwrap_err().code, code::COLUMN_NOT_FOUND, "{sql}");
        }
        // Unknown columns are refused even when no row would be read.
        let Statement::Select(s) = parse_statement("SELECT id FROM v WHERE nope = 1").unwrap()
        else {
            unreachable!()
        };
        assert_eq!(
            select_rows(&nodes_view(), Vec::new(), &s).unwrap_err().code,
            code::COLUMN_NOT_FOUND
        );
        for sql in [
            "SELECT id, COUNT(*) FROM sys_grid_nodes",
            "SELECT id FROM sys_grid_nodes WHERE COUNT(*) > 1",
        ] {
            assert_eq!(view(sql).unwrap_err().code, code::SYNTAX, "{sql}");
        }
        assert_eq!(
            view("SELECT id FROM sys_grid_nodes WHERE name")
                .unwrap_err()
                .code,
            code::TYPE_MISMATCH
        );
        assert_eq!(
            view("SELECT SUM(name) FROM sys_grid_nodes")
                .unwrap_err()
                .code,
            code::TYPE_MISMATCH
        );
    }

    /// `select_rows` over a table's rows answers exactly as the table path does, point
    /// lookups included.
    #[test]
    fn select_rows_agrees_with_a_table_scan() {
        let mut f = Fixture::new();
        f.run("CREATE TABLE t (a INTEGER, b VARCHAR(5), c DOUBLE, PRIMARY KEY (a, b))")
            .unwrap();
        f.affected(
            "INSERT INTO t VALUES (1, 'x', 1.5), (1, 'y', 2.5), (2, 'x', NULL), (3, 'z', -1), \
             (0, 'y', 2.5)",
        );
        let snap = f.db.snapshot().unwrap();
        let def = get_table(&snap, "T").unwrap();
        let mut rows = Vec::new();
        snap.for_each_row(&def, |_, row| {
            rows.push(row);
            ControlFlow::<()>::Continue(())
        })
        .unwrap();
        for sql in [
            "SELECT * FROM t",
            "SELECT c, a FROM t WHERE a = 1 AND b = 'y'",
            "SELECT c FROM t WHERE a = 1 AND b = 'zz'",
            "SELECT a FROM t WHERE c > 1 ORDER BY c DESC, a",
            "SELECT a * 2 AS d FROM t ORDER BY d DESC LIMIT 2",
            "SELECT b FROM t LIMIT 3",
            "SELECT COUNT(*), SUM(c), MIN(b), AVG(a) FROM t WHERE c IS NOT NULL",
            "SELECT COUNT(*) FROM t WHERE a = 1 AND b = 'x'",
            "SELECT a FROM t ORDER BY 2",
            "SELECT zz FROM t",
            "SELECT a FROM t WHERE b > 1",
        ] {
            let Statement::Select(s) = parse_statement(sql).unwrap() else {
                unreachable!()
            };
            assert_eq!(
                select(&snap, &s),
                select_rows(&def, rows.clone(), &s),
                "{sql}"
            );
        }
    }

    #[test]
    fn privileges_are_checked() {
        let mut f = Fixture::new();
        let joe = SessionUser {
            name: "JOE".into(),
            admin: false,
        };
        for sql in [
            "CREATE TABLE t (a INTEGER)",
            "CREATE USER x IDENTIFIED BY 'y'",
            "DROP USER x",
            "GRANT ADMIN TO x",
        ] {
            assert_eq!(
                f.run_as(&joe, sql).unwrap_err().code,
                code::NOT_PERMITTED,
                "{sql}"
            );
        }
        f.run("CREATE TABLE t (a INTEGER)").unwrap();
        assert_eq!(
            f.run_as(&joe, "DROP TABLE t").unwrap_err().code,
            code::NOT_PERMITTED
        );
        assert!(f.run_as(&joe, "INSERT INTO t VALUES (1)").is_ok());
    }
}
