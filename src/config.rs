//! `solid.ini`: a node's configuration, read once at start into one typed, validated
//! [`Config`] (design §3, conventions §7).
//!
//! Every key is described exactly once, in one table (`KEYS`): its section, its name in
//! solid.ini spelling, its default, the rule its value must meet, its documentation, and how
//! it is stored into and shown from a `Config`. Reading a file has three steps. A line scanner
//! finds the structure (section headers, keys and their line numbers) and rejects what solidDB
//! rejects: unknown sections and keys, keys before any section, a key given twice (also across
//! a repeated section header, because repeated sections are merged). rust-ini then parses the
//! values, and each value is checked and stored through the table. Cross-key rules run last,
//! before anything starts. Every error names the file, the line, the section and key, and the
//! rule. `[Grid] Secret` never appears in an error, in `Debug` output or in
//! `ADMIN COMMAND 'parameter grid'`. `solid.ini.example` at the repository root is generated
//! from the same table ([`Config::example_ini`]), and a unit test keeps the two in step.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use ini::{Ini, ParseOption};

/// The configuration file's name, looked up in the node's working directory.
pub const CONFIG_FILE_NAME: &str = "solid.ini";

/// The largest solid.ini that is read. The file is written by hand and is a few kilobytes;
/// anything bigger is a mistake (say, `-c` pointing at a data directory with a huge
/// `solid.ini`), and reading it must not cost unbounded memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// The shortest `[Grid] Secret` accepted: a shorter shared credential is guessable.
pub const MIN_SECRET_LEN: usize = 8;

/// The longest `[Grid] Secret` accepted: it is sent in the metadata of every node-to-node
/// RPC, so it must stay small.
pub const MAX_SECRET_LEN: usize = 1024;

/// The longest `[Srv] Name` accepted: names appear in statements, status views and the
/// message log.
pub const MAX_NODE_NAME_LEN: usize = 64;

/// How a secret is shown where a value is listed (`ADMIN COMMAND 'parameter grid'`, `Debug`).
const HIDDEN: &str = "<hidden>";

/// Values longer than this are cut short when quoted in an error message.
const MAX_QUOTED_VALUE_CHARS: usize = 60;

// Key names that the cross-key rules refer to; the table uses the same constants.
const LISTEN: &str = "Listen";
const GRID_ENABLED: &str = "GridEnabled";
const RAFT_ELECTION_TIMEOUT: &str = "RaftElectionTimeout";
const RAFT_HEARTBEAT_TIMEOUT: &str = "RaftHeartbeatTimeout";
const NODE_FAILURE_TIMEOUT: &str = "NodeFailureTimeout";
const SECRET: &str = "Secret";
const CERTIFICATE: &str = "Certificate";
const KEY: &str = "Key";
const TRUSTED_CA: &str = "TrustedCA";
const CLIENT_CERTIFICATE_REQUIRED: &str = "ClientCertificateRequired";

/// The node's whole configuration: the effective value of every solid.ini key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from; None when the directory had no solid.ini (all defaults).
    pub source: Option<PathBuf>,
    pub com: ComConfig,
    pub srv: SrvConfig,
    pub grid: GridConfig,
    pub logging: LoggingConfig,
    pub index_file: IndexFileConfig,
    pub security: SecurityConfig,
}

/// A solidDB listening name `tcp [host] port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenAddr {
    /// The host or address to listen on (IPv6 without brackets); None means every interface.
    pub host: Option<String>,
    /// The TCP port, 1 to 65535.
    pub port: u16,
}

/// `[Com]`: where the node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComConfig {
    /// `[Com] Listen`: where the node serves gRPC. Default `tcp 1315`.
    pub listen: ListenAddr,
    /// `[Com] MaxConnections`: the most connections served at once, 1 to 65535. Default 256.
    pub max_connections: u32,
}

/// `[Srv]`: the server's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvConfig {
    /// `[Srv] Name`: the node's name; None means `<listen host or localhost>:<port>`
    /// (see [`Config::node_name`]).
    pub name: Option<String>,
}

/// `[Grid]`: grid membership and leader election. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct GridConfig {
    /// `[Grid] GridEnabled`: the node may create or join a grid. Default no.
    pub grid_enabled: bool,
    /// `[Grid] RaftElectionTimeout`, milliseconds: the election timeout T, randomised in
    /// [T, 2T]. Default 300; at least 2 × `raft_heartbeat_timeout_ms`.
    pub raft_election_timeout_ms: u64,
    /// `[Grid] RaftHeartbeatTimeout`, milliseconds: the leader's silence window per follower.
    /// Default `raft_election_timeout_ms / 3` (at least 1).
    pub raft_heartbeat_timeout_ms: u64,
    /// `[Grid] RaftPreVote`: pre-vote before becoming a candidate. Default yes.
    pub raft_pre_vote: bool,
    /// `[Grid] NodeFailureTimeout`, milliseconds: silence after which the leader starts
    /// marking a node `MEMBER_FAILED`. Default 3000; greater than `raft_heartbeat_timeout_ms`.
    pub node_failure_timeout_ms: u64,
    /// `[Grid] DDLSyncTimeout`, seconds: bound on a grid-wide schema change. Default 60.
    pub ddl_sync_timeout_s: u64,
    /// `[Grid] AvailabilityManagerActionsEnabled`: the GAM takes corrective actions.
    /// Default yes.
    pub availability_manager_actions_enabled: bool,
    /// `[Grid] Secret`: the shared node-to-node credential (design §8); at least
    /// [`MIN_SECRET_LEN`] printable ASCII characters. Required when `grid_enabled`.
    pub secret: Option<String>,
    /// `[Grid] LoadRateLimit`, megabytes per second: cap on loading data to a new node;
    /// 0 means no cap. Default 0.
    pub load_rate_limit_mb_per_s: u64,
}

/// `[Logging]`: the transaction log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// `[Logging] LogDir`: the transaction log directory, as written (see [`Config::log_dir`]).
    /// Default `.`.
    pub log_dir: PathBuf,
}

/// `[IndexFile]`: the database file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFileConfig {
    /// `[IndexFile] FileSpec_1`: the database file, as written (see [`Config::db_path`]); a
    /// solidDB size after the name is accepted and ignored. Default `solid.db`.
    pub file_spec_1: PathBuf,
}

/// `[Security]`: TLS (design §8). Paths as written (see [`Config::certificate_path`] and
/// friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `[Security] Certificate`: PEM certificate (chain) of this node; comes with `key`.
    pub certificate: Option<PathBuf>,
    /// `[Security] Key`: PEM private key of `certificate`; comes with `certificate`.
    pub key: Option<PathBuf>,
    /// `[Security] TrustedCA`: PEM CA certificate(s) that peers' certificates are checked
    /// against.
    pub trusted_ca: Option<PathBuf>,
    /// `[Security] ClientCertificateRequired`: connections must present a certificate signed
    /// by `trusted_ca` (mutual TLS). Default no; yes needs `trusted_ca` and `certificate`.
    pub client_certificate_required: bool,
}

/// A solid.ini that cannot be used: which file, where, which key, and the rule broken.
///
/// Displays as `solid.ini line 7: [Grid] RaftElectionTimeout: must be at least 2 x
/// RaftHeartbeatTimeout (got 100 ms < 2 x 60 ms)`; parts that are not known are left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, as given to [`Config::parse`] or found by [`Config::load`].
    pub file: PathBuf,
    /// 1-based line number, when the error belongs to a line.
    pub line: Option<usize>,
    /// Section name (solid.ini spelling for known sections, as written for unknown ones).
    pub section: Option<String>,
    /// Key name (solid.ini spelling for known keys, as written for unknown ones).
    pub key: Option<String>,
    /// The rule that was broken, and what was found.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        f.write_str(": ")?;
        match (&self.section, &self.key) {
            (Some(section), Some(key)) => write!(f, "[{section}] {key}: ")?,
            (Some(section), None) => write!(f, "[{section}]: ")?,
            (None, Some(key)) => write!(f, "{key}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl ConfigError {
    fn new(
        file: &Path,
        line: Option<usize>,
        section: Option<&str>,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line,
            section: section.map(str::to_owned),
            key: key.map(str::to_owned),
            message: message.into(),
        }
    }

    /// An error about a known key.
    fn for_key(
        file: &Path,
        line: Option<usize>,
        section: Section,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::new(file, line, Some(section.name()), Some(key), message)
    }
}

impl fmt::Debug for GridConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GridConfig")
            .field("grid_enabled", &self.grid_enabled)
            .field("raft_election_timeout_ms", &self.raft_election_timeout_ms)
            .field("raft_heartbeat_timeout_ms", &self.raft_heartbeat_timeout_ms)
            .field("raft_pre_vote", &self.raft_pre_vote)
            .field("node_failure_timeout_ms", &self.node_failure_timeout_ms)
            .field("ddl_sync_timeout_s", &self.ddl_sync_timeout_s)
            .field(
                "availability_manager_actions_enabled",
                &self.availability_manager_actions_enabled,
            )
            .field("secret", &self.secret.as_ref().map(|_| HIDDEN))
            .field("load_rate_limit_mb_per_s", &self.load_rate_limit_mb_per_s)
            .finish()
    }
}

impl ListenAddr {
    /// Parses a solidDB listening name `tcp [host] port` (the protocol is case-insensitive;
    /// an IPv6 host may be written with or without brackets). Only one tcp address is
    /// supported: no other protocols, no `-i`/`-4`/`-6` options, no comma-separated lists.
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        const SYNTAX: &str = "expected 'tcp [host] port', e.g. 'tcp 1315' or 'tcp 10.0.0.5 1315'";
        if s.contains(',') {
            return Err(format!("only one listen address is supported; {SYNTAX}"));
        }
        let words: Vec<&str> = s.split_whitespace().collect();
        let Some((protocol, rest)) = words.split_first() else {
            return Err(format!("no listen address; {SYNTAX}"));
        };
        if !protocol.eq_ignore_ascii_case("tcp") {
            return Err(if protocol.bytes().all(|b| b.is_ascii_digit()) {
                format!("the protocol is missing; {SYNTAX}")
            } else {
                format!("only the tcp protocol is supported; {SYNTAX}")
            });
        }
        let (host, port) = match rest {
            [port] => (None, *port),
            [host, port] => (Some(*host), *port),
            [] => return Err(format!("the port is missing; {SYNTAX}")),
            _ => return Err(format!("too many words; {SYNTAX}")),
        };
        let host = host.map(parse_listen_host).transpose()?;
        if port.starts_with('-') {
            return Err(format!(
                "options such as -i, -4 or -6 are not supported; {SYNTAX}"
            ));
        }
        let Some(port) =
            parse_int(port, 1, u64::from(u16::MAX)).and_then(|p| u16::try_from(p).ok())
        else {
            return Err(format!(
                "the port must be a whole number from 1 to 65535; {SYNTAX}"
            ));
        };
        Ok(ListenAddr { host, port })
    }

    /// The address to bind: `0.0.0.0:1315` without a host, else `host:port` (an IPv6 host in
    /// brackets).
    pub fn bind_addr(&self) -> String {
        host_port(self.host.as_deref().unwrap_or("0.0.0.0"), self.port)
    }
}

