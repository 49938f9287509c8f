//! `quickstart`: brings up a local solidgrid node on loopback, runs a first statement and
//! opens the `solsql` console on it. The node stops when the console exits.
//!
//! `cargo run --release --bin quickstart [-- --dir DIR --port PORT]`

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;

const USER: &str = "dba";
const PASSWORD: &str = "dba";

/// Start a local solidgrid node and open the console on it.
#[derive(Debug, Parser)]
#[command(name = "quickstart", about)]
struct Args {
    /// Where the node keeps its files (recreated on every run).
    #[arg(long, default_value_os_t = std::env::temp_dir().join("solidgrid-quickstart"))]
    dir: PathBuf,
    /// Loopback port the node listens on.
    #[arg(long, default_value_t = 1315)]
    port: u16,
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of this program");
    exe.with_file_name(name)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SIGTERM for a clean stop (final checkpoint), then reap.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let solid = sibling("solid");
    let solsql = sibling("solsql");
    for bin in [&solid, &solsql] {
        if !bin.exists() {
            eprintln!(
                "quickstart: {} is missing: build everything with `cargo build --release` first",
                bin.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let node_dir = args.dir.join("node1");
    let _ = std::fs::remove_dir_all(&node_dir);
    if let Err(e) = std::fs::create_dir_all(&node_dir) {
        eprintln!("quickstart: cannot create {}: {e}", node_dir.display());
        return ExitCode::FAILURE;
    }
    let ini = format!(
        "[Com]\nListen = tcp 127.0.0.1 {port}\n\n[Srv]\nName = node1\n",
        port = args.port
    );
    if let Err(e) = std::fs::write(node_dir.join("solid.ini"), ini) {
        eprintln!("quickstart: cannot write solid.ini: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "Starting node1 in {} on 127.0.0.1:{}",
        node_dir.display(),
        args.port
    );
    let child = match Command::new(&solid)
        .arg("-c")
        .arg(&node_dir)
        .args(["-U", USER, "-P", PASSWORD])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quickstart: cannot start {}: {e}", solid.display());
            return ExitCode::FAILURE;
        }
    };
    let mut node = Running(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", args.port)).is_err() {
        if let Ok(Some(status)) = node.0.try_wait() {
            eprintln!(
                "quickstart: solid exited with {status}; see {}",
                node_dir.join("solmsg.out").display()
            );
            return ExitCode::FAILURE;
        }
        if Instant::now() > deadline {
            eprintln!("quickstart: the node did not start listening within 30 s");
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let connect = format!("tcp 127.0.0.1 {}", args.port);
    let demo = "CREATE TABLE hello (id INTEGER PRIMARY KEY, greeting VARCHAR(40)); \
                INSERT INTO hello VALUES (1, 'hello, grid'), (2, 'hej, solidgrid'); \
                SELECT * FROM hello ORDER BY id;";
    println!("\nsolsql -e \"{demo}\"");
    let ok = Command::new(&solsql)
        .args(["-e", demo, &connect, USER, PASSWORD])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("quickstart: the first statements failed");
        return ExitCode::FAILURE;
    }
    println!(
        "\nThe node is up. Console: {} \"{connect}\" {USER} {PASSWORD}\n\
         Opening it now; type `exit;` or Ctrl-D to stop the node.\n",
        solsql.display()
    );
    let _ = Command::new(&solsql)
        .args([&connect, USER, PASSWORD])
        .status();
    drop(node);
    println!("node1 stopped; its files are in {}", node_dir.display());
    ExitCode::SUCCESS
}
