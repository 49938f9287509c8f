//! Real-process tests of the membership lifecycle (issue 4): DROP NODE [RECYCLE], SET NODE
//! OFFLINE/ONLINE, failure detection and automatic reconnection, grid shutdown, refusals.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, ADMIN_PW, Node, SECRET, wait_for};
use solidgrid::client::ClientError;
use solidgrid::error::code;
use solidgrid::sql::value::Value;

/// Grid settings with a short failure timeout so the tests do not wait long.
fn lifecycle_ini() -> String {
    format!(
        "[Grid]\nGridEnabled = yes\nSecret = {SECRET}\nRaftElectionTimeout = 600\nNodeFailureTimeout = 2000\n"
    )
}

fn grid_of(n: usize) -> Vec<Node> {
    let mut founder = Node::with_ini(&lifecycle_ini());
    founder.start_new();
    founder.client().ok("CREATE GRID g");
    let mut nodes = vec![founder];
    for _ in 1..n {
        let mut node = Node::with_ini(&lifecycle_ini());
        node.start(&["-x", "gridnode"]);
        node.add_to(&nodes[0]).expect("add");
        nodes.push(node);
    }
    nodes
}

fn state_of(leader: &Node, name: &str) -> Option<String> {
    leader
        .members()
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, _)| s)
}

