//! Real-process tests of the fault points (`SOLIDGRID_FAULT`, `src/grid/fault.rs`): a node
//! aborts — as abruptly as `kill -9` — at a named moment of a membership change; what died
//! is restarted; then the outcome must be the same on every node and match what the
//! console was told: committed → the node is `MEMBER_ONLINE` everywhere; rolled back or
//! refused → it is absent everywhere; connection lost or 18510 → either, but identical on
//! every node. (A leader dying after its quorum may still see its change committed by the
//! next leader: the quorum rule makes that correct.)

mod common;

use std::time::Duration;

use common::{ADMIN, ADMIN_PW, Node, form_grid, wait_for};
use solidgrid::client::{ClientError, QueryResult};
use solidgrid::error::code;
use solidgrid::sql::value::Value;

/// How long the restarted grid may take to agree on the outcome.
const AGREE: Duration = Duration::from_secs(60);

/// What the console was told about an ADD NODE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Committed,
    RolledBack,
    /// Refused before any PREPARE (e.g. the node to add failed during grid start).
    Refused,
    /// 18510 or the connection was lost: either outcome is correct.
    Unknown,
}

fn told(r: &Result<QueryResult, ClientError>) -> Told {
    match r {
        Ok(_) => Told::Committed,
        Err(ClientError::Solid(e)) if e.code == code::ROLLED_BACK => Told::RolledBack,
        Err(ClientError::Solid(e)) if e.code == code::OUTCOME_UNKNOWN => Told::Unknown,
        Err(ClientError::Solid(_)) => Told::Refused,
        Err(_) => Told::Unknown,
    }
}

/// `(NAME, STATE)` of every member in this node's view, names upper-cased; `None` when the
/// node does not answer.
fn view(node: &Node) -> Option<Vec<(String, String)>> {
    let mut c = node.client_as(ADMIN, ADMIN_PW).ok()?;
    let r = c
        .execute("SELECT NAME, STATE FROM SYS_GRID_NODES ORDER BY NODE_ID")
        .ok()?;
    Some(
        r.rows
            .into_iter()
            .map(|row| (row[0].to_string().to_uppercase(), row[1].to_string()))
            .collect(),
    )
}

fn has_leader(node: &Node) -> bool {
    node.leader_name().is_some()
}

/// Waits until every node of `nodes` answers, sees a leader and has the same stable view
/// (no member in a transitory state); returns `name`'s state in it (`None`: absent).
fn agreed_outcome(nodes: &[&Node], name: &str) -> Option<String> {
    let mut last = Vec::new();
    let mut agreed = None;
    let ok = (0..(AGREE.as_millis() / 200)).any(|_| {
        let views: Vec<Option<Vec<(String, String)>>> = nodes.iter().map(|n| view(n)).collect();
        last = views.clone();
        let stable = |v: &Vec<(String, String)>| {
            v.iter()
                .all(|(_, s)| s == "MEMBER_ONLINE" || s == "MEMBER_OFFLINE" || s == "MEMBER_FAILED")
        };
        let done = views.iter().all(|v| v.as_ref().is_some_and(stable))
            && views.windows(2).all(|w| w[0] == w[1])
            && nodes.iter().all(|n| has_leader(n));
        if done {
            let v = views[0].clone().expect("answered");
            agreed = Some(
                v.into_iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, s)| s),
            );
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
        false
    });
    assert!(ok, "the nodes did not agree within {AGREE:?}: {last:?}");
    agreed.expect("set when agreed")
}

/// A founder started with `env` (it leads) and two nodes added to it.
fn grid_with_founder_env(env: &[(&str, &str)]) -> Vec<Node> {
    let mut founder = Node::grid_node();
    founder.spawn_with_env(&["-U", ADMIN, "-P", ADMIN_PW], env);
    founder.wait_ready();
    founder.client().ok("CREATE GRID g");
    let mut nodes = vec![founder];
    for _ in 0..2 {
        let mut n = Node::grid_node();
        n.start(&["-x", "gridnode"]);
        n.add_to(&nodes[0])
            .unwrap_or_else(|e| panic!("ADD NODE {}: {e}", n.name()));
        nodes.push(n);
    }
    nodes
}

fn assert_aborted_at(node: &mut Node, point: &str) {
    let status = node.wait_exit();
    assert!(!status.success(), "{point}: the node exited with {status}");
    assert!(
        node.stderr().contains(&format!("SOLIDGRID_FAULT {point}")),
        "{point}: stderr:\n{}",
        node.stderr()
    );
}

