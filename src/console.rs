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
//!
//! Waiting for rebalancing (design §7.3): after a statement for which [`starts_rebalance`]
//! holds (`ALTER GRID … ADD NODE`, `… SET NODE n ONLINE`) the console polls
//! `ADMIN COMMAND 'grid status'`; [`parse_grid_status`] reads its NODE and LOAD rows,
//! [`RebalanceWatch`] adds the polls up into a [`RebalanceProgress`] and decides when the
//! loads are over (no LOAD rows for a few polls in a row) or when to give up (polls
//! failing for a minute), and [`format_progress`] / [`RebalanceWatch::summary_line`] give
//! the text. `solsql` only polls, sleeps, draws the bar and listens for Ctrl-C.

use std::collections::BTreeMap;
use std::time::Duration;

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

// ---- waiting for rebalancing after ADD NODE (design §7.3) -------------------------------

/// How often the console asks the leader for `grid status` while it waits.
pub const REBALANCE_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Quiet answers (no LOAD rows, no copy loading, the members' shares unchanged) in a row that end the wait once loads were
/// seen: the GAM (every 300 ms) starts the next batch of moves within a tick or two of
/// marking the previous one ready, so 1.5 s of quiet means it has nothing left to do.
pub const QUIET_POLLS_AFTER_LOADS: u32 = 3;
/// Quiet answers in a row that end the wait when the grid has partitioned tables but no
/// load was seen yet: the GAM may take a few ticks to plan the first moves to a node that
/// has just been added, on a busy machine longer, so this is more generous (8 s).
pub const QUIET_POLLS_BEFORE_LOADS: u32 = 16;
/// How long `grid status` may keep failing (no leader, leader changing, connection lost)
/// before the console stops waiting. Rebalancing itself goes on in the grid.
pub const REBALANCE_ERRORS_GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How often a plain progress line is printed when standard output is not a terminal.
pub const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

const MIB: f64 = 1024.0 * 1024.0;

/// Whether a statement that succeeded makes the GAM move partitions, so that the console
/// waits for the loads: `ALTER GRID g ADD NODE …` and `ALTER GRID g SET NODE n ONLINE`
/// (any case; the grid and node names as single words).
pub fn starts_rebalance(statement: &str) -> bool {
    let words: Vec<String> = statement
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    matches!(
        w.as_slice(),
        ["ALTER", "GRID", _, "ADD", "NODE", ..] | ["ALTER", "GRID", _, "SET", "NODE", _, "ONLINE"]
    )
}

/// A `KIND=NODE` row of `grid status`: one grid member's share of the partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeShare {
    pub name: String,
    pub primaries: usize,
    pub ready: usize,
    pub loading: usize,
}

/// A `KIND=LOAD` row of `grid status`: one partition copy being loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLoad {
    pub table: String,
    pub partition: String,
    /// `"a -> b"`: the source and the node receiving the copy.
    pub from_to: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// The load's average rate since it started, in MB/s (MiB).
    pub rate_mb_s: f64,
    /// The leader's estimate of the seconds left, when it has one.
    pub eta_s: Option<f64>,
    /// Why the load failed last, or empty.
    pub error: String,
}

impl PartitionLoad {
    /// Identifies the load across polls.
    fn key(&self) -> (String, String, String) {
        (
            self.table.clone(),
            self.partition.clone(),
            self.from_to.clone(),
        )
    }
}

/// One answer of `ADMIN COMMAND 'grid status'`, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GridStatus {
    pub nodes: Vec<NodeShare>,
    pub loads: Vec<PartitionLoad>,
}

impl GridStatus {
    /// Nothing is moving: no LOAD rows and no member has a copy loading.
    pub fn is_quiet(&self) -> bool {
        self.loads.is_empty() && self.nodes.iter().all(|n| n.loading == 0)
    }
}

