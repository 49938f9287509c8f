//! Real-process tests of a standalone node: SQL through `solid` and `solsql`, durability
//! across `kill -9`, log recovery, refusals and hostile input.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{ADMIN, ADMIN_PW, Node, append_bytes, rt};
use solidgrid::client::{Client, ConnectString};
use solidgrid::error::code;
use solidgrid::sql::value::Value;

#[test]
fn sql_round_trip_through_solsql() {
    let mut node = Node::new();
    node.start_new();
    let out = node.solsql(
        "CREATE TABLE emp (id INTEGER PRIMARY KEY, name VARCHAR(20) NOT NULL, salary DOUBLE, hired TIMESTAMP, active BOOLEAN);
         INSERT INTO emp VALUES (1, 'Ann', 5000.5, TIMESTAMP '2020-01-02 03:04:05', TRUE), (2, 'Bob', 4000, '2021-06-01 00:00:00', FALSE), (3, 'Cid', NULL, NULL, TRUE);
         SELECT id, name, salary FROM emp WHERE active AND salary IS NOT NULL OR id = 2 ORDER BY id DESC LIMIT 5;
         SELECT COUNT(*), SUM(salary), MIN(name), MAX(id), AVG(salary) FROM emp;",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "solsql failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Ann") && stdout.contains("Bob"), "{stdout}");
    assert!(!stdout.contains("Cid |"), "{stdout}");
    assert!(stdout.contains("2 rows fetched."), "{stdout}");
    assert!(stdout.contains("9000.5"), "sum of salaries: {stdout}");

    // A failing statement in -e mode: error text with its code, non-zero exit, and the
    // statements after it do not run.
    let out = node.solsql("INSERT INTO emp VALUES (1, 'Dup', 1, NULL, TRUE); DROP TABLE emp;");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        text.contains(&format!("SOLID Table Error {}:", code::DUPLICATE_KEY)),
        "{text}"
    );
    let mut c = node.client();
    assert_eq!(
        c.ok("SELECT COUNT(*) FROM emp").rows,
        vec![vec![Value::Int(3)]]
    );
}

#[test]
fn sql_statements_through_the_client_library() {
    let mut node = Node::new();
    node.start_new();
    let mut c = node.client();
    c.ok("CREATE TABLE t (a INTEGER, b VARCHAR(5), PRIMARY KEY (a))");
    let r = c.ok("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, NULL)");
    assert_eq!(r.rows_affected, 3);
    assert_eq!(
        c.err_code("INSERT INTO t VALUES (4, 'toolong')"),
        code::VALUE_TOO_LONG
    );
    assert_eq!(
        c.err_code("INSERT INTO t VALUES (NULL, 'n')"),
        code::NOT_NULL_VIOLATION
    );
    assert_eq!(
        c.err_code("INSERT INTO t VALUES (2, 'dup')"),
        code::DUPLICATE_KEY
    );
    assert_eq!(c.err_code("SELECT * FROM nope"), code::TABLE_NOT_FOUND);
    assert_eq!(c.err_code("SELECT zz FROM t"), code::COLUMN_NOT_FOUND);
    assert_eq!(c.err_code("SELEC * FROM t"), code::SYNTAX);
    assert_eq!(c.err_code("CREATE TABLE t (x INTEGER)"), code::TABLE_EXISTS);

    let r = c.ok("UPDATE t SET a = a + 10 WHERE a >= 2");
    assert_eq!(r.rows_affected, 2);
    let r = c.ok("SELECT a FROM t ORDER BY a");
    assert_eq!(
        r.rows,
        vec![
            vec![Value::Int(1)],
            vec![Value::Int(12)],
            vec![Value::Int(13)]
        ]
    );
    c.ok("ALTER TABLE t ADD COLUMN c BOOLEAN");
    let r = c.ok("SELECT a, c FROM t WHERE c IS NULL AND NOT (a = 1)");
    assert_eq!(r.rows.len(), 2);
    assert_eq!(r.columns[1].0, "C");
    let r = c.ok("DELETE FROM t WHERE b IS NULL");
    assert_eq!(r.rows_affected, 1);
    assert_eq!(
        c.ok("SELECT COUNT(*) FROM t").rows,
        vec![vec![Value::Int(2)]]
    );
    c.ok("DROP TABLE t");
    assert_eq!(c.err_code("SELECT * FROM t"), code::TABLE_NOT_FOUND);

    // Everything acknowledged survives a clean restart.
    c.ok("CREATE TABLE k (id BIGINT PRIMARY KEY, v VARCHAR(10))");
    c.ok("INSERT INTO k VALUES (1, 'one'), (2, 'two')");
    drop(c);
    assert!(node.stop().success());
    assert!(
        node.msglog().contains("shutdown complete"),
        "{}",
        node.msglog()
    );
    node.start(&[]);
    let mut c = node.client();
    assert_eq!(
        c.ok("SELECT v FROM k ORDER BY id").rows,
        vec![
            vec![Value::Text("one".into())],
            vec![Value::Text("two".into())]
        ]
    );
}

