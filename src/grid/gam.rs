//! The Grid Availability Manager's planner (design §6): given the committed membership and
//! the committed placement of every partitioned table, the placement changes to make next.
//!
//! Pure and deterministic: no I/O, no clock, no randomness, so every leader plans the same
//! changes from the same committed state and a test can drive a whole rebalance in one
//! thread. The driver on the leader turns each [`Action`] into a grid-log entry; every node
//! applies the committed entry with [`apply`]; the driver then calls [`plan`] again on the
//! new placement. Nothing is remembered between calls: a move in flight is visible in the
//! placement itself (a `Loading` copy, or one copy too many), so a new leader resumes
//! interrupted work simply by planning (design §6, "resume unfinished moves").
//!
//! [`plan`] returns the actions of the first kind that has any, in this order:
//! 1. **promote** — a partition whose primary is missing or not online gets a ready copy on
//!    an online node as primary;
//! 2. **cancel stalled loads** — a `Loading` copy whose source no longer has a ready copy on
//!    an online node can never finish; it is dropped so that kind 3 reloads it elsewhere;
//! 3. **restore the replication factor** — partitions with too few copies on online nodes
//!    get new copies;
//! 4. **drop surplus** — copies on nodes that left the grid, copies on offline/failed members
//!    once the partition is fully replicated on online nodes, and the extra copy of a
//!    finished move;
//! 5. **balance primaries** — move a primary to a node with at least two primaries fewer
//!    that holds a ready copy, or, when none has, along a chain of such moves (no data
//!    moves, so this is cheap and done before kind 6);
//! 6. **balance copies** — move a copy (add on one node; kind 4 drops one once it is
//!    ready, handing the primary over first when it drops the primary's copy) where that
//!    lowers the imbalance of copies and primaries.
//!
//! Kinds 1–5 only repair or finish; kind 6 is the only one that starts new work on a
//! healthy placement. Each kind's actions touch distinct copies and are valid one after the
//! other, so the driver may commit all of them before planning again, or only the first.
//! The brief this was built from put "drop surplus" last; here a finished move's extra copy
//! is dropped before anything new is planned, so each move completes as a unit and the
//! counts the next move is chosen on are real.
//!
//! **Why it stops.** Balancing minimises Φ = Σ copies(n)² + Σ primaries(n)² over online
//! nodes; for fixed totals Φ is smallest exactly when both spreads are at most one. A
//! primary move lowers Φ by at least 2. A copy move is started only when its predicted
//! outcome lowers Φ, and the drop that finishes it (kind 4) is chosen by the same rule the
//! prediction used (`View::best_settle`), so it ends as planned. Single moves are not
//! always enough — mixed replication factors give placements where every single move makes
//! Φ worse or leaves it, yet two moves in a row even things out (a node whose partitions
//! all have one copy can give up a primary only by moving a copy). So when no move pays on
//! its own, one that pays together with the best move it opens up is taken, and finishes
//! that way. This is a local search, not an optimiser: the property tests drive it from
//! random placements to settled, even ones, but there is no proof that no placement can
//! leave it stuck with a spread of two.
//!
//! The effective replication factor of a table is `min(replication_factor, online nodes)`:
//! copies must be on distinct nodes, so with fewer online nodes than the factor every online
//! node holds a copy, and the factor is restored when nodes come back.

use std::collections::{BTreeMap, BTreeSet};

use crate::grid::placement::{CopyState, PartitionPlacement, TablePlacement};
use crate::grid::types::NodeId;

/// Default bound for [`GamConfig::max_concurrent_loads`].
pub const DEFAULT_MAX_CONCURRENT_LOADS: usize = 4;

/// Tuning of the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GamConfig {
    /// Most copies loading at once across the grid (all tables, all target nodes). A load
    /// streams a whole partition, so this bounds the extra disk and network work a
    /// rebalance puts on a grid that keeps serving. There is no separate per-node bound: a
    /// new node is the target of almost every load, and a per-node bound of one would make
    /// it take its share one partition at a time. 0 is treated as 1 so that the replication
    /// factor can always be restored.
    pub max_concurrent_loads: usize,
}

impl Default for GamConfig {
    fn default() -> Self {
        GamConfig {
            max_concurrent_loads: DEFAULT_MAX_CONCURRENT_LOADS,
        }
    }
}

/// One placement change; each is one grid-log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Allocate a `Loading` copy of (table_id, partition) on `node`, loaded from `source`
    /// (a node with a ready copy; the primary when it can).
    AddCopy {
        table_id: u64,
        partition: u32,
        node: NodeId,
        source: NodeId,
    },
    /// Make `node`, which holds a ready copy, the partition's primary.
    SetPrimary {
        table_id: u64,
        partition: u32,
        node: NodeId,
    },
    /// Remove the copy on `node`; never the primary. [`plan`] never drops a ready copy that
    /// the partition needs to keep its replication factor on online nodes.
    DropCopy {
        table_id: u64,
        partition: u32,
        node: NodeId,
    },
    /// The load of the `Loading` copy on `node` finished: it is now `Ready`. Never produced
    /// by [`plan`]; the loader on `node` reports it, and the leader commits it like any other
    /// action, so every node learns at the same log index that the copy may serve and be
    /// promoted.
    CopyReady {
        table_id: u64,
        partition: u32,
        node: NodeId,
    },
}

impl Action {
    /// The (table id, partition) the action changes.
    pub fn partition(&self) -> (u64, u32) {
        match *self {
            Action::AddCopy {
                table_id,
                partition,
                ..
            }
            | Action::SetPrimary {
                table_id,
                partition,
                ..
            }
            | Action::DropCopy {
                table_id,
                partition,
                ..
            }
            | Action::CopyReady {
                table_id,
                partition,
                ..
            } => (table_id, partition),
        }
    }

    /// The node whose copy the action changes.
    pub fn node(&self) -> NodeId {
        match *self {
            Action::AddCopy { node, .. }
            | Action::SetPrimary { node, .. }
            | Action::DropCopy { node, .. }
            | Action::CopyReady { node, .. } => node,
        }
    }
}

/// The replication factor the planner aims for: copies are on distinct nodes, so never
/// more than there are online nodes, and at least one.
fn effective_rf(replication_factor: u32, online: usize) -> usize {
    (replication_factor.max(1) as usize).min(online)
}

/// Applies one committed action to the placement; what every node does when the action's
/// entry commits. Checks only what the placement itself can tell (the copy exists, the
/// source is ready, the primary is ready, the primary is never dropped): an action planned
/// on an older placement that no longer fits is refused and the driver plans again.
pub fn apply(tables: &mut [TablePlacement], action: &Action) -> Result<(), String> {
    let (table_id, partition) = action.partition();
    let table = tables
        .iter_mut()
        .find(|t| t.table_id == table_id)
        .ok_or_else(|| format!("{action:?}: no table with id {table_id}"))?;
    let p = table
        .partitions
        .get_mut(partition as usize)
        .ok_or_else(|| format!("{action:?}: table {} has no such partition", table.table))?;
    match *action {
        Action::AddCopy { node, source, .. } => {
            if p.copies.contains_key(&node) {
                return Err(format!("{action:?}: node {node} already holds a copy"));
            }
            if !p.is_ready_on(source) {
                return Err(format!("{action:?}: source {source} holds no ready copy"));
            }
            p.copies.insert(node, CopyState::Loading { source });
        }
        Action::SetPrimary { node, .. } => {
            if p.primary == Some(node) {
                return Err(format!("{action:?}: node {node} is already primary"));
            }
            if !p.is_ready_on(node) {
                return Err(format!("{action:?}: node {node} holds no ready copy"));
            }
            p.primary = Some(node);
        }
        Action::DropCopy { node, .. } => {
            if p.primary == Some(node) {
                return Err(format!("{action:?}: node {node} is the primary"));
            }
            if p.copies.remove(&node).is_none() {
                return Err(format!("{action:?}: node {node} holds no copy"));
            }
        }
        Action::CopyReady { node, .. } => match p.copies.get_mut(&node) {
            Some(state @ CopyState::Loading { .. }) => *state = CopyState::Ready,
            _ => return Err(format!("{action:?}: node {node} holds no loading copy")),
        },
    }
    Ok(())
}

