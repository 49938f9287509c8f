//! Real-process tests of the grid: leader election, ADD NODE as a two-phase commit, its
//! refusals and failure branches, follower routing, restarts and peer authentication.

mod common;

use std::time::{Duration, Instant};

use common::{Node, form_grid, grid_ini, wait_for};
use solidgrid::client::ClientError;
use solidgrid::error::code;
use solidgrid::sql::value::Value;

fn online(name: &str) -> (String, String) {
    (name.to_string(), "MEMBER_ONLINE".to_string())
}

fn names_states(node: &Node) -> Vec<(String, String)> {
    node.members().into_iter().map(|(n, s, _)| (n, s)).collect()
}

fn solid_code(r: Result<solidgrid::client::QueryResult, ClientError>) -> u32 {
    match r {
        Err(ClientError::Solid(e)) => e.code,
        Err(e) => panic!("expected a SOLID error, got {e}"),
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

#[test]
fn a_three_node_grid_is_built_with_statements_and_replicates_schema_and_users() {
    let nodes = form_grid(2);
    let expected: Vec<_> = nodes.iter().map(|n| online(&n.name())).collect();
    assert_eq!(names_states(&nodes[0]), expected);
    let roles: Vec<String> = nodes[0].members().into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(roles, vec!["LEADER", "FOLLOWER", "FOLLOWER"]);

    // DDL, data and users made on the leader reach every node through the grid log.
    let mut leader = nodes[0].client();
    leader.ok("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(10))");
    leader.ok("INSERT INTO t VALUES (1, 'one'), (2, 'two')");
    leader.ok("CREATE USER reader IDENTIFIED BY 'reader-pw'");
    for follower in &nodes[1..] {
        wait_for("replication to a follower", Duration::from_secs(10), || {
            follower
                .client()
                .execute("SELECT COUNT(*) FROM t")
                .is_ok_and(|r| r.rows == vec![vec![Value::Int(2)]])
        });
        assert_eq!(
            names_states(follower),
            expected,
            "followers see the same membership"
        );
        wait_for(
            "the new user on a follower",
            Duration::from_secs(10),
            || follower.client_as("reader", "reader-pw").is_ok(),
        );
    }
    // The reply to ADD NODE carries the configuration index, the state and the topology.
    let mut n4 = Node::grid_node();
    n4.start(&["-x", "gridnode"]);
    let r = n4.add_to(&nodes[0]).expect("add a fourth node");
    assert_eq!(r.columns[0].0, "CONFIG_INDEX");
    assert_eq!(r.rows.len(), 4);
    assert!(
        r.rows
            .iter()
            .any(|row| row[2] == Value::Text(n4.name())
                && row[4] == Value::Text("MEMBER_ONLINE".into())),
        "{r:?}"
    );
    let out = nodes[0].solsql("ADMIN COMMAND 'grid nodeinfo';");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&n4.name()) && text.contains("LEADER"),
        "{text}"
    );
}

#[test]
fn add_node_refusals_have_their_codes() {
    let nodes = form_grid(0);
    let leader = &nodes[0];

    // A node that already has a database.
    let mut with_data = Node::grid_node();
    with_data.start_new();
    assert_eq!(solid_code(with_data.add_to(leader)), code::NODE_HAS_DATA);

    // A node that is not grid-enabled (it has no peer service at all, or refuses).
    let mut plain = Node::new();
    plain.start(&["-x", "gridnode"]);
    let code_plain = solid_code(plain.add_to(leader));
    assert!(
        code_plain == code::GRID_NOT_ENABLED,
        "not grid-enabled: got {code_plain}"
    );

    // Nothing listens there.
    let ghost_port = common::free_port();
    let r = leader.client().execute(&format!(
        "ALTER GRID g ADD NODE ghost CONNECT 'tcp 127.0.0.1 {ghost_port}'"
    ));
    assert_eq!(solid_code(r), code::NODE_UNREACHABLE);

    // A name already in the grid.
    let r = leader.client().execute(&format!(
        "ALTER GRID g ADD NODE {} CONNECT 'tcp 127.0.0.1 {}'",
        leader.name(),
        common::free_port()
    ));
    assert_eq!(solid_code(r), code::UNKNOWN_NODE);

    // A wrong grid secret: the probe is refused between nodes.
    let mut stranger = Node::with_ini(&grid_ini("another-secret-entirely"));
    stranger.start(&["-x", "gridnode"]);
    assert_eq!(solid_code(stranger.add_to(leader)), code::PEER_AUTH);

    // Nothing of the refused adds is left behind.
    assert_eq!(names_states(leader), vec![online(&leader.name())]);
    // Every refused node is still empty and can be added once fixed.
    let mut fresh = Node::grid_node();
    fresh.start(&["-x", "gridnode"]);
    fresh
        .add_to(leader)
        .expect("a good node is added after the refusals");
}

