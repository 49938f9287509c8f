//! `quickstart`: brings up a local three-node solidgrid grid on loopback — one node with a
//! database, two empty grid nodes (`-x gridnode`) added with `ALTER GRID … ADD NODE` — shows
//! `grid nodeinfo` and opens the `solsql` console on the leader. The grid stops when the
//! console exits.
//!
//! `cargo run --release --bin quickstart [-- --dir DIR --port PORT]`

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;

const USER: &str = "dba";
const PASSWORD: &str = "dba";
/// The grid secret of the demo grid (every node's `[Grid] Secret`).
const SECRET: &str = "quickstart-grid-secret";

/// Start a local three-node grid and open the console on its leader.
#[derive(Debug, Parser)]
#[command(name = "quickstart", about)]
struct Args {
    /// Where the node keeps its files (recreated on every run).
    #[arg(long, default_value_os_t = std::env::temp_dir().join("solidgrid-quickstart"))]
    dir: PathBuf,
    /// Loopback port of the first node; the others take the next two.
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

fn write_ini(dir: &std::path::Path, name: &str, port: u16) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("solid.ini"),
        format!(
            "[Com]\nListen = tcp 127.0.0.1 {port}\n\n[Srv]\nName = {name}\n\n[Grid]\nGridEnabled = yes\nSecret = {SECRET}\n"
        ),
    )
}

fn wait_listening(node: &mut Running, port: u16, dir: &std::path::Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = node.0.try_wait() {
            return Err(format!(
                "solid exited with {status}; see {}",
                dir.join("solmsg.out").display()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the node on port {port} did not start listening within 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn run(args: &Args, solid: &PathBuf, solsql: &PathBuf) -> Result<Vec<Running>, String> {
    let mut nodes = Vec::new();
    for i in 0..3u16 {
        let name = format!("node{}", i + 1);
        let port = args.port + i;
        let dir = args.dir.join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        write_ini(&dir, &name, port).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        let mut cmd = Command::new(solid);
        cmd.arg("-c").arg(&dir);
        if i == 0 {
            cmd.args(["-U", USER, "-P", PASSWORD]);
        } else {
            cmd.args(["-x", "gridnode"]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", solid.display()))?;
        let mut node = Running(child);
        println!(
            "started {name} on 127.0.0.1:{port}{}",
            if i == 0 {
                " with a new database"
            } else {
                " as an empty grid node (-x gridnode)"
            }
        );
        wait_listening(&mut node, port, &dir)?;
        nodes.push(node);
    }
    let connect = format!("tcp 127.0.0.1 {}", args.port);
    let statements = format!(
        "CREATE GRID demo; \
         ALTER GRID demo ADD NODE node2 CONNECT 'tcp 127.0.0.1 {p2}'; \
         ALTER GRID demo ADD NODE node3 CONNECT 'tcp 127.0.0.1 {p3}'; \
         CREATE TABLE hello (id INTEGER PRIMARY KEY, greeting VARCHAR(40)); \
         INSERT INTO hello VALUES (1, 'hello, grid'), (2, 'hej, solidgrid'); \
         ADMIN COMMAND 'grid nodeinfo';",
        p2 = args.port + 1,
        p3 = args.port + 2
    );
    println!("\nsolsql -e \"{statements}\"");
    let ok = Command::new(solsql)
        .args(["-e", &statements, &connect, USER, PASSWORD])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Err("the grid statements failed".into());
    }
    Ok(nodes)
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
    let nodes = match run(&args, &solid, &solsql) {
        Ok(nodes) => nodes,
        Err(e) => {
            eprintln!("quickstart: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A grid connect string: the console follows the leader if it changes.
    let connect = format!(
        "grid tcp 127.0.0.1 {}, tcp 127.0.0.1 {}, tcp 127.0.0.1 {}",
        args.port,
        args.port + 1,
        args.port + 2
    );
    println!(
        "\nA three-node grid is up; node1 leads. Console on the grid: {} \"{connect}\" {USER} {PASSWORD}\n\
         Opening it now; type `exit;` or Ctrl-D to stop the grid.\n",
        solsql.display()
    );
    let _ = Command::new(&solsql)
        .args([&connect, USER, PASSWORD])
        .status();
    drop(nodes);
    println!("the grid stopped; its files are in {}", args.dir.display());
    ExitCode::SUCCESS
}