/// The numbers in a text, in order (`"5 primaries, 10 ready copies, 2 loading"` → 5, 10, 2).
fn numbers(text: &str) -> Vec<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Parses the rows of `ADMIN COMMAND 'grid status'` (columns found by name). Rows of other
/// kinds are skipped; a NODE or LOAD row that cannot be read is an error naming it.
pub fn parse_grid_status(r: &crate::client::QueryResult) -> Result<GridStatus, String> {
    let col = |name: &str| {
        r.columns
            .iter()
            .position(|(c, _)| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("grid status has no {name} column"))
    };
    let (kind, name, partition, from_to, progress, rate, eta, error) = (
        col("KIND")?,
        col("NAME")?,
        col("PARTITION")?,
        col("FROM_TO")?,
        col("PROGRESS")?,
        col("RATE")?,
        col("ETA")?,
        col("ERROR")?,
    );
    let mut status = GridStatus::default();
    for row in &r.rows {
        let text = |i: usize| match row.get(i) {
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        };
        match text(kind).as_str() {
            "NODE" => {
                let p = text(progress);
                let [primaries, ready, loading] = numbers(&p)[..] else {
                    return Err(format!("cannot read the NODE progress '{p}'"));
                };
                status.nodes.push(NodeShare {
                    name: text(name),
                    primaries: primaries as usize,
                    ready: ready as usize,
                    loading: loading as usize,
                });
            }
            "LOAD" => {
                let p = text(progress);
                let [bytes_done, bytes_total] = numbers(&p)[..] else {
                    return Err(format!("cannot read the LOAD progress '{p}'"));
                };
                let rate_text = text(rate);
                let rate_mb_s = rate_text
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|r| r.is_finite() && *r >= 0.0)
                    .ok_or_else(|| format!("cannot read the LOAD rate '{rate_text}'"))?;
                let eta_s = text(eta)
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<f64>().ok())
                    .filter(|e| e.is_finite() && *e >= 0.0);
                status.loads.push(PartitionLoad {
                    table: text(name),
                    partition: text(partition),
                    from_to: text(from_to),
                    bytes_done,
                    bytes_total: bytes_total.max(bytes_done),
                    rate_mb_s,
                    eta_s,
                    error: text(error),
                });
            }
            _ => {}
        }
    }
    Ok(status)
}

/// What the console does after a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchVerdict {
    /// Loads are running, or may start soon: poll again.
    Waiting,
    /// Nothing moved for long enough: print the summary.
    Finished,
    /// `grid status` failed for [`REBALANCE_ERRORS_GIVE_UP_AFTER`] in a row: stop waiting.
    GaveUp,
}

/// The outcome of one poll: the verdict and, now and then, a line to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchStep {
    pub verdict: WatchVerdict,
    pub note: Option<String>,
}

/// The progress shown while waiting, over every load seen since the wait began.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceProgress {
    /// Bytes of the loads that finished plus the bytes done by the running ones.
    pub bytes_done: u64,
    /// Bytes of the loads that finished plus the totals of the running ones.
    pub bytes_total: u64,
    /// The running loads' rates added up, in MB/s.
    pub rate_mb_s: f64,
    /// Seconds until the running loads are done at that rate.
    pub eta_s: Option<f64>,
    /// Running loads (LOAD rows in the last answer).
    pub loads_left: usize,
    /// Running loads whose last attempt failed, with the first such error.
    pub failing: usize,
    pub first_error: Option<String>,
    /// Whether any load was seen yet.
    pub started: bool,
}

/// Follows the answers of `grid status` while the console waits for rebalancing and decides
/// when it is finished (pure: the caller polls, and passes the time since the wait began).
///
/// A load that was in one answer and is gone from the next counted as finished with its
/// last known total. Loads that start and finish between two polls are not seen; the count
/// of partitions loaded also looks at the NODE rows (ready copies gained per member) and
/// takes whichever is larger.
#[derive(Debug, Clone, Default)]
pub struct RebalanceWatch {
    running: BTreeMap<(String, String, String), PartitionLoad>,
    finished_loads: usize,
    finished_bytes: u64,
    ready_at_start: Option<BTreeMap<String, usize>>,
    ready_gained: usize,
    /// The grid has partitioned tables (some member has primaries or copies).
    partitioned: bool,
    /// A load, a loading copy or a gained ready copy was seen: the GAM has acted.
    seen_moves: bool,
    /// Answers in a row with nothing loading and the same NODE rows as the one before.
    quiet_polls: u32,
    last_nodes: Option<Vec<NodeShare>>,
    /// When the current streak of failed polls began, and its last error.
    failing_since: Option<Duration>,
    last_error: Option<String>,
}