impl fmt::Display for ListenAddr {
    /// The solid.ini spelling, which [`ListenAddr::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) => write!(f, "tcp {host} {}", self.port),
            None => write!(f, "tcp {}", self.port),
        }
    }
}

fn parse_listen_host(word: &str) -> Result<String, String> {
    if word.starts_with('-') {
        return Err(
            "options such as -i, -4 or -6 are not supported; write 'tcp host port'".to_owned(),
        );
    }
    let host = word
        .strip_prefix('[')
        .and_then(|w| w.strip_suffix(']'))
        .unwrap_or(word);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'));
    if valid {
        Ok(host.to_owned())
    } else {
        Err("the host must be a host name or an IP address".to_owned())
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::defaults()
    }
}

impl Config {
    /// Every key at its default, as when the working directory has no solid.ini.
    pub fn defaults() -> Config {
        resolve(Path::new(CONFIG_FILE_NAME), None, &[])
            .expect("the built-in defaults meet every rule (tested)")
    }

    /// Reads DIR/solid.ini if it exists (a missing file means all defaults, as solidDB); an
    /// unreadable file is an error, and so is a DIR that does not exist.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let path = dir.join(CONFIG_FILE_NAME);
        let cannot_read =
            |e: io::Error| ConfigError::new(&path, None, None, None, format!("cannot read: {e}"));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if dir.is_dir() {
                    return Ok(Config::defaults());
                }
                return Err(ConfigError::new(
                    &path,
                    None,
                    None,
                    None,
                    format!("the directory {} does not exist", dir.display()),
                ));
            }
            Err(e) => return Err(cannot_read(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot_read)?;
        if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::new(
                &path,
                None,
                None,
                None,
                format!("is larger than {MAX_CONFIG_FILE_BYTES} bytes; is it really a solid.ini?"),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            ConfigError::new(&path, Some(line), None, None, "is not valid UTF-8 text")
        })?;
        Config::parse(&text, &path)
    }

    /// Parses text as if read from `file` (used by load and tests).
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let scan = scan(text, file)?;
        let assignments = read_values(&scan, file)?;
        resolve(file, Some(file.to_path_buf()), &assignments)
    }

    /// `[Srv] Name`, else `<listen host or localhost>:<port>`.
    pub fn node_name(&self) -> String {
        match &self.srv.name {
            Some(name) => name.clone(),
            None => {
                let listen = &self.com.listen;
                host_port(listen.host.as_deref().unwrap_or("localhost"), listen.port)
            }
        }
    }

    /// The transaction log directory: `[Logging] LogDir`, resolved against the working
    /// directory when relative.
    pub fn log_dir(&self, workdir: &Path) -> PathBuf {
        resolve_path(workdir, &self.logging.log_dir)
    }

    /// The database file: `[IndexFile] FileSpec_1`, resolved against the working directory when
    /// relative.
    pub fn db_path(&self, workdir: &Path) -> PathBuf {
        resolve_path(workdir, &self.index_file.file_spec_1)
    }

    /// `[Security] Certificate`, resolved against the working directory when relative.
    pub fn certificate_path(&self, workdir: &Path) -> Option<PathBuf> {
        self.security
            .certificate
            .as_deref()
            .map(|p| resolve_path(workdir, p))
    }

    /// `[Security] Key`, resolved against the working directory when relative.
    pub fn key_path(&self, workdir: &Path) -> Option<PathBuf> {
        self.security
            .key
            .as_deref()
            .map(|p| resolve_path(workdir, p))
    }

    /// `[Security] TrustedCA`, resolved against the working directory when relative.
    pub fn trusted_ca_path(&self, workdir: &Path) -> Option<PathBuf> {
        self.security
            .trusted_ca
            .as_deref()
            .map(|p| resolve_path(workdir, p))
    }

    /// The effective `[Grid]` values as (key, value) pairs in solid.ini spelling, for
    /// `ADMIN COMMAND 'parameter grid'`. The secret shows as `<hidden>` when set and as an
    /// empty string when not.
    pub fn grid_parameters(&self) -> Vec<(String, String)> {
        KEYS.iter()
            .filter(|spec| spec.section == Section::Grid)
            .map(|spec| (spec.name.to_owned(), shown(spec, self)))
            .collect()
    }

    /// The documented example configuration: every section in the design's order, every key
    /// with its meaning, unit, rule and default, commented out. `solid.ini.example` at the
    /// repository root is this text (a unit test checks it).
    pub fn example_ini() -> String {
        let defaults = Config::defaults();
        let mut out = String::from(EXAMPLE_HEADER);
        for section in Section::ALL {
            out.push_str(&format!("\n[{}]\n", section.name()));
            push_comment(&mut out, section.doc());
            for spec in KEYS.iter().filter(|spec| spec.section == section) {
                out.push('\n');
                push_comment(&mut out, spec.name);
                for line in spec.doc.lines() {
                    push_comment(&mut out, &format!("  {line}"));
                }
                push_comment(&mut out, &format!("  Value: {}", spec.value.rule()));
                let default = match spec.default {
                    DefaultValue::Value(text) => text,
                    DefaultValue::Absent(meaning) => meaning,
                };
                push_comment(&mut out, &format!("  Default: {default}"));
                let value = shown(spec, &defaults);
                if value.is_empty() {
                    out.push_str(&format!(";{} =\n", spec.name));
                } else {
                    out.push_str(&format!(";{} = {value}\n", spec.name));
                }
            }
        }
        out
    }
}

const EXAMPLE_HEADER: &str = "\
; solid.ini — the configuration of one solidgrid node (the `solid` server).
;
; solid reads solid.ini from its working directory (`solid -c DIR`, default: the current
; directory) once, at start. Without the file every key takes its default. Section and key
; names are case-insensitive. A line starting with ';' or '#' is a comment, and ' ;' after a
; value starts a comment too. A value may be quoted (\"...\") to keep a ';' in it.
;
; An unknown section or key, a key outside any section, a key given twice (also in a
; repeated section), an empty or bad value, or a broken rule between keys stops the node at
; start with an error naming the file, the line, the key and the rule.
;
; Every key below is commented out and shows its default: remove the leading ';' to set it.
; This file is generated from the key table in src/config.rs (Config::example_ini); a unit
; test fails when the two differ.
";

/// Appends `text` as `;`-comment lines.
fn push_comment(out: &mut String, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            out.push_str(";\n");
        } else {
            out.push_str("; ");
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// `path` when absolute, else `workdir/path`, without `.` components (so the default LogDir
/// `.` is the working directory itself).
fn resolve_path(workdir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let relative: PathBuf = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    if relative.as_os_str().is_empty() {
        workdir.to_path_buf()
    } else {
        workdir.join(relative)
    }
}

// ---------------------------------------------------------------------------------------------
// The key table
// ---------------------------------------------------------------------------------------------

/// The sections of solid.ini, in the design's order (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Com,
    Srv,
    Grid,
    Logging,
    IndexFile,
    Security,
}

impl Section {
    const ALL: [Section; 6] = [
        Section::Com,
        Section::Srv,
        Section::Grid,
        Section::Logging,
        Section::IndexFile,
        Section::Security,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Com => "Com",
            Section::Srv => "Srv",
            Section::Grid => "Grid",
            Section::Logging => "Logging",
            Section::IndexFile => "IndexFile",
            Section::Security => "Security",
        }
    }

    fn doc(self) -> &'static str {
        match self {
            Section::Com => {
                "Network: where the node listens for consoles and for the other grid nodes."
            }
            Section::Srv => "The server's identity.",
            Section::Grid => {
                "The grid: membership and the Raft-style leader election (design §5). The keys that\n\
                 shape behaviour (timeouts, pre-vote, GAM actions, Secret) should be the same on every\n\
                 node of a grid; each node reads only its own solid.ini."
            }
            Section::Logging => "The transaction log.",
            Section::IndexFile => "The database file.",
            Section::Security => {
                "TLS for console and node-to-node connections (design §8). Paths are relative to the\n\
                 working directory unless absolute. Without Certificate and Key the node serves plain\n\
                 TCP, and nodes authenticate each other with [Grid] Secret alone."
            }
        }
    }

    /// The section whose name matches, ignoring case.
    fn lookup(name: &str) -> Option<Section> {
        Section::ALL
            .into_iter()
            .find(|section| section.name().eq_ignore_ascii_case(name))
    }
}

/// One solid.ini key: everything there is to know about it, in one place.
struct KeySpec {
    section: Section,
    /// The name in solid.ini spelling (matching is case-insensitive).
    name: &'static str,
    default: DefaultValue,
    value: ValueKind,
    /// Meaning and cross-key rules, for solid.ini.example (lines of at most ~90 characters).
    doc: &'static str,
    /// The value is a credential: never quoted in errors, never shown.
    secret: bool,
}

