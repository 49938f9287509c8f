//! The statement AST produced by [`crate::sql::parser`] and consumed by the executor.
//!
//! Identifiers are normalised by the parser: unquoted names are upper-cased (as solidDB
//! does), quoted names (`"MixedCase"`) keep their spelling. So the executor compares names
//! with plain `==`. Grid node names are the exception: they are `[Srv] Name` values, kept
//! exactly as written and compared case-insensitively by the grid layer.

use std::fmt;

use crate::sql::value::SqlType;

/// One parsed statement. Each kind is its own type (conventions §11).
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateTable(CreateTable),
    DropTable(DropTable),
    AlterTableAddColumn(AlterTableAddColumn),
    Insert(Insert),
    Select(Select),
    Update(Update),
    Delete(Delete),
    CreateUser(CreateUser),
    DropUser(DropUser),
    GrantAdmin(GrantAdmin),
    /// `ADMIN COMMAND 'text'`: the text is interpreted by the server.
    AdminCommand(AdminCommand),
    /// `CREATE GRID g`: handled by the grid layer, not the executor.
    CreateGrid(CreateGrid),
    /// `DROP GRID g`: handled by the grid layer, not the executor.
    DropGrid(DropGrid),
    /// `ALTER GRID g …`: handled by the grid layer, not the executor.
    AlterGrid(AlterGrid),
    /// `CREATE {TEMPORARY | TRANSIENT} TABLE …` or `CREATE SEQUENCE s`: recognised so that
    /// they get a clear refusal (13634 in a grid) rather than a syntax error.
    CreateUnsupported(CreateUnsupported),
}

/// An object kind solidgrid recognises but does not create (solidDB refuses them in a grid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedObject {
    TemporaryTable,
    TransientTable,
    Sequence,
}

impl UnsupportedObject {
    pub fn as_str(self) -> &'static str {
        match self {
            UnsupportedObject::TemporaryTable => "temporary tables",
            UnsupportedObject::TransientTable => "transient tables",
            UnsupportedObject::Sequence => "sequences",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateUnsupported {
    pub object: UnsupportedObject,
    pub name: String,
}

/// `PARTITION BY (cols) REPLICATION FACTOR n` (design §6).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionClause {
    pub columns: Vec<String>,
    pub replication_factor: u64,
}

/// `CREATE TABLE t (col type [NOT NULL] [PRIMARY KEY], …, [PRIMARY KEY (a, b)])`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateTable {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Primary key column names, in key order; empty when the table has none.
    /// A column-level `PRIMARY KEY` is folded in here by the parser.
    pub primary_key: Vec<String>,
    /// `UNIQUE` constraints (column-level ones folded in), each a list of column names.
    pub unique: Vec<Vec<String>>,
    /// The grid clause: a partitioned table; `None` for a shared table.
    pub partition: Option<PartitionClause>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub sql_type: SqlType,
    /// `NOT NULL` was given (primary key columns are NOT NULL regardless).
    pub not_null: bool,
}

/// `DROP TABLE t`
#[derive(Debug, Clone, PartialEq)]
pub struct DropTable {
    pub name: String,
}

/// `ALTER TABLE t ADD [COLUMN] col type [NOT NULL]`
#[derive(Debug, Clone, PartialEq)]
pub struct AlterTableAddColumn {
    pub table: String,
    pub column: ColumnDef,
}

/// `INSERT INTO t [(cols)] VALUES (…), (…)`
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub table: String,
    /// Explicit column list; `None` means all columns in table order.
    pub columns: Option<Vec<String>>,
    /// One entry per row; each row is a list of expressions (no column references).
    pub rows: Vec<Vec<Expr>>,
}