#[test]
fn users_and_privileges() {
    let mut node = Node::new();
    node.start_new();
    match node.client_as(ADMIN, "wrong") {
        Err(solidgrid::client::ClientError::Solid(e)) => assert_eq!(e.code, code::LOGIN_FAILED),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    let mut admin = node.client();
    admin.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    admin.ok("CREATE USER joe IDENTIFIED BY 'joe-pw'");
    assert_eq!(
        admin.err_code("CREATE USER joe IDENTIFIED BY 'again'"),
        code::USER_EXISTS
    );
    let mut joe = node.client_as("joe", "joe-pw").expect("joe logs in");
    joe.ok("INSERT INTO t VALUES (1)");
    assert_eq!(
        joe.ok("SELECT COUNT(*) FROM t").rows,
        vec![vec![Value::Int(1)]]
    );
    assert_eq!(
        joe.err_code("CREATE TABLE u (id INTEGER)"),
        code::NOT_PERMITTED
    );
    assert_eq!(joe.err_code("DROP TABLE t"), code::NOT_PERMITTED);
    assert_eq!(
        joe.err_code("CREATE USER x IDENTIFIED BY 'y'"),
        code::NOT_PERMITTED
    );
    assert_eq!(joe.err_code("ADMIN COMMAND 'makecp'"), code::NOT_PERMITTED);
    admin.ok("GRANT ADMIN TO joe");
    joe.ok("CREATE TABLE u (id INTEGER)");
    assert_eq!(
        admin.err_code(&format!("DROP USER {ADMIN}")),
        code::LAST_ADMIN
    );
    admin.ok("DROP USER joe");
    assert_eq!(joe.err_code("SELECT COUNT(*) FROM t"), code::BAD_SESSION);
    // The password is never written anywhere in clear.
    node.stop();
    for entry in std::fs::read_dir(node.path()).unwrap().flatten() {
        if entry.path().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(
                !hay.contains("joe-pw"),
                "{} holds the password",
                entry.path().display()
            );
            assert!(
                !hay.contains(ADMIN_PW),
                "{} holds the password",
                entry.path().display()
            );
        }
    }
}

#[test]
fn acknowledged_inserts_survive_kill_9() {
    let mut node = Node::new();
    node.start_new();
    node.client()
        .ok("CREATE TABLE acked (id BIGINT PRIMARY KEY, pad VARCHAR(100))");
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cs = ConnectString::parse(&node.connect_string()).unwrap();
    let writer = {
        let acked = acked.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            rt().block_on(async {
                let mut c = Client::connect(&cs).await.unwrap();
                c.login(ADMIN, ADMIN_PW).await.unwrap();
                let mut id = 1u64;
                while !stop.load(Ordering::SeqCst) {
                    let sql =
                        format!("INSERT INTO acked VALUES ({id}, 'row {id} padding padding')");
                    if c.execute(&sql).await.is_err() {
                        break; // the node died under us: this one is unacknowledged
                    }
                    acked.store(id, Ordering::SeqCst);
                    id += 1;
                }
            })
        })
    };
    // Let some inserts through, then kill the node while the writer is mid-stream.
    while acked.load(Ordering::SeqCst) < 200 {
        std::thread::sleep(Duration::from_millis(10));
    }
    node.kill9();
    let last_acked = acked.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();

    node.start(&[]);
    let mut c = node.client();
    let r = c.ok("SELECT COUNT(*), MIN(id), MAX(id) FROM acked");
    let Value::Int(count) = r.rows[0][0] else {
        panic!("{r:?}")
    };
    let Value::Int(max) = r.rows[0][2] else {
        panic!("{r:?}")
    };
    // Every acknowledged row is there; at most the one in flight at the kill beyond it.
    assert!(
        count as u64 >= last_acked,
        "lost rows: {count} < {last_acked}"
    );
    assert!(
        max as u64 <= last_acked + 1,
        "phantom rows: {max} > {last_acked}+1"
    );
    assert_eq!(count, max, "ids are gap-free");
    assert!(node.msglog().contains("recovery:"), "{}", node.msglog());
}

#[test]
fn torn_log_tail_is_truncated_on_recovery() {
    let mut node = Node::new();
    node.start_new();
    let mut c = node.client();
    c.ok("CREATE TABLE t (id INTEGER PRIMARY KEY)");
    c.ok("INSERT INTO t VALUES (1), (2), (3)");
    drop(c);
    node.kill9();
    let last = node.log_segments().pop().expect("a log segment");
    // Half a record header: what a crash in the middle of a write leaves.
    append_bytes(&last, &[0x20, 0x00, 0x00, 0x00, 0xde, 0xad]);
    node.start(&[]);
    let mut c = node.client();
    assert_eq!(
        c.ok("SELECT COUNT(*) FROM t").rows,
        vec![vec![Value::Int(3)]]
    );
    c.ok("INSERT INTO t VALUES (4)");
    assert!(
        node.msglog().contains("torn"),
        "recovery reports the truncation: {}",
        node.msglog()
    );
}