fn code_of(r: Result<solidgrid::client::QueryResult, ClientError>) -> u32 {
    match r {
        Err(ClientError::Solid(e)) => e.code,
        Err(e) => panic!("expected a SOLID error, got {e}"),
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

#[test]
fn drop_an_online_an_offline_and_a_failed_node() {
    // Five nodes: after two drops three voters remain, so one can fail and be marked.
    let mut nodes = grid_of(5);
    let leader = nodes.remove(0);
    let mut c = leader.client();

    // Online → dropped: the row goes in the same commit, the node learns it is out.
    let online = nodes.pop().unwrap();
    c.ok(&format!("ALTER GRID g DROP NODE {}", online.name()));
    assert_eq!(state_of(&leader, &online.name()), None);
    wait_for("the dropped node to leave", Duration::from_secs(10), || {
        online.msglog().contains("dropped from the grid")
    });
    // It is a standalone server now: no grid rows.
    assert_eq!(
        online
            .client()
            .ok("SELECT COUNT(*) FROM SYS_GRID_NODES")
            .rows,
        vec![vec![Value::Int(0)]]
    );

    // Offline → dropped.
    let offline = nodes.pop().unwrap();
    c.ok(&format!("ALTER GRID g SET NODE {} OFFLINE", offline.name()));
    assert_eq!(
        state_of(&leader, &offline.name()).as_deref(),
        Some("MEMBER_OFFLINE")
    );
    c.ok(&format!("ALTER GRID g DROP NODE {}", offline.name()));
    assert_eq!(state_of(&leader, &offline.name()), None);

    // Failed → dropped.
    let mut failed = nodes.pop().unwrap();
    failed.kill9();
    wait_for(
        "the killed node to be marked failed",
        Duration::from_secs(20),
        || state_of(&leader, &failed.name()).as_deref() == Some("MEMBER_FAILED"),
    );
    c.ok(&format!("ALTER GRID g DROP NODE {}", failed.name()));
    assert_eq!(state_of(&leader, &failed.name()), None);
    assert_eq!(leader.members().len(), 2);
}

#[test]
fn drop_recycle_empties_the_node_and_it_can_be_added_again() {
    let nodes = grid_of(3);
    let mut c = nodes[0].client();
    c.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    c.ok("INSERT INTO t VALUES (1)");
    let n3 = &nodes[2];
    c.ok(&format!("ALTER GRID g DROP NODE {} RECYCLE", n3.name()));
    wait_for(
        "the recycled node to be empty",
        Duration::from_secs(10),
        || !n3.path().join("solid.db").exists() && n3.msglog().contains("empty grid node again"),
    );
    // The same process is added again and gets the grid's data.
    n3.add_to(&nodes[0])
        .expect("the recycled node is added again");
    wait_for(
        "the data on the re-added node",
        Duration::from_secs(10),
        || {
            n3.client()
                .execute("SELECT COUNT(*) FROM t")
                .is_ok_and(|r| r.rows == vec![vec![Value::Int(1)]])
        },
    );
}

#[test]
fn offline_then_online_brings_the_node_back_with_everything() {
    let nodes = grid_of(3);
    let mut c = nodes[0].client();
    c.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    let n2 = &nodes[1];
    c.ok(&format!("ALTER GRID g SET NODE {} OFFLINE", n2.name()));
    assert_eq!(
        state_of(&nodes[0], &n2.name()).as_deref(),
        Some("MEMBER_OFFLINE")
    );
    // Writes go on without it (two voters left: both needed).
    for i in 0..20 {
        c.ok(&format!("INSERT INTO t VALUES ({i})"));
    }
    c.ok("CREATE USER later IDENTIFIED BY 'later-pw'");
    c.ok(&format!("ALTER GRID g SET NODE {} ONLINE", n2.name()));
    assert_eq!(
        state_of(&nodes[0], &n2.name()).as_deref(),
        Some("MEMBER_ONLINE")
    );
    // The quorum rule needed its PREPARE ack: it holds everything written before.
    wait_for("the node's data", Duration::from_secs(10), || {
        n2.client()
            .execute("SELECT COUNT(*) FROM t")
            .is_ok_and(|r| r.rows == vec![vec![Value::Int(20)]])
    });
    n2.client_as("later", "later-pw")
        .expect("the user made while offline");
}

#[test]
fn a_killed_follower_is_marked_failed_and_comes_back_by_itself() {
    let mut nodes = grid_of(3);
    let name = nodes[2].name();
    nodes[2].kill9();
    let killed = Instant::now();
    wait_for("MEMBER_FAILED", Duration::from_secs(20), || {
        state_of(&nodes[0], &name).as_deref() == Some("MEMBER_FAILED")
    });
    eprintln!("kill -9 → MEMBER_FAILED: {:?}", killed.elapsed());
    assert!(
        nodes[0].msglog().contains("MARK NODE FAILED"),
        "{}",
        nodes[0].msglog()
    );
    // Writes go on with the two remaining voters.
    nodes[0]
        .client()
        .ok("CREATE TABLE after_failure (id INTEGER)");
    nodes[2].start(&[]);
    let restarted = Instant::now();
    wait_for(
        "MEMBER_ONLINE again without a statement",
        Duration::from_secs(20),
        || state_of(&nodes[0], &name).as_deref() == Some("MEMBER_ONLINE"),
    );
    eprintln!("restart → MEMBER_ONLINE: {:?}", restarted.elapsed());
    wait_for(
        "the table made while it was down",
        Duration::from_secs(10),
        || {
            nodes[2]
                .client()
                .execute("SELECT * FROM after_failure")
                .is_ok()
        },
    );
}

#[test]
fn a_five_node_grid_loses_two_nodes_one_at_a_time_and_can_lose_one_more() {
    let mut nodes = grid_of(5);
    for victim in [4, 3] {
        let name = nodes[victim].name();
        nodes[victim].kill9();
        wait_for(
            "the victim to be marked failed",
            Duration::from_secs(20),
            || state_of(&nodes[0], &name).as_deref() == Some("MEMBER_FAILED"),
        );
    }
    // Three voters left: the leader can go too, and the other two elect one of them.
    let old = nodes[0].name();
    nodes[0].kill9();
    let mut leader = None;
    wait_for(
        "a new leader among the two",
        Duration::from_secs(30),
        || {
            leader = [1, 2].into_iter().find(|&i| {
                nodes[i]
                    .leader_name()
                    .is_some_and(|l| l == nodes[i].name() && l != old)
            });
            leader.is_some()
        },
    );
    let l = &nodes[leader.unwrap()];
    l.client().ok("CREATE TABLE still_working (id INTEGER)");
    let mut fresh = Node::with_ini(&lifecycle_ini());
    fresh.start(&["-x", "gridnode"]);
    fresh
        .add_to(l)
        .expect("a membership change runs on the survivors");
}

#[test]
fn grid_shutdown_stops_every_node_and_a_restart_gives_the_grid_back() {
    let mut nodes = grid_of(3);
    nodes[0]
        .client()
        .ok("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    nodes[0].client().ok("INSERT INTO t VALUES (1), (2)");
    let before: Vec<(String, String)> = nodes[0]
        .members()
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    let r = nodes[0].client().ok("ADMIN COMMAND 'grid shutdown'");
    assert_eq!(r.rows.len(), 3);
    for n in nodes.iter_mut() {
        let status = n.wait_exit();
        assert!(status.success(), "{}: {status}\n{}", n.name(), n.stderr());
        assert!(!n.msglog().contains("MARK NODE FAILED"), "{}", n.msglog());
    }
    let leader = common::restart_all(&mut nodes);
    let l = &nodes[leader];
    wait_for("the same membership", Duration::from_secs(20), || {
        l.members()
            .into_iter()
            .map(|(n, s, _)| (n, s))
            .collect::<Vec<_>>()
            == before
    });
    assert_eq!(
        l.client().ok("SELECT COUNT(*) FROM t").rows,
        vec![vec![Value::Int(2)]]
    );
}

#[test]
fn refused_transitions_have_their_codes() {
    let nodes = grid_of(2);
    let mut c = nodes[0].client();
    let n2 = nodes[1].name();
    // 18508: a transition the table does not allow, naming the current state.
    match c.execute(&format!("ALTER GRID g SET NODE {n2} ONLINE")) {
        Err(ClientError::Solid(e)) => {
            assert_eq!(e.code, code::TRANSITION_NOT_ALLOWED);
            assert!(e.message.contains("MEMBER_ONLINE"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // 18507: unknown node.
    assert_eq!(
        code_of(c.execute("ALTER GRID g DROP NODE nosuchnode")),
        code::UNKNOWN_NODE
    );
    assert_eq!(
        code_of(c.execute("ALTER GRID g SET NODE nosuchnode OFFLINE")),
        code::UNKNOWN_NODE
    );
    // 18506: a second change while one is in flight (an add whose node never acks).
    let mut slow = Node::with_ini(&lifecycle_ini());
    slow.spawn_with_env(
        &["-x", "gridnode"],
        &[("SOLIDGRID_FAULT", "joiner-after-prepare-durable")],
    );
    slow.wait_ready();
    let add = {
        let leader_cs = nodes[0].connect_string();
        let stmt = format!(
            "ALTER GRID g ADD NODE {} {}",
            slow.name(),
            slow.connect_clause()
        );
        std::thread::spawn(move || {
            let cs = solidgrid::client::ConnectString::parse(&leader_cs).unwrap();
            common::rt().block_on(async {
                let mut c = solidgrid::client::Client::connect(&cs).await.unwrap();
                c.login(ADMIN, ADMIN_PW).await.unwrap();
                c.execute(&stmt).await
            })
        })
    };
    wait_for("the add to be under way", Duration::from_secs(10), || {
        slow.msglog().contains("grid start from leader")
    });
    let mut saw_in_progress = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !add.is_finished() {
        if let Err(ClientError::Solid(e)) =
            c.execute(&format!("ALTER GRID g SET NODE {n2} OFFLINE"))
            && e.code == code::CHANGE_IN_PROGRESS
        {
            saw_in_progress = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        saw_in_progress,
        "a second change was not refused with 18506"
    );
    assert_eq!(code_of(add.join().unwrap()), code::ROLLED_BACK);
}

#[test]
fn drop_grid_returns_a_one_node_grid_to_a_standalone_server() {
    let mut nodes = grid_of(2);
    let mut c = nodes[0].client();
    assert_eq!(
        code_of(c.execute("DROP GRID g")),
        code::TRANSITION_NOT_ALLOWED
    );
    c.ok(&format!("ALTER GRID g DROP NODE {}", nodes[1].name()));
    c.ok("CREATE TABLE kept (id INTEGER)");
    c.ok("DROP GRID g");
    assert_eq!(
        c.ok("SELECT COUNT(*) FROM SYS_GRID_NODES").rows,
        vec![vec![Value::Int(0)]]
    );
    c.ok("INSERT INTO kept VALUES (1)");
    drop(c);
    // Still standalone after a restart, with its data.
    nodes[0].stop();
    nodes[0].start(&[]);
    let mut c = nodes[0].client();
    assert_eq!(
        c.ok("SELECT COUNT(*) FROM kept").rows,
        vec![vec![Value::Int(1)]]
    );
    assert_eq!(
        c.ok("SELECT COUNT(*) FROM SYS_GRID_NODES").rows,
        vec![vec![Value::Int(0)]]
    );
    // And it can found a grid again.
    c.ok("CREATE GRID again");
}
