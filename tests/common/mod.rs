//! Shared helpers for the real-process tests: start `solid` in a temporary working
//! directory on a free loopback port, talk to it with the client library or `solsql`, and
//! stop it cleanly or with SIGKILL.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use solidgrid::client::{Client, ClientError, ConnectString, QueryResult};

pub const SOLID: &str = env!("CARGO_BIN_EXE_solid");
pub const SOLSQL: &str = env!("CARGO_BIN_EXE_solsql");
pub const ADMIN: &str = "DBA";
pub const ADMIN_PW: &str = "dba-password";

/// How long a node may take to start answering (a debug build on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A node's working directory and, while it runs, its process.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    /// A fresh working directory with a `solid.ini` listening on a free loopback port.
    pub fn new() -> Node {
        Self::with_ini("")
    }

    /// Like [`Node::new`], with `extra` appended to `solid.ini` (whole sections).
    pub fn with_ini(extra: &str) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let node = Node {
            dir,
            port,
            child: None,
        };
        node.write_ini(extra);
        node
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write_ini(&self, extra: &str) {
        let text = format!(
            "[Com]\nListen = tcp 127.0.0.1 {}\n\n[Srv]\nName = node{}\n\n{extra}\n",
            self.port, self.port
        );
        std::fs::write(self.dir.path().join("solid.ini"), text).expect("write solid.ini");
    }

    pub fn connect_string(&self) -> String {
        format!("tcp 127.0.0.1 {}", self.port)
    }

    /// Spawns `solid -c DIR ARGS…` without waiting for it.
    pub fn spawn(&mut self, args: &[&str]) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::File::create(self.dir.path().join("stderr.txt")).expect("stderr file");
        let child = Command::new(SOLID)
            .arg("-c")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn solid");
        self.child = Some(child);
    }

    /// Starts the node and waits until it answers the status probe.
    pub fn start(&mut self, args: &[&str]) {
        self.spawn(args);
        self.wait_ready();
    }

    /// Creates a database with the standard admin and waits for the node.
    pub fn start_new(&mut self) {
        self.start(&["-U", ADMIN, "-P", ADMIN_PW]);
    }

    pub fn wait_ready(&mut self) {
        self.wait_answering("", None);
    }

    /// Waits until the node answers the status probe (over TLS with `tls`), panicking if it
    /// exits or stays silent past the start-up bound.
    fn wait_answering(&mut self, how: &str, tls: Option<&ClientTls>) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "solid exited during start-up with {status}; stderr:\n{}",
                    self.stderr()
                );
            }
            if rt().block_on(self.try_status(tls)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "solid did not answer{how} within {START_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn try_status(&self, tls: Option<&ClientTls>) -> bool {
        let Ok(cs) = ConnectString::parse(&self.connect_string()) else {
            return false;
        };
        match Client::connect_with_tls(&cs, tls).await {
            Ok(mut c) => c.status().await.is_ok(),
            Err(_) => false,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        wait_timeout(&mut child, Duration::from_secs(30)).expect("solid stops after SIGTERM")
    }

    /// Waits for a node that is expected to exit by itself (e.g. a refused start).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        wait_timeout(&mut child, START_TIMEOUT).expect("solid exits")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default()
    }

    pub fn msglog(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("solmsg.out")).unwrap_or_default()
    }

    /// A logged-in client (blocking helpers below).
    pub fn client(&self) -> SyncClient {
        self.client_as(ADMIN, ADMIN_PW).expect("login")
    }

    pub fn client_as(&self, user: &str, password: &str) -> Result<SyncClient, ClientError> {
        let cs = ConnectString::parse(&self.connect_string()).expect("connect string");
        rt().block_on(async {
            let mut c = Client::connect(&cs).await?;
            c.login(user, password).await?;
            Ok(SyncClient { inner: c })
        })
    }

    /// Runs `solsql -e STATEMENTS` as the admin.
    pub fn solsql(&self, statements: &str) -> Output {
        Command::new(SOLSQL)
            .arg("-e")
            .arg(statements)
            .arg(self.connect_string())
            .arg(ADMIN)
            .arg(ADMIN_PW)
            .stdin(Stdio::null())
            .output()
            .expect("run solsql")
    }

    /// Transaction log segment files, in order.
    pub fn log_segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy().to_string();
                n.starts_with("sol") && n.ends_with(".log")
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One runtime per test thread for the blocking helpers.
pub fn rt() -> &'static tokio::runtime::Runtime {
    thread_local! {
        static RT: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
        ));
    }
    RT.with(|r| *r)
}

/// A blocking wrapper over the async client, for tests.
pub struct SyncClient {
    pub inner: Client,
}

impl SyncClient {
    pub fn execute(&mut self, sql: &str) -> Result<QueryResult, ClientError> {
        rt().block_on(self.inner.execute(sql))
    }

