//! Durable storage of the grid log and the hard state (design §5.4, §5.5).
//!
//! A node may acknowledge a vote or an appended entry only once what the acknowledgement
//! depends on is on disk (conventions §3). So every mutating call of a [`GridStore`] returns
//! only after that write is durable: for [`RedbGridStore`] a redb commit with
//! `Durability::Immediate` (an fsync), for [`MemGridStore`] immediately. A failed write is an
//! error the node treats as fatal; it never acknowledges on top of it.
//!
//! The store holds the hard state (current term and vote), the position of the last snapshot
//! (`snapshot_index`, `snapshot_term`; the entries up to it are forgotten) and the entries
//! after it, consecutive. [`GridStore::restore`] hands all of it back when a node starts.
//!
//! The store checks what it is asked to do — consecutive entries, no gap after the last
//! entry, nothing at or before the snapshot, non-decreasing terms, compaction only of stored
//! entries with their real term, a term that never goes back and one vote per term — and
//! refuses a wrong call with [`StoreError::Invalid`] before writing anything: such a call is
//! a bug of the protocol core, and storing it would make the bug durable.
//!
//! [`RedbGridStore`] keeps two tables in the node's database file (`solid.db`, shared with
//! `storage::db`): `grid_log` (index → postcard [`Entry`]) and `grid_meta` (`term`,
//! `voted_for`, `snapshot_index`, `snapshot_term` → u64; no `voted_for` = no vote). redb
//! runs one write transaction at a time, so the grid store and the database writer
//! serialise, and a durable grid commit also makes the database's earlier non-durable
//! commits durable (harmless: they are consistent with their `applied_seq`).

use std::sync::Arc;

use parking_lot::Mutex;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::grid::types::{Entry, Index, NodeId, Term, Topology};
use crate::storage::db::Db;

const GRID_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("grid_log");
const GRID_META: TableDefinition<&str, u64> = TableDefinition::new("grid_meta");
const GRID_BLOB: TableDefinition<&str, &[u8]> = TableDefinition::new("grid_blob");

const COMMIT: &str = "commit";
const NODE_ID: &str = "node_id";
const SNAPSHOT_TOPOLOGY: &str = "snapshot_topology";

const TERM: &str = "term";
const VOTED_FOR: &str = "voted_for";
const SNAPSHOT_INDEX: &str = "snapshot_index";
const SNAPSHOT_TERM: &str = "snapshot_term";

/// What a node must remember across restarts before it answers a vote request: its current
/// term and whom it voted for in that term.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
    /// A commit index known earlier: a hint that lets a restarted node re-apply its
    /// committed entries before it hears from a leader (any value up to the true commit
    /// index is safe).
    #[serde(default)]
    pub commit: Index,
}

/// What a node finds on start: its hard state, its log since the last snapshot, and the
/// snapshot's position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    pub hard_state: HardState,
    /// Entries up to here are covered by a snapshot (0: none).
    pub snapshot_index: Index,
    /// The term of the entry at `snapshot_index` (0 when there is none).
    pub snapshot_term: Term,
    /// Membership as of the snapshot.
    pub snapshot_topology: Topology,
    /// `snapshot_index + 1 ..= last`, consecutive.
    pub entries: Vec<Entry>,
}

impl Restored {
    /// The index of the last entry, or the snapshot's when the log after it is empty.
    pub fn last_index(&self) -> Index {
        self.entries.last().map_or(self.snapshot_index, |e| e.index)
    }

    /// The term of the last entry, or the snapshot's when the log after it is empty.
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }
}

/// Durable storage of one node's grid log and hard state. Every mutating call is durable
/// when it returns `Ok`; an `Err` is fatal for the node (see [`StoreError`]).
pub trait GridStore: Send {
    /// Everything stored, as a node needs it on start.
    fn restore(&self) -> Result<Restored, StoreError>;

    /// Durably records the term and vote. The term never decreases, and within one term a
    /// recorded vote never changes.
    fn set_hard_state(&mut self, hs: HardState) -> Result<(), StoreError>;

    /// Durably writes `entries` (consecutive indexes, non-decreasing terms), first removing
    /// any stored entry at or after `entries[0].index` (a follower overwriting a conflicting
    /// suffix). `entries[0].index` must be `<= last_index + 1` and `> snapshot_index`. An
    /// empty slice writes nothing.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError>;

    /// Forgets entries `<= index` (they are covered by a snapshot with that index and term).
    /// `index` must be stored (or be the snapshot's index, a no-op) and `term` its term.
    /// Durable.
    fn compact(&mut self, index: Index, term: Term) -> Result<(), StoreError>;