/// Placement of a new partitioned table: `partitions` partitions, each with
/// `min(rf, online)` ready copies (the table is empty, so there is nothing to load) on
/// distinct online nodes. Copies are dealt round-robin from a cursor that starts at a node
/// chosen by the table id (so small tables do not all start on the same node) and advances
/// by the factor, so each node gets the same number of copies give or take one. Each
/// partition's primary is its copy on the node with the fewest primaries so far, ties to
/// the copy dealt first, which keeps primaries just as even. Spreading across tables is
/// left to [`plan`].
pub fn initial_placement(
    online: &[NodeId],
    table_id: u64,
    table: &str,
    rf: u32,
    partitions: u32,
) -> TablePlacement {
    let nodes: Vec<NodeId> = online
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let n = nodes.len();
    let r = effective_rf(rf, n);
    let mut primaries = vec![0usize; n];
    let mut cursor = if n == 0 {
        0
    } else {
        (table_id % n as u64) as usize
    };
    let placed = (0..partitions)
        .map(|_| {
            if n == 0 {
                return PartitionPlacement::default();
            }
            let holders: Vec<usize> = (0..r).map(|j| (cursor + j) % n).collect();
            cursor = (cursor + r) % n;
            // `min_by_key` keeps the first of equal keys: the copy dealt first.
            let primary = *holders
                .iter()
                .min_by_key(|&&i| primaries[i])
                .expect("r >= 1 when a node is online");
            primaries[primary] += 1;
            PartitionPlacement {
                primary: Some(nodes[primary]),
                copies: holders
                    .iter()
                    .map(|&i| (nodes[i], CopyState::Ready))
                    .collect(),
            }
        })
        .collect();
    TablePlacement {
        table_id,
        table: table.to_string(),
        replication_factor: rf,
        partitions: placed,
    }
}

/// The settled placement of design §10.7, for the GAM's idle state: every partition has a
/// primary on an online node holding a ready copy, and exactly `min(rf, online)` copies,
/// all ready and all on online nodes (so at most `rf`). Returns one line per violation;
/// empty when settled. A partition whose every ready copy is on a node that is not online
/// is reported too: it stays unavailable until such a node returns.
pub fn check_settled(online: &[NodeId], tables: &[TablePlacement]) -> Vec<String> {
    let online: BTreeSet<NodeId> = online.iter().copied().collect();
    let mut violations = Vec::new();
    for t in tables {
        let r = effective_rf(t.replication_factor, online.len());
        for (k, p) in t.partitions.iter().enumerate() {
            let at = format!("table {} ({}) partition {k}", t.table, t.table_id);
            match p.primary {
                None => violations.push(format!("{at}: no primary")),
                Some(n) if !online.contains(&n) => {
                    violations.push(format!("{at}: primary {n} is not online"))
                }
                Some(n) if !p.is_ready_on(n) => {
                    violations.push(format!("{at}: primary {n} holds no ready copy"))
                }
                Some(_) => {}
            }
            if p.copies.len() > t.replication_factor.max(1) as usize {
                violations.push(format!(
                    "{at}: {} copies, more than the replication factor {}",
                    p.copies.len(),
                    t.replication_factor
                ));
            }
            for (n, s) in &p.copies {
                if !online.contains(n) {
                    violations.push(format!("{at}: copy on node {n}, which is not online"));
                } else if *s != CopyState::Ready {
                    violations.push(format!("{at}: copy on node {n} is {s:?}"));
                }
            }
            let ready_online = p.ready().filter(|n| online.contains(n)).count();
            if ready_online != r {
                violations.push(format!(
                    "{at}: {ready_online} ready copies on online nodes, want {r}"
                ));
            }
        }
    }
    violations
}

/// Plans the next placement changes (see the module doc for the kinds and their order).
///
/// `online`: nodes whose committed membership state is `MEMBER_ONLINE`; only they hold
/// primaries, serve as load sources and receive copies. `members`: every current member
/// (online ones included); a copy on a node that is no longer a member is dropped. A
/// partition with no ready copy on an online node keeps its placement (and no primary on an
/// online node): it is unavailable until a node holding a ready copy is online again.
pub fn plan(
    online: &[NodeId],
    members: &[NodeId],
    tables: &[TablePlacement],
    cfg: &GamConfig,
) -> Vec<Action> {
    let view = View::new(online, members, tables, cfg);
    if view.nodes.is_empty() {
        // Nothing can be promoted, loaded or moved; and without online nodes there is no
        // leader to plan anyway.
        return Vec::new();
    }
    let kinds: [&dyn Fn() -> Vec<Action>; 6] = [
        &|| view.promote(),
        &|| view.cancel_stalled_loads(),
        &|| view.restore_replication(),
        &|| view.drop_surplus(),
        &|| view.balance_primaries(),
        &|| view.balance_copies(),
    ];
    kinds
        .iter()
        .map(|kind| kind())
        .find(|actions| !actions.is_empty())
        .unwrap_or_default()
}

/// A partition as the planner sees it.
struct Part<'a> {
    table_id: u64,
    index: u32,
    /// Effective replication factor.
    r: usize,
    p: &'a PartitionPlacement,
    /// Copies on online nodes, by node index.
    online: Vec<(usize, CopyState)>,
    /// The primary's node index when the primary is a ready copy on an online node.
    primary: Option<usize>,
}

impl Part<'_> {
    fn ready_online(&self) -> impl Iterator<Item = usize> + '_ {
        self.online
            .iter()
            .filter(|(_, s)| *s == CopyState::Ready)
            .map(|(i, _)| *i)
    }

    fn loading_online(&self) -> bool {
        self.online.iter().any(|(_, s)| *s != CopyState::Ready)
    }

    fn holds(&self, i: usize) -> bool {
        self.online.iter().any(|(j, _)| *j == i)
    }

    fn action_add(&self, node: NodeId, source: NodeId) -> Action {
        Action::AddCopy {
            table_id: self.table_id,
            partition: self.index,
            node,
            source,
        }
    }

    fn action_primary(&self, node: NodeId) -> Action {
        Action::SetPrimary {
            table_id: self.table_id,
            partition: self.index,
            node,
        }
    }

    fn action_drop(&self, node: NodeId) -> Action {
        Action::DropCopy {
            table_id: self.table_id,
            partition: self.index,
            node,
        }
    }
}

/// The end of a move, or of a partition with one ready copy too many: drop the copy on
/// `drop`, with `primary` as the primary afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settle {
    drop: usize,
    primary: usize,
    /// Change of Φ against the placement with the extra copy.
    delta: i64,
    /// `delta` plus the change of the best single move it opens up
    /// ([`View::follow_up_gain`]): what the choice is made on.
    score: i64,
    /// The part of `delta` from Σ primaries²: between outcomes of equal score, the one
    /// with the more even primaries is chosen.
    primaries_delta: i64,
}

