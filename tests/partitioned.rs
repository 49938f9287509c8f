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
    let r = leader.client().ok("ADMIN COMMAND 'grid status'");
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
        .collect()
}

/// Primaries per node name, from the NODE rows of `grid status`.
fn primaries(leader: &Node) -> BTreeMap<String, (usize, usize, usize)> {
    grid_status(leader)
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