enum DefaultValue {
    /// Parsed and stored like a value written in the file.
    Value(&'static str),
    /// Nothing is stored when the key is absent; the text says what absence means.
    Absent(&'static str),
}

/// How a value is parsed, checked, stored and shown.
enum ValueKind {
    /// yes/no, true/false, on/off, 1/0, any case.
    Bool {
        get: fn(&Config) -> bool,
        set: fn(&mut Config, bool),
    },
    /// A decimal whole number in `min..=max`.
    Int {
        min: u64,
        max: u64,
        unit: Unit,
        get: fn(&Config) -> u64,
        set: fn(&mut Config, u64),
    },
    /// Anything else: `set` checks the text and returns the rule it breaks (never quoting
    /// the value; the caller adds it for keys that are not secret).
    Text {
        rule: &'static str,
        get: fn(&Config) -> Option<String>,
        set: fn(&mut Config, &str) -> Result<(), String>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Count,
    Milliseconds,
    Seconds,
    MegabytesPerSecond,
}

impl Unit {
    fn whole_number(self) -> &'static str {
        match self {
            Unit::Count => "a whole number",
            Unit::Milliseconds => "a whole number of milliseconds",
            Unit::Seconds => "a whole number of seconds",
            Unit::MegabytesPerSecond => "a whole number of megabytes per second",
        }
    }
}

impl ValueKind {
    /// The rule a value must meet, as documentation.
    fn rule(&self) -> String {
        match self {
            ValueKind::Bool { .. } => "yes or no (true/false, on/off and 1/0 also work)".to_owned(),
            ValueKind::Int { min, max, unit, .. } => {
                format!("{} from {min} to {max}", unit.whole_number())
            }
            ValueKind::Text { rule, .. } => (*rule).to_owned(),
        }
    }
}

/// Every solid.ini key, by section in the design's order. The single home of every default.
static KEYS: &[KeySpec] = &[
    // [Com]
    KeySpec {
        section: Section::Com,
        name: LISTEN,
        default: DefaultValue::Value("tcp 1315"),
        value: ValueKind::Text {
            rule: "'tcp [host] port', the port from 1 to 65535",
            get: |c| Some(c.com.listen.to_string()),
            set: |c, v| {
                c.com.listen = ListenAddr::parse(v)?;
                Ok(())
            },
        },
        doc: "Where the node serves gRPC to consoles and to the other grid nodes, as a solidDB\n\
              listening name. Without a host the node listens on every interface (0.0.0.0).\n\
              One tcp address only: other protocols, options (-i, -4, -6) and lists are not\n\
              supported.",
        secret: false,
    },
    KeySpec {
        section: Section::Com,
        name: "MaxConnections",
        default: DefaultValue::Value("256"),
        value: ValueKind::Int {
            min: 1,
            max: 65535,
            unit: Unit::Count,
            get: |c| u64::from(c.com.max_connections),
            set: |c, v| {
                c.com.max_connections = u32::try_from(v).expect("MaxConnections is at most 65535");
            },
        },
        doc: "The most connections (consoles and grid peers) the node serves at once; more are\n\
              refused.",
        secret: false,
    },
    // [Srv]
    KeySpec {
        section: Section::Srv,
        name: "Name",
        default: DefaultValue::Absent("'<Listen host or localhost>:<port>', e.g. localhost:1315"),
        value: ValueKind::Text {
            rule: "1 to 64 letters, digits, '_', '-', '.' or ':'",
            get: |c| Some(c.node_name()),
            set: |c, v| {
                c.srv.name = Some(parse_node_name(v)?);
                Ok(())
            },
        },
        doc: "This node's name in ALTER GRID ... NODE name, in SYS_GRID_NODES and in the message\n\
              log. Give every node of a grid a distinct name.",
        secret: false,
    },
    // [Grid]
    KeySpec {
        section: Section::Grid,
        name: GRID_ENABLED,
        default: DefaultValue::Value("no"),
        value: ValueKind::Bool {
            get: |c| c.grid.grid_enabled,
            set: |c, v| c.grid.grid_enabled = v,
        },
        doc: "Set to yes to let this node create a grid (CREATE GRID) and be added to one\n\
              (ALTER GRID ... ADD NODE, and `solid -x gridnode`). A grid-enabled node needs\n\
              Secret.",
        secret: false,
    },
    KeySpec {
        section: Section::Grid,
        name: RAFT_ELECTION_TIMEOUT,
        default: DefaultValue::Value("300"),
        value: ValueKind::Int {
            min: 1,
            max: 60_000,
            unit: Unit::Milliseconds,
            get: |c| c.grid.raft_election_timeout_ms,
            set: |c, v| c.grid.raft_election_timeout_ms = v,
        },
        doc: "The election timeout T, in milliseconds: a follower that hears no leader for a\n\
              random time in [T, 2T] stands for election. Must be at least 2 x\n\
              RaftHeartbeatTimeout.",
        secret: false,
    },
    KeySpec {
        section: Section::Grid,
        name: RAFT_HEARTBEAT_TIMEOUT,
        default: DefaultValue::Absent("RaftElectionTimeout / 3, rounded down, at least 1"),
        value: ValueKind::Int {
            min: 1,
            max: 60_000,
            unit: Unit::Milliseconds,
            get: |c| c.grid.raft_heartbeat_timeout_ms,
            set: |c, v| c.grid.raft_heartbeat_timeout_ms = v,
        },
        doc: "The leader's silence window per follower, in milliseconds: a follower not heard\n\
              from within it is \"suspicious\". At most RaftElectionTimeout / 2, and less than\n\
              NodeFailureTimeout.",
        secret: false,
    },
    KeySpec {
        section: Section::Grid,
        name: "RaftPreVote",
        default: DefaultValue::Value("yes"),
        value: ValueKind::Bool {
            get: |c| c.grid.raft_pre_vote,
            set: |c, v| c.grid.raft_pre_vote = v,
        },
        doc: "With yes, a node asks whether it could win (pre-vote) before it starts an\n\
              election, so a node that was cut off does not depose a working leader when it\n\
              comes back.",
        secret: false,
    },
    KeySpec {
        section: Section::Grid,
        name: NODE_FAILURE_TIMEOUT,
        default: DefaultValue::Value("3000"),
        value: ValueKind::Int {
            min: 1,
            max: 3_600_000,
            unit: Unit::Milliseconds,
            get: |c| c.grid.node_failure_timeout_ms,
            set: |c, v| c.grid.node_failure_timeout_ms = v,
        },
        doc: "Silence, in milliseconds, after which the leader starts marking a node\n\
              MEMBER_FAILED. Must be greater than RaftHeartbeatTimeout.",
        secret: false,
    },
    KeySpec {
        section: Section::Grid,
        name: "DDLSyncTimeout",
        default: DefaultValue::Value("60"),
        value: ValueKind::Int {
            min: 1,
            max: 86_400,
            unit: Unit::Seconds,
            get: |c| c.grid.ddl_sync_timeout_s,
            set: |c, v| c.grid.ddl_sync_timeout_s = v,
        },
        doc: "Bound, in seconds, on a grid-wide schema change: how long the leader waits for\n\
              every node to confirm it.",
        secret: false,
    },
    KeySpec {
        section: Section::Grid,
        name: "AvailabilityManagerActionsEnabled",
        default: DefaultValue::Value("yes"),
        value: ValueKind::Bool {
            get: |c| c.grid.availability_manager_actions_enabled,
            set: |c, v| c.grid.availability_manager_actions_enabled = v,
        },
        doc: "Set to no to stop the Grid Availability Manager's corrective actions (moving\n\
              copies and primaries, promoting secondaries, restoring the replication factor).",
        secret: false,
    },
    KeySpec {
        section: Section::Grid,
        name: SECRET,
        default: DefaultValue::Absent("none; a node without a Secret cannot be grid-enabled"),
        value: ValueKind::Text {
            rule: "8 to 1024 printable ASCII characters (spaces allowed inside)",
            get: |c| c.grid.secret.clone(),
            set: |c, v| {
                check_secret(v)?;
                c.grid.secret = Some(v.to_owned());
                Ok(())
            },
        },
        doc: "The shared credential every node of a grid presents on node-to-node RPCs\n\
              (design §8); the same value on every node. Required when GridEnabled = yes.\n\
              It is never shown: errors, logs and ADMIN COMMAND 'parameter grid' print\n\
              <hidden>.",
        secret: true,
    },
    KeySpec {
        section: Section::Grid,
        name: "LoadRateLimit",
        default: DefaultValue::Value("0"),
        value: ValueKind::Int {
            min: 0,
            max: 100_000,
            unit: Unit::MegabytesPerSecond,
            get: |c| c.grid.load_rate_limit_mb_per_s,
            set: |c, v| c.grid.load_rate_limit_mb_per_s = v,
        },
        doc: "Cap, in megabytes per second, on loading data to a node that is being added;\n\
              0 means no cap.",
        secret: false,
    },
    // [Logging]
    KeySpec {
        section: Section::Logging,
        name: "LogDir",
        default: DefaultValue::Value("."),
        value: ValueKind::Text {
            rule: "a directory path",
            get: |c| Some(c.logging.log_dir.display().to_string()),
            set: |c, v| {
                c.logging.log_dir = parse_path(v)?;
                Ok(())
            },
        },
        doc: "The transaction log directory, relative to the working directory unless\n\
              absolute.",
        secret: false,
    },
    // [IndexFile]
    KeySpec {
        section: Section::IndexFile,
        name: "FileSpec_1",
        default: DefaultValue::Value("solid.db"),
        value: ValueKind::Text {
            rule: "'path [size]', the size a whole number with an optional K, M or G suffix",
            get: |c| Some(c.index_file.file_spec_1.display().to_string()),
            set: |c, v| {
                c.index_file.file_spec_1 = parse_file_spec(v)?;
                Ok(())
            },
        },
        doc: "The database file, relative to the working directory unless absolute. A solidDB\n\
              size after the name (solid.db 1000M) is accepted and ignored: the file grows as\n\
              needed. The path cannot contain spaces.",
        secret: false,
    },
    // [Security]
    KeySpec {
        section: Section::Security,
        name: CERTIFICATE,
        default: DefaultValue::Absent("none (no TLS)"),
        value: ValueKind::Text {
            rule: "a file path",
            get: |c| path_text(&c.security.certificate),
            set: |c, v| {
                c.security.certificate = Some(parse_path(v)?);
                Ok(())
            },
        },
        doc: "PEM file with this node's TLS certificate (chain). Needs Key.",
        secret: false,
    },
    KeySpec {
        section: Section::Security,
        name: KEY,
        default: DefaultValue::Absent("none"),
        value: ValueKind::Text {
            rule: "a file path",
            get: |c| path_text(&c.security.key),
            set: |c, v| {
                c.security.key = Some(parse_path(v)?);
                Ok(())
            },
        },
        doc: "PEM file with the private key of Certificate. Needs Certificate.",
        secret: false,
    },
    KeySpec {
        section: Section::Security,
        name: TRUSTED_CA,
        default: DefaultValue::Absent("none"),
        value: ValueKind::Text {
            rule: "a file path",
            get: |c| path_text(&c.security.trusted_ca),
            set: |c, v| {
                c.security.trusted_ca = Some(parse_path(v)?);
                Ok(())
            },
        },
        doc: "PEM file with the CA certificate(s) that the certificates of peers and clients\n\
              are checked against.",
        secret: false,
    },
    KeySpec {
        section: Section::Security,
        name: CLIENT_CERTIFICATE_REQUIRED,
        default: DefaultValue::Value("no"),
        value: ValueKind::Bool {
            get: |c| c.security.client_certificate_required,
            set: |c, v| c.security.client_certificate_required = v,
        },
        doc: "With yes, every connection must present a certificate signed by TrustedCA\n\
              (mutual TLS). Needs TrustedCA and Certificate.",
        secret: false,
    },
];

/// The key of `section` whose name matches, ignoring case.
fn find_key(section: Section, name: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|spec| spec.section == section && spec.name.eq_ignore_ascii_case(name))
}

/// The effective value of a key in solid.ini spelling; a set secret shows as `<hidden>`.
fn shown(spec: &KeySpec, config: &Config) -> String {
    let text = match &spec.value {
        ValueKind::Bool { get, .. } => if get(config) { "yes" } else { "no" }.to_owned(),
        ValueKind::Int { get, .. } => get(config).to_string(),
        ValueKind::Text { get, .. } => get(config).unwrap_or_default(),
    };
    if spec.secret && !text.is_empty() {
        HIDDEN.to_owned()
    } else {
        text
    }
}

fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.display().to_string())
}

// ---------------------------------------------------------------------------------------------
// Value parsers
// ---------------------------------------------------------------------------------------------

fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: [&str; 4] = ["yes", "true", "on", "1"];
    const FALSE: [&str; 4] = ["no", "false", "off", "0"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

/// A decimal whole number (digits only: no sign, no suffix) in `min..=max`.
fn parse_int(text: &str, min: u64, max: u64) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
}

fn parse_node_name(text: &str) -> Result<String, String> {
    let valid = text.len() <= MAX_NODE_NAME_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "must be 1 to {MAX_NODE_NAME_LEN} letters, digits, '_', '-', '.' or ':'"
        ))
    }
}

