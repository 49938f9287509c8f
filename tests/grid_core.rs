//! Scenario tests of the grid protocol core, run on the deterministic cluster harness
//! (`solidgrid::grid::sim`), plus a bounded seeded fuzz.
//!
//! Scenarios are text scripts in `tests/scenarios/*.txt` (data-driven, like raft-rs
//! `testdata/`). Every file runs once per seed (seeds 1, 2 and 3 unless it says `seeds …`);
//! the harness's invariant checkers run after every step throughout. One command a line;
//! `# ` starts a comment. Nodes are named `n1`, `n2`, …; a node added later gets the name
//! it is added under.
//!
//! ```text
//! seeds S…                      run the file once per seed (default: 1 2 3)
//! pre-vote off                  disable pre-vote (before `nodes`)
//! nodes N                       a grid of N members n1..nN, all MEMBER_ONLINE
//! elect nX                      make nX the leader (others' timers held, a leader cut off)
//! run MS                        advance simulated time by MS milliseconds
//! run-until-leader MS           advance until some node is a ready leader (fails after MS)
//! add nX [ADDR] [at nY]         ADD NODE nX (address nX:1315 unless given) on the leader or nY
//! drop|offline|online|fail nX [at nY]    the other membership changes
//! propose-data nX               a client proposes a data entry on nX
//! kill nX…  |  restart nX…  |  restart-all
//! crash-after nX K              nX crashes after executing K commands of its next step
//! partition nA… | nB…           no message crosses between the two groups
//! cut nX nY [votes]             messages (or only real vote requests) from nX to nY are lost
//! hold nX…  |  release nX…      withhold / restore nX's ticks (it never times out meanwhile)
//! heal                          remove every partition and cut
//! drop-rate P  |  dup-rate P    probability that a message is lost / duplicated
//! liveness                      stop all faults, restart all, require a settled leader
//! caught-up                     require every live member to catch up; check client promises
//! expect leader nX|any|none     the ready leader of the highest term
//! expect not-leader nX
//! expect one-leader             exactly one live node is in the leader role
//! expect term nX T | >T         nX's current term is T (or above T)
//! expect state nX STATE [on nY] nX's state in the leader's applied topology (or nY's)
//! expect no-member nX [on nY]
//! expect members nA…  |  expect voters nA…    exactly these (leader's applied topology)
//! expect reply [#K] OUTCOME     request K (1-based in script order; default the last) was
//!                               told: committed | rolled-back | unknown | lost | none | CODE
//! expect data [#K] committed|not-committed   whether its data is in the committed log
//! expect stranded nX            nX cannot catch up: its log ends before the leader's starts
//! ```
//!
//! The fuzz test runs `sim::fuzz` over a bounded range of seeds; a failure prints the seed
//! and the command that replays it (`fuzz_replay` with `GRID_SIM_SEED`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use solidgrid::grid::core::RequestId;
use solidgrid::grid::membership::ChangeRequest;
use solidgrid::grid::sim::{self, Cluster, SimConfig, Told, addr_of, fuzz};
use solidgrid::grid::types::{ChangeKind, MemberState, NodeId};

/// Bound on `elect`, in simulated milliseconds.
const ELECT_MS: u64 = 5_000;
const DEFAULT_SEEDS: [u64; 3] = [1, 2, 3];

struct Script {
    path: PathBuf,
    lines: Vec<(usize, String)>,
}

impl Script {
    fn load(path: &Path) -> Script {
        let text = std::fs::read_to_string(path).expect("readable scenario");
        let lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, strip_comment(l).trim().to_string()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        Script {
            path: path.to_path_buf(),
            lines,
        }
    }

    fn seeds(&self) -> Vec<u64> {
        self.lines
            .iter()
            .find_map(|(_, l)| l.strip_prefix("seeds "))
            .map(|s| {
                s.split_whitespace()
                    .map(|x| x.parse().expect("seeds are numbers"))
                    .collect()
            })
            .unwrap_or_else(|| DEFAULT_SEEDS.to_vec())
    }
}

/// A comment starts at a `#` followed by a space or the end of the line (`#3` names a
/// request).
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    let at = (0..b.len())
        .find(|&i| b[i] == b'#' && b.get(i + 1).is_none_or(|c| c.is_ascii_whitespace()));
    at.map_or(line, |i| &line[..i])
}

/// One run of a script under one seed.
struct Run<'a> {
    script: &'a Script,
    seed: u64,
    line: usize,
    cluster: Option<Cluster>,
    cfg: SimConfig,
    requests: Vec<RequestId>,
}