#[test]
fn followers_refuse_leader_statements_naming_the_leader() {
    let nodes = form_grid(2);
    let mut follower = nodes[1].client();
    match follower.execute("CREATE TABLE x (id INTEGER)") {
        Err(ClientError::Solid(e)) => {
            assert_eq!(e.code, code::NOT_LEADER);
            assert!(e.message.contains(&nodes[0].name()), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let mut n4 = Node::grid_node();
    n4.start(&["-x", "gridnode"]);
    assert_eq!(solid_code(n4.add_to(&nodes[1])), code::NOT_LEADER);
    // Reads work on a follower.
    follower.ok("SELECT * FROM SYS_GRID_NODES");
}

#[test]
fn a_killed_leader_is_replaced_and_the_new_leader_adds_nodes() {
    let mut nodes = form_grid(2);
    let old = nodes[0].name();
    nodes[0].kill9();
    let started = Instant::now();
    let mut new_leader = None;
    wait_for("a new leader", Duration::from_secs(20), || {
        for (i, n) in nodes.iter().enumerate().skip(1) {
            if let Some(l) = n.leader_name()
                && l != old
                && l == n.name()
            {
                new_leader = Some(i);
                return true;
            }
        }
        false
    });
    eprintln!("failover took {:?}", started.elapsed());
    let leader = &nodes[new_leader.unwrap()];
    let mut n4 = Node::grid_node();
    n4.start(&["-x", "gridnode"]);
    n4.add_to(leader).expect("ADD NODE on the new leader");
    let states = names_states(leader);
    assert!(states.contains(&online(&n4.name())), "{states:?}");
    // The old leader comes back as a follower of the new one.
    let leader_name = leader.name();
    nodes[0].start(&[]);
    wait_for("the old leader to follow", Duration::from_secs(20), || {
        nodes[0].leader_name().as_deref() == Some(leader_name.as_str())
    });
}

fn joining_node_dies_before_acking(kill_a_follower_first: bool) {
    let mut nodes = form_grid(2);
    if kill_a_follower_first {
        nodes[2].kill9();
    }
    let mut joiner = Node::grid_node();
    joiner.spawn_with_env(
        &["-x", "gridnode"],
        &[("SOLIDGRID_FAULT", "joiner-after-prepare-durable")],
    );
    joiner.wait_ready();
    let r = joiner.add_to(&nodes[0]);
    assert_eq!(solid_code(r), code::ROLLED_BACK);
    // Rolled back by the old voters' majority: no trace anywhere.
    let alive: Vec<&Node> = if kill_a_follower_first {
        nodes[..2].iter().collect()
    } else {
        nodes.iter().collect()
    };
    for n in &alive {
        wait_for("the rollback everywhere", Duration::from_secs(10), || {
            !names_states(n)
                .iter()
                .any(|(name, _)| *name == joiner.name())
        });
        assert!(
            n.msglog().contains("rolled back"),
            "solmsg.out of {} says so: {}",
            n.name(),
            n.msglog()
        );
    }
    // The grid goes on: a change runs after the rollback.
    let mut other = Node::grid_node();
    other.start(&["-x", "gridnode"]);
    other.add_to(&nodes[0]).expect("the grid is not stranded");
    // The joining node restarts with provisional data and can be added again.
    joiner.wait_exit();
    joiner.start(&["-x", "gridnode"]);
    joiner
        .add_to(&nodes[0])
        .expect("the rolled-back node is added again");
}

#[test]
fn a_joining_node_dying_before_its_ack_is_rolled_back() {
    joining_node_dies_before_acking(false);
}

#[test]
fn a_joining_node_dying_is_rolled_back_with_an_old_follower_down() {
    joining_node_dies_before_acking(true);
}

#[test]
fn restarting_the_whole_grid_gives_back_the_same_membership() {
    let mut nodes = form_grid(2);
    nodes[0]
        .client()
        .ok("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    nodes[0].client().ok("INSERT INTO t VALUES (1), (2), (3)");
    let before = names_states(&nodes[0]);
    for n in nodes.iter_mut() {
        n.kill9();
    }
    let leader = common::restart_all(&mut nodes);
    let l = &nodes[leader];
    // Nodes start at different moments; failure detection may briefly mark a late one.
    wait_for("the same membership", Duration::from_secs(30), || {
        names_states(l) == before
    });
    assert_eq!(
        l.client().ok("SELECT COUNT(*) FROM t").rows,
        vec![vec![Value::Int(3)]]
    );
    l.client().ok("INSERT INTO t VALUES (4)");
}

#[test]
fn without_a_majority_grid_statements_fail_instead_of_hanging() {
    let mut nodes = form_grid(2);
    nodes[1].kill9();
    nodes[2].kill9();
    let started = Instant::now();
    let mut c = nodes[0].client();
    let mut last = 0;
    wait_for("18502 on the lone node", Duration::from_secs(30), || {
        last = solid_code(c.execute("CREATE TABLE lonely (id INTEGER)"));
        last == code::NO_LEADER
    });
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_restarted_node_far_behind_catches_up_by_snapshot() {
    let env = [("SOLIDGRID_COMPACT_ENTRIES", "20")];
    let mut nodes: Vec<Node> = Vec::new();
    let mut founder = Node::grid_node();
    founder.spawn_with_env(&["-U", common::ADMIN, "-P", common::ADMIN_PW], &env);
    founder.wait_ready();
    founder.client().ok("CREATE GRID g");
    nodes.push(founder);
    for _ in 0..2 {
        let mut n = Node::grid_node();
        n.spawn_with_env(&["-x", "gridnode"], &env);
        n.wait_ready();
        n.add_to(&nodes[0]).expect("add");
        nodes.push(n);
    }
    let mut leader = nodes[0].client();
    leader.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    nodes[2].kill9();
    // Far more entries than the log keeps: the leader compacts past what node 3 has.
    for i in 0..100 {
        leader.ok(&format!("INSERT INTO t VALUES ({i})"));
    }
    nodes[2].spawn_with_env(&[], &env);
    nodes[2].wait_ready();
    wait_for(
        "the restarted node to catch up",
        Duration::from_secs(30),
        || {
            nodes[2]
                .client()
                .execute("SELECT COUNT(*) FROM t")
                .is_ok_and(|r| r.rows == vec![vec![Value::Int(100)]])
        },
    );
    // The data lands just before the message-log line: wait for the line too.
    wait_for(
        "the snapshot install in solmsg.out",
        Duration::from_secs(10),
        || nodes[2].msglog().contains("installed a snapshot"),
    );
    // And it keeps following after the snapshot.
    leader.ok("INSERT INTO t VALUES (1000)");
    wait_for(
        "replication after the snapshot",
        Duration::from_secs(10),
        || {
            nodes[2]
                .client()
                .execute("SELECT COUNT(*) FROM t")
                .is_ok_and(|r| r.rows == vec![vec![Value::Int(101)]])
        },
    );
}

#[test]
fn unopenable_provisional_data_of_an_unfinished_add_is_discarded() {
    // What a crash in the middle of storing the common data leaves: the joining marker and
    // a database file that does not open.
    let mut n = Node::grid_node();
    std::fs::write(n.path().join("solgrid.joining"), "G 2").unwrap();
    std::fs::write(n.path().join("solid.db"), b"not a database").unwrap();
    n.start(&["-x", "gridnode"]);
    assert!(n.msglog().contains("discarding it"), "{}", n.msglog());
    assert!(!n.path().join("solgrid.joining").exists());
    // It is an empty grid node again and can be added.
    let nodes = form_grid(0);
    n.add_to(&nodes[0]).expect("added after discarding");
}