/// A partition's copies on online nodes before and after a settle, for [`View::best_settle`].
struct Holders<'h> {
    /// Online copies after the extra one was added (loading ones count as ready).
    with_extra: &'h [usize],
    /// Online copies now.
    now: &'h [usize],
    /// Ready online copies now (whose primary moves `View::edges` counts).
    ready_now: &'h [usize],
    /// Whether `View::movable` counts the partition (it is settled).
    counted: bool,
    primary: usize,
}

/// The committed state, indexed for planning. Node indexes are positions in `nodes`
/// (online nodes in id order), so ties broken by index are broken by lowest id.
struct View<'a> {
    nodes: Vec<NodeId>,
    members: BTreeSet<NodeId>,
    parts: Vec<Part<'a>>,
    /// Copies (ready or loading) on each online node, all tables.
    copies: Vec<i64>,
    /// Primaries on each online node (counted only where the copy is ready).
    primaries: Vec<i64>,
    /// Loads that may still start: the bound minus the copies loading on online nodes.
    load_budget: usize,
    /// `edges[from * n + to]`: partitions whose primary is on `from` with a ready copy on
    /// `to`, i.e. the primary moves kind 5 can make.
    edges: Vec<i64>,
    /// `movable[from * n + to]`: settled partitions with a copy, not the primary, on `from`
    /// and none on `to`, i.e. the copy moves kind 6 can make without a hand-over.
    movable: Vec<i64>,
}

impl<'a> View<'a> {
    fn new(
        online: &[NodeId],
        members: &[NodeId],
        tables: &'a [TablePlacement],
        cfg: &GamConfig,
    ) -> Self {
        let nodes: Vec<NodeId> = online
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: BTreeMap<NodeId, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut members: BTreeSet<NodeId> = members.iter().copied().collect();
        members.extend(nodes.iter().copied());
        let mut copies = vec![0i64; nodes.len()];
        let mut primaries = vec![0i64; nodes.len()];
        let mut loading = 0usize;
        let mut edges = vec![0i64; nodes.len() * nodes.len()];
        let mut movable = vec![0i64; nodes.len() * nodes.len()];
        let mut parts = Vec::new();
        for t in tables {
            let r = effective_rf(t.replication_factor, nodes.len());
            for (k, p) in t.partitions.iter().enumerate() {
                let on: Vec<(usize, CopyState)> = p
                    .copies
                    .iter()
                    .filter_map(|(n, s)| index.get(n).map(|&i| (i, *s)))
                    .collect();
                for (i, s) in &on {
                    copies[*i] += 1;
                    if *s != CopyState::Ready {
                        loading += 1;
                    }
                }
                let primary = p
                    .primary
                    .filter(|n| p.is_ready_on(*n))
                    .and_then(|n| index.get(&n).copied());
                if let Some(i) = primary {
                    primaries[i] += 1;
                    for (j, s) in &on {
                        if *j != i && *s == CopyState::Ready {
                            edges[i * nodes.len() + j] += 1;
                        }
                    }
                    if on.len() == r && on.iter().all(|(_, s)| *s == CopyState::Ready) {
                        for (from, _) in on.iter().filter(|(j, _)| *j != i) {
                            for to in 0..nodes.len() {
                                if !on.iter().any(|(j, _)| *j == to) {
                                    movable[from * nodes.len() + to] += 1;
                                }
                            }
                        }
                    }
                }
                parts.push(Part {
                    table_id: t.table_id,
                    index: k as u32,
                    r,
                    p,
                    online: on,
                    primary,
                });
            }
        }
        View {
            load_budget: cfg.max_concurrent_loads.max(1).saturating_sub(loading),
            edges,
            movable,
            nodes,
            members,
            parts,
            copies,
            primaries,
        }
    }

    /// Kind 1: every partition whose primary is missing, not online or not ready gets the
    /// ready online copy on the node with the fewest primaries (ties: lowest id). Without
    /// such a copy the partition stays as it is: unavailable, and a primary on a failed
    /// node is kept so that it is valid again the moment that node is back.
    fn promote(&self) -> Vec<Action> {
        let mut primaries = self.primaries.clone();
        let mut actions = Vec::new();
        for part in &self.parts {
            if part.primary.is_some() {
                continue;
            }
            if let Some(i) = part.ready_online().min_by_key(|&i| (primaries[i], i)) {
                primaries[i] += 1;
                actions.push(part.action_primary(self.nodes[i]));
            }
        }
        actions
    }

    /// Kind 2: a load whose source is not a ready copy on an online node never finishes
    /// (the stream has nothing to come from); dropping the loading copy frees its place in
    /// the load bound and lets kind 3 start it again from a live source.
    fn cancel_stalled_loads(&self) -> Vec<Action> {
        let mut actions = Vec::new();
        for part in &self.parts {
            for (i, s) in &part.online {
                if let CopyState::Loading { source } = *s {
                    let live = self.nodes.binary_search(&source).is_ok();
                    if !live || !part.p.is_ready_on(source) {
                        actions.push(part.action_drop(self.nodes[*i]));
                    }
                }
            }
        }
        actions
    }

    /// Kind 3: partitions with fewer than `r` copies (ready or loading) on online nodes get
    /// new copies on the online nodes without one that hold the fewest copies (ties: lowest
    /// id), loaded from the primary. Partitions with the fewest ready copies go first, as
    /// they are the closest to losing data when the load bound stops the rest.
    fn restore_replication(&self) -> Vec<Action> {
        let mut budget = self.load_budget;
        let mut copies = self.copies.clone();
        let mut needy: Vec<&Part> = self
            .parts
            .iter()
            .filter(|p| p.primary.is_some() && p.online.len() < p.r)
            .collect();
        needy.sort_by_key(|p| p.ready_online().count());
        let mut actions = Vec::new();
        for part in needy {
            let source = self.nodes[part.primary.expect("filtered on a primary")];
            let mut holders: Vec<usize> = part.online.iter().map(|(i, _)| *i).collect();
            while holders.len() < part.r && budget > 0 {
                let target = (0..self.nodes.len())
                    .filter(|i| !holders.contains(i))
                    .min_by_key(|&i| (copies[i], i))
                    .expect("r <= online nodes, so a node without a copy exists");
                copies[target] += 1;
                holders.push(target);
                budget -= 1;
                actions.push(part.action_add(self.nodes[target], source));
            }
        }
        actions
    }

    /// Kind 4: copies nobody needs any more.
    /// - on nodes that are no longer members: always (the node is gone);
    /// - on members that are not online: once the partition has `r` ready copies on online
    ///   nodes (until then the copy is what a returning node brings back);
    /// - one ready copy too many on online nodes (a finished move): the best [`Settle`],
    ///   which may first hand the primary over (a `SetPrimary`; the drop follows in the
    ///   next plan). Waits while a copy of the partition is still loading.
    ///
    /// The primary is never dropped, and a ready online copy only when more than `r` are.
    fn drop_surplus(&self) -> Vec<Action> {
        let mut copies = self.copies.clone();
        let mut primaries = self.primaries.clone();
        let mut actions = Vec::new();
        for part in &self.parts {
            let ready_online = part.ready_online().count();
            for n in part.p.copies.keys() {
                if self.nodes.binary_search(n).is_ok() || part.p.primary == Some(*n) {
                    continue;
                }
                if !self.members.contains(n) || ready_online >= part.r {
                    actions.push(part.action_drop(*n));
                }
            }
            if part.online.len() > part.r && !part.loading_online() {
                let Some(primary) = part.primary else {
                    continue;
                };
                let holders: Vec<usize> = part.online.iter().map(|(i, _)| *i).collect();
                let ready_now: Vec<usize> = part.ready_online().collect();
                let h = Holders {
                    with_extra: &holders,
                    now: &holders,
                    ready_now: &ready_now,
                    counted: false,
                    primary,
                };
                let Some(settle) = self.best_settle(&h, &copies, &primaries) else {
                    continue;
                };
                copies[settle.drop] -= 1;
                if Some(settle.primary) != part.primary {
                    if let Some(old) = part.primary {
                        primaries[old] -= 1;
                    }
                    primaries[settle.primary] += 1;
                    actions.push(part.action_primary(self.nodes[settle.primary]));
                } else {
                    actions.push(part.action_drop(self.nodes[settle.drop]));
                }
            }
        }
        actions
    }

