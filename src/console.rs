//! The console's pure logic: splitting input into statements and formatting results and
//! errors. No terminal or network I/O lives here (conventions §11); `solsql` wires it to
//! rustyline, files and a [`Client`](crate::client::Client).
//!
//! [`StatementSplitter`] accumulates input in chunks of any size (lines from a terminal,
//! blocks from a file) and yields each statement once its terminating `;` arrives. A `;`
//! inside a single-quoted string (`''` escapes a quote), a double-quoted identifier (`""`
//! escapes), a `--` line comment or a `/* */` block comment does not end a statement.
//! Comments are removed from the statement text sent to the server (a block comment is
//! replaced by its line breaks, or by a space, so tokens stay apart and line numbers in
//! error messages stay right).
//!
//! Output: [`format_result`] prints a query as an aligned ASCII table followed by
//! `N rows fetched.`, and any other statement as the server's message. [`format_error`]
//! prints `SOLID <Class> Error <code>: <message>`; failures to reach or keep talking to the
//! server use solidDB's communication error codes.

use comfy_table::{Cell, CellAlignment, Table, presets};

use crate::client::ClientError;
use crate::pb;
use crate::sql::value::Value;

/// solidDB's code for "Server '…' not found, connection failed".
pub const COMM_SERVER_NOT_FOUND: u32 = 21306;
/// solidDB's code for a connection broken after it was established.
pub const COMM_CONNECTION_BROKEN: u32 = 21308;

/// Where the splitter is in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Ordinary statement text.
    Normal,
    /// A `-` was seen in normal text: a line comment starts if another `-` follows.
    Dash,
    /// A `/` was seen in normal text: a block comment starts if `*` follows.
    Slash,
    /// Inside `'…'`.
    SingleQuote,
    /// A `'` was seen inside a string: it ends the string unless another `'` follows.
    SingleQuoteEnd,
    /// Inside `"…"`.
    DoubleQuote,
    /// A `"` was seen inside an identifier: it ends it unless another `"` follows.
    DoubleQuoteEnd,
    /// After `--`, up to the end of the line.
    LineComment,
    /// Inside `/* … */`.
    BlockComment,
    /// A `*` was seen inside a block comment: the comment ends if `/` follows.
    BlockCommentStar,
}

/// Accumulates console input and yields complete statements (see the module docs).
#[derive(Debug, Clone)]
pub struct StatementSplitter {
    /// The current statement's text so far, comments removed, without its `;`.
    text: String,
    /// Whether `text` holds anything but whitespace (so `;;` yields nothing).
    has_content: bool,
    lex: Lex,
    /// Line breaks inside the current block comment, re-emitted when it ends.
    comment_newlines: usize,
}

impl Default for StatementSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl StatementSplitter {
    pub fn new() -> Self {
        StatementSplitter {
            text: String::new(),
            has_content: false,
            lex: Lex::Normal,
            comment_newlines: 0,
        }
    }

    /// Feeds a chunk of input of any size and returns the statements it completed, in
    /// order, trimmed and without their `;`.
    pub fn push(&mut self, chunk: &str) -> Vec<String> {
        let mut done = Vec::new();
        for c in chunk.chars() {
            self.step(c, &mut done);
        }
        done
    }

    /// Feeds one line (without its line break, as a line editor returns it).
    pub fn push_line(&mut self, line: &str) -> Vec<String> {
        let mut done = self.push(line);
        done.extend(self.push("\n"));
        done
    }

    /// Whether an unfinished statement is pending: the console shows the continuation
    /// prompt. Whitespace and completed comments alone do not count.
    pub fn in_statement(&self) -> bool {
        self.has_content || !matches!(self.lex, Lex::Normal | Lex::LineComment)
    }

    /// Ends the input: returns the pending statement that had no `;`, if any, and resets.
    /// Scripts (`-e`, `-f`, piped input) run a last statement without `;` too.
    pub fn finish(&mut self) -> Option<String> {
        match self.lex {
            Lex::Dash => self.push_text('-'),
            Lex::Slash => self.push_text('/'),
            _ => {}
        }
        let last = self.has_content.then(|| self.text.trim().to_string());
        self.reset();
        last
    }

