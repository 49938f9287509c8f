//! Real-process tests of the grid client (design §7.4): a client given a seed list learns
//! the topology, sends writes and grid statements to the leader, and follows a new leader
//! and new nodes without the user reconnecting — through the library and through `solsql`.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ADMIN, ADMIN_PW, Node, SOLSQL, form_grid, free_port, rt, wait_for};
use solidgrid::client::{ClientError, ConnectString, Endpoint, QueryResult};
use solidgrid::grid_client::GridClient;
use solidgrid::sql::value::Value;

/// Generous bound for anything the grid does by itself (an election, a commit notice).
const SETTLE: Duration = Duration::from_secs(30);

fn endpoint(node: &Node) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port: node.port,
    }
}

/// `grid tcp 127.0.0.1 p1, tcp 127.0.0.1 p2, …` for these ports, in this order.
fn grid_connect_string(ports: &[u16]) -> String {
    let seeds: Vec<String> = ports.iter().map(|p| format!("tcp 127.0.0.1 {p}")).collect();
    format!("grid {}", seeds.join(", "))
}

fn grid_client(ports: &[u16]) -> GridClient {
    let cs = ConnectString::parse(&grid_connect_string(ports)).expect("connect string");
    rt().block_on(GridClient::connect(&cs, None, ADMIN, ADMIN_PW))
        .unwrap_or_else(|e| panic!("grid connect: {e}"))
}

fn run(client: &mut GridClient, sql: &str) -> Result<QueryResult, ClientError> {
    rt().block_on(client.execute(sql))
}

fn ok(client: &mut GridClient, sql: &str) -> QueryResult {
    run(client, sql).unwrap_or_else(|e| panic!("{sql}: {e} (client: {client:?})"))
}

fn count(client: &mut GridClient, table: &str) -> i64 {
    let r = ok(client, &format!("SELECT COUNT(*) FROM {table}"));
    match r.rows.as_slice() {
        [row] => match row[0] {
            Value::Int(n) => n,
            ref v => panic!("COUNT(*) gave {v:?}"),
        },
        rows => panic!("COUNT(*) gave {rows:?}"),
    }
}

/// The index of the node among `alive` that every live node names as leader.
fn agreed_leader(nodes: &[Node], alive: &[usize]) -> Option<usize> {
    let names: Vec<Option<String>> = alive.iter().map(|&i| nodes[i].leader_name()).collect();
    let first = names.first()?.clone()?;
    if names.iter().any(|n| n.as_deref() != Some(first.as_str())) {
        return None;
    }
    alive.iter().copied().find(|&i| nodes[i].name() == first)
}