    /// Executes and panics with the error text on failure.
    pub fn ok(&mut self, sql: &str) -> QueryResult {
        self.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Marks the statements as coming from a grid connection (keyed statements are
    /// forwarded to their partition's primary).
    #[allow(dead_code)]
    pub fn grid_connection(&mut self) {
        self.inner.set_grid_connection(true);
    }

    /// Executes, expects a failure, and returns its code.
    pub fn err_code(&mut self, sql: &str) -> u32 {
        match self.execute(sql) {
            Ok(r) => panic!("{sql}: expected an error, got {r:?}"),
            Err(ClientError::Solid(e)) => e.code,
            Err(e) => panic!("{sql}: expected a SOLID error, got {e}"),
        }
    }
}

/// Appends bytes to a file (used to fake a torn write).
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(bytes).expect("append");
}

/// The grid secret every test grid shares.
pub const SECRET: &str = "test-grid-secret";

/// `[Grid]` settings for a test grid node.
pub fn grid_ini(secret: &str) -> String {
    format!("[Grid]\nGridEnabled = yes\nSecret = {secret}\nRaftElectionTimeout = 600\n")
}

impl Node {
    /// A grid-enabled node (not started).
    pub fn grid_node() -> Node {
        Node::with_ini(&grid_ini(SECRET))
    }

    /// This node's name (`[Srv] Name`).
    pub fn name(&self) -> String {
        format!("node{}", self.port)
    }

    /// The CONNECT clause that reaches this node.
    pub fn connect_clause(&self) -> String {
        format!("CONNECT 'tcp 127.0.0.1 {}'", self.port)
    }

    /// `ALTER GRID g ADD NODE <this> CONNECT …` as run on `leader`.
    pub fn add_to(&self, leader: &Node) -> Result<QueryResult, ClientError> {
        leader.client().execute(&format!(
            "ALTER GRID g ADD NODE {} {}",
            self.name(),
            self.connect_clause()
        ))
    }

    /// Rows of `SELECT NAME, STATE, ROLE FROM SYS_GRID_NODES ORDER BY NODE_ID` on this node.
    pub fn members(&self) -> Vec<(String, String, String)> {
        let r = self
            .client()
            .ok("SELECT NAME, STATE, ROLE FROM SYS_GRID_NODES ORDER BY NODE_ID");
        r.rows
            .into_iter()
            .map(|row| {
                let text = |v: &solidgrid::sql::value::Value| v.to_string();
                (text(&row[0]), text(&row[1]), text(&row[2]))
            })
            .collect()
    }

    /// The leader's name as this node sees it, if any.
    pub fn leader_name(&self) -> Option<String> {
        let mut c = self.client_as(ADMIN, ADMIN_PW).ok()?;
        let r = c
            .execute("SELECT NAME FROM SYS_GRID_NODES WHERE ROLE = 'LEADER'")
            .ok()?;
        r.rows.first().map(|row| row[0].to_string())
    }
}

/// Waits until `pred` holds, polling, up to `limit`; panics with `what` otherwise.
pub fn wait_for(what: &str, limit: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A founder with a database and `CREATE GRID g` run on it, plus `extra` empty grid nodes
/// added one by one: a grid of `1 + extra` nodes, the founder leading.
pub fn form_grid(extra: usize) -> Vec<Node> {
    let mut founder = Node::grid_node();
    founder.start_new();
    founder.client().ok("CREATE GRID g");
    let mut nodes = vec![founder];
    for _ in 0..extra {
        let mut n = Node::grid_node();
        n.start(&["-x", "gridnode"]);
        n.add_to(&nodes[0])
            .unwrap_or_else(|e| panic!("ADD NODE {}: {e}", n.name()));
        nodes.push(n);
        // Every member knows the add committed before the next step (a test that kills
        // the leader at once should not race the commit notice to the followers).
        let count = nodes.len();
        for m in &nodes {
            wait_for(
                "the add to reach every member",
                Duration::from_secs(10),
                || {
                    let members = m.members();
                    members.len() == count && members.iter().all(|(_, s, _)| s == "MEMBER_ONLINE")
                },
            );
        }
    }
    nodes
}

impl Node {
    /// Spawns `solid` with extra environment variables (fault points).
    pub fn spawn_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::File::create(self.dir.path().join("stderr.txt")).expect("stderr file");
        let child = Command::new(SOLID)
            .arg("-c")
            .arg(self.dir.path())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn solid");
        self.child = Some(child);
    }
}

/// Starts every (stopped) node of a grid again and returns the index of the leader they
/// elect.
pub fn restart_all(nodes: &mut [Node]) -> usize {
    for n in nodes.iter_mut() {
        n.spawn(&[]);
    }
    for n in nodes.iter_mut() {
        n.wait_ready();
    }
    let mut leader = None;
    wait_for(
        "a leader after the restart",
        Duration::from_secs(30),
        || {
            leader = nodes.iter().position(|n| n.leader_name() == Some(n.name()));
            leader.is_some()
        },
    );
    leader.expect("checked by wait_for")
}

// ---------------------------------------------------------------------------------------
// TLS (tests/tls.rs)
// ---------------------------------------------------------------------------------------

use solidgrid::client::ClientTls;

/// File names, in a node's working directory, of the TLS material [`Node::write_tls`] makes.
pub const CA_FILE: &str = "ca.pem";
pub const NODE_CERT_FILE: &str = "node.pem";
pub const NODE_KEY_FILE: &str = "node.key";
pub const CLIENT_CERT_FILE: &str = "client.pem";
pub const CLIENT_KEY_FILE: &str = "client.key";

/// A throw-away certificate authority made with rcgen.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        TestCa {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `sans` (DNS names or IP addresses) signed by this CA: (cert, key)
    /// in PEM.
    pub fn issue(&self, common_name: &str, sans: &[&str]) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(sans).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &*self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// `[Security]` naming the files of [`Node::write_tls`].
pub fn tls_ini(client_certificate_required: bool) -> String {
    format!(
        "[Security]\nCertificate = {NODE_CERT_FILE}\nKey = {NODE_KEY_FILE}\nTrustedCA = {CA_FILE}\n\
         ClientCertificateRequired = {}\n",
        if client_certificate_required {
            "yes"
        } else {
            "no"
        }
    )
}

impl Node {
    /// A grid-enabled TLS node (not started) whose certificates come from `ca`.
    pub fn tls_grid_node(ca: &TestCa, client_certificate_required: bool) -> Node {
        let node = Node::with_ini(&format!(
            "{}\n{}",
            grid_ini(SECRET),
            tls_ini(client_certificate_required)
        ));
        node.write_tls(ca);
        node
    }