    /// Drops the pending statement (Ctrl-C in the console).
    pub fn reset(&mut self) {
        self.text.clear();
        self.has_content = false;
        self.lex = Lex::Normal;
        self.comment_newlines = 0;
    }

    fn push_text(&mut self, c: char) {
        self.text.push(c);
        if !c.is_whitespace() {
            self.has_content = true;
        }
    }

    fn step(&mut self, c: char, done: &mut Vec<String>) {
        match self.lex {
            Lex::Normal => match c {
                ';' => {
                    if self.has_content {
                        done.push(self.text.trim().to_string());
                    }
                    self.text.clear();
                    self.has_content = false;
                }
                '\'' => {
                    self.push_text(c);
                    self.lex = Lex::SingleQuote;
                }
                '"' => {
                    self.push_text(c);
                    self.lex = Lex::DoubleQuote;
                }
                '-' => self.lex = Lex::Dash,
                '/' => self.lex = Lex::Slash,
                _ => self.push_text(c),
            },
            Lex::Dash => {
                if c == '-' {
                    self.lex = Lex::LineComment;
                } else {
                    self.push_text('-');
                    self.lex = Lex::Normal;
                    self.step(c, done);
                }
            }
            Lex::Slash => {
                if c == '*' {
                    self.lex = Lex::BlockComment;
                    self.comment_newlines = 0;
                } else {
                    self.push_text('/');
                    self.lex = Lex::Normal;
                    self.step(c, done);
                }
            }
            Lex::SingleQuote => {
                self.push_text(c);
                if c == '\'' {
                    self.lex = Lex::SingleQuoteEnd;
                }
            }
            Lex::SingleQuoteEnd => {
                if c == '\'' {
                    self.push_text(c);
                    self.lex = Lex::SingleQuote;
                } else {
                    self.lex = Lex::Normal;
                    self.step(c, done);
                }
            }
            Lex::DoubleQuote => {
                self.push_text(c);
                if c == '"' {
                    self.lex = Lex::DoubleQuoteEnd;
                }
            }
            Lex::DoubleQuoteEnd => {
                if c == '"' {
                    self.push_text(c);
                    self.lex = Lex::DoubleQuote;
                } else {
                    self.lex = Lex::Normal;
                    self.step(c, done);
                }
            }
            Lex::LineComment => {
                if c == '\n' {
                    self.lex = Lex::Normal;
                    self.step(c, done);
                }
            }
            Lex::BlockComment | Lex::BlockCommentStar => match c {
                '/' if self.lex == Lex::BlockCommentStar => {
                    if self.comment_newlines == 0 {
                        self.text.push(' ');
                    } else {
                        for _ in 0..self.comment_newlines {
                            self.text.push('\n');
                        }
                    }
                    self.lex = Lex::Normal;
                }
                '*' => self.lex = Lex::BlockCommentStar,
                '\n' => {
                    self.comment_newlines += 1;
                    self.lex = Lex::BlockComment;
                }
                _ => self.lex = Lex::BlockComment,
            },
        }
    }
}

/// Splits a whole script: every statement ended by `;`, then a last one without `;`.
pub fn split_script(script: &str) -> Vec<String> {
    let mut splitter = StatementSplitter::new();
    let mut statements = splitter.push(script);
    statements.extend(splitter.finish());
    statements
}

/// Whether a statement is the console's own `exit` or `quit` (any case).
pub fn is_exit_command(statement: &str) -> bool {
    let s = statement.trim();
    s.eq_ignore_ascii_case("exit") || s.eq_ignore_ascii_case("quit")
}

/// Whether an input line may go to the history file: not blank, and not one that may carry
/// a password (`… IDENTIFIED BY '…'`).
pub fn is_history_worthy(line: &str) -> bool {
    !line.trim().is_empty() && !line.to_ascii_uppercase().contains("IDENTIFIED")
}

/// Whether a column of this SQL type holds numbers (printed right-aligned).
fn is_numeric_type(sql_type: &str) -> bool {
    let t = sql_type.trim().to_ascii_uppercase();
    [
        "INTEGER", "INT", "BIGINT", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "REAL", "DECIMAL",
        "NUMERIC",
    ]
    .iter()
    .any(|n| t == *n || t.starts_with(&format!("{n}(")) || t.starts_with(&format!("{n} ")))
}