    /// Replaces the whole log by an empty one starting after (`index`, `term`) — installing
    /// a snapshot. `index` may not be before the current snapshot. Durable.
    fn reset_to_snapshot(&mut self, index: Index, term: Term) -> Result<(), StoreError>;

    /// Durably records the membership as of the snapshot (a joining node's starting point).
    fn set_snapshot_topology(&mut self, topology: &Topology) -> Result<(), StoreError>;

    /// This node's id in its grid; `None` when it is in no grid.
    fn node_id(&self) -> Result<Option<NodeId>, StoreError>;

    /// Durably records this node's id: from now on it is a grid member on every start.
    fn set_node_id(&mut self, id: NodeId) -> Result<(), StoreError>;

    /// Forgets the grid entirely (`DROP GRID` of a one-node grid). Durable.
    fn clear(&mut self) -> Result<(), StoreError>;
}

/// A failure of the grid-log store. Every variant is fatal for the node: it stops and says
/// why (conventions §6).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller asked for something that would break the log's shape; nothing was written.
    #[error("invalid grid-log store call: {0}")]
    Invalid(String),
    /// Reading or writing the store failed; a failed write may or may not be on disk.
    #[error("grid log in {file}: {what} failed: {message}")]
    Storage {
        file: String,
        what: String,
        message: String,
    },
    /// The store holds data it cannot decode or a log with a hole in it.
    #[error("grid log in {file} is corrupt: {detail}")]
    Corrupt { file: String, detail: String },
}

/// The log's shape that every check needs.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    snapshot_index: Index,
    snapshot_term: Term,
    /// The last stored index, or `snapshot_index` when no entry is stored.
    last_index: Index,
}

fn describe(entries: &[Entry]) -> String {
    match entries {
        [] => "no entries".into(),
        [e] => format!("entry {}", e.index),
        [first, .., last] => format!("entries {}..={}", first.index, last.index),
    }
}

fn invalid<E: From<StoreError>>(message: String) -> E {
    StoreError::Invalid(message).into()
}

/// Checks an append of non-empty `entries`; `term_at(i)` gives the stored term of an index
/// in `snapshot_index + 1 ..= last_index`.
fn check_append<E: From<StoreError>>(
    b: Bounds,
    entries: &[Entry],
    term_at: impl FnOnce(Index) -> Result<Term, E>,
) -> Result<(), E> {
    let first = &entries[0];
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index + 1 {
            return Err(invalid(format!(
                "append of {}: index {} follows index {}",
                describe(entries),
                pair[1].index,
                pair[0].index
            )));
        }
        if pair[1].term < pair[0].term {
            return Err(invalid(format!(
                "append of {}: entry {} has term {}, below the term {} of the entry before it",
                describe(entries),
                pair[1].index,
                pair[1].term,
                pair[0].term
            )));
        }
    }
    if first.index <= b.snapshot_index {
        return Err(invalid(format!(
            "append of {}: the snapshot already covers indexes up to {}",
            describe(entries),
            b.snapshot_index
        )));
    }
    if first.index > b.last_index + 1 {
        return Err(invalid(format!(
            "append of {} would leave a gap after the last index {}",
            describe(entries),
            b.last_index
        )));
    }
    let prev = first.index - 1;
    let prev_term = if prev == b.snapshot_index {
        b.snapshot_term
    } else {
        term_at(prev)?
    };
    if first.term < prev_term {
        return Err(invalid(format!(
            "append of {}: term {} is below the term {prev_term} of entry {prev}",
            describe(entries),
            first.term
        )));
    }
    Ok(())
}

/// Checks a compaction through `index`; returns whether it changes anything.
fn check_compact<E: From<StoreError>>(
    b: Bounds,
    index: Index,
    term: Term,
    term_at: impl FnOnce(Index) -> Result<Term, E>,
) -> Result<bool, E> {
    if index == b.snapshot_index {
        if term != b.snapshot_term {
            return Err(invalid(format!(
                "compact through {index} with term {term}: the snapshot there has term {}",
                b.snapshot_term
            )));
        }
        return Ok(false);
    }
    if index < b.snapshot_index {
        return Err(invalid(format!(
            "compact through {index}: the snapshot already covers indexes up to {}",
            b.snapshot_index
        )));
    }
    if index > b.last_index {
        return Err(invalid(format!(
            "compact through {index}: beyond the last index {}",
            b.last_index
        )));
    }
    let stored = term_at(index)?;
    if stored != term {
        return Err(invalid(format!(
            "compact through {index} with term {term}: the entry there has term {stored}"
        )));
    }
    Ok(true)
}