fn check_secret(text: &str) -> Result<(), String> {
    if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(
            "must be printable ASCII (it travels in the metadata of node-to-node RPCs)".to_owned(),
        );
    }
    if text.len() < MIN_SECRET_LEN {
        return Err(format!("must be at least {MIN_SECRET_LEN} characters long"));
    }
    if text.len() > MAX_SECRET_LEN {
        return Err(format!("must be at most {MAX_SECRET_LEN} characters long"));
    }
    Ok(())
}

fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.chars().any(char::is_control) {
        return Err("a path must not contain control characters".to_owned());
    }
    Ok(PathBuf::from(text))
}

/// `path [size]`: solidDB's FileSpec. The size is accepted and ignored.
fn parse_file_spec(text: &str) -> Result<PathBuf, String> {
    let mut words = text.split_whitespace();
    let path = parse_path(words.next().unwrap_or_default())?;
    if let Some(size) = words.next() {
        let digits = size
            .strip_suffix(['K', 'k', 'M', 'm', 'G', 'g'])
            .unwrap_or(size);
        if parse_int(digits, 1, u64::MAX).is_none() {
            return Err(
                "after the file name only a size is allowed: a positive whole number with an \
                 optional K, M or G suffix, e.g. 1000M (the path cannot contain spaces)"
                    .to_owned(),
            );
        }
    }
    if words.next().is_some() {
        return Err(
            "expected 'path [size]'; there is more after the size (the path cannot contain \
             spaces)"
                .to_owned(),
        );
    }
    Ok(path)
}

// ---------------------------------------------------------------------------------------------
// Reading: line scanner, rust-ini, resolution and cross-key rules
// ---------------------------------------------------------------------------------------------

/// A key line found by the scanner.
struct ScannedKey {
    line: usize,
    spec: &'static KeySpec,
}

/// The scanner's result: the key lines in file order, and the text handed to rust-ini.
struct Scan {
    keys: Vec<ScannedKey>,
    /// The file with the BOM, leading whitespace, comment lines and comments after section
    /// headers removed, line for line. rust-ini would otherwise read an indented comment as a
    /// key name that runs on into the next line, and a BOM as part of the first key.
    normalized: String,
}

/// A key's value as rust-ini read it, with the line it came from.
struct Assignment {
    line: usize,
    spec: &'static KeySpec,
    value: String,
}

/// Finds the file's structure line by line, rejecting what cannot be read unambiguously or
/// is not a known key in a known section, given once.
fn scan(text: &str, file: &Path) -> Result<Scan, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut keys: Vec<ScannedKey> = Vec::new();
    let mut normalized = String::with_capacity(text.len());
    let mut section: Option<Section> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let at = |section: Option<&str>, key: Option<&str>, message: String| {
            ConfigError::new(file, Some(line_no), section, key, message)
        };
        if index > 0 {
            normalized.push('\n');
        }
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.contains('\r') {
            return Err(at(
                None,
                None,
                "a carriage return in the middle of the line; save the file with \\n or \\r\\n \
                 line ends"
                    .to_owned(),
            ));
        }
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with([';', '#']) {
            continue;
        }

        if let Some(rest) = line.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return Err(at(
                    None,
                    None,
                    "a section header needs a closing ']'".to_owned(),
                ));
            };
            let name = rest[..close].trim();
            let after = rest[close + 1..].trim_start();
            if !(after.is_empty() || after.starts_with([';', '#'])) {
                return Err(at(
                    Some(name),
                    None,
                    "only a comment may follow a section header on its line".to_owned(),
                ));
            }
            if name.is_empty() {
                return Err(at(None, None, "empty section name '[]'".to_owned()));
            }
            let Some(found) = Section::lookup(name) else {
                return Err(at(
                    Some(name),
                    None,
                    format!("unknown section; the sections are {}", section_list()),
                ));
            };
            section = Some(found);
            normalized.push_str(&line[..close + 2]);
            continue;
        }

        let Some(separator) = line.find(['=', ':']) else {
            return Err(at(
                section.map(Section::name),
                None,
                "expected 'Key = value', a [Section] header or a ';' comment".to_owned(),
            ));
        };
        let key = line[..separator].trim();
        if key.is_empty() {
            return Err(at(
                section.map(Section::name),
                None,
                "a key name is missing before the '='".to_owned(),
            ));
        }
        let Some(current) = section else {
            let hint = home_hint(key);
            return Err(at(
                None,
                Some(key),
                format!(
                    "unrecognized entry in section <no section>: every key must follow a \
                     section header{hint}"
                ),
            ));
        };
        let Some(spec) = find_key(current, key) else {
            let hint = home_hint(key);
            return Err(at(
                Some(current.name()),
                Some(key),
                format!(
                    "unknown key{hint}; the keys of [{}] are {}",
                    current.name(),
                    key_list(current)
                ),
            ));
        };
        if let Some(first) = keys.iter().find(|k| std::ptr::eq(k.spec, spec)) {
            return Err(at(
                Some(current.name()),
                Some(spec.name),
                format!(
                    "given twice, on line {} and line {line_no} (repeated sections are merged); \
                     keep one",
                    first.line
                ),
            ));
        }
        check_value_syntax(&line[separator + 1..])
            .map_err(|message| at(Some(current.name()), Some(spec.name), message))?;
        keys.push(ScannedKey {
            line: line_no,
            spec,
        });
        normalized.push_str(line);
    }
    Ok(Scan { keys, normalized })
}

/// Rejects a value that rust-ini would read across line ends or that hides a mistake. It
/// follows rust-ini's value grammar: leading quoted parts (`"..."`, `'...'`, where `\` keeps
/// the next character), then plain text up to an inline comment (whitespace then `;`/`#`),
/// in which `\` also keeps the next character and a `\` at the line end joins the next line.
fn check_value_syntax(raw: &str) -> Result<(), String> {
    let mut rest = raw.trim_start();
    if rest.starts_with([';', '#']) {
        return Err(
            "the value starts with ';' or '#', which is not a comment there; quote the value, or \
             remove the line to use the default"
                .to_owned(),
        );
    }
    while let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '\'')) {
        let mut escaped = false;
        let mut close = None;
        for (i, c) in rest.char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                close = Some(i);
                break;
            }
        }
        let Some(close) = close else {
            return Err(format!(
                "unterminated quote: the value needs a closing {quote} on this line"
            ));
        };
        rest = &rest[close + 1..];
    }
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                // The backslash keeps the next character, or joins the next line at the end.
                let kept = chars.next();
                if kept.is_none() {
                    return Err(
                        "a value cannot end with '\\' (the INI parser would join the next line)"
                            .to_owned(),
                    );
                }
            }
            ' ' | '\t' if matches!(chars.peek(), Some(';' | '#')) => break,
            _ => {}
        }
    }
    Ok(())
}

/// Reads the values with rust-ini and pairs them with the scanner's key lines, which are in
/// the same order.
fn read_values(scan: &Scan, file: &Path) -> Result<Vec<Assignment>, ConfigError> {
    let options = ParseOption {
        enabled_quote: true,
        // Backslashes are literal: solidDB has no escapes, and Windows paths use them.
        enabled_escape: false,
        enabled_indented_mutiline_value: false,
        enabled_preserve_key_leading_whitespace: false,
    };
    let ini = Ini::load_from_str_opt(&scan.normalized, options).map_err(|e| {
        ConfigError::new(
            file,
            Some(e.line),
            None,
            None,
            format!("cannot parse: {}", e.msg),
        )
    })?;
    let mut parsed = ini
        .iter()
        .flat_map(|(section, properties)| properties.iter().map(move |(k, v)| (section, k, v)));
    let mut assignments = Vec::with_capacity(scan.keys.len());
    for key in &scan.keys {
        let spec = key.spec;
        match parsed.next() {
            Some((Some(section), name, value))
                if section.eq_ignore_ascii_case(spec.section.name())
                    && name.eq_ignore_ascii_case(spec.name) =>
            {
                assignments.push(Assignment {
                    line: key.line,
                    spec,
                    value: value.to_owned(),
                });
            }
            _ => {
                return Err(ConfigError::for_key(
                    file,
                    Some(key.line),
                    spec.section,
                    spec.name,
                    "the INI parser read this line differently from the line scanner; check \
                     quotes and backslashes",
                ));
            }
        }
    }
    if parsed.next().is_some() {
        return Err(ConfigError::new(
            file,
            None,
            None,
            None,
            "the INI parser found more keys than the line scanner; check quotes and backslashes",
        ));
    }
    Ok(assignments)
}

/// Checks and stores one value through the table; returns the rule broken.
fn apply(spec: &KeySpec, text: &str, config: &mut Config) -> Result<(), String> {
    if text.is_empty() {
        return Err(match spec.default {
            DefaultValue::Value(default) => {
                format!("needs a value; remove the line to use the default ({default})")
            }
            DefaultValue::Absent(_) => {
                "needs a value; remove the line to leave it unset".to_owned()
            }
        });
    }
    let outcome = match &spec.value {
        ValueKind::Bool { set, .. } => parse_bool(text)
            .map(|value| set(config, value))
            .ok_or_else(|| format!("must be {}", spec.value.rule())),
        ValueKind::Int { min, max, set, .. } => parse_int(text, *min, *max)
            .map(|value| set(config, value))
            .ok_or_else(|| format!("must be {}", spec.value.rule())),
        ValueKind::Text { set, .. } => set(config, text),
    };
    let Err(rule) = outcome else {
        return Ok(());
    };
    Err(if spec.secret {
        rule
    } else {
        format!("{rule} (got {})", quote_value(text))
    })
}

fn quote_value(text: &str) -> String {
    let mut cut: String = text.chars().take(MAX_QUOTED_VALUE_CHARS).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    format!("'{}'", cut.escape_debug())
}

/// " (Listen belongs in [Com])" when `key` is known in some section, else "".
fn home_hint(key: &str) -> String {
    match Section::ALL
        .into_iter()
        .find(|section| find_key(*section, key).is_some())
    {
        Some(home) => format!(" ({key} belongs in [{}])", home.name()),
        None => String::new(),
    }
}

