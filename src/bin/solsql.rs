//! `solsql`: the solidgrid console.
//!
//! `solsql [-e STATEMENTS] [-f FILE] "CONNECT STRING" [user [password]]` connects to a node,
//! logs in and runs statements from `-e`, from a script file, from piped standard input, or
//! interactively with line editing and history when standard input is a terminal. With a
//! grid connect string it uses a [`GridClient`]: writes and grid statements go to the
//! leader, wherever it is now, and the interactive prompt names the leader.
//! `--status` prints a node's status probe without logging in. `--ca`, `--cert` and `--key`
//! connect over TLS.
//!
//! After an `ALTER GRID … ADD NODE` or `SET NODE … ONLINE` that succeeded, the interactive
//! console (and a script with `--wait-rebalance`) polls `ADMIN COMMAND 'grid status'` and
//! shows the partition loads as a progress bar on a terminal, or as a plain line every few
//! seconds otherwise, until the grid has nothing left to move (design §7.3).
//!
//! All splitting and formatting is in `solidgrid::console`; this file only does the I/O.
//! rustyline is synchronous, so the console keeps one current-thread tokio runtime and
//! blocks on it for each statement.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tokio::runtime::Runtime;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use solidgrid::client::{Client, ClientError, ClientTls, ConnectString, QueryResult};
use solidgrid::console::{
    REBALANCE_POLL_INTERVAL, RebalanceWatch, StatementSplitter, WatchVerdict, format_error,
    format_progress, format_result, format_status, is_exit_command, is_history_worthy,
    parse_grid_status, plain_progress_due, split_script, starts_rebalance,
};
use solidgrid::grid_client::GridClient;

/// Every statement ran (or the session ended normally).
const EXIT_OK: u8 = 0;
/// A statement failed.
const EXIT_STATEMENT_FAILED: u8 = 1;
/// solsql could not start: bad arguments or input, no credentials, no connection, no login.
const EXIT_CANNOT_START: u8 = 2;

const PROMPT: &str = "solsql> ";
const CONTINUATION_PROMPT: &str = "     > ";
const HISTORY_ENV: &str = "SOLSQL_HISTORY";
const HISTORY_FILE: &str = ".solsql_history";
/// How long solsql waits for the logout on its way out; the session expires on the server
/// anyway, so a slow or dead server must not hold up the exit.
const LOGOUT_GRACE: Duration = Duration::from_secs(2);
/// How long one `grid status` poll may take before it counts as failed (a grid connection
/// retries a leaderless grid for up to 15 s inside one call).
const POLL_TIMEOUT: Duration = Duration::from_secs(20);
const GRID_STATUS: &str = "ADMIN COMMAND 'grid status'";

const AFTER_HELP: &str = "\
Connect strings: \"tcp [host] port\" (host defaults to localhost), or a grid seed list
\"grid tcp host port, tcp host port, ...\": solsql logs in on the first node that answers,
learns the grid's members from it, and sends writes and grid statements to the leader,
following leader changes (a statement refused because there is no leader yet is retried
for up to 15 s; one whose connection broke after it was sent is not: its outcome is
unknown). Reads run on the node that ran the previous statement.

Without -e or -f, statements come from standard input: interactively, with line editing and
history (~/.solsql_history, or the file named by $SOLSQL_HISTORY), when it is a terminal;
otherwise read as a script. Statements end with ';' (in a script the last one may omit it).
Leave with 'exit;', 'quit;' or Ctrl-D. Ctrl-C clears the statement being typed, or cancels
the one running (its outcome is then unknown).

Rebalancing: after an ALTER GRID ... ADD NODE or ALTER GRID ... SET NODE ... ONLINE that
succeeded, the interactive console waits while the grid copies partitions to the node: it
polls ADMIN COMMAND 'grid status' every 0.5 s and shows a progress bar (bytes loaded, rate,
ETA, loads left), then 'rebalancing finished: N partitions loaded, X MB in Y s' once nothing
has moved for a few polls. With -e, -f or piped input it waits only with --wait-rebalance,
printing a plain progress line every 5 s when standard output is not a terminal. Ctrl-C
stops the waiting, not the rebalancing. If 'grid status' keeps failing (no leader, leader
changing) solsql says so and gives up waiting after 60 s of failures.