fn check_reset(b: Bounds, index: Index, term: Term) -> Result<(), StoreError> {
    if index < b.snapshot_index {
        return Err(invalid(format!(
            "install snapshot at {index}: older than the current snapshot at {}",
            b.snapshot_index
        )));
    }
    if index == b.snapshot_index && term != b.snapshot_term {
        return Err(invalid(format!(
            "install snapshot at {index} with term {term}: the current snapshot there has term {}",
            b.snapshot_term
        )));
    }
    Ok(())
}

fn check_hard_state(old: HardState, new: HardState) -> Result<(), StoreError> {
    if new.term < old.term {
        return Err(invalid(format!(
            "hard state: term {} is below the stored term {}",
            new.term, old.term
        )));
    }
    if new.term == old.term
        && let Some(voted) = old.voted_for
        && new.voted_for != Some(voted)
    {
        return Err(invalid(format!(
            "hard state: in term {} the vote for node {voted} is already recorded; cannot change it to {:?}",
            new.term, new.voted_for
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// In memory
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct MemState {
    hard_state: HardState,
    snapshot_index: Index,
    snapshot_term: Term,
    /// `entries[i].index == snapshot_index + 1 + i`.
    entries: Vec<Entry>,
    snapshot_topology: Topology,
    node_id: Option<NodeId>,
    fail_next_write: bool,
}

impl MemState {
    fn bounds(&self) -> Bounds {
        Bounds {
            snapshot_index: self.snapshot_index,
            snapshot_term: self.snapshot_term,
            last_index: self.snapshot_index + self.entries.len() as u64,
        }
    }

    /// Position in `entries` of a stored index.
    fn position(&self, index: Index) -> usize {
        debug_assert!(index > self.snapshot_index);
        (index - self.snapshot_index - 1) as usize
    }

    fn term_at(&self, index: Index) -> Term {
        self.entries[self.position(index)].term
    }

    /// Consumes an injected failure: the write that would happen now fails instead.
    fn injected_failure(&mut self, what: String) -> Result<(), StoreError> {
        if std::mem::take(&mut self.fail_next_write) {
            return Err(StoreError::Storage {
                file: "memory".into(),
                what,
                message: "injected write failure".into(),
            });
        }
        Ok(())
    }
}

/// An in-memory [`GridStore`] for the pure-core tests and the simulation: every write is
/// "durable" at once. Clones share one state, so a test keeps a handle across a simulated
/// crash (drop the node, build a new one on a clone). [`MemGridStore::fail_next_write`]
/// injects a storage failure.
#[derive(Debug, Clone, Default)]
pub struct MemGridStore {
    state: Arc<Mutex<MemState>>,
}

impl MemGridStore {
    pub fn new() -> MemGridStore {
        MemGridStore::default()
    }

    /// Makes the next mutating call that would write (a valid one, and not an empty append
    /// or a no-op compaction) fail with [`StoreError::Storage`] and change nothing.
    pub fn fail_next_write(&self) {
        self.state.lock().fail_next_write = true;
    }
}

impl GridStore for MemGridStore {
    fn restore(&self) -> Result<Restored, StoreError> {
        let s = self.state.lock();
        Ok(Restored {
            hard_state: s.hard_state,
            snapshot_index: s.snapshot_index,
            snapshot_term: s.snapshot_term,
            snapshot_topology: s.snapshot_topology.clone(),
            entries: s.entries.clone(),
        })
    }

    fn set_hard_state(&mut self, hs: HardState) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        check_hard_state(s.hard_state, hs)?;
        s.injected_failure("set hard state".into())?;
        s.hard_state = hs;
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut s = self.state.lock();
        check_append::<StoreError>(s.bounds(), entries, |i| Ok(s.term_at(i)))?;
        s.injected_failure(format!("append of {}", describe(entries)))?;
        let keep = s.position(entries[0].index);
        s.entries.truncate(keep);
        s.entries.extend_from_slice(entries);
        Ok(())
    }

    fn compact(&mut self, index: Index, term: Term) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        if !check_compact::<StoreError>(s.bounds(), index, term, |i| Ok(s.term_at(i)))? {
            return Ok(());
        }
        s.injected_failure(format!("compaction through {index}"))?;
        let drop = s.position(index) + 1;
        s.entries.drain(..drop);
        s.snapshot_index = index;
        s.snapshot_term = term;
        Ok(())
    }

    fn reset_to_snapshot(&mut self, index: Index, term: Term) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        check_reset(s.bounds(), index, term)?;
        s.injected_failure(format!("install of the snapshot at {index}"))?;
        s.entries.clear();
        s.snapshot_index = index;
        s.snapshot_term = term;
        Ok(())
    }

    fn set_snapshot_topology(&mut self, topology: &Topology) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.injected_failure("recording the snapshot topology".into())?;
        s.snapshot_topology = topology.clone();
        Ok(())
    }

    fn node_id(&self) -> Result<Option<NodeId>, StoreError> {
        Ok(self.state.lock().node_id)
    }

    fn set_node_id(&mut self, id: NodeId) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.injected_failure("recording the node id".into())?;
        s.node_id = Some(id);
        Ok(())
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        let mut s = self.state.lock();
        s.injected_failure("clearing the grid log".into())?;
        let fail = s.fail_next_write;
        *s = MemState::default();
        s.fail_next_write = fail;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// redb
// ---------------------------------------------------------------------------------------

/// Why an operation on the redb store stopped: redb failed, or the call or the data is bad.
enum Failure {
    Redb(redb::Error),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

macro_rules! redb_failure {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self { Failure::Redb(e.into()) }
        }
    )*};
}
redb_failure!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// The [`GridStore`] of a node: tables `grid_log` and `grid_meta` in its database file.
pub struct RedbGridStore {
    db: Arc<Database>,
    /// The database file's path, for error messages.
    file: String,
}

