//! Real-process tests of partitioned tables and the Grid Availability Manager (design §6):
//! placement at CREATE TABLE, keyed writes on the primary (13630 elsewhere on a direct
//! connection, forwarded on a grid connection), distributed UPDATE/DELETE, reads gathered
//! from the primaries, a new node taking its share while writes go on, and promotion after
//! a node is killed.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Node, SyncClient, form_grid, wait_for};
use solidgrid::error::code;
use solidgrid::sql::value::Value;

/// `(kind, name, progress)` rows of `ADMIN COMMAND 'grid status'` on the leader.
fn grid_status(leader: &Node) -> Vec<Vec<String>> {
    try_grid_status(leader).expect("grid status on the leader")
}

/// Like [`grid_status`], `None` when the node cannot answer (not the leader right now).
fn try_grid_status(leader: &Node) -> Option<Vec<Vec<String>>> {
    let r = leader
        .client_as(common::ADMIN, common::ADMIN_PW)
        .ok()?
        .execute("ADMIN COMMAND 'grid status'")
        .ok()?;
    Some(
        r.rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| match v {
                        Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .collect(),
    )
}

/// Primaries per node name, from the NODE rows of `grid status`.
fn primaries(leader: &Node) -> BTreeMap<String, (usize, usize, usize)> {
    primaries_of(grid_status(leader))
}

fn primaries_of(status: Vec<Vec<String>>) -> BTreeMap<String, (usize, usize, usize)> {
    status
        .into_iter()
        .filter(|r| r[0] == "NODE")
        .map(|r| {
            let nums: Vec<usize> = r[4]
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            (r[1].clone(), (nums[0], nums[1], nums[2]))
        })
        .collect()
}

fn count(c: &mut SyncClient, table: &str) -> i64 {
    match &c.ok(&format!("SELECT COUNT(*) FROM {table}")).rows[0][0] {
        Value::Int(n) => *n,
        other => panic!("COUNT(*) gave {other:?}"),
    }
}

fn grid_client(nodes: &[Node]) -> SyncClient {
    let mut c = nodes[0].client();
    c.grid_connection();
    c
}

#[test]
fn a_partitioned_table_is_placed_written_on_primaries_and_read_everywhere() {
    let nodes = form_grid(2);
    let mut leader = nodes[0].client();
    leader.ok(
        "CREATE TABLE acct (id INTEGER, region INTEGER, v VARCHAR(20), PRIMARY KEY (id, region)) \
         PARTITION BY (id) REPLICATION FACTOR 2",
    );
    // Refusals of the grid clause.
    assert_eq!(
        leader.err_code("CREATE TABLE bad (id INTEGER PRIMARY KEY, v INTEGER) PARTITION BY (v) REPLICATION FACTOR 2"),
        code::BAD_TABLE_DEFINITION
    );
    assert_eq!(
        leader.err_code("CREATE TABLE u (id INTEGER PRIMARY KEY, v INTEGER UNIQUE) PARTITION BY (id) REPLICATION FACTOR 2"),
        code::BAD_TABLE_DEFINITION
    );
    assert_eq!(
        leader.err_code("CREATE TEMPORARY TABLE tmp (id INTEGER PRIMARY KEY)"),
        code::NOT_SUPPORTED_IN_GRID
    );
    assert_eq!(
        leader.err_code("CREATE SEQUENCE s"),
        code::NOT_SUPPORTED_IN_GRID
    );
    // 16 partitions, factor 2 over three nodes: every node has primaries and copies.
    let placed = primaries(&nodes[0]);
    assert_eq!(placed.len(), 3, "{placed:?}");
    assert_eq!(placed.values().map(|p| p.0).sum::<usize>(), 16);
    assert_eq!(placed.values().map(|p| p.1).sum::<usize>(), 32);
    for (name, (p, _, _)) in &placed {
        assert!((5..=6).contains(p), "{name} has {p} primaries");
    }

    // A grid connection writes every row wherever its primary is.
    let mut g = grid_client(&nodes);
    for i in 0..200 {
        g.ok(&format!(
            "INSERT INTO acct VALUES ({i}, {}, 'row {i}')",
            i % 7
        ));
    }
    g.ok("INSERT INTO acct VALUES (1000, 1, 'a'), (1001, 1, 'b'), (1002, 1, 'c')");
    assert_eq!(
        g.err_code("INSERT INTO acct VALUES (5, 5, 'dup')"),
        code::DUPLICATE_KEY
    );
    // Every node reads the whole table from the primaries.
    for n in &nodes {
        let mut c = n.client();
        assert_eq!(count(&mut c, "acct"), 203);
        let r = c.ok("SELECT v FROM acct WHERE id = 42 AND region = 0");
        assert_eq!(r.rows, vec![vec![Value::Text("row 42".into())]]);
    }
    // A direct connection refuses a keyed write whose primary is elsewhere (13630) and
    // runs one whose primary it is.
    let mut refused = 0;
    let mut ran = 0;
    let mut direct = nodes[1].client();
    for i in 300..340 {
        match direct.execute(&format!("INSERT INTO acct VALUES ({i}, 0, 'd')")) {
            Ok(_) => ran += 1,
            Err(solidgrid::client::ClientError::Solid(e)) => {
                assert_eq!(e.code, code::NOT_PRIMARY, "{e}");
                assert!(e.message.contains("primary of partition"), "{e}");
                refused += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused > 0 && ran > 0, "refused {refused}, ran {ran}");
    // Distributed UPDATE and DELETE reach every partition, from any node.
    let r = direct.ok("UPDATE acct SET v = 'upd' WHERE region = 1");
    let updated = r.rows_affected;
    assert!(updated > 0);
    let r = g.ok("SELECT COUNT(*) FROM acct WHERE v = 'upd'");
    assert_eq!(r.rows[0][0], Value::Int(updated as i64));
    let before = count(&mut g, "acct");
    let r = direct.ok("DELETE FROM acct WHERE id >= 1000");
    assert_eq!(r.rows_affected, 3);
    assert_eq!(count(&mut g, "acct"), before - 3);
    // Changing a partition-key column is refused.
    assert_eq!(
        g.err_code("UPDATE acct SET id = id + 1 WHERE id = 1 AND region = 1"),
        code::NOT_SUPPORTED_IN_GRID
    );
}

#[test]
fn a_new_node_takes_its_share_and_a_killed_node_is_replaced() {
    let mut nodes = form_grid(2);
    let mut g = grid_client(&nodes);
    g.ok(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(40)) PARTITION BY (id) REPLICATION FACTOR 2",
    );
    for id in 0..1000 {
        g.ok(&format!("INSERT INTO t VALUES ({id}, 'value {id}')"));
    }
    assert_eq!(count(&mut g, "t"), 1000);

    // A fourth node: the GAM gives it copies and primaries.
    let mut d = Node::grid_node();
    d.start(&["-x", "gridnode"]);
    d.wait_ready();
    d.add_to(&nodes[0]).expect("add D");
    let d_name = d.name();
    wait_for(
        "the new node to carry its share",
        Duration::from_secs(60),
        || {
            let p = primaries(&nodes[0]);
            let loads = grid_status(&nodes[0])
                .into_iter()
                .filter(|r| r[0] == "LOAD")
                .count();
            loads == 0
                && p.get(&d_name)
                    .is_some_and(|(prim, ready, _)| *prim >= 4 && *ready >= 7)
                && p.values().all(|(prim, _, _)| *prim >= 4)
        },
    );
    nodes.push(d);
    let p = primaries(&nodes[0]);
    assert_eq!(p.values().map(|x| x.1).sum::<usize>(), 32, "{p:?}");
    for n in &nodes {
        assert_eq!(count(&mut n.client(), "t"), 1000);
    }

    // kill -9 of a non-leader node: its primaries are promoted, the factor is restored.
    let victim = nodes.remove(1);
    let victim_name = victim.name();
    let mut victim = victim;
    victim.kill9();
    wait_for(
        "promotion and re-replication",
        Duration::from_secs(60),
        || {
            let p = primaries(&nodes[0]);
            let others: usize = p
                .iter()
                .filter(|(n, _)| **n != victim_name)
                .map(|(_, x)| x.0)
                .sum();
            let ready: usize = p
                .iter()
                .filter(|(n, _)| **n != victim_name)
                .map(|(_, x)| x.1)
                .sum();
            others == 16 && ready == 32
        },
    );
    for (i, n) in nodes.iter().enumerate() {
        let mut c = n.client();
        c.grid_connection();
        assert_eq!(count(&mut c, "t"), 1000 + i as i64);
        c.ok(&format!("INSERT INTO t VALUES ({}, 'after')", 5000 + i));
    }
}

/// What a steady writer saw: ids acknowledged, and ids whose outcome it could not know.
#[derive(Default)]
struct Written {
    acked: Vec<i64>,
    unknown: Vec<i64>,
}

/// Inserts ids from `from` upward, one row per statement, through a grid connection, until
/// `stop` is set. A refusal that changed nothing (13630 after the coordinator's retries,
/// 18502, 18503) is retried with the same id; any other failure makes that id's outcome
/// unknown and the writer moves on.
fn steady_writer(
    cs: String,
    from: i64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Written> {
    std::thread::spawn(move || {
        use solidgrid::client::{ClientError, ConnectString};
        use solidgrid::grid_client::GridClient;
        let cs = ConnectString::parse(&cs).unwrap();
        let mut c = common::rt()
            .block_on(GridClient::connect(
                &cs,
                None,
                common::ADMIN,
                common::ADMIN_PW,
            ))
            .expect("writer connects");
        let mut w = Written::default();
        let mut id = from;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let sql = format!("INSERT INTO t VALUES ({id}, 'steady {id}')");
            match common::rt().block_on(c.execute(&sql)) {
                Ok(_) => {
                    w.acked.push(id);
                    id += 1;
                }
                Err(ClientError::Solid(e))
                    if [code::NOT_PRIMARY, code::NO_LEADER, code::NOT_LEADER].contains(&e.code) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => {
                    w.unknown.push(id);
                    id += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        w
    })
}

/// `(COUNT(*), SUM(id))` of table t as seen from `node`.
fn count_and_sum(node: &Node) -> (i64, i64) {
    let mut c = node.client();
    let r = c.ok("SELECT COUNT(*), SUM(id) FROM t");
    match (&r.rows[0][0], &r.rows[0][1]) {
        (Value::Int(n), Value::Int(s)) => (*n, *s),
        other => panic!("COUNT/SUM gave {other:?}"),
    }
}

/// Every id of t, in order, read through `node`.
fn ids(node: &Node) -> Vec<i64> {
    let mut c = node.client();
    c.ok("SELECT id FROM t ORDER BY id")
        .rows
        .into_iter()
        .map(|r| match r[0] {
            Value::Int(i) => i,
            ref other => panic!("id {other:?}"),
        })
        .collect()
}

#[test]
fn rebalancing_under_a_steady_writer_survives_a_leader_kill_and_loses_nothing() {
    const BULK: i64 = 100_000;
    let mut nodes = form_grid(2);
    let mut g = grid_client(&nodes);
    g.ok(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(40)) PARTITION BY (id) REPLICATION FACTOR 2",
    );
    for chunk in 0..(BULK / 500) {
        let values: Vec<String> = (chunk * 500..(chunk + 1) * 500)
            .map(|id| format!("({id}, 'bulk {id}')"))
            .collect();
        g.ok(&format!("INSERT INTO t VALUES {}", values.join(", ")));
    }
    assert_eq!(count_and_sum(&nodes[0]), (BULK, BULK * (BULK - 1) / 2));

    let mut d = Node::grid_node();
    d.start(&["-x", "gridnode"]);
    d.wait_ready();
    let seeds: Vec<String> = nodes
        .iter()
        .chain(std::iter::once(&d))
        .map(|n| n.connect_string())
        .collect();
    let cs = format!("grid {}", seeds.join(", "));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = steady_writer(cs, 1_000_000, stop.clone());
    std::thread::sleep(Duration::from_millis(500));

    d.add_to(&nodes[0]).expect("add D");
    // Kill the leader while the new node's copies load.
    wait_for("loads to start", Duration::from_secs(30), || {
        try_grid_status(&nodes[0]).is_some_and(|s| s.iter().any(|r| r[0] == "LOAD"))
    });
    let mut old_leader = nodes.remove(0);
    let old_name = old_leader.name();
    old_leader.kill9();
    nodes.push(d);
    wait_for("a new leader", Duration::from_secs(30), || {
        nodes
            .iter()
            .any(|n| n.leader_name().is_some_and(|l| l == n.name()))
    });
    // The new leader finishes the rebalance without the dead node: every partition has
    // its primary and two ready copies on the three live nodes, primaries spread evenly.
    let settled = |status: &Vec<Vec<String>>| {
        let loads = status.iter().filter(|r| r[0] == "LOAD").count();
        let p = primaries_of(status.clone());
        let live: Vec<_> = p.iter().filter(|(n, _)| **n != old_name).collect();
        loads == 0
            && live.iter().map(|(_, x)| x.0).sum::<usize>() == 16
            && live.iter().map(|(_, x)| x.1).sum::<usize>() == 32
            && live.iter().all(|(_, x)| (5..=6).contains(&x.0))
            && p.get(&old_name).is_none_or(|x| x.1 == 0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = Vec::new();
    loop {
        // Whoever leads now answers (leadership may move again under load).
        if let Some(status) = nodes.iter().find_map(try_grid_status) {
            if settled(&status) {
                break;
            }
            last = status;
        }
        if std::time::Instant::now() >= deadline {
            for n in &nodes {
                eprintln!("--- {} solmsg.out:\n{}", n.name(), n.msglog());
                let err = n.stderr();
                let tail: Vec<&str> = err.lines().rev().take(40).collect();
                eprintln!(
                    "--- {} stderr (last lines, newest first):\n{}",
                    n.name(),
                    tail.join("\n")
                );
            }
            panic!("the rebalance did not finish; last grid status: {last:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().expect("writer");
    assert!(
        written.acked.len() > 20,
        "the writer kept writing: {}",
        written.acked.len()
    );

    // No acknowledged row lost, none duplicated, nothing the writer did not send.
    let got = ids(&nodes[0]);
    let mut expected: Vec<i64> = (0..BULK).chain(written.acked.iter().copied()).collect();
    let present_unknown: Vec<i64> = written
        .unknown
        .iter()
        .copied()
        .filter(|id| got.binary_search(id).is_ok())
        .collect();
    expected.extend(present_unknown);
    expected.sort_unstable();
    assert_eq!(got.len(), expected.len(), "row count");
    assert!(
        got == expected,
        "the rows differ from what was acknowledged"
    );
    let sum: i64 = expected.iter().sum();
    for n in &nodes {
        assert_eq!(
            count_and_sum(n),
            (expected.len() as i64, sum),
            "read through {}",
            n.name()
        );
    }
    // Still writable everywhere after the promotion.
    let mut g = nodes[1].client();
    g.grid_connection();
    for id in 2_000_000..2_000_050 {
        g.ok(&format!("INSERT INTO t VALUES ({id}, 'after')"));
    }
    assert_eq!(count_and_sum(&nodes[0]).0, expected.len() as i64 + 50);
}

#[test]
fn a_member_that_catches_up_by_snapshot_reloads_its_partition_copies() {
    // The leader keeps only 20 log entries, and failure detection waits long enough for
    // the node to come back as a member: its copies are still placed on it when the
    // snapshot from the leader wipes its rows, so it must load them again.
    let env = [("SOLIDGRID_COMPACT_ENTRIES", "20")];
    let ini = format!(
        "{}NodeFailureTimeout = 60000\n",
        common::grid_ini(common::SECRET)
    );
    let mut nodes: Vec<Node> = Vec::new();
    let mut founder = Node::with_ini(&ini);
    founder.spawn_with_env(&["-U", common::ADMIN, "-P", common::ADMIN_PW], &env);
    founder.wait_ready();
    founder.client().ok("CREATE GRID g");
    nodes.push(founder);
    for _ in 0..2 {
        let mut n = Node::with_ini(&ini);
        n.spawn_with_env(&["-x", "gridnode"], &env);
        n.wait_ready();
        n.add_to(&nodes[0]).expect("add");
        nodes.push(n);
    }
    let mut g = grid_client(&nodes);
    g.ok("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(20)) PARTITION BY (id) REPLICATION FACTOR 2");
    for id in 0..100 {
        g.ok(&format!("INSERT INTO t VALUES ({id}, 'before')"));
    }
    nodes[2].kill9();
    // Writes whose primary is alive succeed; the others fail (their primary is down and
    // failure detection has not marked it yet): count what was acknowledged.
    let mut acked = 100;
    for id in 100..400 {
        if g.execute(&format!("INSERT INTO t VALUES ({id}, 'while down')"))
            .is_ok()
        {
            acked += 1;
        }
    }
    assert!(acked > 150, "{acked} rows acknowledged");
    nodes[2].spawn_with_env(&[], &env);
    nodes[2].wait_ready();
    wait_for(
        "the snapshot install in solmsg.out",
        Duration::from_secs(30),
        || nodes[2].msglog().contains("installed a snapshot"),
    );
    wait_for(
        "the wiped copies to be loaded again",
        Duration::from_secs(60),
        || {
            nodes[2].msglog().contains("will be loaded again") && {
                let mut c = nodes[2].client();
                c.execute("SELECT COUNT(*) FROM t")
                    .is_ok_and(|r| r.rows == vec![vec![Value::Int(acked)]])
            }
        },
    );
    // Every node reads every acknowledged row, and the node serves as primary again.
    for n in &nodes {
        assert_eq!(count(&mut n.client(), "t"), acked, "through {}", n.name());
    }
    let mut direct = nodes[2].client();
    let mut ran = 0;
    for id in 1000..1040 {
        ran += usize::from(
            direct
                .execute(&format!("INSERT INTO t VALUES ({id}, 'after')"))
                .is_ok(),
        );
    }
    assert!(ran > 0, "node 3 is the primary of some partitions again");
    assert_eq!(count(&mut g, "t"), acked + ran as i64);
}