    /// Writes the CA certificate, a node certificate for `127.0.0.1` and `localhost`, and a
    /// client certificate, all from `ca`, into the working directory.
    pub fn write_tls(&self, ca: &TestCa) {
        let write = |name: &str, text: &str| {
            std::fs::write(self.path().join(name), text).expect("write TLS file")
        };
        write(CA_FILE, &ca.pem());
        let (cert, key) = ca.issue(&self.name(), &["127.0.0.1", "localhost"]);
        write(NODE_CERT_FILE, &cert);
        write(NODE_KEY_FILE, &key);
        let (cert, key) = ca.issue("solsql client", &["client.invalid"]);
        write(CLIENT_CERT_FILE, &cert);
        write(CLIENT_KEY_FILE, &key);
    }

    /// Client TLS settings from this node's files: its CA, with the client certificate
    /// when `with_certificate`.
    pub fn client_tls(&self, with_certificate: bool) -> ClientTls {
        let cert = self.path().join(CLIENT_CERT_FILE);
        let key = self.path().join(CLIENT_KEY_FILE);
        ClientTls::from_files(
            &self.path().join(CA_FILE),
            with_certificate.then_some((cert.as_path(), key.as_path())),
        )
        .expect("client TLS settings")
    }

    /// [`Node::start`] for a TLS node: waits until it answers the status probe over TLS.
    pub fn start_tls(&mut self, args: &[&str]) {
        self.spawn(args);
        self.wait_ready_tls(&self.client_tls(true));
    }

    /// [`Node::wait_ready`] over TLS.
    pub fn wait_ready_tls(&mut self, tls: &ClientTls) {
        self.wait_answering(" over TLS", Some(tls));
    }

    /// A logged-in admin client over TLS with this node's client certificate.
    pub fn tls_client(&self) -> SyncClient {
        self.tls_client_as(&self.client_tls(true), ADMIN, ADMIN_PW)
            .expect("TLS login")
    }

    /// A logged-in client over TLS with the given settings.
    pub fn tls_client_as(
        &self,
        tls: &ClientTls,
        user: &str,
        password: &str,
    ) -> Result<SyncClient, ClientError> {
        let cs = ConnectString::parse(&self.connect_string()).expect("connect string");
        rt().block_on(async {
            let mut c = Client::connect_with_tls(&cs, Some(tls)).await?;
            c.login(user, password).await?;
            Ok(SyncClient { inner: c })
        })
    }

    /// `ALTER GRID g ADD NODE <this> CONNECT …` run on `leader` over TLS.
    pub fn add_to_tls(&self, leader: &Node) -> Result<QueryResult, ClientError> {
        leader.tls_client().execute(&format!(
            "ALTER GRID g ADD NODE {} {}",
            self.name(),
            self.connect_clause()
        ))
    }
}

/// [`form_grid`] over mutual TLS: every node's certificates come from `ca`.
pub fn form_tls_grid(ca: &TestCa, extra: usize, client_certificate_required: bool) -> Vec<Node> {
    let mut founder = Node::tls_grid_node(ca, client_certificate_required);
    founder.start_tls(&["-U", ADMIN, "-P", ADMIN_PW]);
    founder.tls_client().ok("CREATE GRID g");
    let mut nodes = vec![founder];
    for _ in 0..extra {
        let mut n = Node::tls_grid_node(ca, client_certificate_required);
        n.start_tls(&["-x", "gridnode"]);
        n.add_to_tls(&nodes[0])
            .unwrap_or_else(|e| panic!("ADD NODE {}: {e}", n.name()));
        nodes.push(n);
    }
    nodes
}