TLS: with --ca the connection is encrypted and the node's certificate must be signed by
that CA and name the host of the connect string (e.g. localhost or 127.0.0.1). A node with
[Security] ClientCertificateRequired = yes also needs --cert and --key (a certificate signed
by the node's TrustedCA). The environment variables SOLSQL_CA, SOLSQL_CERT and SOLSQL_KEY
stand in for the options.

Missing user name or password are prompted for on a terminal; without a terminal they must
be given as arguments.

Output: results and error messages ('SOLID <Class> Error <code>: <message>') go to standard
output, in order. Problems with solsql's own arguments or input go to standard error.

Exit status:
  0  every statement ran
  1  a statement failed (with -e, -f or piped input solsql stops at the first failure;
     in interactive mode errors are only printed), or --wait-rebalance stopped waiting
     before rebalancing finished (Ctrl-C, or 'grid status' failing for 60 s)
  2  solsql could not start or go on: bad arguments, unreadable script or input, missing
     credentials, cannot connect, login failed";

/// The solidgrid console.
#[derive(Debug, Parser)]
#[command(name = "solsql", version = solidgrid::VERSION, after_help = AFTER_HELP)]
struct Args {
    /// Run these statements, separated by ';', then exit.
    #[arg(short = 'e', value_name = "STATEMENTS", conflicts_with = "file")]
    execute: Option<String>,

    /// Run the statements in FILE, then exit.
    #[arg(short = 'f', value_name = "FILE")]
    file: Option<PathBuf>,

    /// Print the node's status (name, version, mode, has database, grid enabled) without
    /// logging in, then exit. Works on an empty `-x gridnode` node.
    #[arg(long, conflicts_with_all = ["execute", "file"])]
    status: bool,

    /// Connect over TLS, trusting the CA certificate(s) in this PEM file to have signed the
    /// node's certificate.
    #[arg(long, value_name = "FILE", env = "SOLSQL_CA")]
    ca: Option<PathBuf>,

    /// Present this client certificate (PEM) to the node, for nodes that require one
    /// ([Security] ClientCertificateRequired = yes). Needs --key and --ca.
    #[arg(long, value_name = "FILE", env = "SOLSQL_CERT", requires_all = ["key", "ca"])]
    cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", env = "SOLSQL_KEY", requires = "cert")]
    key: Option<PathBuf>,

    /// With -e, -f or piped input: after an ALTER GRID … ADD NODE or SET NODE … ONLINE
    /// that succeeded, wait until the grid has loaded the moved partitions, showing the
    /// progress (the interactive console always waits).
    #[arg(long, conflicts_with = "status")]
    wait_rebalance: bool,

    /// Where to connect, e.g. "tcp 1315", "tcp db1 1315" or "grid tcp h1 1315, tcp h2 1315".
    #[arg(value_name = "CONNECT STRING", value_parser = ConnectString::parse)]
    connect: ConnectString,

    /// User name; prompted for on a terminal when missing.
    user: Option<String>,

    /// Password; prompted for on a terminal when missing.
    password: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    ExitCode::from(run(args))
}

fn run(args: Args) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("solsql: cannot start the runtime: {e}");
            return EXIT_CANNOT_START;
        }
    };
    let interactive_stdin = std::io::stdin().is_terminal();
    if !args.status && (args.user.is_none() || args.password.is_none()) && !interactive_stdin {
        eprintln!(
            "solsql: user name and password must be given as arguments when standard input \
             is not a terminal"
        );
        return EXIT_CANNOT_START;
    }

    let tls = match &args.ca {
        Some(ca) => {
            let identity = args.cert.as_deref().zip(args.key.as_deref());
            match ClientTls::from_files(ca, identity) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    eprintln!("solsql: {e}");
                    return EXIT_CANNOT_START;
                }
            }
        }
        None => None,
    };
    if args.status {
        return match rt.block_on(async {
            let mut client = Client::connect_with_tls(&args.connect, tls.as_ref()).await?;
            client.status().await
        }) {
            Ok(status) => {
                println!("{}", format_status(&status));
                EXIT_OK
            }
            Err(e) => {
                println!("{}", format_error(&e));
                EXIT_CANNOT_START
            }
        };
    }

    let session = match &args.connect {
        ConnectString::Tcp(_) => {
            let mut client =
                match rt.block_on(Client::connect_with_tls(&args.connect, tls.as_ref())) {
                    Ok(client) => client,
                    Err(e) => {
                        println!("{}", format_error(&e));
                        return EXIT_CANNOT_START;
                    }
                };
            let Some((user, password)) = credentials(args.user, args.password) else {
                return EXIT_CANNOT_START;
            };
            if let Err(e) = rt.block_on(client.login(&user, &password)) {
                println!("{}", format_error(&e));
                return EXIT_CANNOT_START;
            }
            Session::Direct(client)
        }
        ConnectString::Grid(_) => {
            let Some((user, password)) = credentials(args.user, args.password) else {
                return EXIT_CANNOT_START;
            };
            match rt.block_on(GridClient::connect(
                &args.connect,
                tls.as_ref(),
                &user,
                &password,
            )) {
                Ok(client) => Session::Grid(client),
                Err(e) => {
                    println!("{}", format_error(&e));
                    return EXIT_CANNOT_START;
                }
            }
        }
    };

    let mut console = Console {
        rt,
        session,
        leader_shown: None,
        wait_rebalance: args.wait_rebalance,
    };
    let code = if let Some(statements) = &args.execute {
        console.run_statements(split_script(statements))
    } else if let Some(path) = &args.file {
        match std::fs::File::open(path) {
            Ok(file) => console.run_script(BufReader::new(file), &path.display().to_string()),
            Err(e) => {
                eprintln!("solsql: cannot open {}: {e}", path.display());
                EXIT_CANNOT_START
            }
        }
    } else if interactive_stdin {
        console.run_interactive()
    } else {
        console.run_script(std::io::stdin().lock(), "standard input")
    };
    console.logout();
    code
}

