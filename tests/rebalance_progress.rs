//! Real-process test of `solsql --wait-rebalance` (design §7.3): after `ALTER GRID … ADD
//! NODE` the console follows the partition loads through `ADMIN COMMAND 'grid status'` and
//! prints a summary once the grid has nothing left to move.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN, ADMIN_PW, Node, SOLSQL, form_grid};
use solidgrid::sql::value::Value;

/// Rows of `ADMIN COMMAND 'grid status'` on the leader, as text.
fn grid_status(leader: &Node) -> Vec<Vec<String>> {
    leader
        .client()
        .ok("ADMIN COMMAND 'grid status'")
        .rows
        .into_iter()
        .map(|row| row.iter().map(Value::to_string).collect())
        .collect()
}

/// Generous: a debug build on a busy two-core machine loading 32 partition copies.
const SOLSQL_LIMIT: Duration = Duration::from_secs(240);

#[test]
fn solsql_waits_for_the_loads_after_add_node_and_summarises() {
    let nodes = form_grid(2);
    let mut g = nodes[0].client();
    g.grid_connection();
    g.ok(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(100)) PARTITION BY (id) \
         REPLICATION FACTOR 2",
    );
    // Multi-row INSERTs: the node splits each one among the partitions' primaries.
    let filler = "x".repeat(90);
    const ROWS: usize = 5000;
    for chunk in (0..ROWS).collect::<Vec<_>>().chunks(250) {
        let values: Vec<String> = chunk
            .iter()
            .map(|id| format!("({id}, '{filler}{id}')"))
            .collect();
        g.ok(&format!("INSERT INTO t VALUES {}", values.join(", ")));
    }
    assert_eq!(
        g.ok("SELECT COUNT(*) FROM t").rows[0][0],
        Value::Int(ROWS as i64)
    );

    let mut d = Node::grid_node();
    d.start(&["-x", "gridnode"]);
    let seeds: Vec<String> = nodes.iter().map(Node::connect_string).collect();
    let connect = format!("grid {}", seeds.join(", "));
    let add = format!("ALTER GRID g ADD NODE {} {}", d.name(), d.connect_clause());

    // stdout to a file: not a terminal, so solsql prints plain progress lines.
    let out_path = d.path().join("solsql-out.txt");
    let err_path = d.path().join("solsql-err.txt");
    let mut child = Command::new(SOLSQL)
        .args(["--wait-rebalance", "-e", &add, &connect, ADMIN, ADMIN_PW])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run solsql");
    let deadline = Instant::now() + SOLSQL_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for solsql") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "solsql still waiting after {SOLSQL_LIMIT:?}; stdout:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).expect("stdout");
    let stderr = std::fs::read_to_string(&err_path).expect("stderr");
    assert!(
        status.success(),
        "solsql: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    println!("solsql said:\n{stdout}");
    // The ADD NODE result (the members, the new one among them) comes first.
    let members_at = stdout
        .find(&d.name())
        .unwrap_or_else(|| panic!("no ADD NODE result:\n{stdout}"));
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("rebalancing finished: "))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert!(
        stdout.find("rebalancing finished: ") > Some(members_at),
        "{stdout}"
    );
    let loaded: usize = summary
        .trim_start_matches("rebalancing finished: ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {summary}"));
    assert!(loaded > 0, "the new node got copies: {summary}");
    assert!(
        summary.contains(" MB in ") && summary.ends_with(" s"),
        "{summary}"
    );

    // When solsql says it is finished the grid has nothing loading.
    let rows = grid_status(&nodes[0]);
    assert!(
        rows.iter().all(|r| r[0] != "LOAD"),
        "loads left after the summary: {rows:?}"
    );
    let d_row = rows
        .iter()
        .find(|r| r[0] == "NODE" && r[1] == d.name())
        .unwrap_or_else(|| panic!("no NODE row for the new node: {rows:?}"));
    assert!(d_row[4].ends_with(", 0 loading"), "{d_row:?}");
    assert!(!d_row[4].contains(" 0 ready copies"), "{d_row:?}");
}
