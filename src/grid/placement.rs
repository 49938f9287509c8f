//! Partitioned tables (design §6): which partition a row belongs to, and where each
//! partition's copies (replication units) and its primary live.
//!
//! Plain data and pure functions only. The placement of every partition is part of the
//! replicated database state: it changes only through committed grid-log entries
//! (`storage::db::Change::SetPlacement`), so every node applies the same placement at the
//! same log index and a new leader never loses or duplicates a copy. The Grid Availability
//! Manager (`grid::gam`) decides the changes; this module only describes them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::grid::types::NodeId;
use crate::sql::value::Value;

/// Partitions per partitioned table. Fixed when the table is created (it is stored with the
/// table), so a row never changes partition.
pub const DEFAULT_PARTITIONS: u32 = 16;

/// The grid clause of a table: `PARTITION BY (cols) REPLICATION FACTOR n`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partitioning {
    /// Indexes of the partition-key columns: the primary key's leading columns.
    pub key: Vec<usize>,
    /// Copies of each partition (1 = no redundancy).
    pub replication_factor: u32,
    /// Number of partitions; rows hash to one of them.
    pub partitions: u32,
}

impl Partitioning {
    /// The partition of a row (values already coerced to the column types).
    pub fn partition_of_row(&self, row: &[Value]) -> u32 {
        let key: Vec<&Value> = self.key.iter().map(|&i| &row[i]).collect();
        partition_of(&key, self.partitions)
    }
}

/// The partition of a partition-key value. Stable across nodes, versions and restarts: a
/// CRC-32 of the canonical (postcard) encoding of the key values.
pub fn partition_of(key: &[&Value], partitions: u32) -> u32 {
    let bytes = postcard::to_stdvec(key).expect("encoding values into a Vec cannot fail");
    crc32fast::hash(&bytes) % partitions.max(1)
}

/// A copy of a partition on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyState {
    /// Allocated; the node is loading the partition's rows from `source` and applies the
    /// partition's writes only once the load finished. Not readable, never primary.
    Loading { source: NodeId },
    /// Holds every committed write of the partition: may serve reads and become primary.
    Ready,
}

/// Where one partition lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPlacement {
    /// The node that plans and orders the partition's writes and serves its reads; always
    /// a node with a `Ready` copy. `None` only while no ready copy is on a live node.
    pub primary: Option<NodeId>,
    pub copies: BTreeMap<NodeId, CopyState>,
}

impl PartitionPlacement {
    /// Nodes with a ready copy.
    pub fn ready(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.copies
            .iter()
            .filter(|(_, s)| **s == CopyState::Ready)
            .map(|(n, _)| *n)
    }

    pub fn is_ready_on(&self, node: NodeId) -> bool {
        self.copies.get(&node) == Some(&CopyState::Ready)
    }
}

/// The placement of every partition of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePlacement {
    pub table_id: u64,
    pub table: String,
    pub replication_factor: u32,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionPlacement>,
}