/// The user name and password from the arguments, prompting on the terminal for what is
/// missing. `None` (after saying why) when a prompt fails.
fn credentials(user: Option<String>, password: Option<String>) -> Option<(String, String)> {
    let user = match user {
        Some(user) => user,
        None => {
            print!("Username: ");
            let mut line = String::new();
            let read = std::io::stdout()
                .flush()
                .and_then(|()| std::io::stdin().lock().read_line(&mut line));
            match read {
                Ok(0) => {
                    eprintln!("solsql: no user name given");
                    return None;
                }
                Ok(_) => line.trim().to_string(),
                Err(e) => {
                    eprintln!("solsql: cannot read the user name: {e}");
                    return None;
                }
            }
        }
    };
    let password = match password {
        Some(password) => password,
        None => match rpassword::prompt_password("Password: ") {
            Ok(password) => password,
            Err(e) => {
                eprintln!("solsql: cannot read the password: {e}");
                return None;
            }
        },
    };
    Some((user, password))
}

/// A logged-in connection to one node (`tcp` connect string), or to a grid (`grid …`).
enum Session {
    Direct(Client),
    Grid(GridClient),
}

impl Session {
    async fn execute(&mut self, statement: &str) -> Result<QueryResult, ClientError> {
        match self {
            Session::Direct(client) => client.execute(statement).await,
            Session::Grid(client) => client.execute(statement).await,
        }
    }

    async fn logout(&mut self) {
        match self {
            Session::Direct(client) => {
                let _ = client.logout().await;
            }
            Session::Grid(client) => client.logout().await,
        }
    }

    /// Where the session is, for the banner.
    fn describe(&self) -> String {
        match self {
            Session::Direct(client) => client.endpoint().to_string(),
            Session::Grid(client) => client.describe(),
        }
    }

    /// The leader's name as last learned (grid sessions only).
    fn leader_name(&self) -> Option<String> {
        match self {
            Session::Direct(_) => None,
            Session::Grid(client) => client.leader().map(|m| m.name.clone()),
        }
    }

    /// The interactive prompt: a grid session names the grid and its leader.
    fn prompt(&self) -> String {
        match self {
            Session::Direct(_) => PROMPT.to_string(),
            Session::Grid(client) => {
                let t = client.topology();
                if !t.is_grid() {
                    return PROMPT.to_string();
                }
                let leader = t.leader().map_or("no leader", |m| m.name.as_str());
                format!("solsql [{} leader {leader}]> ", t.grid)
            }
        }
    }
}

/// A logged-in session and the runtime its calls block on.
struct Console {
    rt: Runtime,
    session: Session,
    /// The leader the interactive console last told the user about.
    leader_shown: Option<String>,
    /// `--wait-rebalance`: scripts wait for rebalancing after an ADD NODE.
    wait_rebalance: bool,
}

/// How waiting for rebalancing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitOutcome {
    Finished,
    /// `grid status` failed for too long.
    GaveUp,
    Interrupted,
}

/// Shows the progress: a bar when standard output is a terminal, else a plain line now
/// and then.
enum ProgressView {
    Bar(ProgressBar),
    Plain { last: Option<Duration> },
}

