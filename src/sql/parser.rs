//! The recursive-descent parser: statement text to one [`Statement`].
//!
//! [`parse_statement`] tokenizes with [`crate::sql::lexer`] and parses exactly one
//! statement, optionally followed by one `;`. It is pure and checks syntax only: whether
//! tables, columns and users exist, duplicate column names, primary-key columns that are
//! not columns, row lengths in `INSERT`, column references in `VALUES` and aggregates in
//! `WHERE` are the executor's to reject, with its own error codes.
//!
//! Names are normalised here (see [`crate::sql::ast`]): unquoted identifiers are
//! upper-cased (full Unicode upper-casing), `"quoted"` ones are kept as written. Reserved
//! words ([`Keyword`]) cannot be bare names; every other word of the grammar is matched by
//! spelling, case-insensitively, only where it can occur. So `GRID`, `NODE`, `CONNECT`,
//! `RECYCLE`, `ONLINE` and `OFFLINE` stay usable as table and column names.
//!
//! Grid statements: `CREATE GRID g`, `DROP GRID g`, and `ALTER GRID g` with `ADD NODE n
//! CONNECT 'tcp [host] port'`, `DROP NODE n [RECYCLE]` or `SET NODE n ONLINE|OFFLINE`. The
//! grid name is an identifier like any other. A node name is a `[Srv] Name` value and is
//! kept exactly as written, never upper-cased; it may be written as
//! - a `"quoted"` identifier or a `'string'` (the text between the quotes), or
//! - bare, as a run of adjacent tokens with no space or comment between them: words,
//!   numbers, `.`, `:` and `-`. The run's source text is the name, so `node2`, `Node_2`,
//!   `localhost:1316`, `10.0.0.1:1316` and `db-1.example.com` all read as written. A
//!   reserved word alone (`select`) must be quoted, as for other names.
//!
//! Either way the name must be 1 to [`MAX_NODE_NAME_LEN`] characters from
//! `A-Z a-z 0-9 _ . : -` (the rule of `[Srv] Name` in solid.ini), or it is a syntax error
//! at the name. The `CONNECT` string is parsed here too (`tcp` in any case, an optional host
//! defaulting to `localhost`, a port from 1 to 65535); a bad one is a syntax error at the
//! string literal.
//!
//! Expressions are parsed by precedence climbing, loosest first: `OR`, `AND`, `NOT`,
//! comparisons (`= <> != < <= > >=` and `IS [NOT] NULL`, which do not chain: `a < b < c`
//! is an error), `+ -`, `* /`, unary minus, then primaries. A minus directly before a
//! number literal is folded into it, so `-5` is `Literal::Integer(-5)` and
//! `-9223372036854775808` is accepted. `NOT` may only start an operand at or below its own
//! precedence (`a = NOT b` needs parentheses).
//!
//! Hostile input cannot exhaust the stack: the lexer bounds the token count
//! ([`MAX_STATEMENT_TOKENS`]) and expressions are limited to [`MAX_EXPR_DEPTH`] levels,
//! both of the parser's own recursion (parentheses, prefix operators) and of the height of
//! the tree it returns, which every consumer of the AST walks recursively.
//!
//! Errors are [`SolidError::syntax`] (code 10001) with the message
//! `Syntax error at line L, column C: expected <what>, found <token>`, located at the
//! offending token.

use std::fmt;

use crate::config::MAX_NODE_NAME_LEN;
use crate::error::SolidError;
use crate::sql::ast::{
    AdminCommand, AggregateFunc, AlterGrid, AlterTableAddColumn, BinaryOp, ColumnDef,
    ConnectTarget, CreateGrid, CreateTable, CreateUnsupported, CreateUser, Delete, DropGrid,
    DropTable, DropUser, Expr, GrantAdmin, GridAction, Insert, Literal, OrderBy, PartitionClause,
    Select, SelectItem, Statement, UnaryOp, UnsupportedObject, Update,
};
use crate::sql::lexer::{Keyword, Token, TokenKind, shorten, syntax_error, tokenize};
use crate::sql::value::{self, MAX_VARCHAR_LEN, SqlType};

pub use crate::sql::lexer::MAX_STATEMENT_TOKENS;

/// Deepest expression accepted, counting both parser recursion (each parenthesis, `NOT`
/// or unary minus nests one level) and the height of the resulting tree (each operator
/// node adds one, so a chain `a OR b OR …` of more than this many terms is too deep).
///
/// The parser, the executor's evaluator and the derived `Drop`, `Clone`, `Debug` and
/// `PartialEq` of [`Expr`] all recurse on the tree. Parsing, the deepest of these, costs
/// about 2 KiB of stack per level in a debug build: some 0.5 MiB at the limit, a quarter of
/// the 2 MiB a tokio worker or test thread gets (a test holds it to 1 MiB). 256 levels is
/// far more than hand-written SQL needs.
pub const MAX_EXPR_DEPTH: usize = 256;

/// Parses exactly one statement. One trailing `;` is allowed; anything after it is an error.
pub fn parse_statement(sql: &str) -> Result<Statement, SolidError> {
    let tokens = tokenize(sql)?;
    let mut parser = Parser {
        sql,
        tokens,
        pos: 0,
        depth: 0,
        in_aggregate: false,
    };
    let statement = parser.statement()?;
    if parser.eat(&TokenKind::Semicolon) && !parser.at(&TokenKind::Eof) {
        return Err(parser.expected("end of input after ';' (one statement at a time)"));
    }
    debug_assert!(
        parser.at(&TokenKind::Eof),
        "statement parsers end at ';' or EOF"
    );
    Ok(statement)
}

/// What may begin a statement, for error messages.
const STATEMENT_KINDS: &str =
    "a statement (SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, GRANT or ADMIN COMMAND)";

/// Binding power of `OR`: the loosest operator.
const BP_OR: u8 = 1;
const BP_AND: u8 = 2;
/// `NOT x`: the operand takes comparisons and arithmetic but stops at `AND` and `OR`.
const BP_NOT: u8 = 3;
/// Comparisons and `IS [NOT] NULL`; non-associative.
const BP_COMPARE: u8 = 4;
const BP_ADD: u8 = 5;
const BP_MUL: u8 = 6;
/// Unary minus: the operand is a primary (or another unary minus).
const BP_NEG: u8 = 7;

/// An infix or postfix operator found after an operand.
#[derive(Clone, Copy)]
enum Infix {
    Binary(BinaryOp),
    /// `IS [NOT] NULL`
    IsNull,
}

impl Infix {
    fn of(kind: &TokenKind) -> Option<(Infix, u8)> {
        use BinaryOp::*;
        let (op, bp) = match kind {
            TokenKind::Keyword(Keyword::Or) => (Or, BP_OR),
            TokenKind::Keyword(Keyword::And) => (And, BP_AND),
            TokenKind::Keyword(Keyword::Is) => return Some((Infix::IsNull, BP_COMPARE)),
            TokenKind::Eq => (Eq, BP_COMPARE),
            TokenKind::NotEq => (NotEq, BP_COMPARE),
            TokenKind::Lt => (Lt, BP_COMPARE),
            TokenKind::LtEq => (LtEq, BP_COMPARE),
            TokenKind::Gt => (Gt, BP_COMPARE),
            TokenKind::GtEq => (GtEq, BP_COMPARE),
            TokenKind::Plus => (Add, BP_ADD),
            TokenKind::Minus => (Sub, BP_ADD),
            TokenKind::Star => (Mul, BP_MUL),
            TokenKind::Slash => (Div, BP_MUL),
            _ => return None,
        };
        Some((Infix::Binary(op), bp))
    }
}

/// An expression and the height of its tree (a leaf is 1).
type Parsed = (Expr, usize);

struct Parser<'a> {
    sql: &'a str,
    /// Ends with exactly one `Eof`, which is never consumed.
    tokens: Vec<Token>,
    /// Index of the next unread token.
    pos: usize,
    /// Current expression recursion depth.
    depth: usize,
    /// Inside an aggregate's argument: another aggregate would be nested.
    in_aggregate: bool,
}