/// A follower listed first: writes still reach the leader, reads after them see them; then
/// the leader is killed and the same client object goes on with the new leader. `solsql`
/// with a dead address first in its seed list works too.
#[test]
fn writes_reach_the_leader_and_the_client_follows_a_new_leader_after_kill_9() {
    let mut nodes = form_grid(2);
    let leader = 0;
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();

    // solsql -e: a dead address first, then a follower; the write goes to the leader.
    let dead = free_port();
    let out = Command::new(SOLSQL)
        .arg("-e")
        .arg(
            "CREATE TABLE s (id INTEGER PRIMARY KEY, v VARCHAR(10)); \
             INSERT INTO s VALUES (1, 'one'); SELECT v FROM s",
        )
        .arg(grid_connect_string(&[dead, ports[1]]))
        .arg(ADMIN)
        .arg(ADMIN_PW)
        .stdin(Stdio::null())
        .output()
        .expect("run solsql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "solsql failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 rows affected"), "{stdout}");
    assert!(stdout.contains("one"), "{stdout}");
    // A statement that fails still fails with its code and exit status 1.
    let out = Command::new(SOLSQL)
        .arg("-e")
        .arg("INSERT INTO s VALUES (1, 'again')")
        .arg(grid_connect_string(&[dead, ports[2]]))
        .arg(ADMIN)
        .arg(ADMIN_PW)
        .stdin(Stdio::null())
        .output()
        .expect("run solsql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("SOLID Table Error 13016"), "{stdout}");

    // The library: a follower first.
    let mut client = grid_client(&[ports[1], ports[2], ports[0]]);
    assert_eq!(client.current(), &endpoint(&nodes[1]));
    assert_eq!(
        client.leader().map(|m| m.name.clone()),
        Some(nodes[leader].name())
    );
    assert_eq!(client.topology().members.len(), 3);
    ok(
        &mut client,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(10))",
    );
    let r = ok(
        &mut client,
        "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')",
    );
    assert_eq!(r.rows_affected, 3);
    // The write ran on the leader, and the read after it runs there too: it sees it.
    assert_eq!(client.current(), &endpoint(&nodes[leader]));
    assert_eq!(count(&mut client, "t"), 3);
    assert_eq!(count(&mut client, "s"), 1);

    nodes[leader].kill9();
    // Let the client's connection to the dead leader sit idle past the probe threshold, as
    // it would between two statements typed by a user (see grid_client::PROBE_WHEN_IDLE).
    std::thread::sleep(Duration::from_millis(200));
    // No reconnect by hand: the same object finds the new leader once it is elected.
    let r = ok(&mut client, "INSERT INTO t VALUES (4, 'd')");
    assert_eq!(r.rows_affected, 1);
    let new_leader = client.leader().map(|m| m.name.clone());
    assert!(
        new_leader == Some(nodes[1].name()) || new_leader == Some(nodes[2].name()),
        "{new_leader:?}"
    );
    assert_eq!(
        count(&mut client, "t"),
        4,
        "rows from before the kill are kept"
    );
    let dead_leader = nodes[leader].name();
    let member = client
        .topology()
        .members
        .iter()
        .find(|m| m.name == dead_leader)
        .cloned();
    assert!(
        member.is_some(),
        "the old leader stays a member until dropped"
    );

    // The survivors agree on the new leader and hold every row.
    let mut elected = None;
    wait_for("the survivors to agree on a leader", SETTLE, || {
        elected = agreed_leader(&nodes, &[1, 2]);
        elected.is_some()
    });
    let elected = elected.expect("checked by wait_for");
    assert_eq!(new_leader, Some(nodes[elected].name()));
    assert_eq!(
        nodes[elected].client().ok("SELECT COUNT(*) FROM t").rows,
        vec![vec![Value::Int(4)]]
    );
    rt().block_on(client.logout());
}

/// The seed list names one node; the client adds a node itself and so learns it, and
/// keeps working through the learned nodes after the seed dies, whatever its role.
#[test]
fn the_client_learns_added_nodes_and_survives_the_loss_of_its_only_seed() {
    let mut nodes = form_grid(1);
    let seed = 0;
    let mut client = grid_client(&[nodes[seed].port]);
    assert_eq!(client.topology().members.len(), 2);
    ok(&mut client, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
    ok(&mut client, "INSERT INTO t VALUES (1)");

    // ADD NODE through the client: afterwards it knows the new node.
    let mut d = Node::grid_node();
    d.start(&["-x", "gridnode"]);
    let r = ok(
        &mut client,
        &format!("ALTER GRID g ADD NODE {} {}", d.name(), d.connect_clause()),
    );
    assert_eq!(r.rows.len(), 3, "{r:?}");
    assert!(
        client.topology().members.iter().any(|m| m.name == d.name()),
        "{:?}",
        client.topology()
    );
    assert!(client.known_nodes().contains(&endpoint(&d)));
    nodes.push(d);
    // Every member knows the add committed before the seed dies (a grid of two voters
    // before the add cannot elect without the old leader otherwise; ARCHITECTURE.md).
    for m in &nodes {
        wait_for("the add to reach every member", SETTLE, || {
            let members = m.members();
            members.len() == 3 && members.iter().all(|(_, s, _)| s == "MEMBER_ONLINE")
        });
    }
    let seed_was_leader = client.leader().map(|m| m.name.clone()) == Some(nodes[seed].name());

    nodes[seed].kill9();
    std::thread::sleep(Duration::from_millis(200));
    ok(&mut client, "INSERT INTO t VALUES (2)");
    assert_eq!(count(&mut client, "t"), 2);
    assert_ne!(client.current(), &endpoint(&nodes[seed]));
    if seed_was_leader {
        let leader = client.leader().map(|m| m.name.clone());
        assert!(
            leader == Some(nodes[1].name()) || leader == Some(nodes[2].name()),
            "{leader:?}"
        );
    }
    // Reads keep working too, on a node the client learned.
    let r = ok(
        &mut client,
        "SELECT NAME FROM SYS_GRID_NODES WHERE ROLE = 'LEADER'",
    );
    assert_eq!(r.rows.len(), 1, "{r:?}");
    rt().block_on(client.logout());
}