/// `SELECT items FROM t [WHERE e] [ORDER BY …] [LIMIT n]`
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub items: Vec<SelectItem>,
    pub from: String,
    pub filter: Option<Expr>,
    pub order_by: Vec<OrderBy>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`
    Wildcard,
    /// An expression with an optional `AS alias`.
    Expr { expr: Expr, alias: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub expr: Expr,
    pub descending: bool,
}

/// `UPDATE t SET a = e, … [WHERE e]`
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    pub table: String,
    pub assignments: Vec<(String, Expr)>,
    pub filter: Option<Expr>,
}

/// `DELETE FROM t [WHERE e]`
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    pub table: String,
    pub filter: Option<Expr>,
}

/// `CREATE USER u IDENTIFIED BY 'pw'`
#[derive(Clone, PartialEq)]
pub struct CreateUser {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for CreateUser {
    // Never print a password, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `DROP USER u`
#[derive(Debug, Clone, PartialEq)]
pub struct DropUser {
    pub name: String,
}

/// `GRANT ADMIN TO u`
#[derive(Debug, Clone, PartialEq)]
pub struct GrantAdmin {
    pub user: String,
}

/// `ADMIN COMMAND 'text'`
#[derive(Debug, Clone, PartialEq)]
pub struct AdminCommand {
    pub command: String,
}

/// `CREATE GRID g`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateGrid {
    /// The grid's name, normalised like any identifier.
    pub grid: String,
}

/// `DROP GRID g`
#[derive(Debug, Clone, PartialEq)]
pub struct DropGrid {
    pub grid: String,
}

/// `ALTER GRID g ADD NODE … | DROP NODE … | SET NODE …`
#[derive(Debug, Clone, PartialEq)]
pub struct AlterGrid {
    pub grid: String,
    pub action: GridAction,
}

/// What an `ALTER GRID` does to one node. `node` is the node's `[Srv] Name` exactly as
/// written (never upper-cased): 1 to [`crate::config::MAX_NODE_NAME_LEN`] characters from
/// `A-Z a-z 0-9 _ . : -`.
#[derive(Debug, Clone, PartialEq)]
pub enum GridAction {
    /// `ADD NODE n CONNECT 'tcp [host] port'`
    AddNode {
        node: String,
        connect: ConnectTarget,
    },
    /// `DROP NODE n [RECYCLE]`
    DropNode { node: String, recycle: bool },
    /// `SET NODE n ONLINE` (`online: true`) or `SET NODE n OFFLINE` (`online: false`).
    SetNode { node: String, online: bool },
}

/// Where to reach a node: the `'tcp [host] port'` of `ADD NODE … CONNECT`, checked by the
/// parser (host characters, port 1 to 65535).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectTarget {
    /// A host name or an IP address; an IPv6 address without brackets. [`Self::DEFAULT_HOST`]
    /// when the string gives only a port.
    pub host: String,
    pub port: u16,
}

impl ConnectTarget {
    /// The host of `'tcp port'`.
    pub const DEFAULT_HOST: &'static str = "localhost";

    /// `host:port`, with an IPv6 address in brackets (the form of a grid member's address).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The connect-string form, `tcp host port`, which the parser reads back.
impl fmt::Display for ConnectTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp {} {}", self.host, self.port)
    }
}

/// A scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// A column reference (normalised name).
    Column(String),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `expr IS [NOT] NULL`
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `COUNT(*)` (arg `None`), `COUNT(e)`, `SUM(e)`, `MIN(e)`, `MAX(e)`, `AVG(e)`.
    Aggregate {
        func: AggregateFunc,
        arg: Option<Box<Expr>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    /// An integer literal that fits in i64.
    Integer(i64),
    /// A literal with a decimal point or exponent.
    Float(f64),
    String(String),
    Boolean(bool),
    /// `TIMESTAMP 'YYYY-MM-DD[ HH:MM:SS[.ffffff]]'`, as microseconds since the epoch.
    Timestamp(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    And,
    Or,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

impl AggregateFunc {
    pub fn name(self) -> &'static str {
        match self {
            AggregateFunc::Count => "COUNT",
            AggregateFunc::Sum => "SUM",
            AggregateFunc::Min => "MIN",
            AggregateFunc::Max => "MAX",
            AggregateFunc::Avg => "AVG",
        }
    }
}

impl Expr {
    /// Whether the expression contains an aggregate anywhere.
    pub fn has_aggregate(&self) -> bool {
        match self {
            Expr::Aggregate { .. } => true,
            Expr::Literal(_) | Expr::Column(_) => false,
            Expr::Unary { expr, .. } | Expr::IsNull { expr, .. } => expr.has_aggregate(),
            Expr::Binary { left, right, .. } => left.has_aggregate() || right.has_aggregate(),
        }
    }
}