    /// The best way to drop one of the online copies of a partition: the copy to drop and
    /// the primary afterwards with the lowest score — the change of Φ plus the best move it
    /// opens up (a copy move can be worth making only for the move it allows: see
    /// [`View::best_move`]). Ties go to the more even
    /// primaries, then to keeping the current primary (so a hand-over is not redone once it
    /// commits), then to dropping from the node with the most copies, then to the highest
    /// id. Kind 4 settles on exactly this order, so a move planned on it ends as planned.
    fn best_settle(&self, h: &Holders, copies: &[i64], primaries: &[i64]) -> Option<Settle> {
        // The follow-up gain is the expensive part: skip it for options whose change of Φ
        // is too high for any gain to make them win.
        let floor = gain_floor(copies, primaries);
        let cutoff = min_settle_delta(h, copies, primaries)?;
        // Ordered by score, then the tie-breaks of the doc above.
        type Key = (i64, i64, bool, i64, usize);
        let mut best: Option<(Settle, Key)> = None;
        for &w in h.with_extra {
            let dc = 1 - 2 * copies[w];
            for &z in h.with_extra {
                if z == w {
                    continue;
                }
                let dp = if z == h.primary {
                    0
                } else {
                    2 * (primaries[z] - primaries[h.primary] + 1)
                };
                let delta = dc + dp;
                let bar = best.as_ref().map_or(cutoff, |(b, _)| b.score.min(cutoff));
                if delta + floor > bar {
                    continue;
                }
                let score = delta + self.follow_up_gain(h, w, z, copies, primaries);
                let settle = Settle {
                    drop: w,
                    primary: z,
                    delta,
                    score,
                    primaries_delta: dp,
                };
                let key = (score, dp, z != h.primary, -copies[w], usize::MAX - w);
                if best.as_ref().is_none_or(|(_, k)| key < *k) {
                    best = Some((settle, key));
                }
            }
        }
        best.map(|(s, _)| s)
    }

    /// Whether kind 5 would move a primary with these counts.
    fn has_primary_move(&self, primaries: &[i64]) -> bool {
        self.primary_path(primaries).is_some()
    }