fn section_list() -> String {
    Section::ALL
        .iter()
        .map(|s| format!("[{}]", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_list(section: Section) -> String {
    KEYS.iter()
        .filter(|spec| spec.section == section)
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A config whose every field is a placeholder. [`resolve`] overwrites each field that has a
/// default in [`KEYS`] and derives the rest, so the only defaults are those in the table.
fn placeholder(source: Option<PathBuf>) -> Config {
    Config {
        source,
        com: ComConfig {
            listen: ListenAddr {
                host: None,
                port: 0,
            },
            max_connections: 0,
        },
        srv: SrvConfig { name: None },
        grid: GridConfig {
            grid_enabled: false,
            raft_election_timeout_ms: 0,
            raft_heartbeat_timeout_ms: 0,
            raft_pre_vote: false,
            node_failure_timeout_ms: 0,
            ddl_sync_timeout_s: 0,
            availability_manager_actions_enabled: false,
            secret: None,
            load_rate_limit_mb_per_s: 0,
        },
        logging: LoggingConfig {
            log_dir: PathBuf::new(),
        },
        index_file: IndexFileConfig {
            file_spec_1: PathBuf::new(),
        },
        security: SecurityConfig {
            certificate: None,
            key: None,
            trusted_ca: None,
            client_certificate_required: false,
        },
    }
}

/// Builds the Config from the file's values (in file order, so the first bad line is the one
/// reported), fills in defaults, derives RaftHeartbeatTimeout, and checks the cross-key rules.
fn resolve(
    file: &Path,
    source: Option<PathBuf>,
    assignments: &[Assignment],
) -> Result<Config, ConfigError> {
    let mut config = placeholder(source);
    for a in assignments {
        apply(a.spec, &a.value, &mut config).map_err(|message| {
            ConfigError::for_key(file, Some(a.line), a.spec.section, a.spec.name, message)
        })?;
    }
    for spec in KEYS {
        if assignments.iter().any(|a| std::ptr::eq(a.spec, spec)) {
            continue;
        }
        if let DefaultValue::Value(text) = spec.default {
            apply(spec, text, &mut config).map_err(|message| {
                ConfigError::for_key(
                    file,
                    None,
                    spec.section,
                    spec.name,
                    format!("the built-in default is invalid: {message}"),
                )
            })?;
        }
    }
    let given = |section: Section, name: &str| {
        assignments
            .iter()
            .find(|a| a.spec.section == section && a.spec.name == name)
            .map(|a| a.line)
    };
    if given(Section::Grid, RAFT_HEARTBEAT_TIMEOUT).is_none() {
        config.grid.raft_heartbeat_timeout_ms = (config.grid.raft_election_timeout_ms / 3).max(1);
    }
    check_raft_timeouts(&config.grid, file, &given)?;
    check_grid_secret(&config.grid, file, &given)?;
    check_security(&config.security, config.grid.grid_enabled, file, &given)?;
    Ok(config)
}

type Given<'a> = dyn Fn(Section, &str) -> Option<usize> + 'a;

/// RaftElectionTimeout >= 2 x RaftHeartbeatTimeout, and NodeFailureTimeout >
/// RaftHeartbeatTimeout. The error goes to the line of the key the user wrote, preferring the
/// key the rule is about.
fn check_raft_timeouts(grid: &GridConfig, file: &Path, given: &Given) -> Result<(), ConfigError> {
    let election = grid.raft_election_timeout_ms;
    let heartbeat = grid.raft_heartbeat_timeout_ms;
    let node_failure = grid.node_failure_timeout_ms;
    let election_line = given(Section::Grid, RAFT_ELECTION_TIMEOUT);
    let heartbeat_line = given(Section::Grid, RAFT_HEARTBEAT_TIMEOUT);
    let node_failure_line = given(Section::Grid, NODE_FAILURE_TIMEOUT);
    let derived = if heartbeat_line.is_none() {
        "; RaftHeartbeatTimeout defaults to RaftElectionTimeout / 3, at least 1 ms"
    } else {
        ""
    };
    let grid_error = |line, key: &str, message: String| {
        ConfigError::for_key(file, line, Section::Grid, key, message)
    };

    if election < 2 * heartbeat {
        return Err(match (election_line, heartbeat_line) {
            (None, Some(line)) => grid_error(
                Some(line),
                RAFT_HEARTBEAT_TIMEOUT,
                format!(
                    "must be at most RaftElectionTimeout / 2: RaftElectionTimeout (the default) \
                     must be at least 2 x RaftHeartbeatTimeout (got {election} ms < 2 x {heartbeat} ms)"
                ),
            ),
            (line, _) => grid_error(
                line,
                RAFT_ELECTION_TIMEOUT,
                format!(
                    "must be at least 2 x RaftHeartbeatTimeout (got {election} ms < 2 x {heartbeat} ms{derived})"
                ),
            ),
        });
    }
    if node_failure <= heartbeat {
        return Err(match (node_failure_line, heartbeat_line) {
            (Some(line), _) => grid_error(
                Some(line),
                NODE_FAILURE_TIMEOUT,
                format!(
                    "must be greater than RaftHeartbeatTimeout (got {node_failure} ms <= {heartbeat} ms{derived})"
                ),
            ),
            (None, Some(line)) => grid_error(
                Some(line),
                RAFT_HEARTBEAT_TIMEOUT,
                format!(
                    "must be less than NodeFailureTimeout (got {heartbeat} ms >= {node_failure} ms, \
                     the default NodeFailureTimeout)"
                ),
            ),
            (None, None) => grid_error(
                election_line,
                RAFT_ELECTION_TIMEOUT,
                format!(
                    "makes the default RaftHeartbeatTimeout (RaftElectionTimeout / 3 = {heartbeat} ms) \
                     reach NodeFailureTimeout (the default, {node_failure} ms), which must be greater \
                     than RaftHeartbeatTimeout; set NodeFailureTimeout or RaftHeartbeatTimeout"
                ),
            ),
        });
    }
    Ok(())
}

/// A grid-enabled node needs a Secret (its length and characters are checked with the value).
fn check_grid_secret(grid: &GridConfig, file: &Path, given: &Given) -> Result<(), ConfigError> {
    if grid.grid_enabled && grid.secret.is_none() {
        return Err(ConfigError::for_key(
            file,
            given(Section::Grid, GRID_ENABLED),
            Section::Grid,
            GRID_ENABLED,
            "a grid-enabled node needs [Grid] Secret (design §8)",
        ));
    }
    Ok(())
}

/// Certificate and Key come together; ClientCertificateRequired = yes needs TrustedCA and
/// Certificate.
fn check_security(
    security: &SecurityConfig,
    grid_enabled: bool,
    file: &Path,
    given: &Given,
) -> Result<(), ConfigError> {
    let error = |key: &str, message: String| {
        ConfigError::for_key(
            file,
            given(Section::Security, key),
            Section::Security,
            key,
            message,
        )
    };
    match (&security.certificate, &security.key) {
        (Some(_), None) => {
            return Err(error(
                CERTIFICATE,
                "needs [Security] Key too: a TLS identity is a certificate and its private key"
                    .to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(error(
                KEY,
                "needs [Security] Certificate too: a TLS identity is a certificate and its \
                 private key"
                    .to_owned(),
            ));
        }
        _ => {}
    }
    if security.client_certificate_required {
        let missing: Vec<&str> = [
            (TRUSTED_CA, security.trusted_ca.is_none()),
            (CERTIFICATE, security.certificate.is_none()),
        ]
        .into_iter()
        .filter(|(_, absent)| *absent)
        .map(|(key, _)| key)
        .collect();
        if !missing.is_empty() {
            return Err(error(
                CLIENT_CERTIFICATE_REQUIRED,
                format!(
                    "= yes needs [Security] TrustedCA (to check client certificates) and \
                     Certificate (the node's own TLS identity); missing: {}",
                    missing.join(", ")
                ),
            ));
        }
    }
    if grid_enabled && security.certificate.is_some() && security.trusted_ca.is_none() {
        // A grid node with TLS also connects to its peers over TLS and must be able to
        // check their certificates.
        return Err(error(
            CERTIFICATE,
            "on a grid-enabled node needs [Security] TrustedCA too: the node checks its \
             peers' certificates against it"
                .to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("solid.ini"))
    }

    #[test]
    fn a_tls_grid_node_needs_a_trusted_ca() {
        let e = err(
            "[Grid]\nGridEnabled = yes\nSecret = 12345678\n[Security]\nCertificate = n.pem\nKey = n.key\n",
        );
        assert_eq!(e.key.as_deref(), Some("Certificate"));
        assert!(e.message.contains("TrustedCA"), "{e}");
        ok("[Security]\nCertificate = n.pem\nKey = n.key\n");
        ok(
            "[Grid]\nGridEnabled = yes\nSecret = 12345678\n[Security]\nCertificate = n.pem\nKey = n.key\nTrustedCA = ca.pem\n",
        );
    }

    fn ok(text: &str) -> Config {
        parse(text).unwrap_or_else(|e| panic!("should parse, got: {e}"))
    }

    fn err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(config) => panic!("should be rejected, parsed as {config:?}"),
            Err(e) => e,
        }
    }

    /// Asserts where an error points and that its message contains `fragment`.
    #[track_caller]
    fn assert_err(
        e: &ConfigError,
        line: Option<usize>,
        section: Option<&str>,
        key: Option<&str>,
        fragment: &str,
    ) {
        assert_eq!(e.line, line, "line of: {e}");
        assert_eq!(e.section.as_deref(), section, "section of: {e}");
        assert_eq!(e.key.as_deref(), key, "key of: {e}");
        assert!(
            e.message.contains(fragment),
            "{e:?} should contain {fragment:?}"
        );
        assert!(e.to_string().starts_with("solid.ini"), "{e}");
    }

    fn spec(section: Section, name: &str) -> &'static KeySpec {
        find_key(section, name).expect("known key")
    }

    // --- defaults and the table --------------------------------------------------------------

    #[test]
    fn defaults_match_the_design() {
        let c = Config::defaults();
        assert_eq!(c.source, None);
        assert_eq!(
            c.com.listen,
            ListenAddr {
                host: None,
                port: 1315
            }
        );
        assert_eq!(c.com.listen.bind_addr(), "0.0.0.0:1315");
        assert_eq!(c.com.max_connections, 256);
        assert_eq!(c.srv.name, None);
        assert_eq!(c.node_name(), "localhost:1315");
        let g = &c.grid;
        assert!(!g.grid_enabled);
        assert_eq!(g.raft_election_timeout_ms, 300);
        assert_eq!(g.raft_heartbeat_timeout_ms, 100);
        assert!(g.raft_pre_vote);
        assert_eq!(g.node_failure_timeout_ms, 3000);
        assert_eq!(g.ddl_sync_timeout_s, 60);
        assert!(g.availability_manager_actions_enabled);
        assert_eq!(g.secret, None);
        assert_eq!(g.load_rate_limit_mb_per_s, 0);
        assert_eq!(c.logging.log_dir, PathBuf::from("."));
        assert_eq!(c.index_file.file_spec_1, PathBuf::from("solid.db"));
        assert_eq!(
            c.security,
            SecurityConfig {
                certificate: None,
                key: None,
                trusted_ca: None,
                client_certificate_required: false,
            }
        );
        assert_eq!(Config::default(), c);
    }

    #[test]
    fn empty_or_comment_only_file_means_defaults() {
        let expected = Config {
            source: Some(PathBuf::from("solid.ini")),
            ..Config::defaults()
        };
        assert_eq!(ok(""), expected);
        assert_eq!(
            ok("; nothing\n# at all\n\n   \n[Grid]\n; still nothing\n"),
            expected
        );
    }

    #[test]
    fn key_table_is_consistent() {
        let defaults = Config::defaults();
        let mut last_section = 0;
        for (i, spec) in KEYS.iter().enumerate() {
            // Sections in the design's order, keys grouped by section.
            let position = Section::ALL
                .iter()
                .position(|s| *s == spec.section)
                .unwrap();
            assert!(
                position >= last_section,
                "{} is out of section order",
                spec.name
            );
            last_section = position;
            // Names unique (case-insensitively) within a section.
            assert!(
                KEYS[..i].iter().all(|other| other.section != spec.section
                    || !other.name.eq_ignore_ascii_case(spec.name)),
                "{} twice",
                spec.name
            );
            // Every stored default is what the defaults show.
            if let DefaultValue::Value(text) = spec.default {
                assert_eq!(shown(spec, &defaults), text, "default of {}", spec.name);
            }
            assert!(!spec.doc.is_empty());
        }
        // Rule texts that quote a limit quote the constant that enforces it.
        let rule = |section, name| spec(section, name).value.rule();
        assert!(rule(Section::Srv, "Name").starts_with(&format!("1 to {MAX_NODE_NAME_LEN} ")));
        assert!(
            rule(Section::Grid, SECRET)
                .starts_with(&format!("{MIN_SECRET_LEN} to {MAX_SECRET_LEN} "))
        );
    }

    // --- reading values ----------------------------------------------------------------------

    #[test]
    fn reads_every_key_case_insensitively_with_comments() {
        let text = "\u{feff}; a node\r\n\
            [com]\r\n\
            LISTEN = tcp 10.0.0.5 2315 ; the gRPC port\r\n\
            maxconnections=1000\r\n\
            \r\n\
            [SRV]\r\n\
            \tname = node-1\r\n\
            [Grid]\r\n\
            # grid\r\n\
            gridenabled = Yes\r\n\
            RaftElectionTimeout = 900\r\n\
            RaftHeartbeatTimeout = 200\r\n\
            RaftPreVote = off\r\n\
            NodeFailureTimeout = 5000\r\n\
            DDLSyncTimeout = 120\r\n\
            AvailabilityManagerActionsEnabled = false\r\n\
            Secret = \"correct horse ; battery\"\r\n\
            LoadRateLimit = 50\r\n\
            [Logging]\r\n\
            \x20 ; an indented comment\r\n\
            LogDir = logs\r\n\
            [IndexFile]\r\n\
            FileSpec_1 = data/solid.db 1000M\r\n\
            [Security] ; TLS\r\n\
            Certificate = tls/node.pem\r\n\
            Key = tls/node.key\r\n\
            TrustedCA = tls/ca.pem\r\n\
            ClientCertificateRequired = 1\r\n";
        let c = ok(text);
        assert_eq!(c.source, Some(PathBuf::from("solid.ini")));
        assert_eq!(
            c.com.listen,
            ListenAddr {
                host: Some("10.0.0.5".into()),
                port: 2315
            }
        );
        assert_eq!(c.com.max_connections, 1000);
        assert_eq!(c.srv.name.as_deref(), Some("node-1"));
        assert_eq!(c.node_name(), "node-1");
        let g = &c.grid;
        assert!(g.grid_enabled);
        assert_eq!(g.raft_election_timeout_ms, 900);
        assert_eq!(g.raft_heartbeat_timeout_ms, 200);
        assert!(!g.raft_pre_vote);
        assert_eq!(g.node_failure_timeout_ms, 5000);
        assert_eq!(g.ddl_sync_timeout_s, 120);
        assert!(!g.availability_manager_actions_enabled);
        assert_eq!(g.secret.as_deref(), Some("correct horse ; battery"));
        assert_eq!(g.load_rate_limit_mb_per_s, 50);
        assert_eq!(c.logging.log_dir, PathBuf::from("logs"));
        assert_eq!(c.index_file.file_spec_1, PathBuf::from("data/solid.db"));
        assert_eq!(c.security.certificate, Some(PathBuf::from("tls/node.pem")));
        assert_eq!(c.security.key, Some(PathBuf::from("tls/node.key")));
        assert_eq!(c.security.trusted_ca, Some(PathBuf::from("tls/ca.pem")));
        assert!(c.security.client_certificate_required);
    }

    #[test]
    fn colon_separator_and_literal_backslashes() {
        let c = ok("[Com]\nListen: tcp 1316\n[Logging]\nLogDir = C:\\solid\\logs\n");
        assert_eq!(c.com.listen.port, 1316);
        assert_eq!(c.logging.log_dir, PathBuf::from("C:\\solid\\logs"));
        // Inline comments need whitespace before ';' or '#'.
        let c = ok("[Com]\nListen = tcp 1317 # port\nMaxConnections = 9\t; tab\n");
        assert_eq!((c.com.listen.port, c.com.max_connections), (1317, 9));
        let e = err("[Com]\nMaxConnections = 9;no space\n");
        assert_err(
            &e,
            Some(2),
            Some("Com"),
            Some("MaxConnections"),
            "(got '9;no space')",
        );
    }

    #[test]
    fn booleans_accept_every_spelling() {
        for (text, value) in [
            ("yes", true),
            ("YES", true),
            ("true", true),
            ("True", true),
            ("on", true),
            ("ON", true),
            ("1", true),
            ("no", false),
            ("No", false),
            ("false", false),
            ("FALSE", false),
            ("off", false),
            ("Off", false),
            ("0", false),
        ] {
            let c = ok(&format!("[Grid]\nRaftPreVote = {text}\n"));
            assert_eq!(c.grid.raft_pre_vote, value, "{text}");
        }
    }

    #[test]
    fn bad_boolean_is_rejected() {
        for text in ["maybe", "y", "2", "yes please"] {
            let e = err(&format!("[Grid]\nRaftPreVote = {text}\n"));
            assert_err(
                &e,
                Some(2),
                Some("Grid"),
                Some("RaftPreVote"),
                "must be yes or no",
            );
            assert!(e.message.contains(&format!("(got '{text}')")), "{e}");
        }
    }

    #[test]
    fn integers_are_decimal_and_bounded() {
        let cases = [
            ("Com", "MaxConnections", "1", true),
            ("Com", "MaxConnections", "65535", true),
            ("Com", "MaxConnections", "0", false),
            ("Com", "MaxConnections", "65536", false),
            ("Grid", "RaftElectionTimeout", "6000", true),
            ("Grid", "RaftElectionTimeout", "60001", false),
            ("Grid", "RaftElectionTimeout", "-300", false),
            ("Grid", "RaftElectionTimeout", "+300", false),
            ("Grid", "RaftElectionTimeout", "300ms", false),
            ("Grid", "RaftElectionTimeout", "3e2", false),
            ("Grid", "RaftElectionTimeout", "0x12c", false),
            ("Grid", "RaftElectionTimeout", "1.5", false),
            (
                "Grid",
                "RaftElectionTimeout",
                "99999999999999999999999",
                false,
            ),
            ("Grid", "NodeFailureTimeout", "3600000", true),
            ("Grid", "NodeFailureTimeout", "3600001", false),
            ("Grid", "DDLSyncTimeout", "86400", true),
            ("Grid", "DDLSyncTimeout", "86401", false),
            ("Grid", "LoadRateLimit", "0", true),
            ("Grid", "LoadRateLimit", "100000", true),
            ("Grid", "LoadRateLimit", "100001", false),
        ];
        for (section, key, value, valid) in cases {
            let text = format!("[{section}]\n{key} = {value}\n");
            match parse(&text) {
                Ok(c) => {
                    assert!(valid, "{key} = {value} should be rejected");
                    assert_eq!(
                        shown(spec(Section::lookup(section).unwrap(), key), &c),
                        value
                    );
                }
                Err(e) => {
                    assert!(!valid, "{key} = {value} should parse: {e}");
                    assert_err(
                        &e,
                        Some(2),
                        Some(section),
                        Some(key),
                        "must be a whole number",
                    );
                    assert!(e.message.contains(&format!("(got '{value}')")), "{e}");
                }
            }
        }
        let c = ok("[Grid]\nRaftElectionTimeout = 60000\nNodeFailureTimeout = 3600000\n");
        assert_eq!(c.grid.raft_election_timeout_ms, 60000);
        let e = err("[Grid]\nDDLSyncTimeout = 0\n");
        assert_eq!(
            e.to_string(),
            "solid.ini line 2: [Grid] DDLSyncTimeout: must be a whole number of seconds from 1 \
             to 86400 (got '0')"
        );
    }

    #[test]
    fn millisecond_keys_reject_zero() {
        for key in [
            RAFT_ELECTION_TIMEOUT,
            RAFT_HEARTBEAT_TIMEOUT,
            NODE_FAILURE_TIMEOUT,
        ] {
            let e = err(&format!("[Grid]\n{key} = 0\n"));
            assert_err(
                &e,
                Some(2),
                Some("Grid"),
                Some(key),
                "milliseconds from 1 to",
            );
        }
    }

    // --- structure ---------------------------------------------------------------------------

    #[test]
    fn unknown_section_is_rejected() {
        let e = err("[Com]\nListen = tcp 1315\n[Replication]\nFoo = 1\n");
        assert_err(&e, Some(3), Some("Replication"), None, "unknown section");
        assert_eq!(
            e.to_string(),
            "solid.ini line 3: [Replication]: unknown section; the sections are [Com], [Srv], \
             [Grid], [Logging], [IndexFile], [Security]"
        );
    }

    #[test]
    fn unknown_key_is_rejected() {
        let e = err("[Grid]\nGridEnabled = no\nHeartbeat = 5\n");
        assert_err(
            &e,
            Some(3),
            Some("Grid"),
            Some("Heartbeat"),
            "unknown key; the keys of [Grid] are GridEnabled, ",
        );
        let e = err("[Grid]\nListen = tcp 1315\n");
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some("Listen"),
            "unknown key (Listen belongs in [Com])",
        );
    }

    #[test]
    fn key_before_any_section_is_rejected() {
        let e = err("; header\nListen = tcp 1315\n[Com]\n");
        assert_err(
            &e,
            Some(2),
            None,
            Some("Listen"),
            "unrecognized entry in section <no section>",
        );
        assert!(e.message.contains("(Listen belongs in [Com])"), "{e}");
        assert_eq!(
            e.to_string(),
            "solid.ini line 2: Listen: unrecognized entry in section <no section>: every key \
             must follow a section header (Listen belongs in [Com])"
        );
        let e = err("Whatever = 1\n");
        assert_err(
            &e,
            Some(1),
            None,
            Some("Whatever"),
            "unrecognized entry in section <no section>",
        );
    }

    #[test]
    fn duplicate_key_is_rejected_naming_both_lines() {
        let e = err("[Grid]\nRaftPreVote = yes\nraftprevote = no\n");
        assert_err(
            &e,
            Some(3),
            Some("Grid"),
            Some("RaftPreVote"),
            "given twice, on line 2 and line 3",
        );
        // Across a repeated section header, in another case.
        let e =
            err("[Grid]\nRaftPreVote = yes\n[Com]\nListen = tcp 1315\n[grid]\nRAFTPREVOTE = no\n");
        assert_err(
            &e,
            Some(6),
            Some("Grid"),
            Some("RaftPreVote"),
            "given twice, on line 2 and line 6",
        );
    }

    #[test]
    fn repeated_sections_are_merged() {
        let c = ok(
            "[Grid]\nRaftPreVote = no\n[Com]\nListen = tcp 2000\n[GRID]\nDDLSyncTimeout = 5\n[com]\nMaxConnections = 7\n",
        );
        assert!(!c.grid.raft_pre_vote);
        assert_eq!(c.grid.ddl_sync_timeout_s, 5);
        assert_eq!(c.com.listen.port, 2000);
        assert_eq!(c.com.max_connections, 7);
    }

    #[test]
    fn empty_value_is_rejected() {
        let e = err("[Srv]\nName =\n");
        assert_err(
            &e,
            Some(2),
            Some("Srv"),
            Some("Name"),
            "needs a value; remove the line to leave it unset",
        );
        let e = err("[Grid]\nRaftPreVote =   \t\n");
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some("RaftPreVote"),
            "needs a value; remove the line to use the default (yes)",
        );
        // rust-ini reads `Key = ; text` as the value "; text": refused, not taken as a value.
        let e = err("[Grid]\nRaftPreVote =    ; comment only\n");
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some("RaftPreVote"),
            "starts with ';' or '#'",
        );
        let e = err("[Com]\nListen = \"\"\n");
        assert_err(&e, Some(2), Some("Com"), Some("Listen"), "needs a value");
    }

    #[test]
    fn malformed_lines_are_rejected() {
        let cases: [(&str, usize, &str); 10] = [
            ("[Com]\nListen tcp 1315\n", 2, "expected 'Key = value'"),
            ("[Com]\n= tcp 1315\n", 2, "a key name is missing"),
            ("[Com\nListen = tcp 1315\n", 1, "closing ']'"),
            (
                "[Com] Listen = tcp 1315\n",
                1,
                "only a comment may follow a section header",
            ),
            ("[]\n", 1, "empty section name"),
            ("[Srv]\nName = \"node-1\n", 2, "unterminated quote"),
            ("[Srv]\nName = 'a\\'\n", 2, "unterminated quote"),
            (
                "[Logging]\nLogDir = C:\\logs\\\nKey = x\n",
                2,
                "cannot end with '\\'",
            ),
            ("[Srv]\nName = ;node\n", 2, "starts with ';' or '#'"),
            ("[Srv]\nName = a\rb\n", 2, "carriage return"),
        ];
        for (text, line, fragment) in cases {
            let e = err(text);
            assert_eq!(e.line, Some(line), "{text:?}: {e}");
            assert!(e.message.contains(fragment), "{text:?}: {e}");
        }
        // A backslash before the inline comment does not join lines.
        let c = ok("[Logging]\nLogDir = C:\\logs ; comment ends with \\\n");
        assert_eq!(c.logging.log_dir, PathBuf::from("C:\\logs"));
    }

    // --- cross-key rules ---------------------------------------------------------------------

    #[test]
    fn election_timeout_must_be_twice_the_heartbeat() {
        let text = "; solid.ini\n[Com]\nListen = tcp 1315\n\n[Grid]\nRaftHeartbeatTimeout = 60\nRaftElectionTimeout = 100\n";
        assert_eq!(
            err(text).to_string(),
            "solid.ini line 7: [Grid] RaftElectionTimeout: must be at least 2 x \
             RaftHeartbeatTimeout (got 100 ms < 2 x 60 ms)"
        );
        assert_eq!(
            ok("[Grid]\nRaftHeartbeatTimeout = 50\nRaftElectionTimeout = 100\n")
                .grid
                .raft_heartbeat_timeout_ms,
            50
        );
        // Only the heartbeat given: the error is on its line.
        let e = err("[Grid]\nRaftHeartbeatTimeout = 200\n");
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some(RAFT_HEARTBEAT_TIMEOUT),
            "(got 300 ms < 2 x 200 ms)",
        );
    }

    #[test]
    fn heartbeat_defaults_to_a_third_of_the_election_timeout() {
        for (election, heartbeat) in [(900, 300), (1000, 333), (4, 1), (2, 1)] {
            let c = ok(&format!("[Grid]\nRaftElectionTimeout = {election}\n"));
            assert_eq!(
                c.grid.raft_heartbeat_timeout_ms, heartbeat,
                "election {election}"
            );
        }
        let e = err("[Grid]\nRaftElectionTimeout = 1\n");
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some(RAFT_ELECTION_TIMEOUT),
            "(got 1 ms < 2 x 1 ms; RaftHeartbeatTimeout defaults to",
        );
    }

    #[test]
    fn node_failure_timeout_must_exceed_the_heartbeat() {
        let e = err("[Grid]\nNodeFailureTimeout = 100\nRaftHeartbeatTimeout = 100\n");
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some(NODE_FAILURE_TIMEOUT),
            "must be greater than RaftHeartbeatTimeout (got 100 ms <= 100 ms)",
        );
        let e = err("[Grid]\nRaftElectionTimeout = 60000\nRaftHeartbeatTimeout = 3000\n");
        assert_err(
            &e,
            Some(3),
            Some("Grid"),
            Some(RAFT_HEARTBEAT_TIMEOUT),
            "must be less than NodeFailureTimeout (got 3000 ms >= 3000 ms",
        );
        let e = err("[Grid]\nRaftElectionTimeout = 9000\n");
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some(RAFT_ELECTION_TIMEOUT),
            "makes the default RaftHeartbeatTimeout (RaftElectionTimeout / 3 = 3000 ms)",
        );
        let c = ok("[Grid]\nRaftElectionTimeout = 9000\nNodeFailureTimeout = 3001\n");
        assert_eq!(c.grid.raft_heartbeat_timeout_ms, 3000);
    }

    #[test]
    fn grid_enabled_needs_a_secret() {
        let e = err("[Grid]\nGridEnabled = yes\n");
        assert_eq!(
            e.to_string(),
            "solid.ini line 2: [Grid] GridEnabled: a grid-enabled node needs [Grid] Secret (design §8)"
        );
        let c = ok("[Grid]\nGridEnabled = yes\nSecret = s3cret-grid\n");
        assert!(c.grid.grid_enabled);
        assert_eq!(c.grid.secret.as_deref(), Some("s3cret-grid"));
        // A secret without the grid is kept (a node can be enabled later).
        assert!(ok("[Grid]\nSecret = s3cret-grid\n").grid.secret.is_some());
    }

    #[test]
    fn secret_must_be_long_enough_and_printable() {
        let e = err("[Grid]\nGridEnabled = yes\nSecret = abc12\n");
        assert_err(
            &e,
            Some(3),
            Some("Grid"),
            Some(SECRET),
            "at least 8 characters",
        );
        let long = "x".repeat(MAX_SECRET_LEN + 1);
        let e = err(&format!("[Grid]\nSecret = {long}\n"));
        assert_err(
            &e,
            Some(2),
            Some("Grid"),
            Some(SECRET),
            "at most 1024 characters",
        );
        let e = err("[Grid]\nSecret = pässwörd-lang\n");
        assert_err(&e, Some(2), Some("Grid"), Some(SECRET), "printable ASCII");
        let e = err("[Grid]\nSecret = \n");
        assert_err(&e, Some(2), Some("Grid"), Some(SECRET), "needs a value");
    }

    #[test]
    fn secret_never_appears_in_errors_debug_or_parameters() {
        let secret = "TopSecretValue-42";
        let config = ok(&format!("[Grid]\nGridEnabled = yes\nSecret = {secret}\n"));
        assert!(!format!("{config:?}").contains(secret));
        assert!(!format!("{:?}", config.grid).contains(secret));
        assert!(format!("{:?}", config.grid).contains("secret: Some(\"<hidden>\")"));
        let parameters = config.grid_parameters();
        assert!(parameters.contains(&("Secret".to_owned(), "<hidden>".to_owned())));
        assert!(parameters.iter().all(|(_, v)| !v.contains(secret)));

        let failing = [
            format!("[Grid]\nSecret = {secret}\nsecret = {secret}\n"),
            "[Grid]\nSecret = Top\u{7f}Secret\n".to_owned(),
            "[Grid]\nSecret = TopSec\n".to_owned(),
            "[Grid]\nSecret = TopSecrét-value\n".to_owned(),
        ];
        for text in &failing {
            let e = err(text);
            for leaked in [secret, "TopSec", "Top\u{7f}Secret", "TopSecrét"] {
                assert!(!e.to_string().contains(leaked), "{e}");
                assert!(!format!("{e:?}").contains(leaked), "{e:?}");
            }
        }
    }

    #[test]
    fn certificate_and_key_come_together() {
        let e = err("[Security]\nCertificate = node.pem\n");
        assert_err(
            &e,
            Some(2),
            Some("Security"),
            Some(CERTIFICATE),
            "needs [Security] Key too",
        );
        let e = err("[Security]\n\nKey = node.key\n");
        assert_err(
            &e,
            Some(3),
            Some("Security"),
            Some(KEY),
            "needs [Security] Certificate too",
        );
        let c = ok("[Security]\nCertificate = node.pem\nKey = node.key\n");
        assert!(!c.security.client_certificate_required);
    }

    #[test]
    fn client_certificates_need_a_trusted_ca_and_a_certificate() {
        let e = err("[Security]\nClientCertificateRequired = yes\n");
        assert_err(
            &e,
            Some(2),
            Some("Security"),
            Some(CLIENT_CERTIFICATE_REQUIRED),
            "missing: TrustedCA, Certificate",
        );
        let e = err("[Security]\nTrustedCA = ca.pem\nClientCertificateRequired = yes\n");
        assert_err(
            &e,
            Some(3),
            Some("Security"),
            Some(CLIENT_CERTIFICATE_REQUIRED),
            "missing: Certificate",
        );
        let e =
            err("[Security]\nCertificate = n.pem\nKey = n.key\nClientCertificateRequired = yes\n");
        assert_err(
            &e,
            Some(4),
            Some("Security"),
            Some(CLIENT_CERTIFICATE_REQUIRED),
            "missing: TrustedCA",
        );
        let c = ok(
            "[Security]\nCertificate = n.pem\nKey = n.key\nTrustedCA = ca.pem\nClientCertificateRequired = yes\n",
        );
        assert!(c.security.client_certificate_required);
    }

    // --- individual value kinds --------------------------------------------------------------

    #[test]
    fn listen_addresses() {
        let parsed = |s: &str| ListenAddr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let a = parsed("tcp 1315");
        assert_eq!((a.host.as_deref(), a.port), (None, 1315));
        assert_eq!(a.bind_addr(), "0.0.0.0:1315");
        let a = parsed("TCP  db1.example.com   2315");
        assert_eq!(a.host.as_deref(), Some("db1.example.com"));
        assert_eq!(a.bind_addr(), "db1.example.com:2315");
        assert_eq!(a.to_string(), "tcp db1.example.com 2315");
        let a = parsed("tcp ::1 1315");
        assert_eq!(a.bind_addr(), "[::1]:1315");
        assert_eq!(parsed("tcp [::1] 1315"), a);
        assert_eq!(parsed("tcp 65535").port, 65535);
        for s in ["tcp 1315", "tcp 127.0.0.1 1", "tcp ::1 1315"] {
            assert_eq!(
                parsed(&parsed(s).to_string()),
                parsed(s),
                "round trip of {s}"
            );
        }
        let rejected = [
            ("", "no listen address"),
            ("1315", "the protocol is missing"),
            ("upipe SOLID", "only the tcp protocol"),
            ("tls 1315", "only the tcp protocol"),
            ("tcp", "the port is missing"),
            ("tcp 0", "from 1 to 65535"),
            ("tcp 65536", "from 1 to 65535"),
            ("tcp +1315", "from 1 to 65535"),
            ("tcp host port", "from 1 to 65535"),
            ("tcp a b 1315", "too many words"),
            ("tcp -i127.0.0.1 1315", "options such as -i"),
            ("tcp -4 1315", "options such as -i"),
            ("tcp 1315, tcp 1316", "only one listen address"),
            ("tcp host/x 1315", "host name or an IP address"),
            ("tcp [] 1315", "host name or an IP address"),
        ];
        for (s, fragment) in rejected {
            let e = ListenAddr::parse(s).expect_err(s);
            assert!(e.contains(fragment), "{s:?}: {e}");
        }
        let e = err("[Com]\nListen = tcp 99999\n");
        assert_err(&e, Some(2), Some("Com"), Some(LISTEN), "(got 'tcp 99999')");
    }

    #[test]
    fn file_spec_accepts_and_ignores_a_size() {
        for (value, path) in [
            ("solid.db", "solid.db"),
            ("solid.db 1000M", "solid.db"),
            ("data/x.db   10g", "data/x.db"),
            ("/srv/solid.db 4096", "/srv/solid.db"),
            ("solid.db 64k", "solid.db"),
        ] {
            let c = ok(&format!("[IndexFile]\nFileSpec_1 = {value}\n"));
            assert_eq!(c.index_file.file_spec_1, PathBuf::from(path), "{value}");
        }
        for (value, fragment) in [
            ("solid.db lots", "only a size is allowed"),
            ("solid.db 100T", "only a size is allowed"),
            ("solid.db 0M", "only a size is allowed"),
            ("solid.db M", "only a size is allowed"),
            ("solid.db 100M extra", "more after the size"),
        ] {
            let e = err(&format!("[IndexFile]\nfilespec_1 = {value}\n"));
            assert_err(&e, Some(2), Some("IndexFile"), Some("FileSpec_1"), fragment);
        }
    }

    #[test]
    fn node_names() {
        assert_eq!(
            ok("[Srv]\nName = node_1.east:a-b\n").node_name(),
            "node_1.east:a-b"
        );
        assert_eq!(
            ok("[Com]\nListen = tcp 10.1.2.3 2000\n").node_name(),
            "10.1.2.3:2000"
        );
        assert_eq!(
            ok("[Com]\nListen = tcp ::1 2000\n").node_name(),
            "[::1]:2000"
        );
        for bad in [
            "node one",
            "node'1",
            "nødé",
            &"n".repeat(MAX_NODE_NAME_LEN + 1),
        ] {
            let e = err(&format!("[Srv]\nName = {bad}\n"));
            assert_err(&e, Some(2), Some("Srv"), Some("Name"), "letters, digits");
        }
        assert!(
            ok(&format!(
                "[Srv]\nName = {}\n",
                "n".repeat(MAX_NODE_NAME_LEN)
            ))
            .srv
            .name
            .is_some()
        );
    }

    #[test]
    fn paths_resolve_against_the_working_directory() {
        let work = Path::new("/var/solid/node1");
        let c = Config::defaults();
        assert_eq!(c.log_dir(work), PathBuf::from("/var/solid/node1"));
        assert_eq!(c.db_path(work), PathBuf::from("/var/solid/node1/solid.db"));
        assert_eq!(c.certificate_path(work), None);
        let c = ok(
            "[Logging]\nLogDir = ./logs\n[IndexFile]\nFileSpec_1 = /data/solid.db\n\
                    [Security]\nCertificate = tls/n.pem\nKey = /etc/n.key\nTrustedCA = ca.pem\n",
        );
        assert_eq!(c.log_dir(work), PathBuf::from("/var/solid/node1/logs"));
        assert_eq!(c.db_path(work), PathBuf::from("/data/solid.db"));
        assert_eq!(
            c.certificate_path(work),
            Some(PathBuf::from("/var/solid/node1/tls/n.pem"))
        );
        assert_eq!(c.key_path(work), Some(PathBuf::from("/etc/n.key")));
        assert_eq!(
            c.trusted_ca_path(work),
            Some(PathBuf::from("/var/solid/node1/ca.pem"))
        );
        assert_eq!(
            Config::defaults().log_dir(Path::new(".")),
            PathBuf::from(".")
        );
    }

    #[test]
    fn grid_parameters_list_the_effective_grid_values() {
        let pairs = |c: &Config| -> Vec<(String, String)> { c.grid_parameters() };
        let expected: Vec<(String, String)> = [
            ("GridEnabled", "no"),
            ("RaftElectionTimeout", "300"),
            ("RaftHeartbeatTimeout", "100"),
            ("RaftPreVote", "yes"),
            ("NodeFailureTimeout", "3000"),
            ("DDLSyncTimeout", "60"),
            ("AvailabilityManagerActionsEnabled", "yes"),
            ("Secret", ""),
            ("LoadRateLimit", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(pairs(&Config::defaults()), expected);
        let c = ok("[Grid]\nGridEnabled = on\nSecret = 12345678\nRaftElectionTimeout = 600\n");
        let p = pairs(&c);
        assert_eq!(p[0], ("GridEnabled".to_owned(), "yes".to_owned()));
        assert_eq!(p[2], ("RaftHeartbeatTimeout".to_owned(), "200".to_owned()));
        assert_eq!(p[7], ("Secret".to_owned(), "<hidden>".to_owned()));
    }

    #[test]
    fn error_display_leaves_out_unknown_parts() {
        let e = ConfigError::new(
            Path::new("/n/solid.ini"),
            None,
            None,
            None,
            "cannot read: boom",
        );
        assert_eq!(e.to_string(), "/n/solid.ini: cannot read: boom");
        let e = ConfigError::new(
            Path::new("solid.ini"),
            Some(3),
            Some("Foo"),
            None,
            "unknown section",
        );
        assert_eq!(e.to_string(), "solid.ini line 3: [Foo]: unknown section");
        let e = ConfigError::for_key(
            Path::new("solid.ini"),
            None,
            Section::Grid,
            GRID_ENABLED,
            "x",
        );
        assert_eq!(e.to_string(), "solid.ini: [Grid] GridEnabled: x");
    }

    // --- loading from a directory ------------------------------------------------------------

    #[test]
    fn load_missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), Config::defaults());
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE_NAME);
        std::fs::write(&path, "[Com]\nListen = tcp 2999\n").unwrap();
        let c = Config::load(dir.path()).unwrap();
        assert_eq!(c.source, Some(path.clone()));
        assert_eq!(c.com.listen.port, 2999);

        std::fs::write(&path, "[Com]\nListen = tcp 2999\nBogus = 1\n").unwrap();
        let e = Config::load(dir.path()).unwrap_err();
        assert_eq!(e.file, path);
        assert_eq!(e.line, Some(3));
        assert!(
            e.to_string()
                .starts_with(&format!("{} line 3: [Com] Bogus:", path.display())),
            "{e}"
        );
    }

    #[test]
    fn load_rejects_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE_NAME);
        // A directory where the file should be cannot be read.
        std::fs::create_dir(&path).unwrap();
        let e = Config::load(dir.path()).unwrap_err();
        assert!(e.message.starts_with("cannot read:"), "{e}");
        std::fs::remove_dir(&path).unwrap();

        std::fs::write(&path, b"[Com]\nListen = tcp 1315\n[Srv]\nName = n\xff\n").unwrap();
        let e = Config::load(dir.path()).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (Some(4), "is not valid UTF-8 text")
        );

        let big = format!("[Com]\n{}", ";".repeat(MAX_CONFIG_FILE_BYTES as usize));
        std::fs::write(&path, big).unwrap();
        let e = Config::load(dir.path()).unwrap_err();
        assert!(e.message.contains("larger than"), "{e}");

        let e = Config::load(&dir.path().join("no-such-dir")).unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
    }

    // --- solid.ini.example -------------------------------------------------------------------

    const EXAMPLE: &str = include_str!("../solid.ini.example");

    #[test]
    fn example_parses_to_the_defaults() {
        let c = Config::parse(EXAMPLE, Path::new("solid.ini.example")).unwrap();
        assert_eq!(
            c,
            Config {
                source: Some(PathBuf::from("solid.ini.example")),
                ..Config::defaults()
            }
        );
    }

    #[test]
    fn example_with_every_default_uncommented_still_means_the_defaults() {
        let uncommented: Vec<&str> = EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix(';') {
                Some(rest)
                    if rest.starts_with(|c: char| c.is_ascii_alphabetic())
                        && !rest.trim_end().ends_with('=') =>
                {
                    rest
                }
                _ => line,
            })
            .collect();
        let set = uncommented
            .iter()
            .filter(|l| !l.starts_with([';', '[']))
            .filter(|l| !l.is_empty())
            .count();
        let c = Config::parse(&uncommented.join("\n"), Path::new("solid.ini.example")).unwrap();
        let defaults = Config::defaults();
        for spec in KEYS {
            assert_eq!(shown(spec, &c), shown(spec, &defaults), "{}", spec.name);
        }
        // All keys except the ones without a default value were uncommented.
        assert_eq!(set, KEYS.len() - 4);
    }

    #[test]
    fn example_documents_every_key_in_its_section() {
        let mut section = None;
        let mut documented = Vec::new();
        for line in EXAMPLE.lines() {
            if let Some(name) = line.strip_prefix('[') {
                section = Section::lookup(name.trim_end_matches(']'));
            } else if let Some(entry) = line.strip_prefix(';')
                && !entry.starts_with(' ')
                && let Some((key, _)) = entry.split_once('=')
            {
                documented.push((section.unwrap(), key.trim().to_owned()));
            }
        }
        let expected: Vec<(Section, String)> = KEYS
            .iter()
            .map(|s| (s.section, s.name.to_owned()))
            .collect();
        assert_eq!(documented, expected);
    }

    /// `SOLIDGRID_BLESS=1 cargo test --lib config::tests::example_file` rewrites the file.
    #[test]
    fn example_file_is_generated_from_the_key_table() {
        let generated = Config::example_ini();
        if EXAMPLE == generated {
            return;
        }
        if std::env::var_os("SOLIDGRID_BLESS").is_some() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("solid.ini.example");
            std::fs::write(path, generated).unwrap();
        } else {
            panic!(
                "solid.ini.example differs from Config::example_ini(); regenerate it with \
                 `SOLIDGRID_BLESS=1 cargo test --lib config::tests::example_file`"
            );
        }
    }
}