impl ProgressView {
    fn new() -> ProgressView {
        if !std::io::stdout().is_terminal() {
            return ProgressView::Plain { last: None };
        }
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stdout());
        let style = ProgressStyle::with_template("{spinner} rebalancing [{bar:30}] {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressView::Bar(bar)
    }

    fn show(&mut self, watch: &RebalanceWatch, now: Duration) {
        let p = watch.progress();
        match self {
            ProgressView::Bar(bar) => {
                bar.set_length(p.bytes_total.max(1));
                bar.set_position(p.bytes_done.min(p.bytes_total));
                bar.set_message(format_progress(&p));
            }
            ProgressView::Plain { last } => {
                if plain_progress_due(*last, now) {
                    println!("rebalancing: {}", format_progress(&p));
                    *last = Some(now);
                }
            }
        }
    }

    /// Prints a line above the bar.
    fn note(&self, line: &str) {
        match self {
            ProgressView::Bar(bar) => bar.println(line),
            ProgressView::Plain { .. } => println!("{line}"),
        }
    }

    fn clear(&self) {
        if let ProgressView::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl Console {
    /// Runs one statement of a script and prints its outcome; stops the script on failure
    /// or on `exit`/`quit`.
    fn script_step(&mut self, statement: &str) -> ControlFlow<u8> {
        if is_exit_command(statement) {
            return ControlFlow::Break(EXIT_OK);
        }
        match self.rt.block_on(self.session.execute(statement)) {
            Ok(result) => {
                println!("{}", format_result(&result));
                if self.wait_rebalance
                    && starts_rebalance(statement)
                    && self.wait_for_rebalance() != WaitOutcome::Finished
                {
                    return ControlFlow::Break(EXIT_STATEMENT_FAILED);
                }
                ControlFlow::Continue(())
            }
            Err(e) => {
                println!("{}", format_error(&e));
                ControlFlow::Break(EXIT_STATEMENT_FAILED)
            }
        }
    }

    /// Runs already split statements (`-e`).
    fn run_statements(&mut self, statements: Vec<String>) -> u8 {
        for statement in &statements {
            if let ControlFlow::Break(code) = self.script_step(statement) {
                return code;
            }
        }
        EXIT_OK
    }

    /// Runs a script (`-f` or piped input), each statement as soon as its `;` is read.
    fn run_script(&mut self, mut input: impl BufRead, source: &str) -> u8 {
        let mut splitter = StatementSplitter::new();
        let mut line = String::new();
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {
                    for statement in splitter.push(&line) {
                        if let ControlFlow::Break(code) = self.script_step(&statement) {
                            return code;
                        }
                    }
                }
                Err(e) => {
                    eprintln!("solsql: cannot read {source}: {e}");
                    return EXIT_CANNOT_START;
                }
            }
        }
        match splitter.finish() {
            Some(statement) => match self.script_step(&statement) {
                ControlFlow::Break(code) => code,
                ControlFlow::Continue(()) => EXIT_OK,
            },
            None => EXIT_OK,
        }
    }

    /// The interactive console on a terminal.
    fn run_interactive(&mut self) -> u8 {
        let mut editor = match DefaultEditor::new() {
            Ok(editor) => editor,
            Err(e) => {
                eprintln!("solsql: cannot use the terminal: {e}");
                return EXIT_CANNOT_START;
            }
        };
        let history = history_path();
        if let Some(path) = &history {
            // A missing history file is normal on first use.
            let _ = editor.load_history(path);
        }
        println!(
            "Connected to '{}'.\nStatements end with ';'. Leave with exit; or Ctrl-D.",
            self.session.describe()
        );
        self.leader_shown = self.session.leader_name();

        let mut splitter = StatementSplitter::new();
        let code = 'session: loop {
            let prompt = if splitter.in_statement() {
                CONTINUATION_PROMPT.to_string()
            } else {
                self.session.prompt()
            };
            match editor.readline(&prompt) {
                Ok(line) => {
                    if is_history_worthy(&line) {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    if !splitter.in_statement() && is_exit_command(&line) {
                        break EXIT_OK;
                    }
                    for statement in splitter.push_line(&line) {
                        if is_exit_command(&statement) {
                            break 'session EXIT_OK;
                        }
                        self.run_interactive_statement(&statement);
                    }
                }
                Err(ReadlineError::Interrupted) => splitter.reset(),
                Err(ReadlineError::Eof) => break EXIT_OK,
                Err(e) => {
                    eprintln!("solsql: cannot read the terminal: {e}");
                    break EXIT_CANNOT_START;
                }
            }
        };
        if let Some(path) = &history
            && let Err(e) = editor.save_history(path)
        {
            eprintln!("solsql: cannot save the history to {}: {e}", path.display());
        }
        code
    }