    /// The shortest chain of primary moves (as (from, to) node pairs along `edges`) from a
    /// node with the most primaries to a node with at least two fewer; ties to the lowest
    /// ids. Applied all at once it lowers Σ primaries² by at least 2; applied one move at a
    /// time (a driver that plans again after each) every intermediate move makes the next
    /// node of the chain a node with the most primaries one step closer to the end, so the
    /// chain is found again and finished.
    fn primary_path(&self, primaries: &[i64]) -> Option<Vec<(usize, usize)>> {
        let n = self.nodes.len();
        let most = *primaries.iter().max()?;
        let mut came_from: Vec<Option<usize>> = vec![None; n];
        let mut seen = vec![false; n];
        let mut queue = std::collections::VecDeque::new();
        for i in (0..n).filter(|&i| primaries[i] == most) {
            seen[i] = true;
            queue.push_back(i);
        }
        while let Some(from) = queue.pop_front() {
            for to in 0..n {
                if seen[to] || self.edges[from * n + to] == 0 {
                    continue;
                }
                seen[to] = true;
                came_from[to] = Some(from);
                if primaries[to] <= most - 2 {
                    let mut path = vec![];
                    let mut at = to;
                    while let Some(prev) = came_from[at] {
                        path.push((prev, at));
                        at = prev;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(to);
            }
        }
        None
    }

    /// The change of Φ by the best single follow-up (0 when there is none) once the
    /// partition `h` has dropped its copy on `drop` and has its primary on `primary`: a
    /// primary move (kind 5) along `edges`, or a copy move, without a hand-over, along
    /// `movable`. Counts of the other partitions are taken as they are.
    fn follow_up_gain(
        &self,
        h: &Holders,
        drop: usize,
        primary: usize,
        copies: &[i64],
        primaries: &[i64],
    ) -> i64 {
        let n = self.nodes.len();
        let moved = primary != h.primary;
        let p = |i: usize| {
            primaries[i] - (moved && i == h.primary) as i64 + (moved && i == primary) as i64
        };
        let c = |i: usize| copies[i] - (i == drop) as i64;
        let after = |to: usize| to != drop && h.with_extra.contains(&to);
        let mut best = 0;
        for from in 0..n {
            let (pf, cf) = (p(from), c(from));
            for to in 0..n {
                if to == from {
                    continue;
                }
                let flip = 2 * (p(to) - pf + 1);
                if flip < best {
                    let before = (from == h.primary && h.ready_now.contains(&to)) as i64;
                    let now = (from == primary && after(to)) as i64;
                    if self.edges[from * n + to] - before + now > 0 {
                        best = flip;
                    }
                }
                let copy = 2 * (c(to) - cf + 1);
                if copy < best {
                    // Not the partition itself: moving it again would only undo the
                    // choice being scored.
                    let own = h.counted
                        && from != h.primary
                        && h.now.contains(&from)
                        && !h.now.contains(&to);
                    if self.movable[from * n + to] - own as i64 > 0 {
                        best = copy;
                    }
                }
            }
        }
        best
    }

    /// Kind 5: move primaries from a node with at least two more than another to that
    /// other node, where it holds a ready copy: the largest difference first, ties to the
    /// lowest ids. Each move lowers Σ primaries² by at least 2. When no such move exists
    /// but the primaries are still uneven, a chain of moves along [`View::primary_path`]:
    /// every node on it but the ends keeps its count.
    fn balance_primaries(&self) -> Vec<Action> {
        let n = self.nodes.len();
        // by_pair[from * n + to]: partitions whose primary is on `from` with a ready copy
        // on `to`.
        let mut by_pair: Vec<Vec<usize>> = vec![Vec::new(); n * n];
        for (k, part) in self.parts.iter().enumerate() {
            if let Some(from) = part.primary {
                for to in part.ready_online() {
                    if to != from {
                        by_pair[from * n + to].push(k);
                    }
                }
            }
        }
        let mut primaries = self.primaries.clone();
        let mut moved = vec![false; self.parts.len()];
        let mut actions = Vec::new();
        loop {
            let mut best: Option<(i64, usize, usize, usize)> = None;
            for from in 0..n {
                for to in 0..n {
                    let gap = primaries[from] - primaries[to];
                    if gap < 2 || best.is_some_and(|(g, ..)| g >= gap) {
                        continue;
                    }
                    if let Some(&k) = by_pair[from * n + to].iter().find(|&&k| !moved[k]) {
                        best = Some((gap, from, to, k));
                    }
                }
            }
            let Some((_, from, to, k)) = best else {
                break;
            };
            moved[k] = true;
            primaries[from] -= 1;
            primaries[to] += 1;
            actions.push(self.parts[k].action_primary(self.nodes[to]));
        }
        if actions.is_empty() {
            for (from, to) in self.primary_path(&primaries).unwrap_or_default() {
                let k = by_pair[from * n + to][0];
                actions.push(self.parts[k].action_primary(self.nodes[to]));
            }
        }
        actions
    }

    /// Kind 6: start copy moves while loads are allowed. The counts are first projected to
    /// where the moves already in flight will end ([`View::best_settle`]); then, one at a
    /// time, the move with the lowest predicted Φ is chosen among every settled partition
    /// and every online node without a copy of it, if it lowers Φ ([`View::best_move`]).
    /// The new copy is loaded from the primary; kind 4 drops the surplus copy once it is
    /// ready.
    fn balance_copies(&self) -> Vec<Action> {
        let mut copies = self.copies.clone();
        let mut primaries = self.primaries.clone();
        for part in self.parts.iter().filter(|p| p.online.len() > p.r) {
            let Some(primary) = part.primary else {
                continue;
            };
            let holders: Vec<usize> = part.online.iter().map(|(i, _)| *i).collect();
            let ready_now: Vec<usize> = part.ready_online().collect();
            let h = Holders {
                with_extra: &holders,
                now: &holders,
                ready_now: &ready_now,
                counted: false,
                primary,
            };
            if let Some(s) = self.best_settle(&h, &copies, &primaries) {
                project(primary, s, &mut copies, &mut primaries);
            }
        }
        let mut moved = vec![false; self.parts.len()];
        let mut actions = Vec::new();
        for _ in 0..self.load_budget {
            if spread(&copies) <= 1 && spread(&primaries) <= 1 {
                break;
            }
            let best = self
                .best_move(&moved, &copies, &primaries, false)
                .or_else(|| self.best_move(&moved, &copies, &primaries, true));
            let Some((k, to, settle)) = best else {
                break;
            };
            moved[k] = true;
            copies[to] += 1;
            let part = &self.parts[k];
            let primary = part.primary.expect("only partitions with a primary move");
            project(primary, settle, &mut copies, &mut primaries);
            let source = self.nodes[primary];
            actions.push(part.action_add(self.nodes[to], source));
        }
        actions
    }

    /// The copy move (partition index, target node, predicted settle) that lowers Φ the
    /// most, if any does. Without `lookahead` a move counts only its own change of Φ. With
    /// it — the fallback when no move pays on its own but the spreads are still uneven —
    /// a move also counts the best primary or copy move it opens up, and a move that
    /// leaves Φ as it is but evens out primaries is taken too: it trades an uneven primary
    /// for an uneven copy, which a plain copy move then fixes. (A node whose partitions
    /// all have a single copy can hand a primary over only by moving a copy.)
    fn best_move(
        &self,
        moved: &[bool],
        copies: &[i64],
        primaries: &[i64],
        lookahead: bool,
    ) -> Option<(usize, usize, Settle)> {
        if lookahead && self.has_primary_move(primaries) {
            // Kind 5 has work once the moves in flight settle; a move is not worth it for a
            // primary move that is available anyway.
            return None;
        }
        let mut copies = copies.to_vec();
        let mut best: Option<((i64, i64), usize, usize, Settle)> = None;
        let mut holders = Vec::with_capacity(self.nodes.len());
        let mut ready_now = Vec::with_capacity(self.nodes.len());
        let mut now = Vec::with_capacity(self.nodes.len());
        for (k, part) in self.parts.iter().enumerate() {
            let Some(primary) = part.primary else {
                continue;
            };
            if moved[k] || part.online.len() != part.r || part.loading_online() {
                continue;
            }
            ready_now.clear();
            ready_now.extend(part.ready_online());
            now.clear();
            now.extend(part.online.iter().map(|(i, _)| *i));
            for to in 0..self.nodes.len() {
                if part.holds(to) {
                    continue;
                }
                holders.clear();
                holders.extend(part.online.iter().map(|(i, _)| *i));
                holders.push(to);
                let h = Holders {
                    with_extra: &holders,
                    now: &now,
                    ready_now: &ready_now,
                    counted: true,
                    primary,
                };
                let add = 2 * copies[to] + 1;
                copies[to] += 1;
                // Cheap bound first: most candidates cannot pay (or beat the best so far).
                let lower = min_settle_delta(&h, &copies, primaries).map(|d| {
                    add + d
                        + if lookahead {
                            gain_floor(&copies, primaries)
                        } else {
                            0
                        }
                });
                let hopeless = lower.is_none_or(|l| {
                    l > 0 || (!lookahead && l == 0) || best.as_ref().is_some_and(|b| l > b.0.0)
                });
                let settle = if hopeless {
                    None
                } else {
                    self.best_settle(&h, &copies, primaries)
                };
                copies[to] -= 1;
                let Some(settle) = settle else { continue };
                if settle.drop == to {
                    continue; // the best outcome is not to move
                }
                let score = if lookahead {
                    (add + settle.score, settle.primaries_delta)
                } else {
                    (add + settle.delta, settle.primaries_delta)
                };
                let pays = score.0 < 0 || (lookahead && score.0 == 0 && score.1 < 0);
                if pays && best.as_ref().is_none_or(|(d, ..)| score < *d) {
                    best = Some((score, k, to, settle));
                }
            }
        }
        best.map(|(_, k, to, settle)| (k, to, settle))
    }
}

/// Applies a predicted settle of a partition whose primary is on `primary` to projected
/// counts.
fn project(primary: usize, s: Settle, copies: &mut [i64], primaries: &mut [i64]) {
    copies[s.drop] -= 1;
    if primary != s.primary {
        primaries[primary] -= 1;
        primaries[s.primary] += 1;
    }
}

/// The lowest change of Φ over the ways to settle `h` (see [`View::best_settle`]); `None`
/// when there is no way (a single copy).
fn min_settle_delta(h: &Holders, copies: &[i64], primaries: &[i64]) -> Option<i64> {
    let mut best = None;
    for &w in h.with_extra {
        let dc = 1 - 2 * copies[w];
        let dp = h
            .with_extra
            .iter()
            .filter(|&&z| z != w)
            .map(|&z| {
                if z == h.primary {
                    0
                } else {
                    2 * (primaries[z] - primaries[h.primary] + 1)
                }
            })
            .min();
        if let Some(dp) = dp {
            best = Some(best.map_or(dc + dp, |b: i64| b.min(dc + dp)));
        }
    }
    best
}

/// A lower bound of [`View::follow_up_gain`] for these counts: one move changes a count by
/// one on each of two nodes, and the settle being scored by one more.
fn gain_floor(copies: &[i64], primaries: &[i64]) -> i64 {
    let flip = 2 * (-spread(primaries) - 1);
    let copy = 2 * -spread(copies);
    flip.min(copy).min(0)
}

/// Largest minus smallest count.
fn spread(counts: &[i64]) -> i64 {
    counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn part(primary: Option<NodeId>, copies: &[(NodeId, CopyState)]) -> PartitionPlacement {
        PartitionPlacement {
            primary,
            copies: copies.iter().copied().collect(),
        }
    }

    fn ready(primary: NodeId, on: &[NodeId]) -> PartitionPlacement {
        part(
            Some(primary),
            &on.iter()
                .map(|n| (*n, CopyState::Ready))
                .collect::<Vec<_>>(),
        )
    }

    fn table(table_id: u64, rf: u32, partitions: Vec<PartitionPlacement>) -> TablePlacement {
        TablePlacement {
            table_id,
            table: format!("t{table_id}"),
            replication_factor: rf,
            partitions,
        }
    }

    /// Copies and primaries per online node, all tables.
    fn load(online: &[NodeId], tables: &[TablePlacement]) -> (Vec<i64>, Vec<i64>) {
        let mut copies = vec![0; online.len()];
        let mut primaries = vec![0; online.len()];
        for p in tables.iter().flat_map(|t| &t.partitions) {
            for (i, n) in online.iter().enumerate() {
                copies[i] += p.copies.contains_key(n) as i64;
                primaries[i] += (p.primary == Some(*n)) as i64;
            }
        }
        (copies, primaries)
    }

    fn loading_online(online: &[NodeId], tables: &[TablePlacement]) -> usize {
        tables
            .iter()
            .flat_map(|t| &t.partitions)
            .flat_map(|p| &p.copies)
            .filter(|(n, s)| online.contains(n) && **s != CopyState::Ready)
            .count()
    }

    /// Loads that can finish: a loading copy on an online node whose source is a ready
    /// copy on an online node.
    fn finishable(online: &[NodeId], tables: &[TablePlacement]) -> Vec<Action> {
        let mut out = Vec::new();
        for t in tables {
            for (k, p) in t.partitions.iter().enumerate() {
                for (n, s) in &p.copies {
                    if let CopyState::Loading { source } = s
                        && online.contains(n)
                        && online.contains(source)
                        && p.is_ready_on(*source)
                    {
                        out.push(Action::CopyReady {
                            table_id: t.table_id,
                            partition: k as u32,
                            node: *n,
                        });
                    }
                }
            }
        }
        out
    }

    /// Plans, applies every action and finishes every load until the planner is idle.
    /// Returns the number of plan rounds.
    fn run(
        online: &[NodeId],
        members: &[NodeId],
        tables: &mut [TablePlacement],
        cfg: &GamConfig,
    ) -> usize {
        for round in 0..10_000 {
            let actions = plan(online, members, tables, cfg);
            let loads = finishable(online, tables);
            if actions.is_empty() && loads.is_empty() {
                return round;
            }
            for a in actions.iter().chain(&loads) {
                apply(tables, a).unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            assert!(loading_online(online, tables) <= cfg.max_concurrent_loads.max(1));
        }
        panic!("the planner did not settle");
    }

    fn spread_ok(online: &[NodeId], tables: &[TablePlacement]) -> Result<(), String> {
        let (c, p) = load(online, tables);
        if spread(&c) > 1 || spread(&p) > 1 {
            return Err(format!("copies {c:?} primaries {p:?} on {online:?}"));
        }
        Ok(())
    }

    #[test]
    fn a_new_fourth_node_gets_a_quarter_of_primaries_and_copies() {
        let cfg = GamConfig::default();
        let mut tables = vec![
            initial_placement(&[1, 2, 3], 1, "a", 2, 16),
            initial_placement(&[1, 2, 3], 2, "b", 3, 16),
        ];
        let online = [1, 2, 3, 4];
        let first = plan(&online, &online, &tables, &cfg);
        assert_eq!(first.len(), cfg.max_concurrent_loads, "{first:?}");
        assert!(
            first
                .iter()
                .all(|a| matches!(a, Action::AddCopy { node: 4, .. })),
            "{first:?}"
        );
        run(&online, &online, &mut tables, &cfg);
        assert_eq!(check_settled(&online, &tables), Vec::<String>::new());
        let (copies, primaries) = load(&online, &tables);
        // 16·2 + 16·3 = 80 copies and 32 primaries over 4 nodes.
        assert_eq!(copies, vec![20, 20, 20, 20]);
        assert_eq!(primaries, vec![8, 8, 8, 8]);
    }

    #[test]
    fn a_failed_nodes_primaries_are_promoted_first() {
        let cfg = GamConfig::default();
        // Node 3 held the primary of partitions 0–3; node 1 already has two primaries.
        let tables = vec![table(
            1,
            2,
            vec![
                ready(3, &[1, 3]),
                ready(3, &[2, 3]),
                ready(3, &[1, 2, 3]),
                ready(3, &[1, 3]),
                ready(1, &[1, 2]),
                ready(1, &[1, 2]),
            ],
        )];
        let online = [1, 2];
        let actions = plan(&online, &[1, 2, 3], &tables, &cfg);
        let set = |partition, node| Action::SetPrimary {
            table_id: 1,
            partition,
            node,
        };
        // Only promotions, each to a ready copy on the node with the fewest primaries.
        assert_eq!(actions, vec![set(0, 1), set(1, 2), set(2, 2), set(3, 1)]);
    }

    #[test]
    fn the_factor_is_restored_on_the_others_and_the_failed_copies_dropped() {
        let cfg = GamConfig::default();
        let mut tables = vec![initial_placement(&[1, 2, 3, 4], 1, "a", 2, 16)];
        let online = [1, 2, 3];
        let members = [1, 2, 3, 4];
        let mut p = tables.clone();
        for a in plan(&online, &members, &p, &cfg) {
            assert!(matches!(a, Action::SetPrimary { .. }), "{a:?}");
            apply(&mut p, &a).unwrap();
        }
        let restore = plan(&online, &members, &p, &cfg);
        assert!(!restore.is_empty());
        for a in &restore {
            let Action::AddCopy {
                partition,
                node,
                source,
                ..
            } = *a
            else {
                panic!("{a:?}")
            };
            let pp = &p[0].partitions[partition as usize];
            assert!(
                pp.copies.contains_key(&4),
                "only partitions that lost a copy"
            );
            assert_ne!(node, 4);
            assert_eq!(Some(source), pp.primary);
        }
        run(&online, &members, &mut tables, &cfg);
        assert_eq!(check_settled(&online, &tables), Vec::<String>::new());
        assert!(tables[0].partitions.iter().all(|p| p.copies.len() == 2));
        spread_ok(&online, &tables).unwrap();
    }

    #[test]
    fn a_dropped_nodes_copies_are_removed() {
        let cfg = GamConfig::default();
        let mut tables = vec![initial_placement(&[1, 2, 3], 1, "a", 3, 6)];
        let online = [1, 2];
        run(&online, &online, &mut tables, &cfg);
        assert_eq!(check_settled(&online, &tables), Vec::<String>::new());
        assert!(
            tables[0]
                .partitions
                .iter()
                .all(|p| !p.copies.contains_key(&3) && p.copies.len() == 2)
        );
    }

    #[test]
    fn an_offline_members_copies_stay_until_the_factor_is_restored() {
        let cfg = GamConfig::default();
        // rf 2 on 1,3; node 3 offline: its copy must stay while only one online copy is ready.
        let tables = vec![table(1, 2, vec![ready(1, &[1, 3])])];
        let actions = plan(&[1, 2], &[1, 2, 3], &tables, &cfg);
        assert_eq!(
            actions,
            vec![Action::AddCopy {
                table_id: 1,
                partition: 0,
                node: 2,
                source: 1
            }]
        );
        let mut t = tables.clone();
        apply(&mut t, &actions[0]).unwrap();
        assert_eq!(plan(&[1, 2], &[1, 2, 3], &t, &cfg), vec![]);
        apply(
            &mut t,
            &Action::CopyReady {
                table_id: 1,
                partition: 0,
                node: 2,
            },
        )
        .unwrap();
        assert_eq!(
            plan(&[1, 2], &[1, 2, 3], &t, &cfg),
            vec![Action::DropCopy {
                table_id: 1,
                partition: 0,
                node: 3
            }]
        );
    }

    #[test]
    fn loads_are_bounded() {
        for max in [1, 2, 3] {
            let cfg = GamConfig {
                max_concurrent_loads: max,
            };
            let mut tables = vec![initial_placement(&[1, 2], 1, "a", 2, 10)];
            let online = [1, 2, 3, 4];
            let first = plan(&online, &online, &tables, &cfg);
            assert_eq!(first.len(), max, "{first:?}");
            for a in &first {
                apply(&mut tables, a).unwrap();
            }
            // Nothing more may start until a load finishes.
            assert!(
                plan(&online, &online, &tables, &cfg)
                    .iter()
                    .all(|a| !matches!(a, Action::AddCopy { .. }))
            );
            run(&online, &online, &mut tables, &cfg);
            assert_eq!(check_settled(&online, &tables), Vec::<String>::new());
            spread_ok(&online, &tables).unwrap();
        }
    }

    #[test]
    fn a_partition_without_a_ready_online_copy_stays_unavailable() {
        let cfg = GamConfig::default();
        let tables = vec![table(
            1,
            2,
            vec![part(
                Some(3),
                &[(3, CopyState::Ready), (1, CopyState::Loading { source: 3 })],
            )],
        )];
        // The load from the failed node can never finish: it is cancelled, and then
        // nothing can be done; the primary stays on node 3 for when it returns.
        let actions = plan(&[1, 2], &[1, 2, 3], &tables, &cfg);
        assert_eq!(
            actions,
            vec![Action::DropCopy {
                table_id: 1,
                partition: 0,
                node: 1
            }]
        );
        let mut t = tables.clone();
        apply(&mut t, &actions[0]).unwrap();
        assert_eq!(plan(&[1, 2], &[1, 2, 3], &t, &cfg), vec![]);
        assert_eq!(t[0].partitions[0].primary, Some(3));
        assert!(!check_settled(&[1, 2], &t).is_empty());
        // Node 3 back: the factor is restored from it.
        let mut t2 = t.clone();
        run(&[1, 2, 3], &[1, 2, 3], &mut t2, &cfg);
        assert_eq!(check_settled(&[1, 2, 3], &t2), Vec::<String>::new());
    }

    #[test]
    fn the_factor_is_capped_at_the_online_nodes() {
        let cfg = GamConfig::default();
        let mut tables = vec![initial_placement(&[1, 2], 1, "a", 3, 4)];
        assert!(tables[0].partitions.iter().all(|p| p.copies.len() == 2));
        assert_eq!(check_settled(&[1, 2], &tables), Vec::<String>::new());
        assert_eq!(plan(&[1, 2], &[1, 2], &tables, &cfg), vec![]);
        // A third node brings the factor up to 3.
        run(&[1, 2, 3], &[1, 2, 3], &mut tables, &cfg);
        assert!(tables[0].partitions.iter().all(|p| p.copies.len() == 3));
        assert_eq!(check_settled(&[1, 2, 3], &tables), Vec::<String>::new());
    }

    #[test]
    fn primaries_balance_even_when_copies_must_move_for_it() {
        // Copies are balanced (3 each) but C and D hold only three partitions between them,
        // so primaries cannot be balanced without moving copies.
        let cfg = GamConfig::default();
        let (a, b, c, d) = (1, 2, 3, 4);
        let x = table(
            1,
            1,
            vec![
                ready(a, &[a]),
                ready(a, &[a]),
                ready(a, &[a]),
                ready(b, &[b]),
                ready(b, &[b]),
                ready(b, &[b]),
            ],
        );
        let y = table(
            2,
            2,
            vec![ready(c, &[c, d]), ready(c, &[c, d]), ready(d, &[c, d])],
        );
        let mut tables = vec![x, y];
        let online = [a, b, c, d];
        run(&online, &online, &mut tables, &cfg);
        assert_eq!(check_settled(&online, &tables), Vec::<String>::new());
        spread_ok(&online, &tables).unwrap();
    }

    #[test]
    fn apply_refuses_actions_that_do_not_fit() {
        let mut t = vec![table(
            1,
            2,
            vec![part(
                Some(1),
                &[(1, CopyState::Ready), (2, CopyState::Loading { source: 1 })],
            )],
        )];
        let bad = [
            Action::AddCopy {
                table_id: 1,
                partition: 0,
                node: 2,
                source: 1,
            },
            Action::AddCopy {
                table_id: 1,
                partition: 0,
                node: 3,
                source: 2,
            },
            Action::SetPrimary {
                table_id: 1,
                partition: 0,
                node: 2,
            },
            Action::SetPrimary {
                table_id: 1,
                partition: 0,
                node: 1,
            },
            Action::DropCopy {
                table_id: 1,
                partition: 0,
                node: 1,
            },
            Action::DropCopy {
                table_id: 1,
                partition: 0,
                node: 3,
            },
            Action::CopyReady {
                table_id: 1,
                partition: 0,
                node: 1,
            },
            Action::CopyReady {
                table_id: 9,
                partition: 0,
                node: 2,
            },
            Action::CopyReady {
                table_id: 1,
                partition: 1,
                node: 2,
            },
        ];
        let before = t.clone();
        for a in &bad {
            assert!(apply(&mut t, a).is_err(), "{a:?}");
            assert_eq!(t, before);
        }
        apply(
            &mut t,
            &Action::CopyReady {
                table_id: 1,
                partition: 0,
                node: 2,
            },
        )
        .unwrap();
        apply(
            &mut t,
            &Action::SetPrimary {
                table_id: 1,
                partition: 0,
                node: 2,
            },
        )
        .unwrap();
        apply(
            &mut t,
            &Action::DropCopy {
                table_id: 1,
                partition: 0,
                node: 1,
            },
        )
        .unwrap();
        assert_eq!(t[0].partitions[0], ready(2, &[2]));
    }

    #[test]
    fn check_settled_reports_each_violation() {
        let t = vec![table(
            1,
            2,
            vec![
                ready(1, &[1, 2]),
                part(None, &[(1, CopyState::Ready), (2, CopyState::Ready)]),
                ready(3, &[1, 3]),
                ready(1, &[1, 2, 3]),
                part(
                    Some(1),
                    &[(1, CopyState::Ready), (2, CopyState::Loading { source: 1 })],
                ),
                ready(1, &[1]),
            ],
        )];
        let v = check_settled(&[1, 2], &t);
        let has = |k: usize, what: &str| {
            v.iter()
                .any(|l| l.contains(&format!("partition {k}:")) && l.contains(what))
        };
        assert!(!v.iter().any(|l| l.contains("partition 0:")), "{v:?}");
        assert!(has(1, "no primary"), "{v:?}");
        assert!(has(2, "primary 3 is not online"), "{v:?}");
        assert!(has(3, "more than the replication factor"), "{v:?}");
        assert!(has(4, "Loading"), "{v:?}");
        assert!(has(5, "1 ready copies on online nodes, want 2"), "{v:?}");
    }

    #[test]
    fn initial_placement_is_settled_and_balanced_for_small_sizes() {
        for n in 1..=7u64 {
            let online: Vec<NodeId> = (1..=n).collect();
            for rf in 1..=4 {
                for partitions in 1..=20 {
                    for table_id in 0..3 {
                        let t = initial_placement(&online, table_id, "t", rf, partitions);
                        assert_eq!(t.partitions.len(), partitions as usize);
                        let tables = [t];
                        let at = format!("n {n} rf {rf} partitions {partitions}");
                        assert_eq!(
                            check_settled(&online, &tables),
                            Vec::<String>::new(),
                            "{at}"
                        );
                        spread_ok(&online, &tables).unwrap_or_else(|e| panic!("{at}: {e}"));
                        let cfg = GamConfig::default();
                        assert_eq!(plan(&online, &online, &tables, &cfg), vec![], "{at}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_large_grid_rebalances_to_a_settled_even_placement() {
        // 64 tables × 16 partitions × factor 3 on 6 nodes; a 7th node joins. (How long a
        // plan takes is measured in `benches/grid.rs`, not asserted here.)
        let six: Vec<NodeId> = (1..=6).collect();
        let seven: Vec<NodeId> = (1..=7).collect();
        let mut tables: Vec<TablePlacement> = (0..64)
            .map(|id| initial_placement(&six, id, "t", 3, 16))
            .collect();
        let cfg = GamConfig::default();
        for _ in 0..20 {
            let actions = plan(&seven, &seven, &tables, &cfg);
            for a in actions.iter().chain(&finishable(&seven, &tables)) {
                apply(&mut tables, a).unwrap();
            }
        }
        assert!(
            tables
                .iter()
                .flat_map(|t| &t.partitions)
                .any(|p| p.copies.contains_key(&7))
        );
        let rounds = run(&seven, &seven, &mut tables, &cfg);
        eprintln!("settled in {rounds} more rounds");
        assert_eq!(check_settled(&seven, &tables), Vec::<String>::new());
        spread_ok(&seven, &tables).unwrap();
    }

    /// A small deterministic generator for the random placements and schedules.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            // splitmix64
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random valid starting state: nodes 1..=8, of which some are members and some of
    /// those online; copies anywhere (also on removed and failed nodes, more than the
    /// factor, loading from anywhere), primaries missing, on failed nodes or on a ready copy.
    fn random_state(seed: u64) -> (Vec<NodeId>, Vec<NodeId>, Vec<TablePlacement>, usize) {
        let mut rng = Rng(seed);
        let universe: Vec<NodeId> = (1..=8).collect();
        let members: Vec<NodeId> = universe
            .iter()
            .copied()
            .filter(|_| rng.below(4) != 0)
            .take(7)
            .collect();
        let mut online: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|_| rng.below(3) != 0)
            .collect();
        if online.is_empty() {
            online.push(members.first().copied().unwrap_or(1));
        }
        let mut members = members;
        members.extend(&online);
        members.sort();
        members.dedup();
        let tables = (0..1 + rng.below(3))
            .map(|id| {
                let rf = 1 + rng.below(4) as u32;
                let partitions = (0..1 + rng.below(6))
                    .map(|_| {
                        let mut copies = BTreeMap::new();
                        for &n in &universe {
                            match rng.below(6) {
                                0 | 1 => {
                                    copies.insert(n, CopyState::Ready);
                                }
                                2 => {
                                    let source = 1 + rng.below(8);
                                    if source != n {
                                        copies.insert(n, CopyState::Loading { source });
                                    }
                                }
                                _ => {}
                            }
                        }
                        let ready: Vec<NodeId> = copies
                            .iter()
                            .filter(|(_, s)| **s == CopyState::Ready)
                            .map(|(n, _)| *n)
                            .collect();
                        let primary = match rng.below(4) {
                            0 => None,
                            _ if ready.is_empty() => None,
                            _ => Some(ready[rng.below(ready.len() as u64) as usize]),
                        };
                        PartitionPlacement { primary, copies }
                    })
                    .collect();
                table(id, rf, partitions)
            })
            .collect();
        let max_loads = 1 + rng.below(4) as usize;
        (online, members, tables, max_loads)
    }

    fn online_ready(online: &[NodeId], p: &PartitionPlacement) -> usize {
        p.ready().filter(|n| online.contains(n)).count()
    }

    /// Drives the planner from a random state with a random schedule of load completions
    /// and checks the safety properties after every applied action and the outcome at the
    /// end.
    fn simulate(seed: u64, apply_all: bool) -> Result<(), String> {
        let (online, members, start, max_loads) = random_state(seed);
        let cfg = GamConfig {
            max_concurrent_loads: max_loads,
        };
        let mut rng = Rng(seed ^ 0x5EED);
        let mut tables = start.clone();
        let total: usize = tables.iter().map(|t| t.partitions.len()).sum();
        let bound = 50 * total * tables.len() + 50;
        let load_bound = max_loads.max(loading_online(&online, &tables));
        let ctx = format!(
            "replay: GAM_SEED={seed} cargo test --lib grid::gam (apply_all {apply_all}); \
             online {online:?} members {members:?}"
        );
        let mut steps = 0;
        loop {
            steps += 1;
            if steps > bound {
                return Err(format!("{ctx}: no end after {bound} steps: {tables:?}"));
            }
            let actions = plan(&online, &members, &tables, &cfg);
            // A batch never conflicts: all of it applies, in order.
            let mut scratch = tables.clone();
            for a in &actions {
                apply(&mut scratch, a).map_err(|e| format!("{ctx}: batch {actions:?}: {e}"))?;
            }
            let mut todo: Vec<Action> = if apply_all {
                actions.clone()
            } else {
                actions.iter().take(1).copied().collect()
            };
            let loads = finishable(&online, &tables);
            if !loads.is_empty() && (actions.is_empty() || rng.below(3) == 0) {
                todo.push(loads[rng.below(loads.len() as u64) as usize]);
            }
            if todo.is_empty() {
                break;
            }
            for a in &todo {
                let before = tables.clone();
                apply(&mut tables, a).map_err(|e| format!("{ctx}: {a:?}: {e}"))?;
                for (tb, ta) in before.iter().zip(&tables) {
                    let r = effective_rf(tb.replication_factor, online.len());
                    for (k, (pb, pa)) in tb.partitions.iter().zip(&ta.partitions).enumerate() {
                        let (rb, ra) = (online_ready(&online, pb), online_ready(&online, pa));
                        if ra < rb.min(r) {
                            return Err(format!(
                                "{ctx}: {a:?} left table {} partition {k} with {ra} ready \
                                 online copies (had {rb}, factor {r})",
                                tb.table_id
                            ));
                        }
                        if let Some(n) = pa.primary
                            && !pa.is_ready_on(n)
                        {
                            return Err(format!("{ctx}: {a:?}: primary {n} not ready"));
                        }
                    }
                }
            }
            let loading = loading_online(&online, &tables);
            if loading > load_bound {
                return Err(format!("{ctx}: {loading} loads, bound {load_bound}"));
            }
        }
        let recoverable = start
            .iter()
            .flat_map(|t| &t.partitions)
            .all(|p| online_ready(&online, p) > 0);
        if recoverable {
            let v = check_settled(&online, &tables);
            if !v.is_empty() {
                return Err(format!("{ctx}: not settled: {v:?}"));
            }
            spread_ok(&online, &tables).map_err(|e| format!("{ctx}: {e}: {tables:?}"))?;
        }
        Ok(())
    }

    /// Seeds that once found a planner that stopped early or went round in circles.
    #[test]
    fn the_planner_settles_from_states_that_once_stuck_it() {
        for seed in [
            12396370650643088552,
            11774566516439518234,
            6854801272870920575,
            6546809360103811088,
        ] {
            for apply_all in [false, true] {
                simulate(seed, apply_all).unwrap();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// `GAM_SEED=<seed>` replays one case.
        #[test]
        fn the_planner_settles_safely_from_any_state(seed in any::<u64>(), apply_all in any::<bool>()) {
            let seed = std::env::var("GAM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(seed);
            if let Err(e) = simulate(seed, apply_all) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