impl Parser<'_> {
    // --- Token access -------------------------------------------------------------------

    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    /// The token after the next one (`Eof` at the end).
    fn peek_second(&self) -> &Token {
        self.peek_nth(1)
    }

    /// The token `n` places after the next one (`Eof` at the end).
    fn peek_nth(&self, n: usize) -> &Token {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)]
    }

    fn at(&self, kind: &TokenKind) -> bool {
        &self.peek().kind == kind
    }

    /// Whether the next token is the non-reserved `word` (compared ASCII case-insensitively).
    fn at_word(&self, word: &str) -> bool {
        is_word(self.peek(), word)
    }

    fn at_end(&self) -> bool {
        matches!(self.peek().kind, TokenKind::Semicolon | TokenKind::Eof)
    }

    /// Moves past the next token (never past `Eof`).
    fn advance(&mut self) {
        if self.peek().kind != TokenKind::Eof {
            self.pos += 1;
        }
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        let found = self.at(kind);
        if found {
            self.advance();
        }
        found
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> bool {
        self.eat(&TokenKind::Keyword(keyword))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.at_word(word);
        if found {
            self.advance();
        }
        found
    }

    /// Consumes `kind` or fails with `expected <what>`.
    fn expect(&mut self, kind: &TokenKind, what: &str) -> Result<(), SolidError> {
        if self.eat(kind) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn expect_keyword(&mut self, keyword: Keyword) -> Result<(), SolidError> {
        self.expect(&TokenKind::Keyword(keyword), keyword.as_str())
    }

    fn expect_word(&mut self, word: &str) -> Result<(), SolidError> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.expected(word))
        }
    }

    /// Fails unless the statement ends here (at `;` or end of input).
    fn expect_end(&self, what: &str) -> Result<(), SolidError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    // --- Errors -------------------------------------------------------------------------

    fn error_at(&self, offset: usize, detail: impl fmt::Display) -> SolidError {
        syntax_error(self.sql, offset, detail)
    }

    /// `expected <what>, found <next token>`, at the next token. When that token is a
    /// malformed number, which the lexer leaves for the parser to reject, the error says so
    /// instead: whatever was expected, the number is the mistake.
    #[cold]
    fn expected(&self, what: impl fmt::Display) -> SolidError {
        let token = self.peek();
        let found = token.describe(self.sql);
        if let TokenKind::MalformedNumber(_) = token.kind {
            return self.error_at(token.span.start, format!("malformed number {found}"));
        }
        self.error_at(token.span.start, format!("expected {what}, found {found}"))
    }

    /// Like [`Parser::expected`], for a place where a name fits: when the next token is a
    /// reserved word, says so and how to use it as a name anyway.
    #[cold]
    fn expected_name(&self, what: &str) -> SolidError {
        match self.peek().kind {
            TokenKind::Keyword(k) => self.expected(format_args!(
                "{what} (\"{k}\" is a reserved word; write \"{k}\" in double quotes to use it as a name)"
            )),
            _ => self.expected(what),
        }
    }

    #[cold]
    fn duplicate_primary_key(&self, offset: usize) -> SolidError {
        self.error_at(
            offset,
            "a table can have only one PRIMARY KEY (a column-level one or PRIMARY KEY (…), not both)",
        )
    }

    #[cold]
    fn too_deep(&self, offset: usize) -> SolidError {
        self.error_at(
            offset,
            format!("expression is nested too deeply (more than {MAX_EXPR_DEPTH} levels)"),
        )
    }

    // --- Names and literals -------------------------------------------------------------

    /// An identifier, normalised: unquoted upper-cased, quoted as written.
    fn identifier(&mut self, what: &str) -> Result<String, SolidError> {
        let name = match &self.peek().kind {
            TokenKind::Ident(word) => word.to_uppercase(),
            TokenKind::QuotedIdent(name) => name.clone(),
            _ => return Err(self.expected_name(what)),
        };
        self.advance();
        Ok(name)
    }

    /// `name [, name …]` inside parentheses; the caller has consumed the `(`.
    fn identifier_list(&mut self, what: &str) -> Result<Vec<String>, SolidError> {
        let mut names = vec![self.identifier(what)?];
        while self.eat(&TokenKind::Comma) {
            names.push(self.identifier(what)?);
        }
        self.expect(&TokenKind::RParen, "',' or ')'")?;
        Ok(names)
    }

    /// A string literal's text.
    fn string(&mut self, what: &str) -> Result<String, SolidError> {
        let TokenKind::String(text) = &self.peek().kind else {
            return Err(self.expected(what));
        };
        let text = text.clone();
        self.advance();
        Ok(text)
    }

    /// An unsigned integer literal (the row count of `LIMIT`).
    fn unsigned(&mut self, what: &str) -> Result<u64, SolidError> {
        let TokenKind::Integer(digits) = &self.peek().kind else {
            return Err(self.expected(what));
        };
        let n = digits.parse::<u64>().map_err(|_| self.expected(what))?;
        self.advance();
        Ok(n)
    }

    // --- Statements ---------------------------------------------------------------------

    fn statement(&mut self) -> Result<Statement, SolidError> {
        let TokenKind::Keyword(keyword) = self.peek().kind else {
            return Err(self.expected(STATEMENT_KINDS));
        };
        let statement = match keyword {
            Keyword::Select => Statement::Select(self.select()?),
            Keyword::Insert => Statement::Insert(self.insert()?),
            Keyword::Update => Statement::Update(self.update()?),
            Keyword::Delete => Statement::Delete(self.delete()?),
            Keyword::Create => {
                self.advance();
                if self.eat_word("TABLE") {
                    Statement::CreateTable(self.create_table()?)
                } else if self.at_word("TEMPORARY") || self.at_word("TRANSIENT") {
                    let object = if self.eat_word("TEMPORARY") {
                        UnsupportedObject::TemporaryTable
                    } else {
                        self.advance();
                        UnsupportedObject::TransientTable
                    };
                    self.expect_word("TABLE")?;
                    // The whole definition is parsed, so a typo is still a syntax error.
                    let def = self.create_table()?;
                    Statement::CreateUnsupported(CreateUnsupported {
                        object,
                        name: def.name,
                    })
                } else if self.eat_word("SEQUENCE") {
                    Statement::CreateUnsupported(CreateUnsupported {
                        object: UnsupportedObject::Sequence,
                        name: self.identifier("sequence name")?,
                    })
                } else if self.eat_word("USER") {
                    Statement::CreateUser(self.create_user()?)
                } else if self.eat_word("GRID") {
                    Statement::CreateGrid(CreateGrid {
                        grid: self.identifier("grid name")?,
                    })
                } else {
                    return Err(self.expected("TABLE, USER or GRID"));
                }
            }
            Keyword::Drop => {
                self.advance();
                if self.eat_word("TABLE") {
                    Statement::DropTable(DropTable {
                        name: self.identifier("table name")?,
                    })
                } else if self.eat_word("USER") {
                    Statement::DropUser(DropUser {
                        name: self.identifier("user name")?,
                    })
                } else if self.eat_word("GRID") {
                    Statement::DropGrid(DropGrid {
                        grid: self.identifier("grid name")?,
                    })
                } else {
                    return Err(self.expected("TABLE, USER or GRID"));
                }
            }
            Keyword::Alter => {
                self.advance();
                if self.eat_word("TABLE") {
                    Statement::AlterTableAddColumn(self.alter_table()?)
                } else if self.eat_word("GRID") {
                    Statement::AlterGrid(self.alter_grid()?)
                } else {
                    return Err(self.expected("TABLE or GRID"));
                }
            }
            Keyword::Grant => {
                self.advance();
                self.expect_keyword(Keyword::Admin)?;
                self.expect_word("TO")?;
                Statement::GrantAdmin(GrantAdmin {
                    user: self.identifier("user name")?,
                })
            }
            Keyword::Admin => {
                self.advance();
                self.expect_word("COMMAND")?;
                Statement::AdminCommand(AdminCommand {
                    command: self.string("a command string ('…')")?,
                })
            }
            _ => return Err(self.expected(STATEMENT_KINDS)),
        };
        self.expect_end("end of statement")?;
        Ok(statement)
    }

    /// After `CREATE TABLE`.
    fn create_table(&mut self) -> Result<CreateTable, SolidError> {
        let name = self.identifier("table name")?;
        self.expect(&TokenKind::LParen, "'('")?;
        let mut columns = Vec::new();
        let mut primary_key = Vec::new();
        let mut unique = Vec::new();
        loop {
            let element_start = self.peek().span.start;
            if self.at_word("PRIMARY") && is_word(self.peek_second(), "KEY") {
                self.advance();
                self.advance();
                if !primary_key.is_empty() {
                    return Err(self.duplicate_primary_key(element_start));
                }
                self.expect(&TokenKind::LParen, "'('")?;
                primary_key = self.identifier_list("column name")?;
            } else if self.at_word("UNIQUE") && self.peek_second().kind == TokenKind::LParen {
                self.advance();
                self.advance();
                unique.push(self.identifier_list("column name")?);
            } else {
                let (column, pk_at) = self.column_def(true)?;
                if let Some(at) = pk_at {
                    if !primary_key.is_empty() {
                        return Err(self.duplicate_primary_key(at));
                    }
                    primary_key = vec![column.name.clone()];
                }
                if self.eat_word("UNIQUE") {
                    unique.push(vec![column.name.clone()]);
                }
                columns.push(column);
            }
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        if columns.is_empty() && self.at(&TokenKind::RParen) {
            return Err(self.expected("at least one column definition"));
        }
        self.expect(&TokenKind::RParen, "',' or ')'")?;
        let partition = if self.eat_word("PARTITION") {
            self.expect_word("BY")?;
            self.expect(&TokenKind::LParen, "'('")?;
            let columns = self.identifier_list("column name")?;
            self.expect_word("REPLICATION")?;
            self.expect_word("FACTOR")?;
            let replication_factor = self.unsigned("a replication factor")?;
            Some(PartitionClause {
                columns,
                replication_factor,
            })
        } else {
            None
        };
        if partition.is_none() && !self.at_end() {
            return Err(self.expected("PARTITION BY or end of statement"));
        }
        Ok(CreateTable {
            name,
            columns,
            primary_key,
            unique,
            partition,
        })
    }

    /// `name type [NOT NULL] [PRIMARY KEY]` (the constraints in either order; `PRIMARY KEY`
    /// only when `allow_primary_key`). Returns the offset of `PRIMARY` when it was given.
    fn column_def(
        &mut self,
        allow_primary_key: bool,
    ) -> Result<(ColumnDef, Option<usize>), SolidError> {
        let name = self.identifier("column name")?;
        let sql_type = self.sql_type()?;
        let mut not_null = false;
        let mut primary_key_at = None;
        loop {
            let start = self.peek().span.start;
            if !not_null && self.eat_keyword(Keyword::Not) {
                self.expect_keyword(Keyword::Null)?;
                not_null = true;
            } else if allow_primary_key && self.at_word("PRIMARY") {
                if primary_key_at.is_some() {
                    return Err(self.duplicate_primary_key(start));
                }
                self.advance();
                self.expect_word("KEY")?;
                primary_key_at = Some(start);
            } else {
                break;
            }
        }
        Ok((
            ColumnDef {
                name,
                sql_type,
                not_null,
            },
            primary_key_at,
        ))
    }

    fn sql_type(&mut self) -> Result<SqlType, SolidError> {
        const TYPES: &str =
            "a data type (INTEGER, BIGINT, DOUBLE, VARCHAR(n), BOOLEAN or TIMESTAMP)";
        let TokenKind::Ident(word) = &self.peek().kind else {
            return Err(self.expected(TYPES));
        };
        let word = word.to_ascii_uppercase();
        let sql_type = match word.as_str() {
            "INTEGER" | "INT" => SqlType::Integer,
            "BIGINT" => SqlType::BigInt,
            "DOUBLE" | "FLOAT" | "REAL" => SqlType::Double,
            "BOOLEAN" => SqlType::Boolean,
            "TIMESTAMP" => SqlType::Timestamp,
            "VARCHAR" => {
                self.advance();
                self.expect(&TokenKind::LParen, "'(' and a length")?;
                let n = match &self.peek().kind {
                    TokenKind::Integer(digits) => digits
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_VARCHAR_LEN).contains(n)),
                    _ => None,
                };
                let Some(n) = n else {
                    return Err(self.expected(format_args!("a length from 1 to {MAX_VARCHAR_LEN}")));
                };
                self.advance();
                self.expect(&TokenKind::RParen, "')'")?;
                return Ok(SqlType::Varchar(n));
            }
            _ => return Err(self.expected(TYPES)),
        };
        self.advance();
        if word == "DOUBLE" {
            self.eat_word("PRECISION");
        }
        Ok(sql_type)
    }

    /// After `ALTER TABLE`: `t ADD [COLUMN] col type [NOT NULL]`.
    fn alter_table(&mut self) -> Result<AlterTableAddColumn, SolidError> {
        let table = self.identifier("table name")?;
        self.expect_word("ADD")?;
        // `COLUMN` is optional and not reserved: it is the keyword when a name and a type
        // name follow it (`ADD COLUMN c INT`), and otherwise the column's name
        // (`ADD column INT`).
        if self.at_word("COLUMN")
            && matches!(
                self.peek_second().kind,
                TokenKind::Ident(_) | TokenKind::QuotedIdent(_)
            )
            && matches!(self.peek_nth(2).kind, TokenKind::Ident(_))
        {
            self.advance();
        }
        let (column, _) = self.column_def(false)?;
        Ok(AlterTableAddColumn { table, column })
    }

    /// `INSERT INTO t [(cols)] VALUES (…), (…)`
    fn insert(&mut self) -> Result<Insert, SolidError> {
        self.expect_keyword(Keyword::Insert)?;
        self.expect_keyword(Keyword::Into)?;
        let table = self.identifier("table name")?;
        let columns = if self.eat(&TokenKind::LParen) {
            Some(self.identifier_list("column name")?)
        } else {
            None
        };
        if !self.eat_keyword(Keyword::Values) {
            return Err(self.expected(if columns.is_some() {
                "VALUES"
            } else {
                "'(' or VALUES"
            }));
        }
        let mut rows = Vec::new();
        loop {
            self.expect(&TokenKind::LParen, "'('")?;
            rows.push(self.expr_list()?);
            self.expect(&TokenKind::RParen, "',' or ')'")?;
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        self.expect_end("',' or end of statement")?;
        Ok(Insert {
            table,
            columns,
            rows,
        })
    }

    /// `SELECT items FROM t [WHERE e] [ORDER BY e [ASC|DESC], …] [LIMIT n]`
    fn select(&mut self) -> Result<Select, SolidError> {
        self.expect_keyword(Keyword::Select)?;
        let mut items = Vec::new();
        if self.eat(&TokenKind::Star) {
            items.push(SelectItem::Wildcard);
            self.expect_keyword(Keyword::From)?;
        } else {
            loop {
                let expr = self.expr()?;
                // `AS` is optional: a name right after the expression is an alias.
                let has_alias = self.eat_keyword(Keyword::As)
                    || matches!(
                        self.peek().kind,
                        TokenKind::Ident(_) | TokenKind::QuotedIdent(_)
                    );
                let alias = if has_alias {
                    Some(self.identifier("alias")?)
                } else {
                    None
                };
                items.push(SelectItem::Expr { expr, alias });
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
            if !self.eat_keyword(Keyword::From) {
                return Err(self.expected("',' or FROM"));
            }
        }
        let from = self.identifier("table name")?;
        let mut rest = "WHERE, ORDER BY, LIMIT or end of statement";
        let filter = if self.eat_keyword(Keyword::Where) {
            rest = "ORDER BY, LIMIT or end of statement";
            Some(self.expr()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_keyword(Keyword::Order) {
            self.expect_word("BY")?;
            rest = "',', LIMIT or end of statement";
            loop {
                let expr = self.expr()?;
                let descending = if self.eat_word("DESC") {
                    true
                } else {
                    self.eat_word("ASC");
                    false
                };
                order_by.push(OrderBy { expr, descending });
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
        }
        let limit = if self.eat_keyword(Keyword::Limit) {
            rest = "end of statement";
            Some(self.unsigned("a row count (an integer from 0 to 18446744073709551615)")?)
        } else {
            None
        };
        self.expect_end(rest)?;
        Ok(Select {
            items,
            from,
            filter,
            order_by,
            limit,
        })
    }

    /// `UPDATE t SET a = e, … [WHERE e]`
    fn update(&mut self) -> Result<Update, SolidError> {
        self.expect_keyword(Keyword::Update)?;
        let table = self.identifier("table name")?;
        self.expect_keyword(Keyword::Set)?;
        let mut assignments = Vec::new();
        loop {
            let column = self.identifier("column name")?;
            self.expect(&TokenKind::Eq, "'='")?;
            assignments.push((column, self.expr()?));
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        let filter = self.optional_where("',', WHERE or end of statement")?;
        Ok(Update {
            table,
            assignments,
            filter,
        })
    }

    /// `DELETE FROM t [WHERE e]`
    fn delete(&mut self) -> Result<Delete, SolidError> {
        self.expect_keyword(Keyword::Delete)?;
        self.expect_keyword(Keyword::From)?;
        let table = self.identifier("table name")?;
        let filter = self.optional_where("WHERE or end of statement")?;
        Ok(Delete { table, filter })
    }

    /// `[WHERE e]` ending the statement; `otherwise` says what else could have come.
    fn optional_where(&mut self, otherwise: &str) -> Result<Option<Expr>, SolidError> {
        if self.eat_keyword(Keyword::Where) {
            let filter = self.expr()?;
            self.expect_end("end of statement")?;
            Ok(Some(filter))
        } else {
            self.expect_end(otherwise)?;
            Ok(None)
        }
    }

    /// After `CREATE USER`: `u IDENTIFIED BY 'pw'`, or `BY pw` with the password an
    /// identifier, which is kept exactly as written (not upper-cased).
    fn create_user(&mut self) -> Result<CreateUser, SolidError> {
        let name = self.identifier("user name")?;
        self.expect_word("IDENTIFIED")?;
        self.expect_word("BY")?;
        let password = match &self.peek().kind {
            TokenKind::String(text) | TokenKind::Ident(text) | TokenKind::QuotedIdent(text) => {
                text.clone()
            }
            _ => return Err(self.expected("a password ('…' or an identifier)")),
        };
        self.advance();
        Ok(CreateUser { name, password })
    }

    /// After `ALTER GRID`: `g ADD NODE n CONNECT '…'`, `g DROP NODE n [RECYCLE]` or
    /// `g SET NODE n ONLINE|OFFLINE`.
    fn alter_grid(&mut self) -> Result<AlterGrid, SolidError> {
        let grid = self.identifier("grid name")?;
        let action = if self.eat_word("ADD") {
            self.expect_word("NODE")?;
            let node = self.node_name()?;
            self.expect_word("CONNECT")?;
            let connect = self.connect_target()?;
            GridAction::AddNode { node, connect }
        } else if self.eat_keyword(Keyword::Drop) {
            self.expect_word("NODE")?;
            let node = self.node_name()?;
            let recycle = self.eat_word("RECYCLE");
            if !recycle {
                self.expect_end("RECYCLE or end of statement")?;
            }
            GridAction::DropNode { node, recycle }
        } else if self.eat_keyword(Keyword::Set) {
            self.expect_word("NODE")?;
            let node = self.node_name()?;
            let online = if self.eat_word("ONLINE") {
                true
            } else if self.eat_word("OFFLINE") {
                false
            } else {
                return Err(self.expected("ONLINE or OFFLINE"));
            };
            GridAction::SetNode { node, online }
        } else {
            return Err(self.expected("ADD NODE, DROP NODE or SET NODE"));
        };
        Ok(AlterGrid { grid, action })
    }

    /// A node name, exactly as written (see the module docs): a `"quoted"` identifier, a
    /// `'string'`, or a bare run of adjacent [`is_node_name_part`] tokens.
    fn node_name(&mut self) -> Result<String, SolidError> {
        const WHAT: &str = "a node name";
        let first = self.peek();
        let start = first.span.start;
        let (name, end) = match &first.kind {
            TokenKind::QuotedIdent(text) | TokenKind::String(text) => {
                (text.clone(), first.span.end)
            }
            kind if is_node_name_part(kind) => {
                let next = self.peek_second();
                let alone = !(is_node_name_part(&next.kind) && next.span.start == first.span.end);
                if alone && matches!(kind, TokenKind::Keyword(_)) {
                    return Err(self.expected_name(WHAT));
                }
                let mut end = first.span.end;
                while is_node_name_part(&self.peek_second().kind)
                    && self.peek_second().span.start == end
                {
                    self.advance();
                    end = self.peek().span.end;
                }
                (self.sql[start..end].to_string(), end)
            }
            _ => return Err(self.expected_name(WHAT)),
        };
        let valid = !name.is_empty()
            && name.len() <= MAX_NODE_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !valid {
            return Err(self.error_at(
                start,
                format_args!(
                    "bad node name {}: a node name is 1 to {MAX_NODE_NAME_LEN} letters, digits, \
                     '_', '.', ':' or '-'",
                    shorten(&self.sql[start..end])
                ),
            ));
        }
        self.advance();
        Ok(name)
    }

    /// The `'tcp [host] port'` string after `CONNECT`.
    fn connect_target(&mut self) -> Result<ConnectTarget, SolidError> {
        let token = self.peek();
        let TokenKind::String(text) = &token.kind else {
            return Err(self.expected("a connect string 'tcp [host] port'"));
        };
        match parse_connect_target(text) {
            Ok(target) => {
                self.advance();
                Ok(target)
            }
            Err(reason) => Err(self.error_at(
                token.span.start,
                format_args!("bad connect string {}: {reason}", token.describe(self.sql)),
            )),
        }
    }

    // --- Expressions --------------------------------------------------------------------
    //
    // The recursive path is `expr_bp` -> `operand` -> `expr_bp`: one round per parenthesis
    // or prefix operator, and one per right operand of a binary operator. Debug builds give
    // every temporary of a function its own stack slot, so these two stay lean: leaves,
    // aggregates, `IS NULL`, node building and error messages live in other functions,
    // which are not on the stack while the recursion goes deeper.

    fn expr(&mut self) -> Result<Expr, SolidError> {
        Ok(self.expr_bp(0)?.0)
    }

    /// `e [, e …]` (at least one).
    fn expr_list(&mut self) -> Result<Vec<Expr>, SolidError> {
        let mut exprs = vec![self.expr()?];
        while self.eat(&TokenKind::Comma) {
            exprs.push(self.expr()?);
        }
        Ok(exprs)
    }

    /// An expression whose operators all bind at least as tightly as `min_bp`.
    fn expr_bp(&mut self, min_bp: u8) -> Result<Parsed, SolidError> {
        if self.depth >= MAX_EXPR_DEPTH {
            return Err(self.too_deep(self.peek().span.start));
        }
        // Not restored on the error paths: an error ends the parse.
        self.depth += 1;
        let mut lhs = self.operand(min_bp)?;
        // Comparisons do not chain: after one at this level, another is an error.
        let mut compared = false;
        while let Some((infix, bp)) = Infix::of(&self.peek().kind) {
            if bp < min_bp {
                break;
            }
            if bp == BP_COMPARE {
                if compared {
                    return Err(self.expected(
                        "AND, OR or the end of the expression (comparisons do not chain; add parentheses)",
                    ));
                }
                compared = true;
            }
            let op_start = self.peek().span.start;
            self.advance();
            lhs = match infix {
                Infix::IsNull => self.is_null_suffix(lhs)?,
                Infix::Binary(op) => {
                    let rhs = self.expr_bp(bp + 1)?;
                    binary(op, lhs, rhs)
                }
            };
            if lhs.1 > MAX_EXPR_DEPTH {
                return Err(self.too_deep(op_start));
            }
        }
        self.depth -= 1;
        Ok(lhs)
    }

    /// An operand: `(e)`, `NOT e`, `-e`, or a [`Parser::leaf`].
    fn operand(&mut self, min_bp: u8) -> Result<Parsed, SolidError> {
        let start = self.peek().span.start;
        let (op, operand_bp) = match self.peek().kind {
            TokenKind::Keyword(Keyword::Not) if min_bp <= BP_NOT => (UnaryOp::Not, BP_NOT),
            TokenKind::Minus if !self.number_follows() => (UnaryOp::Neg, BP_NEG),
            TokenKind::LParen => {
                self.advance();
                let inner = self.expr_bp(0)?;
                self.expect(&TokenKind::RParen, "')'")?;
                return Ok(inner);
            }
            _ => return self.leaf(min_bp),
        };
        self.advance();
        let inner = self.expr_bp(operand_bp)?;
        self.unary(op, inner, start)
    }

    /// `op inner`, where `op` was at byte `start`.
    fn unary(
        &self,
        op: UnaryOp,
        (inner, height): Parsed,
        start: usize,
    ) -> Result<Parsed, SolidError> {
        if height + 1 > MAX_EXPR_DEPTH {
            return Err(self.too_deep(start));
        }
        let expr = Expr::Unary {
            op,
            expr: Box::new(inner),
        };
        Ok((expr, height + 1))
    }

    /// After `lhs IS`: `[NOT] NULL`.
    fn is_null_suffix(&mut self, (lhs, height): Parsed) -> Result<Parsed, SolidError> {
        let negated = self.eat_keyword(Keyword::Not);
        if !self.eat_keyword(Keyword::Null) {
            return Err(self.expected(if negated { "NULL" } else { "NULL or NOT NULL" }));
        }
        let expr = Expr::IsNull {
            expr: Box::new(lhs),
            negated,
        };
        Ok((expr, height + 1))
    }

    /// Whether the token after the next is a number literal (so a `-` can be folded in).
    fn number_follows(&self) -> bool {
        matches!(
            self.peek_second().kind,
            TokenKind::Integer(_) | TokenKind::Decimal(_)
        )
    }

    /// A literal (a `-` directly before a number is part of it), a column or an aggregate.
    fn leaf(&mut self, min_bp: u8) -> Result<Parsed, SolidError> {
        let literal = match &self.peek().kind {
            TokenKind::Minus => {
                debug_assert!(self.number_follows(), "operand() handles other minuses");
                self.advance();
                let text = match &self.peek().kind {
                    TokenKind::Integer(text) | TokenKind::Decimal(text) => format!("-{text}"),
                    _ => return Err(self.expected("a number")),
                };
                self.number_literal(&text)?
            }
            TokenKind::Integer(text) | TokenKind::Decimal(text) => {
                let text = text.clone();
                self.number_literal(&text)?
            }
            TokenKind::String(text) => {
                let literal = Literal::String(text.clone());
                self.advance();
                literal
            }
            TokenKind::Keyword(Keyword::Null) => {
                self.advance();
                Literal::Null
            }
            TokenKind::Keyword(Keyword::True) => {
                self.advance();
                Literal::Boolean(true)
            }
            TokenKind::Keyword(Keyword::False) => {
                self.advance();
                Literal::Boolean(false)
            }
            TokenKind::Keyword(Keyword::Not) => {
                debug_assert!(min_bp > BP_NOT, "operand() handles NOT where it may start");
                return Err(self.expected("an operand (put a NOT expression in parentheses here)"));
            }
            TokenKind::Ident(word) => {
                if self.peek_second().kind == TokenKind::LParen {
                    return self.aggregate();
                }
                if word.eq_ignore_ascii_case("TIMESTAMP")
                    && matches!(self.peek_second().kind, TokenKind::String(_))
                {
                    self.advance();
                    self.timestamp_literal()?
                } else {
                    return Ok((Expr::Column(self.identifier("a column name")?), 1));
                }
            }
            TokenKind::QuotedIdent(_) => {
                return Ok((Expr::Column(self.identifier("a column name")?), 1));
            }
            _ => return Err(self.expected_name("an expression")),
        };
        Ok((Expr::Literal(literal), 1))
    }

    /// The number literal at the next token, written `text` (with its sign); consumes it.
    /// Integers must fit in i64 and decimals must be finite doubles.
    fn number_literal(&mut self, text: &str) -> Result<Literal, SolidError> {
        let literal = if let TokenKind::Integer(_) = self.peek().kind {
            match text.parse::<i64>() {
                Ok(value) => Literal::Integer(value),
                Err(_) => {
                    return Err(self.expected(format_args!(
                        "an integer from {} to {}",
                        i64::MIN,
                        i64::MAX
                    )));
                }
            }
        } else {
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Literal::Float(value),
                _ => return Err(self.expected("a number within the range of DOUBLE")),
            }
        };
        self.advance();
        Ok(literal)
    }

    /// The string after `TIMESTAMP`.
    fn timestamp_literal(&mut self) -> Result<Literal, SolidError> {
        let TokenKind::String(text) = &self.peek().kind else {
            return Err(self.expected("a timestamp string"));
        };
        match value::parse_timestamp(text) {
            Some(micros) => {
                self.advance();
                Ok(Literal::Timestamp(micros))
            }
            None => Err(self.expected("a timestamp 'YYYY-MM-DD[ HH:MM:SS[.ffffff]]'")),
        }
    }

    /// At a function name followed by `(`: `COUNT(*)` or `FUNC(e)`.
    fn aggregate(&mut self) -> Result<Parsed, SolidError> {
        let TokenKind::Ident(name) = &self.peek().kind else {
            return Err(self.expected("an aggregate function"));
        };
        let func = match name.to_ascii_uppercase().as_str() {
            "COUNT" => AggregateFunc::Count,
            "SUM" => AggregateFunc::Sum,
            "MIN" => AggregateFunc::Min,
            "MAX" => AggregateFunc::Max,
            "AVG" => AggregateFunc::Avg,
            _ => {
                return Err(self.expected("an aggregate function (COUNT, SUM, MIN, MAX or AVG)"));
            }
        };
        if self.in_aggregate {
            return Err(self.expected(
                "an expression without aggregate functions (aggregates cannot be nested)",
            ));
        }
        let start = self.peek().span.start;
        self.advance();
        self.advance();
        let (arg, height) = if func == AggregateFunc::Count && self.eat(&TokenKind::Star) {
            (None, 1)
        } else {
            self.in_aggregate = true;
            let (arg, height) = self.expr_bp(0)?;
            self.in_aggregate = false;
            (Some(Box::new(arg)), height + 1)
        };
        self.expect(&TokenKind::RParen, "')'")?;
        if height > MAX_EXPR_DEPTH {
            return Err(self.too_deep(start));
        }
        Ok((Expr::Aggregate { func, arg }, height))
    }
}

/// `left op right`.
fn binary(op: BinaryOp, (left, left_height): Parsed, (right, right_height): Parsed) -> Parsed {
    let expr = Expr::Binary {
        op,
        left: Box::new(left),
        right: Box::new(right),
    };
    (expr, left_height.max(right_height) + 1)
}

/// Whether a token of this kind may be part of a bare node name: words, numbers (well
/// formed or not), `.`, `:` and `-`.
fn is_node_name_part(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::Ident(_)
            | TokenKind::Keyword(_)
            | TokenKind::Integer(_)
            | TokenKind::Decimal(_)
            | TokenKind::MalformedNumber(_)
            | TokenKind::Dot
            | TokenKind::Colon
            | TokenKind::Minus
    )
}

/// Parses a connect string `tcp [host] port`: `tcp` in any case, a host name or IP address
/// (an IPv6 one with or without brackets; default `localhost`), a port from 1 to 65535.
/// These are the rules of solid.ini's `Listen` (`config::ListenAddr`). The error says what
/// is wrong.
fn parse_connect_target(text: &str) -> Result<ConnectTarget, &'static str> {
    const FORM: &str = "expected 'tcp [host] port', e.g. 'tcp 1316' or 'tcp node2 1316'";
    let words: Vec<&str> = text.split_whitespace().collect();
    let (host, port) = match words.as_slice() {
        [tcp, rest @ ..] if tcp.eq_ignore_ascii_case("tcp") => match rest {
            [port] => (ConnectTarget::DEFAULT_HOST, *port),
            [host, port] => (*host, *port),
            [] => return Err("the port is missing; expected 'tcp [host] port'"),
            _ => return Err("too many words; expected 'tcp [host] port'"),
        },
        _ => return Err(FORM),
    };
    let port = Some(port)
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|&p| p > 0)
        .ok_or("the port must be a whole number from 1 to 65535")?;
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
    if !host_ok {
        return Err("the host must be a host name or an IP address");
    }
    Ok(ConnectTarget {
        host: bare.to_string(),
        port,
    })
}

/// Whether `token` is the non-reserved word `word` (ASCII case-insensitive).
fn is_word(token: &Token, word: &str) -> bool {
    matches!(&token.kind, TokenKind::Ident(w) if w.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;
    use BinaryOp::*;
    use proptest::prelude::*;

    fn parse(sql: &str) -> Statement {
        parse_statement(sql).unwrap_or_else(|e| panic!("{sql:?}: {e}"))
    }

    /// The message of the syntax error `sql` must give.
    fn err(sql: &str) -> String {
        match parse_statement(sql) {
            Ok(s) => panic!("{sql:?} parsed as {s:?}"),
            Err(e) => {
                assert_eq!(e.code, code::SYNTAX, "{e}");
                e.message
            }
        }
    }

    /// The expression of `SELECT <text> FROM t`.
    fn expr(text: &str) -> Expr {
        match parse(&format!("SELECT {text} FROM t")) {
            Statement::Select(mut s) => match s.items.remove(0) {
                SelectItem::Expr { expr, alias: None } => expr,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    fn col(name: &str) -> Expr {
        Expr::Column(name.to_string())
    }

    fn int(i: i64) -> Expr {
        Expr::Literal(Literal::Integer(i))
    }

    fn string(s: &str) -> Expr {
        Expr::Literal(Literal::String(s.to_string()))
    }

    fn bin(op: BinaryOp, left: Expr, right: Expr) -> Expr {
        Expr::Binary {
            op,
            left: Box::new(left),
            right: Box::new(right),
        }
    }

    fn not(e: Expr) -> Expr {
        Expr::Unary {
            op: UnaryOp::Not,
            expr: Box::new(e),
        }
    }

    fn neg(e: Expr) -> Expr {
        Expr::Unary {
            op: UnaryOp::Neg,
            expr: Box::new(e),
        }
    }

    fn agg(func: AggregateFunc, arg: Option<Expr>) -> Expr {
        Expr::Aggregate {
            func,
            arg: arg.map(Box::new),
        }
    }

    fn column(name: &str, sql_type: SqlType, not_null: bool) -> ColumnDef {
        ColumnDef {
            name: name.to_string(),
            sql_type,
            not_null,
        }
    }

    // --- One test per statement kind ------------------------------------------------------

    #[test]
    fn create_table() {
        let sql = r#"create table Orders (
            id integer not null,
            "Name" varchar(20) NOT NULL,
            total DOUBLE PRECISION,
            d double, f float, r real, i int,
            big BIGINT, ok boolean, at timestamp,
            PRIMARY KEY (id, "Name"));"#;
        assert_eq!(
            parse(sql),
            Statement::CreateTable(CreateTable {
                name: "ORDERS".into(),
                columns: vec![
                    column("ID", SqlType::Integer, true),
                    column("Name", SqlType::Varchar(20), true),
                    column("TOTAL", SqlType::Double, false),
                    column("D", SqlType::Double, false),
                    column("F", SqlType::Double, false),
                    column("R", SqlType::Double, false),
                    column("I", SqlType::Integer, false),
                    column("BIG", SqlType::BigInt, false),
                    column("OK", SqlType::Boolean, false),
                    column("AT", SqlType::Timestamp, false),
                ],
                primary_key: vec!["ID".into(), "Name".into()],
                unique: vec![],
                partition: None,
            })
        );
    }

    #[test]
    fn create_table_with_a_column_level_primary_key() {
        let expected = |not_null| {
            Statement::CreateTable(CreateTable {
                name: "T".into(),
                columns: vec![
                    column("A", SqlType::BigInt, false),
                    column("ID", SqlType::Integer, not_null),
                ],
                primary_key: vec!["ID".into()],
                unique: vec![],
                partition: None,
            })
        };
        assert_eq!(
            parse("CREATE TABLE t (a BIGINT, id INT PRIMARY KEY)"),
            expected(false)
        );
        assert_eq!(
            parse("CREATE TABLE t (a BIGINT, id INT PRIMARY KEY NOT NULL)"),
            expected(true)
        );
        assert_eq!(
            parse("CREATE TABLE t (a BIGINT, id INT NOT NULL PRIMARY KEY)"),
            expected(true)
        );
        // A table without a key, and a column named like a non-reserved word.
        assert_eq!(
            parse("CREATE TABLE t (primary INT, key VARCHAR(1048576))"),
            Statement::CreateTable(CreateTable {
                name: "T".into(),
                columns: vec![
                    column("PRIMARY", SqlType::Integer, false),
                    column("KEY", SqlType::Varchar(MAX_VARCHAR_LEN), false),
                ],
                primary_key: vec![],
                unique: vec![],
                partition: None,
            })
        );
    }

    #[test]
    fn drop_table() {
        assert_eq!(
            parse("DROP TABLE \"t\""),
            Statement::DropTable(DropTable { name: "t".into() })
        );
    }

    #[test]
    fn alter_table_add_column() {
        let expected = |name: &str, not_null| {
            Statement::AlterTableAddColumn(AlterTableAddColumn {
                table: "T".into(),
                column: column(name, SqlType::Varchar(10), not_null),
            })
        };
        assert_eq!(
            parse("alter table t add column c varchar(10) not null"),
            expected("C", true)
        );
        assert_eq!(
            parse("ALTER TABLE t ADD c VARCHAR(10)"),
            expected("C", false)
        );
        assert_eq!(
            parse("ALTER TABLE t ADD COLUMN \"COLUMN\" VARCHAR(10)"),
            expected("COLUMN", false)
        );
        // `COLUMN` is not reserved: here it is the column's name.
        assert_eq!(
            parse("ALTER TABLE t ADD column VARCHAR(10)"),
            expected("COLUMN", false)
        );
    }

    #[test]
    fn insert() {
        assert_eq!(
            parse("INSERT INTO t (a, \"b\") VALUES (1, 'x'), (-2, NULL + 1);"),
            Statement::Insert(Insert {
                table: "T".into(),
                columns: Some(vec!["A".into(), "b".into()]),
                rows: vec![
                    vec![int(1), string("x")],
                    vec![int(-2), bin(Add, Expr::Literal(Literal::Null), int(1))],
                ],
            })
        );
        assert_eq!(
            parse("insert into t values (TRUE, false, 1.5, TIMESTAMP '1970-01-02 00:00:01')"),
            Statement::Insert(Insert {
                table: "T".into(),
                columns: None,
                rows: vec![vec![
                    Expr::Literal(Literal::Boolean(true)),
                    Expr::Literal(Literal::Boolean(false)),
                    Expr::Literal(Literal::Float(1.5)),
                    Expr::Literal(Literal::Timestamp(86_401_000_000)),
                ]],
            })
        );
    }

    #[test]
    fn select() {
        assert_eq!(
            parse(
                "SELECT a, b + 1 AS b1, count(*) n, Sum(c) FROM t \
                 WHERE a > 1 ORDER BY a DESC, b ASC, c LIMIT 10"
            ),
            Statement::Select(Select {
                items: vec![
                    SelectItem::Expr {
                        expr: col("A"),
                        alias: None
                    },
                    SelectItem::Expr {
                        expr: bin(Add, col("B"), int(1)),
                        alias: Some("B1".into())
                    },
                    SelectItem::Expr {
                        expr: agg(AggregateFunc::Count, None),
                        alias: Some("N".into())
                    },
                    SelectItem::Expr {
                        expr: agg(AggregateFunc::Sum, Some(col("C"))),
                        alias: None
                    },
                ],
                from: "T".into(),
                filter: Some(bin(Gt, col("A"), int(1))),
                order_by: vec![
                    OrderBy {
                        expr: col("A"),
                        descending: true
                    },
                    OrderBy {
                        expr: col("B"),
                        descending: false
                    },
                    OrderBy {
                        expr: col("C"),
                        descending: false
                    },
                ],
                limit: Some(10),
            })
        );
        assert_eq!(
            parse("select * from sys_grid_nodes"),
            Statement::Select(Select {
                items: vec![SelectItem::Wildcard],
                from: "SYS_GRID_NODES".into(),
                filter: None,
                order_by: vec![],
                limit: None,
            })
        );
        assert_eq!(
            parse("SELECT min(a), MAX(a), avg(a), COUNT(a) FROM t LIMIT 0"),
            Statement::Select(Select {
                items: [
                    AggregateFunc::Min,
                    AggregateFunc::Max,
                    AggregateFunc::Avg,
                    AggregateFunc::Count
                ]
                .into_iter()
                .map(|func| SelectItem::Expr {
                    expr: agg(func, Some(col("A"))),
                    alias: None
                })
                .collect(),
                from: "T".into(),
                filter: None,
                order_by: vec![],
                limit: Some(0),
            })
        );
    }

    #[test]
    fn update() {
        assert_eq!(
            parse("UPDATE t SET a = a + 1, \"B\" = 'x' WHERE id = 7"),
            Statement::Update(Update {
                table: "T".into(),
                assignments: vec![
                    ("A".into(), bin(Add, col("A"), int(1))),
                    ("B".into(), string("x")),
                ],
                filter: Some(bin(Eq, col("ID"), int(7))),
            })
        );
        assert_eq!(
            parse("update t set a = null"),
            Statement::Update(Update {
                table: "T".into(),
                assignments: vec![("A".into(), Expr::Literal(Literal::Null))],
                filter: None,
            })
        );
    }

    #[test]
    fn delete() {
        assert_eq!(
            parse("DELETE FROM t WHERE a IS NULL"),
            Statement::Delete(Delete {
                table: "T".into(),
                filter: Some(Expr::IsNull {
                    expr: Box::new(col("A")),
                    negated: false
                }),
            })
        );
        assert_eq!(
            parse("delete from t;"),
            Statement::Delete(Delete {
                table: "T".into(),
                filter: None
            })
        );
    }

    #[test]
    fn create_user() {
        let user = |name: &str, password: &str| {
            Statement::CreateUser(CreateUser {
                name: name.into(),
                password: password.into(),
            })
        };
        assert_eq!(
            parse("CREATE USER alice IDENTIFIED BY 'S3cret ''x'''"),
            user("ALICE", "S3cret 'x'")
        );
        // The identifier form keeps the password as written.
        assert_eq!(
            parse("create user Bob identified by MixedPw"),
            user("BOB", "MixedPw")
        );
        assert_eq!(
            parse("CREATE USER \"carol\" IDENTIFIED BY \"Pw\""),
            user("carol", "Pw")
        );
        // The password never shows in debug output.
        assert!(!format!("{:?}", user("A", "hunter2")).contains("hunter2"));
    }

    #[test]
    fn drop_user() {
        assert_eq!(
            parse("drop user alice"),
            Statement::DropUser(DropUser {
                name: "ALICE".into()
            })
        );
    }

    #[test]
    fn grant_admin() {
        assert_eq!(
            parse("GRANT admin TO \"bob\""),
            Statement::GrantAdmin(GrantAdmin { user: "bob".into() })
        );
    }

    #[test]
    fn admin_command() {
        assert_eq!(
            parse("admin command 'grid nodeinfo';"),
            Statement::AdminCommand(AdminCommand {
                command: "grid nodeinfo".into()
            })
        );
    }

    // --- Grid statements ----------------------------------------------------------------------

    fn alter(action: GridAction) -> Statement {
        Statement::AlterGrid(AlterGrid {
            grid: "G".into(),
            action,
        })
    }

    fn add(node: &str, host: &str, port: u16) -> Statement {
        alter(GridAction::AddNode {
            node: node.into(),
            connect: ConnectTarget {
                host: host.into(),
                port,
            },
        })
    }

    fn drop_node(node: &str, recycle: bool) -> Statement {
        alter(GridAction::DropNode {
            node: node.into(),
            recycle,
        })
    }

    fn set_node(node: &str, online: bool) -> Statement {
        alter(GridAction::SetNode {
            node: node.into(),
            online,
        })
    }

    #[test]
    fn create_and_drop_grid() {
        assert_eq!(
            parse("create grid g;"),
            Statement::CreateGrid(CreateGrid { grid: "G".into() })
        );
        assert_eq!(
            parse("CREATE GRID \"MyGrid\""),
            Statement::CreateGrid(CreateGrid {
                grid: "MyGrid".into()
            })
        );
        assert_eq!(
            parse("Drop Grid myGrid"),
            Statement::DropGrid(DropGrid {
                grid: "MYGRID".into()
            })
        );
    }

    #[test]
    fn alter_grid_add_node() {
        assert_eq!(
            parse("ALTER GRID g ADD NODE node2 CONNECT 'tcp node2host 1316'"),
            add("node2", "node2host", 1316)
        );
        // Keywords in any case; the host defaults to localhost; extra spaces are fine.
        assert_eq!(
            parse("alter grid g add node Node_2 connect '  TCP   1316 ';"),
            add("Node_2", "localhost", 1316)
        );
        assert_eq!(
            parse("ALTER GRID g ADD NODE n CONNECT 'Tcp 10.0.0.7 65535'"),
            add("n", "10.0.0.7", 65535)
        );
        // An IPv6 host, with or without brackets.
        assert_eq!(
            parse("ALTER GRID g ADD NODE n CONNECT 'tcp [::1] 1'"),
            add("n", "::1", 1)
        );
        assert_eq!(
            parse("ALTER GRID g ADD NODE n CONNECT 'tcp fe80::1%eth0 1316'"),
            add("n", "fe80::1%eth0", 1316)
        );
    }

    #[test]
    fn alter_grid_drop_and_set_node() {
        assert_eq!(
            parse("ALTER GRID g DROP NODE node3"),
            drop_node("node3", false)
        );
        assert_eq!(
            parse("alter grid g drop node node3 recycle;"),
            drop_node("node3", true)
        );
        assert_eq!(
            parse("ALTER GRID g SET NODE node2 OFFLINE"),
            set_node("node2", false)
        );
        assert_eq!(
            parse("ALTER GRID g SET NODE node2 online"),
            set_node("node2", true)
        );
    }

    #[test]
    fn node_names_keep_their_spelling() {
        for (written, name) in [
            ("node2", "node2"),
            ("MixedCase", "MixedCase"),
            ("localhost:1316", "localhost:1316"),
            ("10.0.0.1:1316", "10.0.0.1:1316"),
            ("db-1.example.com:1316", "db-1.example.com:1316"),
            ("db1.example.com", "db1.example.com"),
            ("n-2", "n-2"),
            ("2fast", "2fast"),
            ("node-select", "node-select"),
            ("\"Node 2\"", "Node 2"),
            ("\"select\"", "select"),
            ("'localhost:1317'", "localhost:1317"),
            ("'n''x'", "n'x"),
        ] {
            let name_ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
            let sql = format!("ALTER GRID g SET NODE {written} ONLINE");
            if name_ok {
                assert_eq!(parse(&sql), set_node(name, true), "{sql}");
            } else {
                assert!(err(&sql).contains("bad node name"), "{sql}");
            }
        }
        // The longest name accepted.
        let longest = "n".repeat(MAX_NODE_NAME_LEN);
        assert_eq!(
            parse(&format!("ALTER GRID g DROP NODE {longest}")),
            drop_node(&longest, false)
        );
        // Adjacency ends a bare name: a space, or a comment, separates it from what follows.
        assert_eq!(
            err("ALTER GRID g SET NODE localhost :1316 ONLINE"),
            "Syntax error at line 1, column 33: expected ONLINE or OFFLINE, found ':'"
        );
        assert_eq!(
            err("ALTER GRID g SET NODE node/**/2 ONLINE"),
            "Syntax error at line 1, column 31: expected ONLINE or OFFLINE, found 2"
        );
        // Grid keywords are not reserved: they work as node names too.
        assert_eq!(
            parse("ALTER GRID g DROP NODE recycle"),
            drop_node("recycle", false)
        );
        assert_eq!(
            parse("ALTER GRID g SET NODE online offline"),
            set_node("online", false)
        );
    }

    #[test]
    fn grid_words_are_not_reserved() {
        assert_eq!(
            parse(
                "CREATE TABLE grid (node INT, connect INT, recycle INT, online INT, offline INT)"
            ),
            Statement::CreateTable(CreateTable {
                name: "GRID".into(),
                columns: ["NODE", "CONNECT", "RECYCLE", "ONLINE", "OFFLINE"]
                    .into_iter()
                    .map(|c| column(c, SqlType::Integer, false))
                    .collect(),
                primary_key: vec![],
                unique: vec![],
                partition: None,
            })
        );
        assert_eq!(expr("node + online"), bin(Add, col("NODE"), col("ONLINE")));
        assert_eq!(
            parse("DROP TABLE grid"),
            Statement::DropTable(DropTable {
                name: "GRID".into()
            })
        );
        assert_eq!(
            parse("ALTER TABLE grid ADD node INT"),
            Statement::AlterTableAddColumn(AlterTableAddColumn {
                table: "GRID".into(),
                column: column("NODE", SqlType::Integer, false),
            })
        );
        assert_eq!(
            parse("CREATE GRID grid"),
            Statement::CreateGrid(CreateGrid {
                grid: "GRID".into()
            })
        );
    }

    #[test]
    fn grid_statement_errors() {
        let cases = [
            (
                "CREATE GRID",
                "line 1, column 12: expected grid name, found end of input",
            ),
            (
                "CREATE GRID g h",
                "line 1, column 15: expected end of statement, found h",
            ),
            (
                "DROP GRID select",
                "line 1, column 11: expected grid name (\"SELECT\" is a reserved word; write \"SELECT\" in double quotes to use it as a name), found select",
            ),
            (
                "DROP SCHEMA s",
                "line 1, column 6: expected TABLE, USER or GRID, found SCHEMA",
            ),
            (
                "ALTER USER u",
                "line 1, column 7: expected TABLE or GRID, found USER",
            ),
            (
                "ALTER GRID g RENAME NODE n",
                "line 1, column 14: expected ADD NODE, DROP NODE or SET NODE, found RENAME",
            ),
            (
                "ALTER GRID g",
                "line 1, column 13: expected ADD NODE, DROP NODE or SET NODE, found end of input",
            ),
            (
                "ALTER GRID g ADD n2 CONNECT 'tcp 1316'",
                "line 1, column 18: expected NODE, found n2",
            ),
            (
                "ALTER GRID g ADD NODE n2",
                "line 1, column 25: expected CONNECT, found end of input",
            ),
            (
                "ALTER GRID g ADD NODE n2 'tcp 1316'",
                "line 1, column 26: expected CONNECT, found 'tcp 1316'",
            ),
            (
                "ALTER GRID g ADD NODE n2 CONNECT tcp",
                "line 1, column 34: expected a connect string 'tcp [host] port', found tcp",
            ),
            (
                "ALTER GRID g ADD NODE n2 CONNECT 'tcp h 1316' RECYCLE",
                "line 1, column 47: expected end of statement, found RECYCLE",
            ),
            (
                "ALTER GRID g ADD NODE CONNECT 'tcp 1316'",
                "line 1, column 31: expected CONNECT, found 'tcp 1316'",
            ),
            (
                "ALTER GRID g ADD NODE select CONNECT 'tcp 1316'",
                "line 1, column 23: expected a node name (\"SELECT\" is a reserved word; write \"SELECT\" in double quotes to use it as a name), found select",
            ),
            (
                "ALTER GRID g ADD NODE (n) CONNECT 'tcp 1316'",
                "line 1, column 23: expected a node name, found '('",
            ),
            (
                "ALTER GRID g SET NODE n",
                "line 1, column 24: expected ONLINE or OFFLINE, found end of input",
            ),
            (
                "ALTER GRID g SET NODE n UP",
                "line 1, column 25: expected ONLINE or OFFLINE, found UP",
            ),
            (
                "ALTER GRID g DROP NODE n FORCE",
                "line 1, column 26: expected RECYCLE or end of statement, found FORCE",
            ),
            (
                "ALTER GRID g DROP NODE n RECYCLE RECYCLE",
                "line 1, column 34: expected end of statement, found RECYCLE",
            ),
            (
                "ALTER GRID g DROP NODE a+b",
                "line 1, column 25: expected RECYCLE or end of statement, found '+'",
            ),
            // Bad node names: reported at the name.
            (
                "ALTER GRID g DROP NODE ''",
                "line 1, column 24: bad node name '': a node name is 1 to 64 letters, digits, '_', '.', ':' or '-'",
            ),
            (
                "ALTER GRID g DROP NODE \"node 2\"",
                "line 1, column 24: bad node name \"node 2\": a node name is 1 to 64 letters, digits, '_', '.', ':' or '-'",
            ),
            (
                "ALTER GRID g\n  DROP NODE nöde",
                "line 2, column 13: bad node name nöde: a node name is 1 to 64 letters, digits, '_', '.', ':' or '-'",
            ),
            (
                "ALTER GRID g DROP NODE 1e+5",
                "line 1, column 24: bad node name 1e+5: a node name is 1 to 64 letters, digits, '_', '.', ':' or '-'",
            ),
            // Bad connect strings: reported at the string literal.
            (
                "ALTER GRID g ADD NODE n CONNECT 'udp h 1316'",
                "line 1, column 33: bad connect string 'udp h 1316': expected 'tcp [host] port', e.g. 'tcp 1316' or 'tcp node2 1316'",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT ''",
                "line 1, column 33: bad connect string '': expected 'tcp [host] port', e.g. 'tcp 1316' or 'tcp node2 1316'",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'h 1316'",
                "line 1, column 33: bad connect string 'h 1316': expected 'tcp [host] port', e.g. 'tcp 1316' or 'tcp node2 1316'",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'tcp'",
                "line 1, column 33: bad connect string 'tcp': the port is missing; expected 'tcp [host] port'",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'tcp h 1316 x'",
                "line 1, column 33: bad connect string 'tcp h 1316 x': too many words; expected 'tcp [host] port'",
            ),
            (
                "ALTER GRID g ADD NODE n\nCONNECT 'tcp h 65536'",
                "line 2, column 9: bad connect string 'tcp h 65536': the port must be a whole number from 1 to 65535",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'tcp h 0'",
                "line 1, column 33: bad connect string 'tcp h 0': the port must be a whole number from 1 to 65535",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'tcp h +1316'",
                "line 1, column 33: bad connect string 'tcp h +1316': the port must be a whole number from 1 to 65535",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'tcp h port'",
                "line 1, column 33: bad connect string 'tcp h port': the port must be a whole number from 1 to 65535",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'tcp h/x 1316'",
                "line 1, column 33: bad connect string 'tcp h/x 1316': the host must be a host name or an IP address",
            ),
            (
                "ALTER GRID g ADD NODE n CONNECT 'tcp [] 1316'",
                "line 1, column 33: bad connect string 'tcp [] 1316': the host must be a host name or an IP address",
            ),
        ];
        let mut wrong = Vec::new();
        for (sql, expected) in cases {
            let got = err(sql);
            if got != format!("Syntax error at {expected}") {
                wrong.push(format!(
                    "{sql:?}\n  got:      {got}\n  expected: {expected}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        // One character past the longest name.
        assert!(
            err(&format!(
                "ALTER GRID g DROP NODE {}",
                "n".repeat(MAX_NODE_NAME_LEN + 1)
            ))
            .contains("bad node name")
        );
    }

    #[test]
    fn connect_targets_print_and_address() {
        let t = |host: &str, port| ConnectTarget {
            host: host.into(),
            port,
        };
        assert_eq!(t("h", 1316).to_string(), "tcp h 1316");
        assert_eq!(t("h", 1316).addr(), "h:1316");
        assert_eq!(t("::1", 1316).addr(), "[::1]:1316");
        // The printed form parses back to the same target.
        for target in [t("localhost", 1), t("10.0.0.1", 65535), t("::1", 1316)] {
            assert_eq!(parse_connect_target(&target.to_string()), Ok(target));
        }
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        // The lexer keeps `12abc` as one malformed token (not `12 AS abc`); the parser
        // refuses it wherever it occurs outside a node name.
        for (sql, expected) in [
            ("select 12abc", "line 1, column 8: malformed number 12abc"),
            ("1.2.3", "line 1, column 1: malformed number 1.2.3"),
            ("SELECT 1e+ FROM t", "line 1, column 8: malformed number 1e"),
            (
                "SELECT - 1x FROM t",
                "line 1, column 10: malformed number 1x",
            ),
            (
                "SELECT a FROM t LIMIT 10.0.0.1",
                "line 1, column 23: malformed number 10.0.0.1",
            ),
            (
                "CREATE TABLE t (a VARCHAR(2k))",
                "line 1, column 27: malformed number 2k",
            ),
        ] {
            assert_eq!(err(sql), format!("Syntax error at {expected}"), "{sql}");
        }
        // `.` and `:` are tokens now, but still not SQL.
        assert_eq!(
            err("SELECT t.a FROM t"),
            "Syntax error at line 1, column 9: expected ',' or FROM, found '.'"
        );
    }

    // --- Expressions ------------------------------------------------------------------------

    #[test]
    fn arithmetic_precedence_and_associativity() {
        assert_eq!(
            expr("1 + 2 * 3"),
            bin(Add, int(1), bin(Mul, int(2), int(3)))
        );
        assert_eq!(
            expr("(1 + 2) * 3"),
            bin(Mul, bin(Add, int(1), int(2)), int(3))
        );
        assert_eq!(
            expr("a - b - c"),
            bin(Sub, bin(Sub, col("A"), col("B")), col("C"))
        );
        assert_eq!(
            expr("a / b * c"),
            bin(Mul, bin(Div, col("A"), col("B")), col("C"))
        );
        assert_eq!(expr("-a * b"), bin(Mul, neg(col("A")), col("B")));
        assert_eq!(expr("- -a"), neg(neg(col("A"))));
        assert_eq!(expr("a - -1"), bin(Sub, col("A"), int(-1)));
        assert_eq!(expr("-2 * 3"), bin(Mul, int(-2), int(3)));
        assert_eq!(expr("- (2)"), neg(int(2)));
        assert_eq!(expr("-1.5"), Expr::Literal(Literal::Float(-1.5)));
    }

    #[test]
    fn boolean_precedence() {
        assert_eq!(
            expr("a OR b AND c"),
            bin(Or, col("A"), bin(And, col("B"), col("C")))
        );
        assert_eq!(
            expr("a AND b OR c AND d"),
            bin(
                Or,
                bin(And, col("A"), col("B")),
                bin(And, col("C"), col("D"))
            )
        );
        assert_eq!(
            expr("NOT a = 1 AND b"),
            bin(And, not(bin(Eq, col("A"), int(1))), col("B"))
        );
        assert_eq!(expr("NOT NOT a"), not(not(col("A"))));
        assert_eq!(
            expr("a + 1 >= b * 2 OR c <> d"),
            bin(
                Or,
                bin(GtEq, bin(Add, col("A"), int(1)), bin(Mul, col("B"), int(2))),
                bin(NotEq, col("C"), col("D"))
            )
        );
        for (text, op) in [
            ("=", Eq),
            ("<>", NotEq),
            ("!=", NotEq),
            ("<", Lt),
            ("<=", LtEq),
            (">", Gt),
            (">=", GtEq),
        ] {
            assert_eq!(expr(&format!("a {text} b")), bin(op, col("A"), col("B")));
        }
        assert_eq!(
            expr("a + 1 IS NOT NULL AND b IS NULL"),
            bin(
                And,
                Expr::IsNull {
                    expr: Box::new(bin(Add, col("A"), int(1))),
                    negated: true
                },
                Expr::IsNull {
                    expr: Box::new(col("B")),
                    negated: false
                }
            )
        );
        assert_eq!(
            expr("(a = b) = c"),
            bin(Eq, bin(Eq, col("A"), col("B")), col("C"))
        );
        assert_eq!(expr("a = (NOT b)"), bin(Eq, col("A"), not(col("B"))));
    }

    #[test]
    fn literals() {
        assert_eq!(expr("9223372036854775807"), int(i64::MAX));
        assert_eq!(expr("-9223372036854775808"), int(i64::MIN));
        assert_eq!(expr(".5"), Expr::Literal(Literal::Float(0.5)));
        assert_eq!(expr("2."), Expr::Literal(Literal::Float(2.0)));
        assert_eq!(expr("1.e3"), Expr::Literal(Literal::Float(1000.0)));
        assert_eq!(expr("25E-1"), Expr::Literal(Literal::Float(2.5)));
        assert_eq!(expr("''''"), string("'"));
        assert_eq!(expr("null"), Expr::Literal(Literal::Null));
        assert_eq!(
            expr("timestamp '2000-02-29 23:59:59.5'"),
            Expr::Literal(Literal::Timestamp(
                value::parse_timestamp("2000-02-29 23:59:59.5").unwrap()
            ))
        );
        // Without a string after it, TIMESTAMP is a column name.
        assert_eq!(expr("timestamp"), col("TIMESTAMP"));
    }

    #[test]
    fn aggregates() {
        assert_eq!(
            expr("COUNT(*) + sum(a * 2)"),
            bin(
                Add,
                agg(AggregateFunc::Count, None),
                agg(AggregateFunc::Sum, Some(bin(Mul, col("A"), int(2))))
            )
        );
        // Aggregate names are not reserved.
        assert_eq!(expr("count"), col("COUNT"));
        assert_eq!(
            err("SELECT COUNT(SUM(a)) FROM t"),
            "Syntax error at line 1, column 14: expected an expression without aggregate \
             functions (aggregates cannot be nested), found SUM"
        );
        assert_eq!(
            err("SELECT max(1 + min(a)) FROM t"),
            "Syntax error at line 1, column 16: expected an expression without aggregate \
             functions (aggregates cannot be nested), found min"
        );
        assert_eq!(
            err("SELECT sum(*) FROM t"),
            "Syntax error at line 1, column 12: expected an expression, found '*'"
        );
        assert_eq!(
            err("SELECT upper(a) FROM t"),
            "Syntax error at line 1, column 8: expected an aggregate function \
             (COUNT, SUM, MIN, MAX or AVG), found upper"
        );
    }

    // --- Names and comments -----------------------------------------------------------------

    #[test]
    fn identifier_case_rules() {
        // Unquoted names are upper-cased, including non-ASCII letters.
        assert_eq!(expr("MiXeD_1"), col("MIXED_1"));
        assert_eq!(expr("straße"), col("STRASSE"));
        assert_eq!(expr("café"), col("CAFÉ"));
        // Quoted names are kept as written, with "" for a quote.
        assert_eq!(expr("\"MiXeD\""), col("MiXeD"));
        assert_eq!(expr("\"a \"\"b\"\"\""), col("a \"b\""));
        // A quoted reserved word is a name.
        assert_eq!(expr("\"SELECT\""), col("SELECT"));
        // Keywords are case-insensitive.
        assert_eq!(parse("SeLeCt * FrOm t"), parse("SELECT * FROM T"));
        // Aliases follow the same rules.
        assert_eq!(
            parse("SELECT a AS \"Total\", b x FROM t"),
            Statement::Select(Select {
                items: vec![
                    SelectItem::Expr {
                        expr: col("A"),
                        alias: Some("Total".into())
                    },
                    SelectItem::Expr {
                        expr: col("B"),
                        alias: Some("X".into())
                    },
                ],
                from: "T".into(),
                filter: None,
                order_by: vec![],
                limit: None,
            })
        );
    }

    #[test]
    fn reserved_words_are_not_names() {
        assert_eq!(
            err("CREATE TABLE order (a INT)"),
            "Syntax error at line 1, column 14: expected table name (\"ORDER\" is a reserved \
             word; write \"ORDER\" in double quotes to use it as a name), found order"
        );
        assert_eq!(
            err("SELECT a, from FROM t"),
            "Syntax error at line 1, column 11: expected an expression (\"FROM\" is a reserved \
             word; write \"FROM\" in double quotes to use it as a name), found from"
        );
        for keyword in Keyword::ALL {
            let sql = format!("DROP TABLE {}", keyword.as_str().to_lowercase());
            assert!(parse_statement(&sql).is_err(), "{sql}");
            assert_eq!(
                parse(&format!("DROP TABLE \"{keyword}\"")),
                Statement::DropTable(DropTable {
                    name: keyword.to_string()
                })
            );
        }
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(
            parse(
                "-- leading comment\n\
                 SELECT /* inline */ a -- trailing\n\
                 FROM /* multi\n line */ t; -- after the semicolon"
            ),
            parse("SELECT a FROM t")
        );
        assert_eq!(
            parse("DROP TABLE t /* c */ ; /* c */"),
            parse("DROP TABLE t")
        );
        // Comment markers inside strings and quoted names are text.
        assert_eq!(expr("'-- not /* a comment'"), string("-- not /* a comment"));
        assert_eq!(expr("\"--x\""), col("--x"));
    }

    // --- Errors -----------------------------------------------------------------------------

    #[test]
    fn error_positions() {
        let cases = [
            (
                "",
                "line 1, column 1: expected a statement (SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, GRANT or ADMIN COMMAND), found end of input",
            ),
            (
                "  ;",
                "line 1, column 3: expected a statement (SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, GRANT or ADMIN COMMAND), found ';'",
            ),
            (
                "SELECT a\nFROM t\nWHERE a = = 1",
                "line 3, column 11: expected an expression, found '='",
            ),
            (
                "SELECT a FROM t WHERE",
                "line 1, column 22: expected an expression, found end of input",
            ),
            (
                "SELECT a b c FROM t",
                "line 1, column 12: expected ',' or FROM, found c",
            ),
            (
                "SELECT * , a FROM t",
                "line 1, column 10: expected FROM, found ','",
            ),
            (
                "select a from t limit 5 x",
                "line 1, column 25: expected end of statement, found x",
            ),
            (
                "select a from t order a",
                "line 1, column 23: expected BY, found a",
            ),
            (
                "SELECT a FROM t x",
                "line 1, column 17: expected WHERE, ORDER BY, LIMIT or end of statement, found x",
            ),
            (
                "SELECT a FROM t LIMIT -1",
                "line 1, column 23: expected a row count (an integer from 0 to 18446744073709551615), found '-'",
            ),
            (
                "DROP TABLE t; DROP TABLE u",
                "line 1, column 15: expected end of input after ';' (one statement at a time), found DROP",
            ),
            (
                "DROP TABLE t;;",
                "line 1, column 14: expected end of input after ';' (one statement at a time), found ';'",
            ),
            (
                "CREATE GRIDS g",
                "line 1, column 8: expected TABLE, USER or GRID, found GRIDS",
            ),
            (
                "CREATE TABLE t ()",
                "line 1, column 17: expected column name, found ')'",
            ),
            (
                "CREATE TABLE t (PRIMARY KEY (a))",
                "line 1, column 32: expected at least one column definition, found ')'",
            ),
            (
                "CREATE TABLE t (a INT,)",
                "line 1, column 23: expected column name, found ')'",
            ),
            (
                "CREATE TABLE t (a TEXT)",
                "line 1, column 19: expected a data type (INTEGER, BIGINT, DOUBLE, VARCHAR(n), BOOLEAN or TIMESTAMP), found TEXT",
            ),
            (
                "CREATE TABLE t (a VARCHAR)",
                "line 1, column 26: expected '(' and a length, found ')'",
            ),
            (
                "CREATE TABLE t (a VARCHAR(0))",
                "line 1, column 27: expected a length from 1 to 1048576, found 0",
            ),
            (
                "CREATE TABLE t (a VARCHAR(1048577))",
                "line 1, column 27: expected a length from 1 to 1048576, found 1048577",
            ),
            (
                "CREATE TABLE t (a INT b INT)",
                "line 1, column 23: expected ',' or ')', found b",
            ),
            (
                "CREATE TABLE t (a INT NOT NULL NOT NULL)",
                "line 1, column 32: expected ',' or ')', found NOT",
            ),
            (
                "CREATE TABLE t (a INT PRIMARY KEY, PRIMARY KEY (a))",
                "line 1, column 36: a table can have only one PRIMARY KEY (a column-level one or PRIMARY KEY (…), not both)",
            ),
            (
                "CREATE TABLE t (a INT PRIMARY KEY,\n b INT PRIMARY KEY)",
                "line 2, column 8: a table can have only one PRIMARY KEY (a column-level one or PRIMARY KEY (…), not both)",
            ),
            (
                "CREATE TABLE t (a INT PRIMARY KEY PRIMARY KEY)",
                "line 1, column 35: a table can have only one PRIMARY KEY (a column-level one or PRIMARY KEY (…), not both)",
            ),
            (
                "ALTER TABLE t ADD COLUMN c INT PRIMARY KEY",
                "line 1, column 32: expected end of statement, found PRIMARY",
            ),
            (
                "INSERT INTO t SELECT 1",
                "line 1, column 15: expected '(' or VALUES, found SELECT",
            ),
            (
                "INSERT INTO t VALUES (1, 2",
                "line 1, column 27: expected ',' or ')', found end of input",
            ),
            (
                "INSERT INTO t VALUES ()",
                "line 1, column 23: expected an expression, found ')'",
            ),
            (
                "UPDATE t SET a WHERE b",
                "line 1, column 16: expected '=', found WHERE",
            ),
            ("DELETE t", "line 1, column 8: expected FROM, found t"),
            (
                "CREATE USER u IDENTIFIED 'pw'",
                "line 1, column 26: expected BY, found 'pw'",
            ),
            (
                "CREATE USER u IDENTIFIED BY 42",
                "line 1, column 29: expected a password ('…' or an identifier), found 42",
            ),
            (
                "GRANT DBA TO u",
                "line 1, column 7: expected ADMIN, found DBA",
            ),
            (
                "ADMIN COMMAND grid",
                "line 1, column 15: expected a command string ('…'), found grid",
            ),
            (
                "SELECT 9223372036854775808 FROM t",
                "line 1, column 8: expected an integer from -9223372036854775808 to 9223372036854775807, found 9223372036854775808",
            ),
            (
                "SELECT\n  -9223372036854775809 FROM t",
                "line 2, column 4: expected an integer from -9223372036854775808 to 9223372036854775807, found 9223372036854775809",
            ),
            (
                "SELECT 1e999 FROM t",
                "line 1, column 8: expected a number within the range of DOUBLE, found 1e999",
            ),
            (
                "SELECT TIMESTAMP '2021-02-29' FROM t",
                "line 1, column 18: expected a timestamp 'YYYY-MM-DD[ HH:MM:SS[.ffffff]]', found '2021-02-29'",
            ),
            (
                "SELECT a < b < c FROM t",
                "line 1, column 14: expected AND, OR or the end of the expression (comparisons do not chain; add parentheses), found '<'",
            ),
            (
                "SELECT a IS NULL = TRUE FROM t",
                "line 1, column 18: expected AND, OR or the end of the expression (comparisons do not chain; add parentheses), found '='",
            ),
            (
                "SELECT a IS b FROM t",
                "line 1, column 13: expected NULL or NOT NULL, found b",
            ),
            (
                "SELECT a IS NOT TRUE FROM t",
                "line 1, column 17: expected NULL, found TRUE",
            ),
            (
                "SELECT a = NOT b FROM t",
                "line 1, column 12: expected an operand (put a NOT expression in parentheses here), found NOT",
            ),
            (
                "SELECT (a FROM t",
                "line 1, column 11: expected ')', found FROM",
            ),
            (
                "SELECT\tx\n\n   FROM\n t\r\n WHERE é = 'ü' ~",
                "line 5, column 16: unexpected character '~'",
            ),
            (
                "SELECT 'x' || 'y' FROM t",
                "line 1, column 12: unexpected character '|'",
            ),
            (
                "SELECT a FROM t WHERE b = 'oops",
                "line 1, column 27: unterminated string literal: no closing ' before end of input",
            ),
            (
                "SELECT a /* FROM t",
                "line 1, column 10: unterminated comment: no closing */ before end of input",
            ),
        ];
        let mut wrong = Vec::new();
        for (sql, expected) in cases {
            let got = err(sql);
            if got != format!("Syntax error at {expected}") {
                wrong.push(format!(
                    "{sql:?}\n  got:      {got}\n  expected: {expected}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(
            err("SELECT 'ééé', ü FROM t WHERE ?"),
            "Syntax error at line 1, column 30: unexpected character '?'"
        );
        assert_eq!(
            err("SELECT 'ééé' ü, FROM t"),
            "Syntax error at line 1, column 17: expected an expression (\"FROM\" is a reserved \
             word; write \"FROM\" in double quotes to use it as a name), found FROM"
        );
    }

    #[test]
    fn error_display_carries_the_code() {
        let e = parse_statement("SELECT").unwrap_err();
        assert_eq!(
            e.to_string(),
            "SOLID Syntax Error 10001: Syntax error at line 1, column 7: \
             expected an expression, found end of input"
        );
    }

    // --- Limits -----------------------------------------------------------------------------

    fn too_deep(sql: &str) -> bool {
        err(sql).ends_with(&format!(
            "expression is nested too deeply (more than {MAX_EXPR_DEPTH} levels)"
        ))
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        // One level for the expression itself, one per parenthesis.
        let open = MAX_EXPR_DEPTH - 1;
        let sql = format!("SELECT {}1{} FROM t", "(".repeat(open), ")".repeat(open));
        assert_eq!(
            expr(&sql["SELECT ".len()..sql.len() - " FROM t".len()]),
            int(1)
        );
        let sql = format!(
            "SELECT {}1{} FROM t",
            "(".repeat(open + 1),
            ")".repeat(open + 1)
        );
        assert!(too_deep(&sql));

        // A chain's tree height is one more than its number of operators.
        let chain = |n: usize| format!("SELECT {} FROM t", vec!["a"; n].join(" OR "));
        parse(&chain(MAX_EXPR_DEPTH));
        assert!(too_deep(&chain(MAX_EXPR_DEPTH + 1)));
        let nots = |n: usize| format!("SELECT {}a FROM t", "NOT ".repeat(n));
        parse(&nots(MAX_EXPR_DEPTH - 1));
        assert!(too_deep(&nots(MAX_EXPR_DEPTH)));
        let negs = |n: usize| format!("SELECT {}a FROM t", "- ".repeat(n));
        parse(&negs(MAX_EXPR_DEPTH - 1));
        assert!(too_deep(&negs(MAX_EXPR_DEPTH)));
    }

    #[test]
    fn the_deepest_expressions_fit_in_half_a_thread_stack() {
        // A debug build spends about 2 KiB of stack per nesting level while parsing, so
        // MAX_EXPR_DEPTH levels take about half a MiB; tokio workers and test threads get
        // 2 MiB. Walking the tree (Clone, PartialEq, Debug, Drop) costs less than parsing.
        let open = MAX_EXPR_DEPTH - 1;
        let statements = [
            format!("SELECT {}1{} FROM t", "(".repeat(open), ")".repeat(open)),
            format!("SELECT {}a FROM t", "- ".repeat(open)),
            format!("SELECT {}a FROM t", "NOT ".repeat(open)),
            format!(
                "SELECT {}1{} FROM t",
                "(-".repeat(open / 2),
                ")".repeat(open / 2)
            ),
            format!("SELECT {} FROM t", vec!["a"; MAX_EXPR_DEPTH].join(" OR ")),
            format!(
                "SELECT sum({}1{}) FROM t",
                "(".repeat(open - 2),
                ")".repeat(open - 2)
            ),
        ];
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                for sql in statements {
                    let statement = parse(&sql);
                    assert_eq!(statement.clone(), statement);
                    assert!(!format!("{statement:?}").is_empty());
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn hostile_nesting_is_an_error_not_a_stack_overflow() {
        for sql in [
            "(".repeat(50_000),
            format!("SELECT {}", "(".repeat(50_000)),
            format!("SELECT {} FROM t", "NOT ".repeat(50_000)),
            format!("SELECT {}1 FROM t", "-".repeat(99_990)),
            format!("SELECT {}1 FROM t", "1 + ".repeat(40_000)),
            format!(
                "SELECT {}1{} FROM t",
                "count(".repeat(30_000),
                ")".repeat(30_000)
            ),
            format!("SELECT {}1 FROM t", "(- ".repeat(30_000)),
        ] {
            let e = parse_statement(&sql).unwrap_err();
            assert_eq!(e.code, code::SYNTAX);
        }
        assert!(too_deep(&format!("SELECT {}", "(".repeat(50_000))));
    }

    // --- Properties -------------------------------------------------------------------------

    /// A syntax error's message must locate it inside the statement (or just past its end).
    fn check_error(sql: &str, e: &SolidError) {
        assert_eq!(e.code, code::SYNTAX, "{sql:?}: {e}");
        let rest = e
            .message
            .strip_prefix("Syntax error at line ")
            .unwrap_or_else(|| panic!("{sql:?}: {e}"));
        let (line, rest) = rest.split_once(", column ").unwrap();
        let (column, _) = rest.split_once(": ").unwrap();
        let line: usize = line.parse().unwrap();
        let column: usize = column.parse().unwrap();
        let lines: Vec<&str> = sql.split('\n').collect();
        assert!(line >= 1 && line <= lines.len(), "{sql:?}: {e}");
        assert!(
            column >= 1 && column <= lines[line - 1].chars().count() + 1,
            "{sql:?}: {e}"
        );
    }

    const VALID: &[&str] = &[
        "CREATE TABLE t (id INT NOT NULL, name VARCHAR(20), PRIMARY KEY (id))",
        "CREATE TABLE \"T\" (a BIGINT PRIMARY KEY, b DOUBLE PRECISION, c BOOLEAN, d TIMESTAMP)",
        "DROP TABLE t;",
        "ALTER TABLE t ADD COLUMN c VARCHAR(5) NOT NULL",
        "INSERT INTO t (a, b) VALUES (1, 'x'), (-2.5e3, NULL)",
        "SELECT a, COUNT(*) AS n, SUM(b * 2) FROM t WHERE NOT (a >= 1 AND b IS NOT NULL) OR c <> 'z' ORDER BY a DESC LIMIT 5",
        "SELECT * FROM sys_grid_nodes -- all\n",
        "UPDATE t SET a = a + 1, b = TIMESTAMP '2020-01-01 00:00:00' WHERE id = 3",
        "DELETE FROM t WHERE a /* c */ = -1",
        "CREATE USER u IDENTIFIED BY 'pw'",
        "DROP USER u",
        "GRANT ADMIN TO u",
        "ADMIN COMMAND 'grid status'",
        "CREATE GRID g",
        "DROP GRID \"g\";",
        "ALTER GRID g ADD NODE node-2.example.com:1316 CONNECT 'tcp 10.0.0.2 1316'",
        "ALTER GRID g DROP NODE 'n2' RECYCLE",
        "ALTER GRID g SET NODE 10.0.0.1:1316 OFFLINE",
    ];

    #[test]
    fn the_mutation_corpus_is_valid() {
        for sql in VALID {
            parse(sql);
        }
    }

    /// One edit of a statement.
    #[derive(Debug, Clone)]
    enum Mutation {
        Delete { at: usize, len: usize },
        Insert { at: usize, text: String },
        Duplicate { at: usize, len: usize },
        Truncate { at: usize },
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let fragment = prop_oneof![
            Just("(".to_string()),
            Just(")".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just(",".to_string()),
            Just(";".to_string()),
            Just("--".to_string()),
            Just("/*".to_string()),
            Just("*/".to_string()),
            Just(" NOT ".to_string()),
            Just(" IS ".to_string()),
            Just(" PRIMARY KEY ".to_string()),
            Just("COUNT(".to_string()),
            Just(" 99999999999999999999 ".to_string()),
            Just("-".to_string()),
            Just("\n".to_string()),
            "\\PC{0,4}",
        ];
        prop_oneof![
            (any::<usize>(), 1..8usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
            (any::<usize>(), fragment).prop_map(|(at, text)| Mutation::Insert { at, text }),
            (any::<usize>(), 1..12usize).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
            any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        ]
    }

    /// The char boundary at or before `at % (len + 1)`.
    fn boundary(s: &str, at: usize) -> usize {
        let mut i = at % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    fn apply(sql: &mut String, m: &Mutation) {
        match m {
            Mutation::Delete { at, len } | Mutation::Duplicate { at, len } => {
                let start = boundary(sql, *at);
                let end = boundary(sql, start + len);
                let end = if end < start { sql.len() } else { end };
                if matches!(m, Mutation::Delete { .. }) {
                    sql.replace_range(start..end, "");
                } else {
                    let piece = sql[start..end].to_string();
                    sql.insert_str(end, &piece);
                }
            }
            Mutation::Insert { at, text } => {
                let at = boundary(sql, *at);
                sql.insert_str(at, text);
            }
            Mutation::Truncate { at } => {
                let at = boundary(sql, *at);
                sql.truncate(at);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_arbitrary_text(sql in "\\PC*|[\\x00-\\x7f]{0,200}") {
            if let Err(e) = parse_statement(&sql) {
                check_error(&sql, &e);
            }
        }

        #[test]
        fn never_panics_on_sql_like_text(
            words in proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(vec![
                        "SELECT", "FROM", "WHERE", "ORDER", "BY", "LIMIT", "INSERT", "INTO",
                        "VALUES", "CREATE", "TABLE", "USER", "DROP", "ALTER", "ADD", "COLUMN",
                        "UPDATE", "SET", "DELETE", "GRANT", "ADMIN", "TO", "COMMAND", "NOT",
                        "NULL", "IS", "AND", "OR", "AS", "PRIMARY", "KEY", "INT", "VARCHAR",
                        "TIMESTAMP", "COUNT", "SUM", "(", ")", ",", ";", "*", "+", "-", "/",
                        "=", "<>", "<", ">=", "'s'", "\"q\"", "1", "1.5", "a", "b", "t",
                        "IDENTIFIED", "DESC", "GRID", "NODE", "CONNECT", "RECYCLE",
                        "ONLINE", "OFFLINE", "'tcp h 1316'", ":", ".", "1.2.3", "12abc",
                    ]).prop_map(str::to_string),
                    "\\PC{1,3}",
                ],
                0..40,
            )
        ) {
            let sql = words.join(" ");
            if let Err(e) = parse_statement(&sql) {
                check_error(&sql, &e);
            }
        }

        #[test]
        fn never_panics_on_runs_of_open_parentheses(
            prefix in "(SELECT |INSERT INTO t VALUES |)",
            n in 0..20_000usize,
            inner in "(- |NOT |COUNT\\(|a \\+ |)",
            tail in "\\PC{0,8}",
        ) {
            let sql = format!("{prefix}{}{}{tail}", "(".repeat(n), inner.repeat(n % 300));
            if let Err(e) = parse_statement(&sql) {
                check_error(&sql, &e);
            }
        }

        #[test]
        fn never_panics_on_mutated_statements(
            base in proptest::sample::select(VALID),
            mutations in proptest::collection::vec(mutation(), 1..4),
        ) {
            let mut sql = base.to_string();
            for m in &mutations {
                apply(&mut sql, m);
            }
            if let Err(e) = parse_statement(&sql) {
                check_error(&sql, &e);
            }
        }
    }
}