/// Checks the agreed outcome against what the console was told, and that the grid goes on.
fn check_outcome(members: &[&Node], joiner: &Node, told: Told, point: &str) {
    let name = joiner.name();
    let outcome = agreed_outcome(members, &name);
    eprintln!("{point}: console told {told:?}, outcome {outcome:?}");
    match told {
        Told::Committed => assert_eq!(outcome.as_deref(), Some("MEMBER_ONLINE"), "{point}"),
        Told::RolledBack | Told::Refused => assert_eq!(outcome, None, "{point}"),
        Told::Unknown => assert!(
            outcome.is_none() || outcome.as_deref() == Some("MEMBER_ONLINE"),
            "{point}: {outcome:?}"
        ),
    }
    let mut all: Vec<&Node> = members.to_vec();
    if outcome.is_some() {
        // An added node agrees too.
        all.push(joiner);
        assert_eq!(
            agreed_outcome(&all, &name).as_deref(),
            Some("MEMBER_ONLINE")
        );
    }
    // The grid goes on: a write on the leader reaches every node.
    let leader = all
        .iter()
        .find(|n| {
            n.leader_name()
                .is_some_and(|l| l.eq_ignore_ascii_case(&n.name()))
        })
        .expect("a leader among the nodes");
    leader
        .client()
        .ok("CREATE TABLE after_fault (id INTEGER PRIMARY KEY)");
    leader.client().ok("INSERT INTO after_fault VALUES (1)");
    for n in &all {
        wait_for("the write after the fault", Duration::from_secs(20), || {
            n.client()
                .execute("SELECT COUNT(*) FROM after_fault")
                .is_ok_and(|r| r.rows == vec![vec![Value::Int(1)]])
        });
    }
}

/// The leader aborts at `point` during `ADD NODE`; it is restarted without the fault.
fn leader_dies_at(point: &str) {
    let mut joiner = Node::grid_node();
    let target = joiner.name();
    let env = [
        ("SOLIDGRID_FAULT", point),
        ("SOLIDGRID_FAULT_TARGET", target.as_str()),
    ];
    let mut nodes = grid_with_founder_env(&env);
    joiner.start(&["-x", "gridnode"]);
    let r = joiner.add_to(&nodes[0]);
    let told = told(&r);
    assert_aborted_at(&mut nodes[0], point);
    nodes[0].start(&[]);
    let members: Vec<&Node> = nodes.iter().collect();
    check_outcome(&members, &joiner, told, point);
}

#[test]
fn leader_after_prepare_durable() {
    leader_dies_at("leader-after-prepare-durable");
}

#[test]
fn leader_after_quorum_before_commit() {
    leader_dies_at("leader-after-quorum-before-commit");
}

#[test]
fn leader_after_commit_before_broadcast() {
    leader_dies_at("leader-after-commit-before-broadcast");
}

#[test]
fn joiner_after_common_data() {
    let point = "joiner-after-common-data";
    let nodes = form_grid(2);
    let mut joiner = Node::grid_node();
    joiner.spawn_with_env(&["-x", "gridnode"], &[("SOLIDGRID_FAULT", point)]);
    joiner.wait_ready();
    let r = joiner.add_to(&nodes[0]);
    let told = told(&r);
    assert_aborted_at(&mut joiner, point);
    joiner.start(&["-x", "gridnode"]);
    let members: Vec<&Node> = nodes.iter().collect();
    check_outcome(&members, &joiner, told, point);
    if told != Told::Committed {
        // The restarted node, holding provisional data, can be added again.
        joiner
            .add_to(&nodes[0])
            .expect("the node is added again after its restart");
        let mut all = members.clone();
        all.push(&joiner);
        assert_eq!(
            agreed_outcome(&all, &joiner.name()).as_deref(),
            Some("MEMBER_ONLINE")
        );
    }
}

#[test]
fn during_snapshot_install() {
    let point = "during-snapshot-install";
    let env = [("SOLIDGRID_COMPACT_ENTRIES", "20")];
    let mut founder = Node::grid_node();
    founder.spawn_with_env(&["-U", ADMIN, "-P", ADMIN_PW], &env);
    founder.wait_ready();
    founder.client().ok("CREATE GRID g");
    let mut nodes = vec![founder];
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
    // Far more entries than the log keeps: the leader compacts past what node 3 has, so it
    // sends node 3 a snapshot when it is back.
    for i in 0..100 {
        leader.ok(&format!("INSERT INTO t VALUES ({i})"));
    }
    nodes[2].spawn_with_env(&[], &[env[0], ("SOLIDGRID_FAULT", point)]);
    assert_aborted_at(&mut nodes[2], point);
    nodes[2].spawn_with_env(&[], &env);
    nodes[2].wait_ready();
    for n in &nodes {
        wait_for(
            "every node to hold the 100 rows",
            Duration::from_secs(60),
            || {
                n.client()
                    .execute("SELECT COUNT(*) FROM t")
                    .is_ok_and(|r| r.rows == vec![vec![Value::Int(100)]])
            },
        );
    }
    let members: Vec<&Node> = nodes.iter().collect();
    agreed_outcome(&members, "none");
    leader.ok("INSERT INTO t VALUES (1000)");
    for n in &nodes {
        wait_for(
            "replication after the snapshot",
            Duration::from_secs(20),
            || {
                n.client()
                    .execute("SELECT COUNT(*) FROM t")
                    .is_ok_and(|r| r.rows == vec![vec![Value::Int(101)]])
            },
        );
    }
}