impl Run<'_> {
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let state = self
            .cluster
            .as_ref()
            .map(|c| format!("\nat t={} ms, nodes:\n{}", c.now_ms(), c.describe()))
            .unwrap_or_default();
        panic!(
            "{}:{} (seed {}): {what}{state}",
            self.script.path.display(),
            self.line,
            self.seed
        );
    }

    fn c(&mut self) -> &mut Cluster {
        if self.cluster.is_none() {
            self.fail("`nodes N` must come first");
        }
        self.cluster.as_mut().expect("checked")
    }

    fn node(&mut self, name: &str) -> NodeId {
        match self.c().id_of(name) {
            Some(id) => id,
            None => self.fail(format!("no node named {name}")),
        }
    }

    fn nodes(&mut self, names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| self.node(n)).collect()
    }

    fn num(&self, s: Option<&&str>) -> u64 {
        match s.and_then(|s| s.parse().ok()) {
            Some(n) => n,
            None => self.fail(format!("expected a number, got {s:?}")),
        }
    }

    fn request(&self, arg: Option<&&str>) -> RequestId {
        let k = match arg.and_then(|a| a.strip_prefix('#')) {
            Some(k) => k.parse::<usize>().unwrap_or(0),
            None => self.requests.len(),
        };
        match k.checked_sub(1).and_then(|i| self.requests.get(i)) {
            Some(&r) => r,
            None => self.fail(format!("no request #{k}")),
        }
    }

    /// The node a change is sent to: `at nY`, else the leader (n1 when there is none).
    fn change_target(&mut self, args: &[&str]) -> NodeId {
        match args.iter().position(|a| *a == "at") {
            Some(i) => {
                let name = args.get(i + 1).copied().unwrap_or("");
                self.node(name)
            }
            None => self.c().leader().unwrap_or(1),
        }
    }

    fn leader_topology_view(
        &mut self,
        on: Option<&str>,
    ) -> (String, solidgrid::grid::types::Topology) {
        let id = match on {
            Some(n) => self.node(n),
            None => match self.c().leader() {
                Some(l) => l,
                None => self.fail("no leader to ask"),
            },
        };
        let c = self.c();
        let name = c.name_of(id).to_string();
        match c.core(id) {
            Some(core) => (name, core.topology().clone()),
            None => self.fail(format!("{name} is not running")),
        }
    }

    fn exec(&mut self, words: &[&str]) {
        let args = &words[1..];
        match words[0] {
            "seeds" => {}
            "pre-vote" => self.cfg.core.pre_vote = args.first() != Some(&"off"),
            "nodes" => {
                let n = self.num(args.first());
                self.cluster = Some(Cluster::with_config(
                    n as usize,
                    self.seed,
                    self.cfg.clone(),
                ));
            }
            "elect" => {
                let id = self.node(args[0]);
                if !self.c().elect(id, ELECT_MS) {
                    self.fail(format!("{} was not elected within {ELECT_MS} ms", args[0]));
                }
            }
            "run" => {
                let ms = self.num(args.first());
                self.c().run_for(ms);
            }
            "run-until-leader" => {
                let ms = self.num(args.first());
                if !self.c().run_until(|c| c.leader().is_some(), ms) {
                    self.fail(format!("no leader within {ms} ms"));
                }
            }
            "add" | "drop" | "offline" | "online" | "fail" => {
                let name = args.first().copied().unwrap_or("");
                let target = self.change_target(args);
                let kind = match words[0] {
                    "add" => ChangeKind::Add,
                    "drop" => ChangeKind::Drop,
                    "offline" => ChangeKind::Offline,
                    "online" => ChangeKind::Online,
                    _ => ChangeKind::Fail,
                };
                let addr = match args.get(1) {
                    Some(a) if *a != "at" => Some(a.to_string()),
                    _ if kind == ChangeKind::Add => Some(addr_of(name)),
                    _ => None,
                };
                let rid = self.c().propose_change(
                    target,
                    ChangeRequest {
                        kind,
                        name: name.into(),
                        addr,
                    },
                );
                self.requests.push(rid);
            }
            "propose-data" => {
                let id = self.node(args[0]);
                let bytes = format!("data-{}", self.requests.len() + 1).into_bytes();
                let rid = self.c().propose_data(id, bytes);
                self.requests.push(rid);
            }
            "kill" => {
                for id in self.nodes(args) {
                    self.c().crash(id);
                }
            }
            "restart" => {
                for id in self.nodes(args) {
                    self.c().restart(id);
                }
            }
            "restart-all" => {
                for id in self.c().node_ids() {
                    self.c().restart(id);
                }
            }
            "crash-after" => {
                let id = self.node(args[0]);
                let k = self.num(args.get(1));
                self.c().crash_between_commands(id, k as usize);
            }
            "partition" => {
                let bar = args
                    .iter()
                    .position(|a| *a == "|")
                    .unwrap_or_else(|| self.fail("partition needs `|`"));
                let a = self.nodes(&args[..bar]);
                let b = self.nodes(&args[bar + 1..]);
                self.c().partition(&a, &b);
            }
            "cut" => {
                let from = self.node(args[0]);
                let to = self.node(args[1]);
                if args.get(2) == Some(&"votes") {
                    self.c().cut_votes(from, to);
                } else {
                    self.c().cut(from, to);
                }
            }
            "hold" | "release" => {
                for id in self.nodes(args) {
                    if words[0] == "hold" {
                        self.c().hold(id);
                    } else {
                        self.c().release(id);
                    }
                }
            }
            "heal" => self.c().heal(),
            "drop-rate" | "dup-rate" => {
                let p: f64 = args
                    .first()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| self.fail("expected a probability"));
                if words[0] == "drop-rate" {
                    self.c().set_drop_rate(p);
                } else {
                    self.c().set_dup_rate(p);
                }
            }
            "liveness" => self.c().liveness(),
            "caught-up" => self.c().check_caught_up(),
            "expect" => self.expect(args),
            other => self.fail(format!("unknown command {other}")),
        }
    }

    fn expect(&mut self, args: &[&str]) {
        let what = args.first().copied().unwrap_or("");
        let rest = &args[1.min(args.len())..];
        match what {
            "leader" => {
                let leader = self.c().leader();
                let ok = match rest.first().copied() {
                    Some("any") => leader.is_some(),
                    Some("none") => leader.is_none(),
                    Some(name) => leader == Some(self.node(name)),
                    None => self.fail("expect leader what?"),
                };
                if !ok {
                    let got = leader.map(|l| self.c().name_of(l).to_string());
                    self.fail(format!("expected leader {rest:?}, the leader is {got:?}"));
                }
            }
            "not-leader" => {
                let id = self.node(rest[0]);
                let role = self.c().core(id).map(|c| c.role());
                if role == Some(solidgrid::grid::core::Role::Leader) {
                    self.fail(format!("{} is a leader", rest[0]));
                }
            }
            "one-leader" => {
                let c = self.c();
                let n = c
                    .node_ids()
                    .into_iter()
                    .filter(|&i| {
                        c.core(i)
                            .is_some_and(|c| c.role() == solidgrid::grid::core::Role::Leader)
                    })
                    .count();
                if n != 1 {
                    self.fail(format!("{n} nodes are in the leader role"));
                }
            }
            "term" => {
                let id = self.node(rest[0]);
                let spec = rest.get(1).copied().unwrap_or("");
                let term = match self.c().core(id) {
                    Some(c) => c.term(),
                    None => self.fail(format!("{} is not running", rest[0])),
                };
                let ok = match spec.strip_prefix('>') {
                    Some(t) => term > self.num(Some(&t)),
                    None => term == self.num(Some(&spec)),
                };
                if !ok {
                    self.fail(format!("{} is in term {term}, expected {spec}", rest[0]));
                }
            }
            "state" | "no-member" => {
                let name = rest[0];
                let on = rest.iter().position(|a| *a == "on").map(|i| rest[i + 1]);
                let (viewer, topology) = self.leader_topology_view(on);
                let state = topology
                    .by_name(name)
                    .map_or(MemberState::NotMember, |m| m.state);
                let expected = if what == "state" {
                    rest.get(1).copied().unwrap_or("")
                } else {
                    "NOT_MEMBER"
                };
                if state.as_str() != expected {
                    self.fail(format!(
                        "{name} is {state} in {viewer}'s topology, expected {expected}"
                    ));
                }
            }
            "members" | "voters" => {
                let (viewer, topology) = self.leader_topology_view(None);
                let ids = if what == "members" {
                    topology.members.keys().copied().collect()
                } else {
                    topology.voters()
                };
                let mut got: Vec<String> = ids
                    .iter()
                    .map(|&i| topology.members[&i].name.clone())
                    .collect();
                let mut want: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
                got.sort();
                want.sort();
                if got != want {
                    self.fail(format!("{viewer}'s {what} are {got:?}, expected {want:?}"));
                }
            }
            "reply" => {
                let (rid, outcome) = match rest {
                    [k, o] => (self.request(Some(k)), *o),
                    [o] => (self.request(None), *o),
                    _ => self.fail("expect reply [#K] OUTCOME"),
                };
                let told = self.c().told(rid).cloned();
                let ok = match (outcome, &told) {
                    ("committed", Some(Told::Committed { .. } | Told::ChangeCommitted { .. })) => {
                        true
                    }
                    ("rolled-back", Some(Told::Failed { code: 18509 })) => true,
                    ("unknown", Some(Told::Failed { code: 18510 })) => true,
                    ("lost", Some(Told::Lost)) => true,
                    ("none", None) => true,
                    (code, Some(Told::Failed { code: got })) => code.parse() == Ok(*got),
                    _ => false,
                };
                if !ok {
                    let got = told.map_or("no reply".to_string(), |t| t.to_string());
                    self.fail(format!("request was told {got}, expected {outcome}"));
                }
            }
            "data" => {
                let (rid, want) = match rest {
                    [k, o] => (self.request(Some(k)), *o),
                    [o] => (self.request(None), *o),
                    _ => self.fail("expect data [#K] committed|not-committed"),
                };
                let c = self.c();
                let bytes = match c.request(rid).map(|r| r.what.clone()) {
                    Some(sim::Requested::Data(b)) => b,
                    _ => self.fail("not a data request"),
                };
                let committed = self.c().data_committed(&bytes);
                if committed != (want == "committed") {
                    self.fail(format!("data committed = {committed}, expected {want}"));
                }
            }
            "stranded" => {
                let id = self.node(rest[0]);
                let c = self.c();
                let leader = c.leader().unwrap_or_else(|| panic!("no leader"));
                let start = c.durable(leader).map_or(0, |d| d.snapshot_index);
                let last = c.core(id).map_or(0, |n| n.last_index());
                let behind = c.core(id).is_some_and(|n| {
                    n.commit_index() < c.core(leader).map_or(0, |l| l.commit_index())
                });
                if !(last < start && behind) {
                    self.fail(format!(
                        "{} is not stranded: its log ends at {last}, the leader's starts after {start}",
                        rest[0]
                    ));
                }
            }
            other => self.fail(format!("unknown expectation {other}")),
        }
    }
}