impl std::fmt::Debug for RedbGridStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbGridStore")
            .field("file", &self.file)
            .finish()
    }
}

impl RedbGridStore {
    /// Opens the grid log in `db`'s file, creating its tables (durably) when missing.
    pub fn open(db: &Db) -> Result<RedbGridStore, StoreError> {
        let store = RedbGridStore {
            db: db.redb().clone(),
            file: db.path().display().to_string(),
        };
        store.write(
            || "creating the grid-log tables".into(),
            |txn| {
                txn.open_table(GRID_LOG)?;
                txn.open_table(GRID_META)?;
                txn.open_table(GRID_BLOB)?;
                Ok(())
            },
        )?;
        Ok(store)
    }

    fn corrupt(&self, detail: String) -> StoreError {
        StoreError::Corrupt {
            file: self.file.clone(),
            detail,
        }
    }

    fn failed(&self, what: String, failure: Failure) -> StoreError {
        match failure {
            Failure::Store(e) => e,
            Failure::Redb(e) => StoreError::Storage {
                file: self.file.clone(),
                what,
                message: e.to_string(),
            },
        }
    }

    /// Runs `f` in one write transaction committed with `Durability::Immediate`; an error
    /// from `f` aborts it, so nothing of a refused call is written.
    fn write<R>(
        &self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&WriteTransaction) -> Result<R, Failure>,
    ) -> Result<R, StoreError> {
        let run = || -> Result<R, Failure> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            match f(&txn) {
                Ok(r) => {
                    txn.commit()?;
                    Ok(r)
                }
                Err(e) => {
                    // The refusal is what the caller must hear; an abort failure would only
                    // hide it (and an unaborted transaction is rolled back when dropped).
                    let _ = txn.abort();
                    Err(e)
                }
            }
        };
        run().map_err(|e| self.failed(what(), e))
    }

    fn decode_entry(&self, key: Index, bytes: &[u8]) -> Result<Entry, StoreError> {
        let entry: Entry = postcard::from_bytes(bytes)
            .map_err(|e| self.corrupt(format!("entry at index {key} does not decode: {e}")))?;
        if entry.index != key {
            return Err(self.corrupt(format!(
                "entry stored at index {key} says it is index {}",
                entry.index
            )));
        }
        Ok(entry)
    }

    fn bounds(
        &self,
        meta: &impl ReadableTable<&'static str, u64>,
        log: &impl ReadableTable<u64, &'static [u8]>,
    ) -> Result<Bounds, Failure> {
        let get = |key| -> Result<u64, Failure> { Ok(meta.get(key)?.map_or(0, |v| v.value())) };
        let snapshot_index = get(SNAPSHOT_INDEX)?;
        let snapshot_term = get(SNAPSHOT_TERM)?;
        let last_index = match log.last()? {
            None => snapshot_index,
            Some((k, _)) if k.value() > snapshot_index => k.value(),
            Some((k, _)) => {
                return Err(self
                    .corrupt(format!(
                        "entry {} is stored although the snapshot covers up to {snapshot_index}",
                        k.value()
                    ))
                    .into());
            }
        };
        Ok(Bounds {
            snapshot_index,
            snapshot_term,
            last_index,
        })
    }

    fn term_at(
        &self,
        log: &impl ReadableTable<u64, &'static [u8]>,
        index: Index,
    ) -> Result<Term, Failure> {
        match log.get(index)? {
            Some(v) => Ok(self.decode_entry(index, v.value())?.term),
            None => Err(self
                .corrupt(format!("entry {index} is missing inside the log"))
                .into()),
        }
    }

    fn hard_state(
        &self,
        meta: &impl ReadableTable<&'static str, u64>,
    ) -> Result<HardState, Failure> {
        Ok(HardState {
            term: meta.get(TERM)?.map_or(0, |v| v.value()),
            voted_for: meta.get(VOTED_FOR)?.map(|v| v.value()),
            commit: meta.get(COMMIT)?.map_or(0, |v| v.value()),
        })
    }
}

