//! Partitioned-table benchmarks (issue 6) on loopback with real `solid` processes:
//!
//! 1. **Data load rate to a new node.** Three nodes, `CREATE TABLE … PARTITION BY (id)
//!    REPLICATION FACTOR 2` (16 partitions, 32 copies). Bulk-load it through grid
//!    connections (multi-row INSERTs whose rows all fall in one partition, so each statement
//!    is planned by one primary), then `ALTER GRID g ADD NODE` a fourth node and time from the
//!    ADD NODE commit until `grid status` shows no LOAD row and the placement is settled
//!    (copies and primaries spread by at most one). With factor 2 a settled 4-node grid holds
//!    8 of the 32 copies on each node, so the new node receives half of the table's data: the
//!    table is sized at 2.1 × `SOLIDGRID_BENCH_GIB` so the bytes streamed to the new node are
//!    at least that much.
//! 2. **Writes before, during and after an ADD NODE.** A fresh 3-node grid, the same table
//!    pre-filled, steady single-row keyed INSERTs through `GridClient`s (closed loop); the
//!    fourth node is added while they run. Statements are put in a phase by their start time:
//!    before the add, during the ADD NODE statement, while loads run (ADD commit → settled),
//!    after the GAM is idle. Throughput and p50/p99/max latency per phase.
//!
//! `cargo bench --bench partitioned` runs a quick, small version (a plain binary: it prints
//! its figures). Scale it with environment variables:
//! - `SOLIDGRID_BENCH_GIB` (default 0.02): bytes (GiB) part 1 should stream to the new node;
//!   `1` is the full run recorded in `benches/README.md`;
//! - `SOLIDGRID_BENCH_ROW_BYTES` (default 1000): length of the VARCHAR value of a row;
//! - `SOLIDGRID_BENCH_BATCH` (default 200): rows per bulk INSERT;
//! - `SOLIDGRID_BENCH_LOADERS` (default 3): concurrent bulk-load clients (one per node);
//! - `SOLIDGRID_BENCH_FILL_MB` (default 256 × GIB, at least 8): part 2's pre-fill, MiB;
//! - `SOLIDGRID_BENCH_PHASE_SECS` (default 5, 20 when GIB ≥ 0.5): part 2's before/after;
//! - `SOLIDGRID_BENCH_WRITERS` (default 2): part 2's concurrent single-row writers;
//! - `SOLIDGRID_BENCH_LOAD_LIMIT` (default 0): `[Grid] LoadRateLimit` (MB/s) in part 2;
//! - `SOLIDGRID_BENCH_ELECTION_MS` (default 300, the product default): `[Grid]
//!   RaftElectionTimeout` of the nodes;
//! - `SOLIDGRID_BENCH_PARTS` (default `12`): which parts to run;
//! - `SOLIDGRID_BENCH_DIR` (default the system temporary directory): where the node
//!   directories go (deleted at the end).
//!
//! The nodes inherit the environment, so `SOLIDGRID_COMPACT_ENTRIES=1000` (the grid log's
//! test override of its 10 000-entry compaction threshold) applies to them. The full run
//! uses it: a grid log entry is a whole bulk INSERT (≈ 200 KB here), and 10 000 of them —
//! about 2 GB per node, held in memory and in `solid.db` — do not fit three nodes on the
//! 24 GiB / 30 GB-free development VM.
//!
//! The binary does nothing unless started by `cargo bench` (which passes `--bench`), so
//! `cargo test --all-targets` only builds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use solidgrid::client::{Client, ClientError, ConnectString};
use solidgrid::error::code;
use solidgrid::grid::placement::{DEFAULT_PARTITIONS, partition_of};
use solidgrid::grid_client::GridClient;
use solidgrid::sql::value::Value;

const SECRET: &str = "bench-partitioned-secret";
const RF: usize = 2;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;
/// Bound on a rebalance after ADD NODE before the bench gives up.
const SETTLE_LIMIT: Duration = Duration::from_secs(3600);

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    gib: f64,
    row_bytes: usize,
    batch: usize,
    loaders: usize,
    fill_mb: f64,
    phase: Duration,
    writers: usize,
    load_limit: u64,
    parts: String,
}