    /// Runs one statement typed at the terminal; Ctrl-C cancels it. Errors only print.
    fn run_interactive_statement(&mut self, statement: &str) {
        let Console { rt, session, .. } = self;
        let outcome = rt.block_on(async {
            let interrupted = async {
                if tokio::signal::ctrl_c().await.is_err() {
                    // Without a Ctrl-C handler the statement simply runs to its end.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                result = session.execute(statement) => Some(result),
                () = interrupted => None,
            }
        });
        match outcome {
            Some(Ok(result)) => {
                println!("{}", format_result(&result));
                if starts_rebalance(statement) {
                    self.wait_for_rebalance();
                }
            }
            Some(Err(e)) => println!("{}", format_error(&e)),
            // The terminal echoed ^C without a line break.
            None => println!("\nStatement cancelled; its outcome is unknown."),
        }
        let leader = self.session.leader_name();
        if leader != self.leader_shown {
            if let Some(name) = &leader {
                println!("The grid leader is now {name}.");
            }
            self.leader_shown = leader;
        }
    }

    /// Polls `grid status` until the grid has loaded what it moves, showing the progress;
    /// Ctrl-C stops the waiting (not the rebalancing). Polling errors (a leader change, no
    /// leader) are told and polling goes on, for at most
    /// [`solidgrid::console::REBALANCE_ERRORS_GIVE_UP_AFTER`] in a row.
    fn wait_for_rebalance(&mut self) -> WaitOutcome {
        let Console {
            rt,
            session,
            leader_shown,
            ..
        } = self;
        let outcome = rt.block_on(async {
            let interrupted = async {
                if tokio::signal::ctrl_c().await.is_err() {
                    // Without a Ctrl-C handler the wait ends only by itself.
                    std::future::pending::<()>().await;
                }
            };
            tokio::pin!(interrupted);
            let started = std::time::Instant::now();
            let mut watch = RebalanceWatch::new();
            let mut view = ProgressView::new();
            let mut leader = session.leader_name();
            loop {
                let poll = tokio::time::timeout(POLL_TIMEOUT, session.execute(GRID_STATUS));
                let answer = tokio::select! {
                    answer = poll => answer,
                    () = &mut interrupted => {
                        view.clear();
                        return WaitOutcome::Interrupted;
                    }
                };
                let now = started.elapsed();
                let step = match answer {
                    Ok(Ok(result)) => match parse_grid_status(&result) {
                        Ok(status) => watch.observe(&status),
                        Err(why) => watch.observe_error(now, &why),
                    },
                    Ok(Err(e)) => watch.observe_error(now, &format_error(&e)),
                    Err(_) => watch
                        .observe_error(now, &format!("no answer in {} s", POLL_TIMEOUT.as_secs())),
                };
                let now_leader = session.leader_name();
                if now_leader != leader {
                    if let Some(name) = &now_leader {
                        view.note(&format!("The grid leader is now {name}."));
                        // Told: the interactive console need not tell it again.
                        *leader_shown = Some(name.clone());
                    }
                    leader = now_leader;
                }
                if let Some(note) = &step.note {
                    view.note(note);
                }
                match step.verdict {
                    WatchVerdict::Waiting => view.show(&watch, now),
                    WatchVerdict::Finished => {
                        view.clear();
                        println!("{}", watch.summary_line(started.elapsed()));
                        return WaitOutcome::Finished;
                    }
                    WatchVerdict::GaveUp => {
                        view.clear();
                        return WaitOutcome::GaveUp;
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(REBALANCE_POLL_INTERVAL) => {}
                    () = &mut interrupted => {
                        view.clear();
                        return WaitOutcome::Interrupted;
                    }
                }
            }
        });
        if outcome == WaitOutcome::Interrupted {
            // The terminal echoed ^C without a line break.
            println!(
                "\nStopped waiting; rebalancing goes on in the grid \
                 (ADMIN COMMAND 'grid status' on the leader shows it)."
            );
        }
        outcome
    }

    /// Ends the session, waiting at most [`LOGOUT_GRACE`].
    fn logout(&mut self) {
        let Console { rt, session, .. } = self;
        let _ = rt.block_on(async { tokio::time::timeout(LOGOUT_GRACE, session.logout()).await });
    }
}

/// `$SOLSQL_HISTORY`, or `~/.solsql_history`; `None` when neither can be named.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(HISTORY_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(HISTORY_FILE))
}