fn run_script(script: &Script, seed: u64) {
    let mut run = Run {
        script,
        seed,
        line: 0,
        cluster: None,
        cfg: SimConfig::default(),
        requests: Vec::new(),
    };
    for (line, text) in &script.lines {
        run.line = *line;
        let words: Vec<&str> = text.split_whitespace().collect();
        run.exec(&words);
    }
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scenarios exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn scenarios() {
    let only = std::env::var("GRID_SCENARIO").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in scenario_files() {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let script = Script::load(&path);
        for seed in script.seeds() {
            ran += 1;
            if catch_unwind(AssertUnwindSafe(|| run_script(&script, seed))).is_err() {
                failures.push(format!("{name} (seed {seed})"));
            }
        }
    }
    assert!(ran > 0, "no scenario ran");
    assert!(
        failures.is_empty(),
        "failed scenarios (details above): {}",
        failures.join(", ")
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds and length of the bounded fuzz run (the whole file stays well under a minute in a
/// debug build on two cores).
const FUZZ_SEEDS: u64 = 64;
const FUZZ_STEPS: usize = 200;

#[test]
fn fuzz_bounded_seeds() {
    let from = env_u64("GRID_SIM_FROM").unwrap_or(0);
    let count = env_u64("GRID_SIM_COUNT").unwrap_or(FUZZ_SEEDS);
    let steps = env_u64("GRID_SIM_STEPS").map_or(FUZZ_STEPS, |s| s as usize);
    let mut failures = Vec::new();
    for seed in from..from + count {
        match catch_unwind(|| fuzz(seed, steps)) {
            Ok(r) => println!("seed {seed}: {r:?}"),
            Err(_) => failures.push(seed),
        }
    }
    assert!(
        failures.is_empty(),
        "fuzz failed for seeds {failures:?}; replay one with GRID_SIM_SEED=<seed> GRID_SIM_STEPS={steps} cargo test --test grid_core fuzz_replay -- --nocapture"
    );
}

/// Replays one fuzz seed (`GRID_SIM_SEED`, `GRID_SIM_STEPS`); does nothing without them.
#[test]
fn fuzz_replay() {
    let Some(seed) = env_u64("GRID_SIM_SEED") else {
        return;
    };
    let steps = env_u64("GRID_SIM_STEPS").map_or(FUZZ_STEPS, |s| s as usize);
    println!("{:?}", fuzz(seed, steps));
}
