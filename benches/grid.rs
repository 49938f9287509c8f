//! Grid benchmarks on loopback with real `solid` processes:
//! - ADD NODE latency on a 3-node grid (each added node is dropped again, so every add
//!   joins a 3-node grid), p50/p99 over `ADDS` adds;
//! - leader failover: time from `kill -9` of the leader until a follower reports a new
//!   leader, over `FAILOVERS` rounds;
//! - the floor this machine allows: a loopback gRPC round trip and an fsync.
//!
//! `cargo bench --bench grid` (a plain binary: it prints its figures).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use solidgrid::client::{Client, ConnectString};

const ADDS: usize = 60;
const FAILOVERS: usize = 10;
const FAILURE_ROUNDS: usize = 5;
const SECRET: &str = "bench-grid-secret";

struct Proc {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node(root: &Path, args: &[&str]) -> Proc {
    let port = free_port();
    let dir = root.join(format!("n{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("solid.ini"),
        format!(
            "[Com]\nListen = tcp 127.0.0.1 {port}\n[Srv]\nName = n{port}\n[Grid]\nGridEnabled = yes\nSecret = {SECRET}\n"
        ),
    )
    .unwrap();
    let mut p = Proc {
        child: None,
        dir,
        port,
    };
    start(&mut p, args);
    p
}

fn start(p: &mut Proc, args: &[&str]) {
    let child = Command::new(env!("CARGO_BIN_EXE_solid"))
        .arg("-c")
        .arg(&p.dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start solid");
    p.child = Some(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", p.port)).is_err() {
        assert!(Instant::now() < deadline, "solid did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

async fn client(port: u16) -> Client {
    let cs = ConnectString::parse(&format!("tcp 127.0.0.1 {port}")).unwrap();
    let mut c = Client::connect(&cs).await.unwrap();
    c.login("dba", "dba").await.unwrap();
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms min={:.1} ms max={:.1} ms",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v[0].as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    );
}

async fn leader_of(ports: &[u16]) -> Option<u16> {
    for &p in ports {
        let Ok(cs) = ConnectString::parse(&format!("tcp 127.0.0.1 {p}")) else {
            continue;
        };
        let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_millis(300), Client::connect(&cs)).await
        else {
            continue;
        };
        if c.login("dba", "dba").await.is_err() {
            continue;
        }
        if let Ok(r) = c
            .execute("SELECT ADDRESS FROM SYS_GRID_NODES WHERE ROLE = 'LEADER'")
            .await
            && let Some(row) = r.rows.first()
        {
            let addr = row[0].to_string();
            if let Some(port) = addr.rsplit(':').next().and_then(|s| s.parse().ok())
                && ports.contains(&port)
                && port == p
            {
                return Some(port);
            }
        }
    }
    None
}

async fn wait_state(leader: &mut Client, query: &str, state: &str) {
    loop {
        if let Ok(r) = leader.execute(query).await
            && r.rows
                .first()
                .is_some_and(|row| row[0].to_string() == state)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("grid: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();

    // The floor: one fsync of a small file, and one loopback round trip (status probe).
    let f = root.path().join("fsync");
    let mut fsyncs = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::fs::write(&f, b"x").unwrap();
        std::fs::File::open(&f).unwrap().sync_all().unwrap();
        fsyncs.push(t.elapsed());
    }
    report("floor: write+fsync", fsyncs);

    let founder = node(root.path(), &["-U", "dba", "-P", "dba"]);
    let mut rtts = Vec::new();
    rt.block_on(async {
        let cs = ConnectString::parse(&format!("tcp 127.0.0.1 {}", founder.port)).unwrap();
        let mut c = Client::connect(&cs).await.unwrap();
        for _ in 0..200 {
            let t = Instant::now();
            c.status().await.unwrap();
            rtts.push(t.elapsed());
        }
    });
    report("floor: loopback gRPC round trip", rtts);

    let mut adds = Vec::new();
    rt.block_on(async {
        let mut leader = client(founder.port).await;
        leader.execute("CREATE GRID g").await.unwrap();
        let mut members = Vec::new();
        for _ in 0..2 {
            let n = node(root.path(), &["-x", "gridnode"]);
            leader
                .execute(&format!(
                    "ALTER GRID g ADD NODE n{0} CONNECT 'tcp 127.0.0.1 {0}'",
                    n.port
                ))
                .await
                .unwrap();
            members.push(n);
        }
        for _ in 0..ADDS {
            let n = node(root.path(), &["-x", "gridnode"]);
            let t = Instant::now();
            leader
                .execute(&format!(
                    "ALTER GRID g ADD NODE n{0} CONNECT 'tcp 127.0.0.1 {0}'",
                    n.port
                ))
                .await
                .unwrap();
            adds.push(t.elapsed());
            leader
                .execute(&format!("ALTER GRID g DROP NODE n{}", n.port))
                .await
                .unwrap();
            drop(n);
        }
        report(
            "ADD NODE on a 3-node grid (empty tables)",
            std::mem::take(&mut adds),
        );

        // Failover: kill -9 the leader, time until a follower reports itself leader, then
        // bring the old leader back as a follower.
        let mut all = vec![founder];
        all.extend(members);
        let mut failovers = Vec::new();
        for _ in 0..FAILOVERS {
            let ports: Vec<u16> = all.iter().map(|p| p.port).collect();
            let leader_port = loop {
                if let Some(p) = leader_of(&ports).await {
                    break p;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let victim = all.iter_mut().find(|p| p.port == leader_port).unwrap();
            let mut child = victim.child.take().unwrap();
            child.kill().unwrap();
            let t = Instant::now();
            child.wait().unwrap();
            let others: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|&p| p != leader_port)
                .collect();
            loop {
                if leader_of(&others).await.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failovers.push(t.elapsed());
            let victim = all.iter_mut().find(|p| p.port == leader_port).unwrap();
            start(victim, &[]);
        }
        report(
            "leader failover after kill -9 (RaftElectionTimeout 300 ms)",
            failovers,
        );

        // Failure detection: kill -9 a follower, time until the leader has committed
        // MEMBER_FAILED; restart it, time until MEMBER_ONLINE (no statement typed).
        let mut to_failed = Vec::new();
        let mut to_online = Vec::new();
        for _ in 0..FAILURE_ROUNDS {
            let ports: Vec<u16> = all.iter().map(|p| p.port).collect();
            let leader_port = loop {
                if let Some(p) = leader_of(&ports).await {
                    break p;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let victim_port = *ports.iter().find(|&&p| p != leader_port).unwrap();
            let mut leader = client(leader_port).await;
            let state_query =
                format!("SELECT STATE FROM SYS_GRID_NODES WHERE NAME = 'n{victim_port}'");
            let victim = all.iter_mut().find(|p| p.port == victim_port).unwrap();
            let mut child = victim.child.take().unwrap();
            child.kill().unwrap();
            let t = Instant::now();
            child.wait().unwrap();
            wait_state(&mut leader, &state_query, "MEMBER_FAILED").await;
            to_failed.push(t.elapsed());
            let victim = all.iter_mut().find(|p| p.port == victim_port).unwrap();
            let t = Instant::now();
            start(victim, &[]);
            wait_state(&mut leader, &state_query, "MEMBER_ONLINE").await;
            to_online.push(t.elapsed());
        }
        report(
            "kill -9 of a follower -> MEMBER_FAILED committed (NodeFailureTimeout 3000 ms)",
            to_failed,
        );
        report(
            "restart of the failed follower -> MEMBER_ONLINE committed",
            to_online,
        );
    });
}