#[test]
fn corruption_before_the_tail_refuses_to_start() {
    let mut node = Node::new();
    node.start_new();
    let mut c = node.client();
    c.ok("CREATE TABLE t (id INTEGER PRIMARY KEY, v VARCHAR(50))");
    for i in 0..20 {
        c.ok(&format!(
            "INSERT INTO t VALUES ({i}, 'some text for record {i}')"
        ));
    }
    drop(c);
    node.kill9();
    let seg = node.log_segments().pop().expect("a log segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();

    node.spawn(&[]);
    let status = node.wait_exit();
    assert!(!status.success());
    let err = node.stderr();
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&name), "names the file: {err}");
    assert!(err.contains("offset"), "names the offset: {err}");
    assert!(node.msglog().contains(&name), "{}", node.msglog());
    // The log itself was not modified.
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
}

#[test]
fn a_second_process_on_the_same_directory_is_refused() {
    let mut node = Node::new();
    node.start_new();
    // A second process pointed at the first one's directory.
    let out = std::process::Command::new(common::SOLID)
        .arg("-c")
        .arg(node.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another solid process"), "{err}");
    // The first is unharmed.
    node.client().ok("CREATE TABLE still_alive (id INTEGER)");
}

#[test]
fn no_database_without_an_admin_user() {
    let mut node = Node::new();
    node.spawn(&[]);
    assert!(!node.wait_exit().success());
    assert!(node.stderr().contains("-U"), "{}", node.stderr());
    assert!(!node.path().join("solid.db").exists());
}

#[test]
fn an_empty_gridnode_answers_the_status_probe() {
    let mut node = Node::with_ini("[Grid]\nGridEnabled = yes\nSecret = test-grid-secret\n");
    node.start(&["-x", "gridnode"]);
    let cs = ConnectString::parse(&node.connect_string()).unwrap();
    let status = rt().block_on(async {
        let mut c = Client::connect(&cs).await.unwrap();
        c.status().await.unwrap()
    });
    assert_eq!(status.mode, "gridnode");
    assert!(!status.has_database);
    assert!(status.grid_enabled);
    match node.client_as(ADMIN, ADMIN_PW) {
        Err(solidgrid::client::ClientError::Solid(e)) => assert_eq!(e.code, code::NO_DATABASE),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("logged in to a node without a database"),
    }
    assert!(!node.path().join("solid.db").exists());
}

#[test]
fn garbage_on_the_port_does_not_crash_the_node() {
    let mut node = Node::new();
    node.start_new();
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0u8; 4096],
        (0..=255u8).cycle().take(100_000).collect::<Vec<u8>>(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
    ] {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", node.port)) {
            let _ = s.write_all(&junk);
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
    node.client().ok("CREATE TABLE fine (id INTEGER)");
}

#[test]
fn bad_configuration_stops_the_node_naming_file_line_and_key() {
    let cases = [
        ("[Grid]\nRaftElectionTimeout = abc\n", "RaftElectionTimeout"),
        ("[Nope]\nX = 1\n", "Nope"),
        ("[Grid]\nNoSuchKey = 1\n", "NoSuchKey"),
        (
            "[Grid]\nRaftElectionTimeout = 100\nRaftHeartbeatTimeout = 90\n",
            "RaftElectionTimeout",
        ),
        ("[Grid]\nGridEnabled = yes\n", "Secret"),
    ];
    for (extra, key) in cases {
        let mut node = Node::with_ini(extra);
        node.spawn(&["-U", ADMIN, "-P", ADMIN_PW]);
        let status = node.wait_exit();
        assert_eq!(status.code(), Some(2), "{extra}: {}", node.stderr());
        let err = node.stderr();
        assert!(err.contains("solid.ini"), "{extra}: {err}");
        assert!(err.contains(key), "{extra}: {err}");
        assert!(err.contains("line"), "{extra}: {err}");
        assert!(
            node.msglog().contains(key),
            "{extra}: solmsg.out: {}",
            node.msglog()
        );
        assert!(
            !node.path().join("solid.db").exists(),
            "{extra}: created a database"
        );
    }
    // A key before any section.
    let mut node = Node::new();
    let ini = std::fs::read_to_string(node.path().join("solid.ini")).unwrap();
    std::fs::write(node.path().join("solid.ini"), format!("Stray = 1\n{ini}")).unwrap();
    node.spawn(&["-U", ADMIN, "-P", ADMIN_PW]);
    assert_eq!(node.wait_exit().code(), Some(2), "{}", node.stderr());
    assert!(node.stderr().contains("Stray"), "{}", node.stderr());
}