impl RebalanceWatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a successful answer.
    pub fn observe(&mut self, status: &GridStatus) -> WatchStep {
        let note = self.failing_since.take().map(|_| {
            self.last_error = None;
            "grid status answers again; still waiting".to_string()
        });
        let ready: BTreeMap<String, usize> = status
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.ready))
            .collect();
        let start = self.ready_at_start.get_or_insert_with(|| ready.clone());
        self.ready_gained = ready
            .iter()
            .map(|(name, now)| now.saturating_sub(start.get(name).copied().unwrap_or(0)))
            .sum();
        self.partitioned |= status
            .nodes
            .iter()
            .any(|n| n.primaries + n.ready + n.loading > 0);

        let now: BTreeMap<_, _> = status.loads.iter().map(|l| (l.key(), l.clone())).collect();
        for (key, gone) in &self.running {
            if !now.contains_key(key) {
                self.finished_loads += 1;
                self.finished_bytes += gone.bytes_total.max(gone.bytes_done);
            }
        }
        self.running = now;
        self.seen_moves |= !status.is_quiet() || self.ready_gained > 0;

        // Primaries moving or copies turning ready or dropped are the GAM at work too.
        let shares_changed = self
            .last_nodes
            .as_ref()
            .is_some_and(|last| *last != status.nodes);
        self.last_nodes = Some(status.nodes.clone());
        if status.is_quiet() && !shares_changed {
            self.quiet_polls += 1;
        } else {
            self.quiet_polls = 0;
        }
        let needed = if self.seen_moves || !self.partitioned {
            QUIET_POLLS_AFTER_LOADS
        } else {
            QUIET_POLLS_BEFORE_LOADS
        };
        let verdict = if self.quiet_polls >= needed {
            WatchVerdict::Finished
        } else {
            WatchVerdict::Waiting
        };
        WatchStep { verdict, note }
    }

    /// Takes a failed poll `now` after the wait began. The first failure of a streak, and
    /// a failure with another message, give a note; the streak lasting
    /// [`REBALANCE_ERRORS_GIVE_UP_AFTER`] gives up.
    pub fn observe_error(&mut self, now: Duration, error: &str) -> WatchStep {
        // After a leader change the next answers start the quiet count again.
        self.quiet_polls = 0;
        let since = *self.failing_since.get_or_insert(now);
        let failed_for = now.saturating_sub(since);
        if failed_for >= REBALANCE_ERRORS_GIVE_UP_AFTER {
            return WatchStep {
                verdict: WatchVerdict::GaveUp,
                note: Some(format!(
                    "stopped waiting: grid status failed for {:.0} s ({error}); \
                     rebalancing goes on in the grid, see ADMIN COMMAND 'grid status' on \
                     the leader",
                    failed_for.as_secs_f64()
                )),
            };
        }
        let note = (self.last_error.as_deref() != Some(error)).then(|| {
            format!(
                "grid status failed: {error}; still waiting (at most {} s more while it fails)",
                (REBALANCE_ERRORS_GIVE_UP_AFTER - failed_for).as_secs()
            )
        });
        self.last_error = Some(error.to_string());
        WatchStep {
            verdict: WatchVerdict::Waiting,
            note,
        }
    }

    /// Partition copies loaded since the wait began (see the type's docs).
    pub fn partitions_loaded(&self) -> usize {
        self.finished_loads.max(self.ready_gained)
    }

    pub fn progress(&self) -> RebalanceProgress {
        let running = self.running.values();
        let done: u64 = running.clone().map(|l| l.bytes_done).sum();
        let total: u64 = running.clone().map(|l| l.bytes_total).sum();
        let rate_mb_s: f64 = running.clone().map(|l| l.rate_mb_s).sum();
        let left = total.saturating_sub(done);
        let eta_s = if self.running.is_empty() {
            None
        } else if left == 0 {
            Some(0.0)
        } else if rate_mb_s > 0.0 {
            Some(left as f64 / (rate_mb_s * MIB))
        } else {
            None
        };
        let failing: Vec<&PartitionLoad> = self
            .running
            .values()
            .filter(|l| !l.error.is_empty())
            .collect();
        RebalanceProgress {
            bytes_done: self.finished_bytes + done,
            bytes_total: self.finished_bytes + total,
            rate_mb_s,
            eta_s,
            loads_left: self.running.len(),
            failing: failing.len(),
            first_error: failing.first().map(|l| {
                format!(
                    "{} partition {} ({}): {}",
                    l.table, l.partition, l.from_to, l.error
                )
            }),
            started: self.seen_moves,
        }
    }

    /// `rebalancing finished: N partitions loaded, X MB in Y s`.
    pub fn summary_line(&self, elapsed: Duration) -> String {
        let n = self.partitions_loaded();
        let bytes = self.progress().bytes_done;
        format!(
            "rebalancing finished: {n} partition{} loaded, {} MB in {:.1} s",
            if n == 1 { "" } else { "s" },
            format_mb(bytes),
            elapsed.as_secs_f64()
        )
    }
}