impl GridStore for RedbGridStore {
    fn restore(&self) -> Result<Restored, StoreError> {
        let run = || -> Result<Restored, Failure> {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(GRID_META)?;
            let log = txn.open_table(GRID_LOG)?;
            let b = self.bounds(&meta, &log)?;
            let mut entries = Vec::with_capacity((b.last_index - b.snapshot_index) as usize);
            for item in log.iter()? {
                let (k, v) = item?;
                let expected = b.snapshot_index + 1 + entries.len() as u64;
                if k.value() != expected {
                    return Err(self
                        .corrupt(format!(
                            "entry {expected} is missing (the next stored entry is {})",
                            k.value()
                        ))
                        .into());
                }
                entries.push(self.decode_entry(k.value(), v.value())?);
            }
            let blobs = txn.open_table(GRID_BLOB)?;
            let snapshot_topology = match blobs.get(SNAPSHOT_TOPOLOGY)? {
                Some(v) => postcard::from_bytes(v.value()).map_err(|e| {
                    self.corrupt(format!("the snapshot topology does not decode: {e}"))
                })?,
                None => Topology::default(),
            };
            Ok(Restored {
                hard_state: self.hard_state(&meta)?,
                snapshot_index: b.snapshot_index,
                snapshot_term: b.snapshot_term,
                snapshot_topology,
                entries,
            })
        };
        run().map_err(|e| self.failed("reading the grid log".into(), e))
    }

    fn set_hard_state(&mut self, hs: HardState) -> Result<(), StoreError> {
        self.write(
            || format!("recording term {} and vote {:?}", hs.term, hs.voted_for),
            |txn| {
                let mut meta = txn.open_table(GRID_META)?;
                check_hard_state(self.hard_state(&meta)?, hs)?;
                meta.insert(TERM, hs.term)?;
                meta.insert(COMMIT, hs.commit)?;
                match hs.voted_for {
                    Some(node) => meta.insert(VOTED_FOR, node)?,
                    None => meta.remove(VOTED_FOR)?,
                };
                Ok(())
            },
        )
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(
            || format!("append of {}", describe(entries)),
            |txn| {
                let meta = txn.open_table(GRID_META)?;
                let mut log = txn.open_table(GRID_LOG)?;
                let b = self.bounds(&meta, &log)?;
                check_append(b, entries, |i| self.term_at(&log, i))?;
                let first = entries[0].index;
                if first <= b.last_index {
                    log.retain_in(first.., |_, _| false)?;
                }
                for e in entries {
                    let bytes = postcard::to_stdvec(e).expect("encoding into a Vec cannot fail");
                    log.insert(e.index, bytes.as_slice())?;
                }
                Ok(())
            },
        )
    }

    fn compact(&mut self, index: Index, term: Term) -> Result<(), StoreError> {
        self.write(
            || format!("compaction through {index}"),
            |txn| {
                let mut meta = txn.open_table(GRID_META)?;
                let mut log = txn.open_table(GRID_LOG)?;
                let b = self.bounds(&meta, &log)?;
                if check_compact(b, index, term, |i| self.term_at(&log, i))? {
                    log.retain_in(..=index, |_, _| false)?;
                    meta.insert(SNAPSHOT_INDEX, index)?;
                    meta.insert(SNAPSHOT_TERM, term)?;
                }
                Ok(())
            },
        )
    }

    fn reset_to_snapshot(&mut self, index: Index, term: Term) -> Result<(), StoreError> {
        self.write(
            || format!("install of the snapshot at {index}"),
            |txn| {
                let mut meta = txn.open_table(GRID_META)?;
                let mut log = txn.open_table(GRID_LOG)?;
                check_reset(self.bounds(&meta, &log)?, index, term)?;
                log.retain(|_, _| false)?;
                meta.insert(SNAPSHOT_INDEX, index)?;
                meta.insert(SNAPSHOT_TERM, term)?;
                Ok(())
            },
        )
    }