impl Settings {
    fn from_env() -> Settings {
        let gib = env_f64("SOLIDGRID_BENCH_GIB", 0.02);
        Settings {
            gib,
            row_bytes: env_f64("SOLIDGRID_BENCH_ROW_BYTES", 1000.0) as usize,
            batch: env_f64("SOLIDGRID_BENCH_BATCH", 200.0) as usize,
            loaders: env_f64("SOLIDGRID_BENCH_LOADERS", 3.0) as usize,
            fill_mb: env_f64("SOLIDGRID_BENCH_FILL_MB", (256.0 * gib).max(8.0)),
            phase: Duration::from_secs_f64(env_f64(
                "SOLIDGRID_BENCH_PHASE_SECS",
                if gib >= 0.5 { 20.0 } else { 5.0 },
            )),
            writers: env_f64("SOLIDGRID_BENCH_WRITERS", 2.0) as usize,
            load_limit: env_f64("SOLIDGRID_BENCH_LOAD_LIMIT", 0.0) as u64,
            parts: std::env::var("SOLIDGRID_BENCH_PARTS").unwrap_or_else(|_| "12".into()),
        }
    }
}

// ---- processes ------------------------------------------------------------------------

struct Proc {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Proc {
    fn name(&self) -> String {
        format!("n{}", self.port)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `[Grid] RaftElectionTimeout` of the nodes: `SOLIDGRID_BENCH_ELECTION_MS`, default 300
/// (the product default).
fn election_timeout_ms() -> u64 {
    env_f64("SOLIDGRID_BENCH_ELECTION_MS", 300.0) as u64
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node(root: &Path, args: &[&str], load_limit: u64) -> Proc {
    let port = free_port();
    let dir = root.join(format!("n{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("solid.ini"),
        format!(
            "[Com]\nListen = tcp 127.0.0.1 {port}\n[Srv]\nName = n{port}\n[Grid]\nGridEnabled = yes\n\
             Secret = {SECRET}\nLoadRateLimit = {load_limit}\nRaftElectionTimeout = {}\n",
            election_timeout_ms()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_solid"))
        .arg("-c")
        .arg(&dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start solid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "solid did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Proc {
        child: Some(child),
        dir,
        port,
    }
}

fn cs(port: u16) -> ConnectString {
    ConnectString::parse(&format!("tcp 127.0.0.1 {port}")).unwrap()
}

async fn client(port: u16) -> Client {
    let mut c = Client::connect(&cs(port)).await.unwrap();
    c.login("dba", "dba").await.unwrap();
    c
}

/// A founder that creates grid `g`, and two more nodes added to it.
async fn form_grid(root: &Path, load_limit: u64) -> Vec<Proc> {
    let founder = node(root, &["-U", "dba", "-P", "dba"], load_limit);
    let mut leader = client(founder.port).await;
    leader.execute("CREATE GRID g").await.unwrap();
    let mut nodes = vec![founder];
    for _ in 0..2 {
        let n = node(root, &["-x", "gridnode"], load_limit);
        add_node(&mut leader, &n).await;
        nodes.push(n);
    }
    nodes
}

async fn add_node(leader: &mut Client, n: &Proc) {
    leader
        .execute(&format!(
            "ALTER GRID g ADD NODE {} CONNECT 'tcp 127.0.0.1 {}'",
            n.name(),
            n.port
        ))
        .await
        .unwrap_or_else(|e| panic!("ADD NODE {}: {e}", n.name()));
}

/// Resident memory of a process, MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn dir_bytes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn footprint(what: &str, nodes: &[&Proc]) {
    for n in nodes {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(&n.dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let len = e.metadata().ok()?.len();
                        (len >= 1 << 20)
                            .then(|| (e.file_name().to_string_lossy().into_owned(), len))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let files: Vec<String> = files
            .iter()
            .map(|(f, len)| format!("{f} {:.0}", *len as f64 / MIB))
            .collect();
        println!(
            "  {what} {}: directory {:.0} MiB ({}), RSS {:.0} MiB",
            n.name(),
            dir_bytes(&n.dir) as f64 / MIB,
            files.join(", "),
            n.pid().and_then(rss_mib).unwrap_or(0.0)
        );
    }
}

fn df(root: &Path) {
    if let Ok(out) = Command::new("df").arg("-h").arg(root).output() {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

// ---- figures --------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn fsync_floor(root: &Path) {
    let f = root.join("fsync-probe");
    let mut v = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        std::fs::write(&f, b"x").unwrap();
        std::fs::File::open(&f).unwrap().sync_all().unwrap();
        v.push(t.elapsed());
    }
    let _ = std::fs::remove_file(&f);
    v.sort();
    println!(
        "floor: write+fsync of a small file: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        ms(v[v.len() - 1])
    );
}

// ---- grid status ----------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq)]
struct Status {
    /// name → (primaries, ready copies, loading)
    nodes: BTreeMap<String, (usize, usize, usize)>,
    /// (partition, "from -> to") → (bytes done, bytes total, error)
    loads: BTreeMap<(u32, String), (u64, u64, String)>,
}

impl Status {
    /// No load running and copies and primaries spread by at most one: what the GAM
    /// settles on.
    fn settled(&self, members: usize) -> bool {
        if !self.loads.is_empty() || self.nodes.len() != members {
            return false;
        }
        let prim: Vec<usize> = self.nodes.values().map(|x| x.0).collect();
        let ready: Vec<usize> = self.nodes.values().map(|x| x.1).collect();
        let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
        self.nodes.values().all(|x| x.2 == 0)
            && ready.iter().sum::<usize>() == DEFAULT_PARTITIONS as usize * RF
            && spread(&prim) <= 1
            && spread(&ready) <= 1
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        other => other.to_string(),
    }
}

fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

async fn grid_status(c: &mut Client) -> Result<Status, String> {
    let r = c
        .execute("ADMIN COMMAND 'grid status'")
        .await
        .map_err(|e| e.to_string())?;
    let mut s = Status::default();
    for row in r.rows {
        let row: Vec<String> = row.iter().map(text).collect();
        match row[0].as_str() {
            "NODE" => {
                let n = numbers(&row[4]);
                s.nodes.insert(
                    row[1].clone(),
                    (n[0] as usize, n[1] as usize, n[2] as usize),
                );
            }
            "LOAD" => {
                let n = numbers(&row[4]);
                s.loads.insert(
                    (row[2].parse().unwrap(), row[3].clone()),
                    (n[0], n[1], row[7].clone()),
                );
            }
            _ => {}
        }
    }
    Ok(s)
}

/// What an ADD NODE and the rebalance after it took.
struct Rebalance {
    add: Duration,
    /// ADD NODE commit → settled.
    settle: Duration,
    first_load_seen: Option<Duration>,
    /// (partition, from -> to) → largest bytes_total / bytes_done seen in `grid status`.
    loads_seen: BTreeMap<(u32, String), (u64, u64)>,
    load_errors: Vec<String>,
    polls: usize,
    status_errors: usize,
    last: Status,
    commit_at: Instant,
    settled_at: Instant,
}

/// Adds `n` on the leader, then polls `grid status` until the placement is settled.
async fn add_and_settle(all_ports: &[u16], n: &Proc, members: usize, poll: Duration) -> Rebalance {
    let lp = leader_port(all_ports).await;
    let mut leader = client(lp).await;
    let mut status_client = client(lp).await;
    let t0 = Instant::now();
    add_node(&mut leader, n).await;
    let commit_at = Instant::now();
    let add = commit_at - t0;
    let mut r = Rebalance {
        add,
        settle: Duration::ZERO,
        first_load_seen: None,
        loads_seen: BTreeMap::new(),
        load_errors: Vec::new(),
        polls: 0,
        status_errors: 0,
        last: Status::default(),
        commit_at,
        settled_at: commit_at,
    };
    let mut last_print = Instant::now();
    loop {
        let s = match grid_status(&mut status_client).await {
            Ok(s) => s,
            Err(e) => {
                // The leadership may have moved (grid status runs on the leader only):
                // follow it.
                r.status_errors += 1;
                if r.status_errors <= 3 {
                    println!("  grid status failed: {e}");
                }
                tokio::time::sleep(poll).await;
                status_client = client(leader_port(all_ports).await).await;
                continue;
            }
        };
        r.polls += 1;
        let now = Instant::now();
        if !s.loads.is_empty() && r.first_load_seen.is_none() {
            r.first_load_seen = Some(now - commit_at);
        }
        for (k, (done, total, err)) in &s.loads {
            let e = r.loads_seen.entry(k.clone()).or_default();
            e.0 = e.0.max(*total);
            e.1 = e.1.max(*done);
            if !err.is_empty() && !r.load_errors.contains(err) {
                r.load_errors.push(err.clone());
            }
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            last_print = Instant::now();
            let done: u64 = s.loads.values().map(|l| l.0).sum();
            println!(
                "  [{:>6.1} s] {} loads running ({:.0} MiB done in them), nodes {:?}",
                (now - commit_at).as_secs_f64(),
                s.loads.len(),
                done as f64 / MIB,
                s.nodes
            );
        }
        let settled = s.settled(members);
        r.last = s;
        if settled {
            r.settled_at = now;
            r.settle = now - commit_at;
            return r;
        }
        assert!(
            now - commit_at < SETTLE_LIMIT,
            "no settled placement after {SETTLE_LIMIT:?}: {:?}",
            r.last
        );
        tokio::time::sleep(poll).await;
    }
}

/// `(partition, bytes, ms)` of every "loaded partition" line in the node's `solmsg.out`.
fn loads_logged(n: &Proc) -> Vec<(u32, u64, u64)> {
    let log = std::fs::read_to_string(n.dir.join("solmsg.out")).unwrap_or_default();
    log.lines()
        .filter_map(|l| {
            let i = l.find("loaded partition ")?;
            let rest = &l[i + "loaded partition ".len()..];
            let p: u32 = rest.split_whitespace().next()?.parse().ok()?;
            let (_, after) = rest.split_once(": ")?;
            let mut w = after.split_whitespace();
            let bytes: u64 = w.next()?.parse().ok()?;
            let ms: u64 = w.nth(2)?.parse().ok()?;
            Some((p, bytes, ms))
        })
        .collect()
}

// ---- bulk load ------------------------------------------------------------------------

/// The partition of each id in `0..rows`, and the rows per partition.
fn partitions_of(rows: u64) -> (Vec<u8>, Vec<u64>) {
    let mut of = Vec::with_capacity(rows as usize);
    let mut counts = vec![0u64; DEFAULT_PARTITIONS as usize];
    for id in 0..rows {
        let p = partition_of(&[&Value::Int(id as i64)], DEFAULT_PARTITIONS);
        of.push(p as u8);
        counts[p as usize] += 1;
    }
    (of, counts)
}

fn value_for(id: u64, width: usize) -> String {
    let mut s = format!("{id:012}-");
    let fill = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let start = (id % fill.len() as u64) as usize;
    while s.len() < width {
        s.push(fill[(start + s.len()) % fill.len()] as char);
    }
    s.truncate(width);
    s
}

/// Inserts ids `0..of.len()` into `t` with `loaders` concurrent grid connections (loader `i`
/// writes the partitions `p % loaders == i`, through node `i % nodes`), `batch` rows of one
/// partition per statement. Returns the time taken.
async fn bulk_load(
    ports: &[u16],
    of: Arc<Vec<u8>>,
    width: usize,
    batch: usize,
    loaders: usize,
) -> Duration {
    let t = Instant::now();
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = of.len() as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..loaders {
        let port = ports[i % ports.len()];
        let of = Arc::clone(&of);
        let progress = Arc::clone(&progress);
        let retries = Arc::clone(&retries);
        tasks.spawn(async move {
            let mut c = client(port).await;
            c.set_grid_connection(true);
            let mut pending: Vec<Vec<u64>> = vec![Vec::new(); DEFAULT_PARTITIONS as usize];
            let flush = |ids: &[u64]| {
                let mut sql = String::with_capacity(ids.len() * (width + 24) + 32);
                sql.push_str("INSERT INTO t VALUES ");
                for (k, id) in ids.iter().enumerate() {
                    if k > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("({id}, '{}')", value_for(*id, width)));
                }
                sql
            };
            let mut next_report = Instant::now() + Duration::from_secs(15);
            for (id, &p) in of.iter().enumerate() {
                if p as usize % loaders != i {
                    continue;
                }
                let buf = &mut pending[p as usize];
                buf.push(id as u64);
                if buf.len() >= batch {
                    let sql = flush(buf);
                    let n = buf.len() as u64;
                    buf.clear();
                    retries.fetch_add(bulk_execute(&mut c, port, &sql).await, Ordering::Relaxed);
                    let done = progress.fetch_add(n, Ordering::Relaxed) + n;
                    if i == 0 && Instant::now() > next_report {
                        next_report = Instant::now() + Duration::from_secs(15);
                        println!("  loaded {done}/{total} rows");
                    }
                }
            }
            for buf in pending.iter().filter(|b| !b.is_empty()) {
                let sql = flush(buf);
                retries.fetch_add(bulk_execute(&mut c, port, &sql).await, Ordering::Relaxed);
                progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let retries = retries.load(Ordering::Relaxed);
    if retries > 0 {
        println!("  bulk load: {retries} statements retried (see the errors above)");
    }
    t.elapsed()
}

/// Runs one bulk INSERT (all its rows in one partition, so it is atomic), retrying on a
/// new connection when it failed with an unknown or refused outcome; a retry that finds
/// the rows already there (duplicate key) means the first attempt was applied. Returns the
/// number of retries.
async fn bulk_execute(c: &mut Client, port: u16, sql: &str) -> u64 {
    let mut attempt = 0;
    loop {
        match c.execute(sql).await {
            Ok(_) => return attempt,
            Err(ClientError::Solid(e)) if attempt > 0 && e.code == code::DUPLICATE_KEY => {
                return attempt;
            }
            Err(e) => {
                attempt += 1;
                let first: String = sql.chars().take(40).collect();
                println!("  bulk INSERT ({first}…) failed, attempt {attempt}: {e}");
                assert!(attempt < 20, "bulk INSERT keeps failing");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(mut n) = Client::connect(&cs(port)).await
                    && n.login("dba", "dba").await.is_ok()
                {
                    n.set_grid_connection(true);
                    *c = n;
                }
            }
        }
    }
}

/// The port of the node that reports itself leader.
async fn leader_port(ports: &[u16]) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for &p in ports {
            let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(2), Client::connect(&cs(p))).await
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
                && text(&row[0]).ends_with(&format!(":{p}"))
            {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The benchmark table: factor 2, 16 partitions, one wide VARCHAR.
fn create_table(width: usize) -> String {
    format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR({width})) PARTITION BY (id) REPLICATION FACTOR {RF}"
    )
}

// ---- part 1 ---------------------------------------------------------------------------

async fn part1(root: &Path, s: &Settings) {
    let target = s.gib * GIB;
    // The new node receives half of the table (8 of 32 copies of 16 partitions): load a
    // little more than twice the target.
    let table_bytes = target * 2.1;
    let rows = (table_bytes / (s.row_bytes as f64 + 16.0)).ceil() as u64;
    println!(
        "\n== Part 1: load rate to a new node (target ≥ {:.2} GiB to the new node) ==",
        s.gib
    );
    println!(
        "table: {rows} rows × {} B value ≈ {:.2} GiB, factor {RF}, {} partitions; batches of {} rows, {} loaders",
        s.row_bytes,
        rows as f64 * (s.row_bytes as f64 + 16.0) / GIB,
        DEFAULT_PARTITIONS,
        s.batch,
        s.loaders
    );
    let (of, counts) = partitions_of(rows);
    let of = Arc::new(of);
    let nodes = form_grid(root, 0).await;
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let mut leader = client(ports[0]).await;
    leader.execute(&create_table(s.row_bytes)).await.unwrap();
    let took = bulk_load(&ports, Arc::clone(&of), s.row_bytes, s.batch, s.loaders).await;
    let value_bytes = rows as f64 * s.row_bytes as f64;
    println!(
        "bulk load: {rows} rows in {:.1} s = {:.0} rows/s, {:.1} MiB/s of values ({} statements of ≤{} rows)",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        value_bytes / MIB / took.as_secs_f64(),
        rows.div_ceil(s.batch as u64),
        s.batch
    );
    let r = leader
        .execute("SELECT COUNT(*) FROM t")
        .await
        .expect("count");
    println!("  SELECT COUNT(*) FROM t = {:?}", r.rows[0][0]);
    footprint("after bulk load", &nodes.iter().collect::<Vec<_>>());
    df(root);

    let new = node(root, &["-x", "gridnode"], 0);
    let lp = leader_port(&ports).await;
    if lp != ports[0] {
        println!("  the leader is now n{lp} (the founder lost the leadership during the load)");
    }
    let rb = add_and_settle(
        &[ports.as_slice(), &[new.port]].concat(),
        &new,
        4,
        Duration::from_millis(100),
    )
    .await;
    report_rebalance(&rb, &new, &nodes, &counts, rows, s);
    footprint(
        "after the rebalance",
        &nodes.iter().chain([&new]).collect::<Vec<_>>(),
    );
    df(root);
    let r = leader
        .execute("SELECT COUNT(*) FROM t")
        .await
        .expect("count");
    println!(
        "  SELECT COUNT(*) FROM t after the rebalance = {:?}",
        r.rows[0][0]
    );
    let mut nc = client(new.port).await;
    let r = nc.execute("SELECT COUNT(*) FROM t").await.expect("count");
    println!(
        "  SELECT COUNT(*) FROM t on the new node = {:?}",
        r.rows[0][0]
    );
}

fn report_rebalance(
    rb: &Rebalance,
    new: &Proc,
    old: &[Proc],
    counts: &[u64],
    rows: u64,
    s: &Settings,
) {
    println!("ADD NODE statement: {:.1} ms", ms(rb.add));
    println!(
        "ADD NODE commit → settled (no LOAD row, spreads ≤ 1): {:.2} s ({} status polls, first LOAD row seen after {:.0} ms, {} failed polls)",
        rb.settle.as_secs_f64(),
        rb.polls,
        rb.first_load_seen.map_or(f64::NAN, ms),
        rb.status_errors
    );
    println!("final placement: {:?}", rb.last.nodes);
    let seen_total: u64 = rb.loads_seen.values().map(|x| x.0).sum();
    let new_name = new.name();
    let to_new: Vec<_> = rb
        .loads_seen
        .iter()
        .filter(|((_, ft), _)| ft.ends_with(&format!("-> {new_name}")))
        .collect();
    println!(
        "grid status showed {} loads ({} to the new node), bytes_total summed: {:.1} MiB",
        rb.loads_seen.len(),
        to_new.len(),
        seen_total as f64 / MIB
    );
    for (k, v) in &rb.loads_seen {
        if k.1.ends_with(&format!("-> {new_name}")) {
            continue;
        }
        println!(
            "  load not to the new node: partition {} {} ({} B)",
            k.0, k.1, v.0
        );
    }
    if !rb.load_errors.is_empty() {
        println!("load errors reported by grid status: {:?}", rb.load_errors);
    }
    // The loads as the loading nodes logged them (covers loads too short to be polled).
    let mut all = Vec::new();
    for n in old.iter().chain([new]) {
        for (p, bytes, ms) in loads_logged(n) {
            all.push((n.name(), p, bytes, ms));
        }
    }
    let logged_bytes: u64 = all.iter().map(|x| x.2).sum();
    let logged_rows: u64 = all.iter().map(|x| counts[x.1 as usize]).sum();
    let new_parts: Vec<u32> = all
        .iter()
        .filter(|x| x.0 == new_name)
        .map(|x| x.1)
        .collect();
    let new_bytes: u64 = all.iter().filter(|x| x.0 == new_name).map(|x| x.2).sum();
    let new_rows: u64 = new_parts.iter().map(|&p| counts[p as usize]).sum();
    let secs = rb.settle.as_secs_f64();
    println!(
        "loads logged (solmsg.out): {} loads, {:.1} MiB, {} rows ({:.1} % of the table); to the new node: {} loads (partitions {:?}), {:.1} MiB = {:.3} GiB, {} rows",
        all.len(),
        logged_bytes as f64 / MIB,
        logged_rows,
        100.0 * logged_rows as f64 / rows as f64,
        new_parts.len(),
        new_parts,
        new_bytes as f64 / MIB,
        new_bytes as f64 / GIB,
        new_rows
    );
    let per_load: Vec<f64> = all
        .iter()
        .filter(|x| x.3 > 0)
        .map(|x| x.2 as f64 / MIB / (x.3 as f64 / 1e3))
        .collect();
    if !per_load.is_empty() {
        let mut v = per_load.clone();
        v.sort_by(f64::total_cmp);
        println!(
            "per-load stream rate (bytes / load time, as logged): min {:.1} / median {:.1} / max {:.1} MiB/s",
            v[0],
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
    println!(
        "RESULT load to the new node: {:.3} GiB ({} rows of {} B values) in {:.1} s = {:.1} MiB/s, {:.0} rows/s (all data moved: {:.1} MiB/s, {:.0} rows/s)",
        new_bytes as f64 / GIB,
        new_rows,
        s.row_bytes,
        secs,
        new_bytes as f64 / MIB / secs,
        new_rows as f64 / secs,
        logged_bytes as f64 / MIB / secs,
        logged_rows as f64 / secs
    );
    if (new_bytes as f64) < s.gib * GIB {
        println!(
            "NOTE: the new node received less than the target {:.2} GiB",
            s.gib
        );
    }
}

// ---- part 2 ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Sample {
    start: Instant,
    latency: Duration,
    ok: bool,
}

async fn writer(
    port: u16,
    first_id: u64,
    width: usize,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut g = GridClient::connect(&cs(port), None, "dba", "dba")
        .await
        .expect("grid connect");
    let mut id = first_id;
    let value = value_for(first_id, width.min(100));
    while !stop.load(Ordering::Relaxed) {
        let sql = format!("INSERT INTO t VALUES ({id}, '{value}')");
        let start = Instant::now();
        let r = g.execute(&sql).await;
        let latency = start.elapsed();
        let ok = r.is_ok();
        if let Err(e) = r {
            let mut errs = errors.lock();
            if errs.len() < 20 {
                errs.push(format!("id {id}: {e}"));
            }
        }
        out.lock().push(Sample { start, latency, ok });
        id += 1;
    }
}

fn phase_report(name: &str, samples: &[Sample], from: Instant, to: Instant) {
    let mut lat: Vec<Duration> = samples
        .iter()
        .filter(|x| x.start >= from && x.start < to && x.ok)
        .map(|x| x.latency)
        .collect();
    let errors = samples
        .iter()
        .filter(|x| x.start >= from && x.start < to && !x.ok)
        .count();
    let secs = (to - from).as_secs_f64();
    if lat.is_empty() {
        println!("RESULT {name:<28} {secs:>7.1} s: no statement ({errors} errors)");
        return;
    }
    lat.sort();
    println!(
        "RESULT {name:<28} {secs:>7.1} s: {:>6} ok, {:>7.0} stmt/s, p50 {:>6.2} ms, p99 {:>7.2} ms, max {:>8.1} ms, {} errors",
        lat.len(),
        lat.len() as f64 / secs,
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(lat[lat.len() - 1]),
        errors
    );
}

async fn part2(root: &Path, s: &Settings) {
    let rows = (s.fill_mb * MIB / (s.row_bytes as f64 + 16.0)).ceil() as u64;
    println!(
        "\n== Part 2: single-row INSERTs before, during and after ADD NODE ==\npre-fill: {rows} rows × {} B ≈ {:.0} MiB, factor {RF}; {} writers (GridClient, closed loop); phases of {:.0} s; LoadRateLimit {} MB/s",
        s.row_bytes,
        rows as f64 * (s.row_bytes as f64 + 16.0) / MIB,
        s.writers,
        s.phase.as_secs_f64(),
        s.load_limit
    );
    let (of, counts) = partitions_of(rows);
    let nodes = form_grid(root, s.load_limit).await;
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let mut leader = client(ports[0]).await;
    leader.execute(&create_table(s.row_bytes)).await.unwrap();
    let took = bulk_load(&ports, Arc::new(of), s.row_bytes, s.batch, s.loaders).await;
    println!("pre-fill loaded in {:.1} s", took.as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..s.writers {
        tasks.spawn(writer(
            ports[0],
            1_000_000_000 + w as u64 * 100_000_000,
            s.row_bytes,
            Arc::clone(&stop),
            Arc::clone(&samples),
            Arc::clone(&errors),
        ));
    }
    // Let the writers connect and warm up before the "before" window opens.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_from = Instant::now();
    tokio::time::sleep(s.phase).await;
    let new = node(root, &["-x", "gridnode"], s.load_limit);
    let add_from = Instant::now();
    let lp = leader_port(&ports).await;
    if lp != ports[0] {
        println!("  the leader is now n{lp} (the founder lost the leadership during the load)");
    }
    let rb = add_and_settle(
        &[ports.as_slice(), &[new.port]].concat(),
        &new,
        4,
        Duration::from_millis(200),
    )
    .await;
    let after_from = Instant::now().max(rb.settled_at);
    tokio::time::sleep(s.phase).await;
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let samples = samples.lock().clone();
    report_rebalance(&rb, &new, &nodes, &counts, rows, s);
    phase_report("before ADD NODE", &samples, before_from, add_from);
    phase_report("during the ADD NODE stmt", &samples, add_from, rb.commit_at);
    phase_report("loads running", &samples, rb.commit_at, rb.settled_at);
    phase_report("after (GAM idle)", &samples, after_from, end);
    let errs = errors.lock().clone();
    if !errs.is_empty() {
        println!("writer errors (first {}):", errs.len());
        for e in errs.iter() {
            println!("  {e}");
        }
    }
    let written = samples.iter().filter(|x| x.ok).count() as i64;
    let r = leader
        .execute("SELECT COUNT(*) FROM t")
        .await
        .expect("count");
    println!(
        "  SELECT COUNT(*) FROM t = {:?} (expected {} = pre-fill + acknowledged inserts)",
        r.rows[0][0],
        rows as i64 + written
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("partitioned: bench");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` builds and starts bench binaries without `--bench`.
        println!("partitioned: run with `cargo bench --bench partitioned`");
        return;
    }
    let s = Settings::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = match std::env::var("SOLIDGRID_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    println!("node directories under {}", root.path().display());
    // The nodes inherit the environment: SOLIDGRID_COMPACT_ENTRIES (a test override of the
    // grid log's 10 000-entry compaction threshold) bounds the grid log kept in memory and
    // in solid.db when the entries are large.
    println!(
        "SOLIDGRID_COMPACT_ENTRIES for the nodes: {}; RaftElectionTimeout {} ms",
        std::env::var("SOLIDGRID_COMPACT_ENTRIES").unwrap_or_else(|_| "unset (10 000)".into()),
        election_timeout_ms()
    );
    df(root.path());
    fsync_floor(root.path());
    if s.parts.contains('1') {
        let dir = root.path().join("part1");
        std::fs::create_dir_all(&dir).unwrap();
        rt.block_on(part1(&dir, &s));
        // The processes are gone (dropped at the end of part1): free the disk.
        std::fs::remove_dir_all(&dir).unwrap();
    }
    if s.parts.contains('2') {
        let dir = root.path().join("part2");
        std::fs::create_dir_all(&dir).unwrap();
        rt.block_on(part2(&dir, &s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    fsync_floor(root.path());
}