/// Formats a statement's result: a query as an aligned table with a header row, then
/// `N rows fetched.`; any other statement as the server's message.
pub fn format_result(r: &crate::client::QueryResult) -> String {
    if r.columns.is_empty() {
        return if r.message.is_empty() {
            "Command completed successfully.".to_string()
        } else {
            r.message.clone()
        };
    }
    let numeric: Vec<bool> = r.columns.iter().map(|(_, t)| is_numeric_type(t)).collect();
    let mut table = Table::new();
    table
        .load_style(presets::ASCII_FULL_CONDENSED)
        .force_no_tty();
    table.set_header(r.columns.iter().map(|(name, _)| Cell::new(name)));
    for row in &r.rows {
        table.add_row(row.iter().enumerate().map(|(i, v)| {
            let right = numeric.get(i).copied().unwrap_or(false)
                || matches!(v, Value::Int(_) | Value::Double(_));
            let cell = Cell::new(v);
            if right {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    format!("{table}\n{} rows fetched.", r.rows.len())
}

/// Formats an error as the console prints it: `SOLID <Class> Error <code>: <message>`.
pub fn format_error(e: &ClientError) -> String {
    match e {
        ClientError::Solid(e) => e.to_string(),
        ClientError::Connect(target, why) => format!(
            "SOLID Communication Error {COMM_SERVER_NOT_FOUND}: Server '{target}' not found, \
             connection failed ({why})"
        ),
        ClientError::Transport(why) | ClientError::Lost(why) => {
            format!("SOLID Communication Error {COMM_CONNECTION_BROKEN}: {why}")
        }
    }
}

/// Formats a node's status probe, one `name: value` line per field.
pub fn format_status(s: &pb::StatusReply) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    format!(
        "Node name:    {}\nVersion:      {}\nMode:         {}\nHas database: {}\nGrid enabled: {}",
        s.node_name,
        s.version,
        s.mode,
        yes_no(s.has_database),
        yes_no(s.grid_enabled)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::QueryResult;
    use crate::error::{SolidError, code};
    use proptest::prelude::*;

    fn split_lines(lines: &[&str]) -> (Vec<String>, StatementSplitter) {
        let mut s = StatementSplitter::new();
        let mut out = Vec::new();
        for line in lines {
            out.extend(s.push_line(line));
        }
        (out, s)
    }

    #[test]
    fn statements_end_at_semicolons() {
        assert_eq!(
            split_script("create table t (a integer); insert into t values (1);select * from t"),
            vec![
                "create table t (a integer)",
                "insert into t values (1)",
                "select * from t"
            ]
        );
    }

    #[test]
    fn empty_statements_are_skipped() {
        assert_eq!(split_script(";; ;\n; a ;;; b;"), vec!["a", "b"]);
        assert!(split_script("  \n\t").is_empty());
        assert!(split_script("-- only a comment").is_empty());
        assert!(split_script("/* only */ ; -- comments\n;").is_empty());
    }

    #[test]
    fn quotes_protect_semicolons_and_comment_markers() {
        assert_eq!(
            split_script("insert into t values ('a;b', 'it''s; -- no /* no */');x"),
            vec!["insert into t values ('a;b', 'it''s; -- no /* no */')", "x"]
        );
        assert_eq!(
            split_script(r#"select "a;""b" from "t--x";y"#),
            vec![r#"select "a;""b" from "t--x""#, "y"]
        );
        assert_eq!(
            split_script("select ''';'''; z"),
            vec!["select ''';'''", "z"]
        );
    }

    #[test]
    fn comments_are_removed_and_hide_semicolons() {
        assert_eq!(
            split_script("select 1 -- the first; not the end\n, 2; select 3"),
            vec!["select 1 \n, 2", "select 3"]
        );
        assert_eq!(
            split_script("select/*;*/1;select /* a\n;b\n */ 2"),
            vec!["select 1", "select \n\n 2"]
        );
        // `/*/` does not close the comment it opens.
        assert_eq!(split_script("a /*/ ; */ b; c"), vec!["a   b", "c"]);
        assert_eq!(split_script("a /* ** */ b"), vec!["a   b"]);
    }

    #[test]
    fn lone_dashes_and_slashes_are_text() {
        assert_eq!(
            split_script("select 4-2, 6/3, -1; select a-b"),
            vec!["select 4-2, 6/3, -1", "select a-b"]
        );
        assert_eq!(split_script("-;/"), vec!["-", "/"]);
    }

    #[test]
    fn continuation_is_reported_while_a_statement_is_open() {
        let mut s = StatementSplitter::new();
        assert!(!s.in_statement());
        assert!(s.push_line("   ").is_empty());
        assert!(!s.in_statement());
        assert!(s.push_line("-- a comment").is_empty());
        assert!(!s.in_statement());
        assert!(s.push_line("select *").is_empty());
        assert!(s.in_statement());
        assert_eq!(s.push_line("from t;"), vec!["select *\nfrom t"]);
        assert!(!s.in_statement());

        assert!(s.push_line("/* open").is_empty());
        assert!(s.in_statement(), "an open block comment continues");
        assert!(s.push_line("close */").is_empty());
        assert!(!s.in_statement());

        assert!(s.push_line("insert into t values ('a").is_empty());
        assert!(s.in_statement());
        assert_eq!(
            s.push_line("b;c');"),
            vec!["insert into t values ('a\nb;c')"]
        );
    }

    #[test]
    fn several_statements_on_one_line_and_one_over_several_lines() {
        let (out, s) = split_lines(&["a; b; c", "  d;", "e"]);
        assert_eq!(out, vec!["a", "b", "c\n  d"]);
        assert!(s.in_statement());
    }

    #[test]
    fn finish_returns_the_trailing_statement_and_resets() {
        let mut s = StatementSplitter::new();
        assert!(s.push("select 1; select 2 -").len() == 1);
        assert_eq!(s.finish().as_deref(), Some("select 2 -"));
        assert_eq!(s.finish(), None);
        assert!(!s.in_statement());
        s.push("'unterminated; string");
        assert_eq!(s.finish().as_deref(), Some("'unterminated; string"));
        s.push("x /* unterminated comment");
        assert_eq!(s.finish().as_deref(), Some("x"));
    }

    #[test]
    fn reset_drops_the_pending_statement() {
        let mut s = StatementSplitter::new();
        s.push_line("select 'abc");
        assert!(s.in_statement());
        s.reset();
        assert!(!s.in_statement());
        assert_eq!(s.push_line("select 1;"), vec!["select 1"]);
    }

    #[test]
    fn exit_and_quit_are_recognised_in_any_case() {
        for s in ["exit", "QUIT", " Exit "] {
            assert!(is_exit_command(s), "{s}");
        }
        for s in ["exits", "select exit", ""] {
            assert!(!is_exit_command(s), "{s}");
        }
    }

    #[test]
    fn password_lines_stay_out_of_history() {
        assert!(is_history_worthy("select 1;"));
        assert!(!is_history_worthy("   "));
        assert!(!is_history_worthy("create user u identified by 'pw';"));
    }

    fn cols(c: &[(&str, &str)]) -> Vec<(String, String)> {
        c.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn a_query_is_a_table_with_right_aligned_numbers_and_null() {
        let r = QueryResult {
            columns: cols(&[("ID", "INTEGER"), ("NAME", "VARCHAR(10)"), ("X", "DOUBLE")]),
            rows: vec![
                vec![Value::Int(1), Value::Text("one".into()), Value::Double(2.5)],
                vec![Value::Int(100), Value::Null, Value::Null],
            ],
            rows_affected: 0,
            message: String::new(),
        };
        let expected = "\
+-----+------+------+
| ID  | NAME | X    |
+===================+
|   1 | one  |  2.5 |
| 100 | NULL | NULL |
+-----+------+------+
2 rows fetched.";
        assert_eq!(format_result(&r), expected);
    }

    #[test]
    fn an_empty_query_result_still_shows_the_header() {
        let r = QueryResult {
            columns: cols(&[("NODE_NAME", "VARCHAR(64)")]),
            ..QueryResult::default()
        };
        let out = format_result(&r);
        assert!(out.contains("| NODE_NAME |"), "{out}");
        assert!(out.ends_with("\n0 rows fetched."), "{out}");
    }

    #[test]
    fn a_statement_prints_the_server_message() {
        let r = QueryResult {
            rows_affected: 3,
            message: "Command completed successfully, 3 rows affected.".into(),
            ..QueryResult::default()
        };
        assert_eq!(
            format_result(&r),
            "Command completed successfully, 3 rows affected."
        );
        assert_eq!(
            format_result(&QueryResult::default()),
            "Command completed successfully."
        );
    }

    #[test]
    fn errors_are_printed_with_class_and_code() {
        let e = ClientError::Solid(SolidError::grid(code::NO_LEADER, "no grid leader"));
        assert_eq!(format_error(&e), "SOLID Grid Error 18502: no grid leader");
        let e = ClientError::Connect(
            "tcp localhost 1315".into(),
            "Connection refused (os error 111)".into(),
        );
        assert_eq!(
            format_error(&e),
            "SOLID Communication Error 21306: Server 'tcp localhost 1315' not found, \
             connection failed (Connection refused (os error 111))"
        );
        let e = ClientError::Lost("connection lost: outcome unknown".into());
        assert_eq!(
            format_error(&e),
            "SOLID Communication Error 21308: connection lost: outcome unknown"
        );
    }

    #[test]
    fn status_is_one_field_per_line() {
        let s = pb::StatusReply {
            node_name: "n2".into(),
            version: "0.1.0".into(),
            mode: "gridnode".into(),
            has_database: false,
            grid_enabled: true,
        };
        assert_eq!(
            format_status(&s),
            "Node name:    n2\nVersion:      0.1.0\nMode:         gridnode\n\
             Has database: no\nGrid enabled: yes"
        );
    }

    /// Cuts `s` at the given positions (snapped to char boundaries) into chunks.
    fn chunks(s: &str, cuts: &[usize]) -> Vec<String> {
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|c| {
                let mut p = c % (s.len() + 1);
                while !s.is_char_boundary(p) {
                    p -= 1;
                }
                p
            })
            .collect();
        points.push(0);
        points.push(s.len());
        points.sort_unstable();
        points.dedup();
        points
            .windows(2)
            .map(|w| s[w[0]..w[1]].to_string())
            .collect()
    }

    fn split_chunked(input: &str, cuts: &[usize]) -> Vec<String> {
        let mut s = StatementSplitter::new();
        let mut out = Vec::new();
        for chunk in chunks(input, cuts) {
            out.extend(s.push(&chunk));
            let _ = s.in_statement();
        }
        out.extend(s.finish());
        out
    }

    /// One token of a simple statement: a word, a number, a string or a quoted identifier
    /// whose contents include statement and comment markers.
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_][a-zA-Z0-9_]{0,7}",
            "[0-9]{1,5}",
            "[a-z;/*\\- äö]{0,6}".prop_map(|s| format!("'{}'", s)),
            "[a-z;/*\\- ]{0,4}".prop_map(|s| format!("'{s}''{s}'")),
            "[a-z;/*\\- ]{1,6}".prop_map(|s| format!("\"{}\"", s)),
            Just("(".to_string()),
            Just(",".to_string()),
            Just("4-2".to_string()),
            Just("6/3".to_string()),
        ]
    }

    fn statement() -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..6).prop_map(|t| t.join(" "))
    }

    /// What may separate statements besides `;`: whitespace, comments, empty statements.
    fn separator() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(";".to_string()),
            Just(";\n".to_string()),
            Just(" ; ".to_string()),
            Just(";;".to_string()),
            Just("; -- note; here\n".to_string()),
            Just(";/* a; b\n */".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn the_splitter_never_panics(input in "\\PC{0,200}", cuts in prop::collection::vec(any::<usize>(), 0..20)) {
            let whole = split_script(&input);
            let chunked = split_chunked(&input, &cuts);
            prop_assert_eq!(whole, chunked);
        }

        #[test]
        fn n_statements_come_back_whatever_the_chunking(
            parts in prop::collection::vec((statement(), separator()), 1..8),
            final_semicolon in any::<bool>(),
            cuts in prop::collection::vec(any::<usize>(), 0..30),
        ) {
            let mut input = String::new();
            let n = parts.len();
            for (i, (stmt, sep)) in parts.iter().enumerate() {
                input.push_str(stmt);
                if i + 1 < n || final_semicolon {
                    input.push_str(sep);
                }
            }
            let expected: Vec<String> = parts.iter().map(|(s, _)| s.clone()).collect();
            prop_assert_eq!(split_chunked(&input, &cuts), expected);
        }
    }
}