    fn set_snapshot_topology(&mut self, topology: &Topology) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(topology).expect("encoding into a Vec cannot fail");
        self.write(
            || "recording the snapshot topology".into(),
            |txn| {
                txn.open_table(GRID_BLOB)?
                    .insert(SNAPSHOT_TOPOLOGY, bytes.as_slice())?;
                Ok(())
            },
        )
    }

    fn node_id(&self) -> Result<Option<NodeId>, StoreError> {
        let run = || -> Result<Option<NodeId>, Failure> {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(GRID_META)?;
            Ok(meta.get(NODE_ID)?.map(|v| v.value()))
        };
        run().map_err(|e| self.failed("reading the node id".into(), e))
    }

    fn set_node_id(&mut self, id: NodeId) -> Result<(), StoreError> {
        self.write(
            || format!("recording node id {id}"),
            |txn| {
                txn.open_table(GRID_META)?.insert(NODE_ID, id)?;
                Ok(())
            },
        )
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.write(
            || "clearing the grid log".into(),
            |txn| {
                txn.open_table(GRID_LOG)?.retain(|_, _| false)?;
                txn.open_table(GRID_META)?.retain(|_, _| false)?;
                txn.open_table(GRID_BLOB)?.retain(|_, _| false)?;
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::grid::types::Payload;

    fn entry(index: Index, term: Term) -> Entry {
        Entry {
            term,
            index,
            payload: Payload::Data(format!("{index}@{term}").into_bytes()),
        }
    }

    fn entries(indexes: std::ops::RangeInclusive<Index>, term: Term) -> Vec<Entry> {
        indexes.map(|i| entry(i, term)).collect()
    }

    fn positions(r: &Restored) -> Vec<(Index, Term)> {
        r.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    /// A redb store in a fresh database file under `dir`.
    fn redb_store(dir: &Path) -> (Db, RedbGridStore) {
        let db = Db::open(&dir.join("solid.db")).unwrap();
        let store = RedbGridStore::open(&db).unwrap();
        (db, store)
    }

    /// Runs `scenario` on a MemGridStore and on a RedbGridStore.
    fn on_both(scenario: impl Fn(&mut dyn GridStore)) {
        scenario(&mut MemGridStore::new());
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut store) = redb_store(dir.path());
        scenario(&mut store);
    }

    fn assert_invalid(result: Result<(), StoreError>, mentions: &str) {
        match result {
            Err(StoreError::Invalid(m)) => {
                assert!(m.contains(mentions), "{m:?} lacks {mentions:?}")
            }
            other => panic!("expected Invalid mentioning {mentions:?}, got {other:?}"),
        }
    }

    #[test]
    fn append_overwrites_a_conflicting_suffix() {
        on_both(|s| {
            assert_eq!(s.restore().unwrap(), Restored::default());
            s.append(&entries(1..=3, 1)).unwrap();
            s.append(&entries(3..=4, 2)).unwrap();
            let r = s.restore().unwrap();
            assert_eq!(positions(&r), vec![(1, 1), (2, 1), (3, 2), (4, 2)]);
            assert_eq!(r.entries[2], entry(3, 2), "payload of the new entry");
            s.append(&entries(2..=2, 3)).unwrap();
            let r = s.restore().unwrap();
            assert_eq!(positions(&r), vec![(1, 1), (2, 3)]);
            assert_eq!((r.last_index(), r.last_term()), (2, 3));
            s.append(&[]).unwrap();
            assert_eq!(s.restore().unwrap(), r, "an empty append changes nothing");
        });
    }

    #[test]
    fn compaction_forgets_the_prefix_and_restore_shows_the_rest() {
        on_both(|s| {
            s.append(&entries(1..=2, 1)).unwrap();
            s.append(&entries(3..=5, 2)).unwrap();
            s.compact(3, 2).unwrap();
            let r = s.restore().unwrap();
            assert_eq!((r.snapshot_index, r.snapshot_term), (3, 2));
            assert_eq!(positions(&r), vec![(4, 2), (5, 2)]);
            s.compact(3, 2).unwrap(); // the snapshot's own position: a no-op
            assert_eq!(s.restore().unwrap(), r);
            s.compact(5, 2).unwrap();
            let r = s.restore().unwrap();
            assert!(r.entries.is_empty());
            assert_eq!((r.last_index(), r.last_term()), (5, 2));
            s.append(&entries(6..=6, 3)).unwrap();
            assert_eq!(positions(&s.restore().unwrap()), vec![(6, 3)]);
        });
    }

    #[test]
    fn reset_to_snapshot_empties_the_log_after_the_snapshot() {
        on_both(|s| {
            s.append(&entries(1..=5, 1)).unwrap();
            s.reset_to_snapshot(10, 4).unwrap();
            let r = s.restore().unwrap();
            assert_eq!((r.snapshot_index, r.snapshot_term), (10, 4));
            assert!(r.entries.is_empty());
            assert_invalid(s.append(&entries(10..=10, 4)), "covers");
            s.append(&entries(11..=12, 4)).unwrap();
            // A snapshot behind the log's end also drops everything after it.
            s.reset_to_snapshot(11, 4).unwrap();
            let r = s.restore().unwrap();
            assert_eq!((r.snapshot_index, r.last_index()), (11, 11));
            assert!(r.entries.is_empty());
        });
    }

    #[test]
    fn hard_state_round_trips() {
        on_both(|s| {
            assert_eq!(s.restore().unwrap().hard_state, HardState::default());
            for hs in [
                HardState {
                    term: 1,
                    voted_for: None,
                    commit: 0,
                },
                HardState {
                    term: 1,
                    voted_for: Some(2),
                    commit: 0,
                },
                HardState {
                    term: 4,
                    voted_for: None,
                    commit: 0,
                },
                HardState {
                    term: 5,
                    voted_for: Some(1),
                    commit: 0,
                },
                HardState {
                    term: 5,
                    voted_for: Some(1),
                    commit: 0,
                },
            ] {
                s.set_hard_state(hs).unwrap();
                assert_eq!(s.restore().unwrap().hard_state, hs);
            }
        });
    }

    #[test]
    fn wrong_calls_are_refused_and_change_nothing() {
        on_both(|s| {
            s.set_hard_state(HardState {
                term: 3,
                voted_for: Some(1),
                commit: 0,
            })
            .unwrap();
            s.append(&entries(1..=4, 2)).unwrap();
            s.compact(2, 2).unwrap();
            let before = s.restore().unwrap();

            let mut skips = entries(5..=6, 2);
            skips[1].index = 7;
            assert_invalid(s.append(&skips), "index 7 follows index 5");
            let mut falling = entries(5..=6, 3);
            falling[1].term = 2;
            assert_invalid(s.append(&falling), "below the term");
            assert_invalid(s.append(&entries(6..=6, 2)), "gap after the last index 4");
            assert_invalid(s.append(&entries(2..=3, 2)), "covers indexes up to 2");
            assert_invalid(s.append(&entries(4..=4, 1)), "below the term 2 of entry 3");
            assert_invalid(s.compact(5, 2), "beyond the last index 4");
            assert_invalid(s.compact(3, 1), "the entry there has term 2");
            assert_invalid(s.compact(1, 1), "already covers");
            assert_invalid(s.compact(2, 1), "the snapshot there has term 2");
            assert_invalid(s.reset_to_snapshot(1, 1), "older than the current snapshot");
            assert_invalid(
                s.reset_to_snapshot(2, 5),
                "the current snapshot there has term 2",
            );
            assert_invalid(
                s.set_hard_state(HardState {
                    term: 2,
                    voted_for: None,
                    commit: 0,
                }),
                "below the stored term 3",
            );
            assert_invalid(
                s.set_hard_state(HardState {
                    term: 3,
                    voted_for: Some(2),
                    commit: 0,
                }),
                "already recorded",
            );
            assert_invalid(
                s.set_hard_state(HardState {
                    term: 3,
                    voted_for: None,
                    commit: 0,
                }),
                "already recorded",
            );
            assert_eq!(s.restore().unwrap(), before);
        });
    }

    #[test]
    fn redb_store_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let expected = {
            let (_db, mut s) = redb_store(dir.path());
            s.set_hard_state(HardState {
                term: 7,
                voted_for: Some(3),
                commit: 0,
            })
            .unwrap();
            s.append(&entries(1..=6, 7)).unwrap();
            s.compact(2, 7).unwrap();
            s.append(&entries(5..=8, 7)).unwrap();
            s.restore().unwrap()
        };
        // No checkpoint, no clean close: every call above was already durable.
        let (_db, s) = redb_store(dir.path());
        let r = s.restore().unwrap();
        assert_eq!(r, expected);
        assert_eq!(r.snapshot_index, 2);
        assert_eq!(r.last_index(), 8);
    }

    #[test]
    fn database_restore_leaves_the_grid_log_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut s) = redb_store(dir.path());
        s.append(&entries(1..=3, 1)).unwrap();
        let before = s.restore().unwrap();
        let dump = db.snapshot().unwrap().dump().unwrap();
        db.restore(&dump, 9).unwrap();
        assert_eq!(s.restore().unwrap(), before);
    }

    #[test]
    fn a_corrupt_redb_log_is_reported_with_the_file_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut s) = redb_store(dir.path());
        s.append(&entries(1..=3, 1)).unwrap();
        let txn = db.redb().begin_write().unwrap();
        txn.open_table(GRID_LOG)
            .unwrap()
            .insert(2, [0xffu8, 0xff, 0xff].as_slice())
            .unwrap();
        txn.commit().unwrap();
        let err = s.restore().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
        assert!(
            text.contains("solid.db") && text.contains("index 2"),
            "{text}"
        );
        // A hole in the log.
        let txn = db.redb().begin_write().unwrap();
        txn.open_table(GRID_LOG).unwrap().remove(2).unwrap();
        txn.commit().unwrap();
        let text = s.restore().unwrap_err().to_string();
        assert!(text.contains("entry 2 is missing"), "{text}");
    }

    #[test]
    fn mem_store_clones_share_state_and_inject_one_failure() {
        let mut s = MemGridStore::new();
        let handle = s.clone();
        s.append(&entries(1..=2, 1)).unwrap();
        s.fail_next_write();
        assert_invalid(s.compact(5, 1), "beyond"); // refused before the write: not consumed
        let err = s.append(&entries(3..=3, 1)).unwrap_err();
        assert!(matches!(err, StoreError::Storage { .. }), "{err}");
        assert!(err.to_string().contains("append of entry 3"), "{err}");
        assert_eq!(positions(&handle.restore().unwrap()), vec![(1, 1), (2, 1)]);
        s.append(&entries(3..=3, 1)).unwrap();
        drop(s); // a crash: the handle still sees everything written
        assert_eq!(handle.restore().unwrap().last_index(), 3);
    }

    /// One step of the equivalence property; indexes are chosen relative to the store's
    /// current shape so that most steps are valid and some are deliberately not.
    #[derive(Debug, Clone)]
    enum Op {
        /// Append `len` entries starting `back` entries before the end (overwriting them).
        Append { back: u64, len: u64, new_term: bool },
        /// Append starting one past the end: a gap.
        AppendGap,
        /// Compact through `back` entries before the last one.
        Compact { back: u64 },
        /// Compact one past the last index.
        CompactBeyond,
        /// Install a snapshot `ahead` indexes past the last one.
        Reset { ahead: u64 },
        SetHardState {
            new_term: bool,
            vote: Option<NodeId>,
        },
        /// Drop the redb store and its database and open the file again.
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u64..4, 1u64..4, any::<bool>())
                .prop_map(|(back, len, new_term)| Op::Append { back, len, new_term }),
            1 => Just(Op::AppendGap),
            2 => (0u64..4).prop_map(|back| Op::Compact { back }),
            1 => Just(Op::CompactBeyond),
            1 => (0u64..4).prop_map(|ahead| Op::Reset { ahead }),
            2 => (any::<bool>(), proptest::option::of(1u64..4))
                .prop_map(|(new_term, vote)| Op::SetHardState { new_term, vote }),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn mem_and_redb_stores_restore_the_same(ops in proptest::collection::vec(op(), 1..30)) {
            let dir = tempfile::tempdir().unwrap();
            let mut mem = MemGridStore::new();
            let (mut db, mut redb) = redb_store(dir.path());
            // The leader term the next appended entries carry; never below any stored term.
            let mut term: Term = 1;
            for op in ops {
                let now = mem.restore().unwrap();
                let last = now.last_index();
                let term_at = |i: Index| {
                    if i == now.snapshot_index {
                        now.snapshot_term
                    } else {
                        now.entries[(i - now.snapshot_index - 1) as usize].term
                    }
                };
                let apply = |s: &mut dyn GridStore| -> Result<(), StoreError> {
                    match &op {
                        Op::Append { back, len, new_term } => {
                            let first = last.saturating_sub(*back).max(now.snapshot_index) + 1;
                            let t = term + u64::from(*new_term);
                            s.append(&entries(first..=first + len - 1, t))
                        }
                        Op::AppendGap => s.append(&entries(last + 2..=last + 2, term)),
                        Op::Compact { back } => {
                            let index = last.saturating_sub(*back).max(now.snapshot_index);
                            s.compact(index, term_at(index))
                        }
                        Op::CompactBeyond => s.compact(last + 1, term),
                        Op::Reset { ahead } => s.reset_to_snapshot(last + ahead, term),
                        Op::SetHardState { new_term, vote } => {
                            let hs = now.hard_state;
                            let next = if *new_term || hs.voted_for.is_none() {
                                HardState { term: hs.term + u64::from(*new_term), voted_for: *vote, commit: 0 }
                            } else {
                                hs
                            };
                            s.set_hard_state(next)
                        }
                        Op::Reopen => Ok(()),
                    }
                };
                let on_mem = apply(&mut mem);
                let on_redb = apply(&mut redb);
                prop_assert_eq!(on_mem.is_ok(), on_redb.is_ok(), "{:?}: {:?} vs {:?}", op, on_mem, on_redb);
                if let Err(e) = &on_mem {
                    prop_assert!(matches!(e, StoreError::Invalid(_)), "{:?}", e);
                }
                if let (Op::Append { new_term: true, .. }, true) = (&op, on_mem.is_ok()) {
                    term += 1;
                }
                if let Op::Reopen = op {
                    drop(redb);
                    drop(db);
                    (db, redb) = redb_store(dir.path());
                }
                prop_assert_eq!(mem.restore().unwrap(), redb.restore().unwrap(), "after {:?}", op);
            }
        }
    }
}