/// Bytes as MB (MiB) with one decimal.
pub fn format_mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB)
}

/// The progress text beside the bar, and after `rebalancing: ` on a plain line:
/// `45% 1.2/2.7 MB, 2.10 MB/s, ETA 0.7 s, 3 loads left`.
pub fn format_progress(p: &RebalanceProgress) -> String {
    if !p.started {
        return "waiting for the grid to start loading partitions".to_string();
    }
    let percent = (p.bytes_done.min(p.bytes_total) * 100)
        .checked_div(p.bytes_total)
        .unwrap_or(if p.loads_left == 0 { 100 } else { 0 });
    let eta = p
        .eta_s
        .map_or_else(|| "-".to_string(), |s| format!("{s:.1} s"));
    let mut line = format!(
        "{percent}% {}/{} MB, {:.2} MB/s, ETA {eta}, {} load{} left",
        format_mb(p.bytes_done),
        format_mb(p.bytes_total),
        p.rate_mb_s,
        p.loads_left,
        if p.loads_left == 1 { "" } else { "s" }
    );
    if let Some(error) = &p.first_error {
        line.push_str(&format!(", {} failing ({error})", p.failing));
    }
    line
}

/// Whether a plain progress line is due `now`, the last one printed at `last`.
pub fn plain_progress_due(last: Option<Duration>, now: Duration) -> bool {
    last.is_none_or(|last| now.saturating_sub(last) >= PLAIN_PROGRESS_EVERY)
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

    // ---- waiting for rebalancing ----

    #[test]
    fn add_node_and_set_online_start_a_rebalance() {
        for s in [
            "ALTER GRID g ADD NODE n4 CONNECT 'tcp 127.0.0.1 1318'",
            "alter grid demo\n  add node x connect 'tcp 1'",
            "ALTER GRID g SET NODE n2 ONLINE",
            "Alter Grid g Set Node n2 online",
        ] {
            assert!(starts_rebalance(s), "{s}");
        }
        for s in [
            "ALTER GRID g SET NODE n2 OFFLINE",
            "ALTER GRID g DROP NODE n2",
            "ALTER TABLE t ADD NODE",
            "SELECT 'ALTER GRID g ADD NODE'",
            "CREATE GRID g",
            "",
        ] {
            assert!(!starts_rebalance(s), "{s}");
        }
    }

    fn status_result(rows: &[[&str; 8]]) -> QueryResult {
        QueryResult {
            columns: cols(&[
                ("KIND", "VARCHAR"),
                ("NAME", "VARCHAR"),
                ("PARTITION", "VARCHAR"),
                ("FROM_TO", "VARCHAR"),
                ("PROGRESS", "VARCHAR"),
                ("RATE", "VARCHAR"),
                ("ETA", "VARCHAR"),
                ("ERROR", "VARCHAR"),
            ]),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| Value::Text(v.to_string())).collect())
                .collect(),
            ..QueryResult::default()
        }
    }

    fn node(name: &str, p: usize, r: usize, l: usize) -> [String; 8] {
        [
            "NODE".into(),
            name.into(),
            String::new(),
            String::new(),
            format!("{p} primaries, {r} ready copies, {l} loading"),
            String::new(),
            String::new(),
            String::new(),
        ]
    }

    fn load(part: u32, to: &str, done: u64, total: u64, rate: f64, error: &str) -> [String; 8] {
        [
            "LOAD".into(),
            "T".into(),
            part.to_string(),
            format!("n1 -> {to}"),
            format!("{done}/{total} bytes"),
            format!("{rate:.2} MB/s"),
            "1.5 s".into(),
            error.into(),
        ]
    }

    fn status(rows: &[[String; 8]]) -> GridStatus {
        let rows: Vec<[&str; 8]> = rows
            .iter()
            .map(|r| std::array::from_fn(|i| r[i].as_str()))
            .collect();
        parse_grid_status(&status_result(&rows)).expect("parses")
    }

    #[test]
    fn grid_status_rows_are_parsed() {
        let s = status(&[
            node("n1", 6, 11, 0),
            node("n4", 0, 0, 2),
            load(3, "n4", 1024, 4096, 1.25, ""),
        ]);
        assert_eq!(
            s.nodes[1],
            NodeShare {
                name: "n4".into(),
                primaries: 0,
                ready: 0,
                loading: 2
            }
        );
        assert_eq!(
            s.loads,
            vec![PartitionLoad {
                table: "T".into(),
                partition: "3".into(),
                from_to: "n1 -> n4".into(),
                bytes_done: 1024,
                bytes_total: 4096,
                rate_mb_s: 1.25,
                eta_s: Some(1.5),
                error: String::new(),
            }]
        );
        assert!(!s.is_quiet());
        // ETA "-" is no estimate; a node with nothing loading and no LOAD rows is quiet.
        let mut r = status_result(&[[
            "LOAD",
            "T",
            "0",
            "a -> b",
            "0/0 bytes",
            "0.00 MB/s",
            "-",
            "",
        ]]);
        assert_eq!(parse_grid_status(&r).unwrap().loads[0].eta_s, None);
        r.rows.clear();
        assert!(parse_grid_status(&r).unwrap().is_quiet());
        // Columns are found by name, not position; a missing one or an unreadable row is
        // an error.
        let mut swapped = status_result(&[[
            "NODE",
            "n1",
            "",
            "",
            "1 primaries, 2 ready copies, 0 loading",
            "",
            "",
            "",
        ]]);
        swapped.columns.swap(0, 1);
        for row in &mut swapped.rows {
            row.swap(0, 1);
        }
        assert_eq!(parse_grid_status(&swapped).unwrap().nodes[0].primaries, 1);
        let mut missing = status_result(&[]);
        missing.columns.pop();
        assert!(parse_grid_status(&missing).unwrap_err().contains("ERROR"));
        let bad = status_result(&[["LOAD", "T", "0", "a -> b", "lots", "0.00 MB/s", "-", ""]]);
        assert!(parse_grid_status(&bad).unwrap_err().contains("lots"));
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_wait_follows_loads_and_ends_after_quiet_polls() {
        let mut w = RebalanceWatch::new();
        assert!(!w.progress().started);
        assert_eq!(
            format_progress(&w.progress()),
            "waiting for the grid to start loading partitions"
        );
        // The GAM has not planned yet: partitioned data, nothing moving — keep waiting.
        let before = [
            node("n1", 8, 8, 0),
            node("n2", 8, 8, 0),
            node("n4", 0, 0, 0),
        ];
        for _ in 0..QUIET_POLLS_BEFORE_LOADS - 1 {
            assert_eq!(w.observe(&status(&before)).verdict, WatchVerdict::Waiting);
        }
        // Two loads start.
        let mib = 1024 * 1024;
        let step = w.observe(&status(&[
            node("n1", 8, 8, 0),
            node("n4", 0, 0, 2),
            load(1, "n4", mib, 2 * mib, 1.0, ""),
            load(2, "n4", 0, 2 * mib, 1.0, ""),
        ]));
        assert_eq!(step.verdict, WatchVerdict::Waiting);
        let p = w.progress();
        assert_eq!(
            (p.bytes_done, p.bytes_total, p.loads_left),
            (mib, 4 * mib, 2)
        );
        assert_eq!(p.eta_s, Some(1.5));
        assert_eq!(
            format_progress(&p),
            "25% 1.0/4.0 MB, 2.00 MB/s, ETA 1.5 s, 2 loads left"
        );
        // One finishes, the other fails once and goes on; a next batch starts.
        w.observe(&status(&[
            node("n4", 1, 1, 2),
            load(2, "n4", mib, 2 * mib, 0.5, "connection reset"),
            load(3, "n4", 0, mib, 0.0, ""),
        ]));
        let p = w.progress();
        assert_eq!(
            (p.bytes_done, p.bytes_total, p.loads_left),
            (3 * mib, 5 * mib, 2)
        );
        assert_eq!(
            format_progress(&p),
            "60% 3.0/5.0 MB, 0.50 MB/s, ETA 4.0 s, 2 loads left, 1 failing \
             (T partition 2 (n1 -> n4): connection reset)"
        );
        // Everything is ready: the wait ends after QUIET_POLLS_AFTER_LOADS quiet answers;
        // an answer with a copy loading, or whose shares changed, starts the count again.
        let done = [node("n1", 6, 7, 0), node("n4", 2, 3, 0)];
        w.observe(&status(&done));
        w.observe(&status(&done));
        assert_eq!(
            w.observe(&status(&[node("n1", 6, 7, 0), node("n4", 2, 3, 1)]))
                .verdict,
            WatchVerdict::Waiting
        );
        assert_eq!(w.observe(&status(&done)).verdict, WatchVerdict::Waiting);
        for _ in 0..QUIET_POLLS_AFTER_LOADS - 1 {
            assert_eq!(w.observe(&status(&done)).verdict, WatchVerdict::Waiting);
        }
        assert_eq!(w.observe(&status(&done)).verdict, WatchVerdict::Finished);
        assert_eq!(w.partitions_loaded(), 3);
        assert_eq!(
            w.summary_line(Duration::from_millis(4250)),
            "rebalancing finished: 3 partitions loaded, 5.0 MB in 4.2 s"
        );
    }

    #[test]
    fn loads_too_quick_to_see_are_counted_from_the_ready_copies() {
        let mut w = RebalanceWatch::new();
        w.observe(&status(&[node("n1", 8, 8, 0), node("n4", 0, 0, 0)]));
        // Between two polls two copies were loaded to n4 (and one dropped from n1).
        let step = w.observe(&status(&[node("n1", 6, 7, 0), node("n4", 2, 2, 0)]));
        assert_eq!(step.verdict, WatchVerdict::Waiting);
        assert!(w.progress().started);
        // The shares changed: that answer was not quiet; three unchanged ones are.
        let after = [node("n1", 6, 7, 0), node("n4", 2, 2, 0)];
        for _ in 0..QUIET_POLLS_AFTER_LOADS - 1 {
            assert_eq!(w.observe(&status(&after)).verdict, WatchVerdict::Waiting);
        }
        assert_eq!(w.observe(&status(&after)).verdict, WatchVerdict::Finished);
        assert_eq!(w.partitions_loaded(), 2);
        assert_eq!(
            w.summary_line(Duration::from_secs(2)),
            "rebalancing finished: 2 partitions loaded, 0.0 MB in 2.0 s"
        );
    }

    #[test]
    fn a_grid_without_partitioned_tables_finishes_at_once() {
        let mut w = RebalanceWatch::new();
        let empty = [node("n1", 0, 0, 0), node("n2", 0, 0, 0)];
        let verdicts: Vec<_> = (0..QUIET_POLLS_AFTER_LOADS)
            .map(|_| w.observe(&status(&empty)).verdict)
            .collect();
        assert_eq!(verdicts.last(), Some(&WatchVerdict::Finished));
        assert_eq!(
            w.summary_line(Duration::from_millis(1500)),
            "rebalancing finished: 0 partitions loaded, 0.0 MB in 1.5 s"
        );
    }

    #[test]
    fn polling_errors_are_told_once_and_give_up_after_the_bound() {
        let mut w = RebalanceWatch::new();
        w.observe(&status(&[node("n1", 0, 0, 0)]));
        w.observe(&status(&[node("n1", 0, 0, 0)]));
        let no_leader = "SOLID Grid Error 18502: no grid leader";
        let step = w.observe_error(10 * S, no_leader);
        assert_eq!(step.verdict, WatchVerdict::Waiting);
        assert!(step.note.as_deref().unwrap().contains("18502"), "{step:?}");
        assert!(step.note.as_deref().unwrap().contains("60 s"), "{step:?}");
        // The same error again says nothing; another one is told.
        assert_eq!(w.observe_error(11 * S, no_leader).note, None);
        let lost = w.observe_error(12 * S, "SOLID Communication Error 21308: lost");
        assert!(lost.note.unwrap().contains("21308"));
        // Answers again: told, and the quiet count starts over (an error broke it).
        let back = w.observe(&status(&[node("n1", 0, 0, 0)]));
        assert_eq!(back.verdict, WatchVerdict::Waiting);
        assert!(back.note.unwrap().contains("answers again"));
        assert_eq!(w.observe(&status(&[node("n1", 0, 0, 0)])).note, None);
        // A new streak is measured from its own start.
        assert_eq!(
            w.observe_error(100 * S, no_leader).verdict,
            WatchVerdict::Waiting
        );
        let limit = REBALANCE_ERRORS_GIVE_UP_AFTER.as_secs() as u32;
        assert_eq!(
            w.observe_error((100 + limit - 1) * S, no_leader).verdict,
            WatchVerdict::Waiting
        );
        let gave_up = w.observe_error((100 + limit) * S, no_leader);
        assert_eq!(gave_up.verdict, WatchVerdict::GaveUp);
        assert!(gave_up.note.unwrap().starts_with("stopped waiting"));
    }

    #[test]
    fn plain_lines_come_every_few_seconds() {
        assert!(plain_progress_due(None, Duration::ZERO));
        assert!(!plain_progress_due(
            Some(S),
            S + PLAIN_PROGRESS_EVERY - Duration::from_millis(1)
        ));
        assert!(plain_progress_due(Some(S), S + PLAIN_PROGRESS_EVERY));
    }
}
