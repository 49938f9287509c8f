//! Single-row INSERT latency through the client path (`solsql`'s client library → gRPC →
//! parse → execute → log fsync → apply → reply) against a real `solid` process on loopback.
//!
//! `cargo bench --bench insert`

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use solidgrid::client::{Client, ConnectString};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(dir: &std::path::Path) -> (Node, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("solid.ini"),
        format!("[Com]\nListen = tcp 127.0.0.1 {port}\n"),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_solid"))
        .arg("-c")
        .arg(dir)
        .args(["-U", "dba", "-P", "dba"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start solid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "solid did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Node(child), port)
}

fn insert_latency(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (_node, port) = start_node(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cs = ConnectString::parse(&format!("tcp 127.0.0.1 {port}")).unwrap();
    let mut client = rt.block_on(async {
        let mut client = Client::connect(&cs).await.unwrap();
        client.login("dba", "dba").await.unwrap();
        client
            .execute("CREATE TABLE bench (id BIGINT PRIMARY KEY, v VARCHAR(40))")
            .await
            .unwrap();
        client
    });
    let mut id = 0u64;
    let mut group = c.benchmark_group("client");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("insert_one_row", |b| {
        b.iter(|| {
            id += 1;
            let sql = format!(
                "INSERT INTO bench VALUES ({id}, 'a forty character value for each row..')"
            );
            rt.block_on(client.execute(&sql)).unwrap();
        })
    });
    group.bench_function("select_by_primary_key", |b| {
        b.iter(|| {
            rt.block_on(client.execute("SELECT v FROM bench WHERE id = 1"))
                .unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, insert_latency);
criterion_main!(benches);
