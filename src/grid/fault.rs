//! Fault points for real-process tests. `SOLIDGRID_FAULT=<point>` arms one; the process then
//! aborts — as abruptly as `kill -9`, nothing flushed or answered — at that moment of the
//! protocol. `SOLIDGRID_FAULT_TARGET=<node name>` narrows the membership points to changes of
//! that node (so a grid can be formed by the same process before the fault fires). Unset,
//! every point is a no-op; production never sets them.
//!
//! | point | where it fires |
//! |---|---|
//! | `leader-after-prepare-durable` | the leader's own `PREPARE` append is fsynced, nothing sent yet |
//! | `leader-after-quorum-before-commit` | the quorum rule holds: the leader is about to write `COMMIT` |
//! | `leader-after-commit-before-broadcast` | the leader's `COMMIT` is fsynced, not yet sent |
//! | `joiner-after-prepare-durable` | the joining node's `PREPARE` is fsynced, not yet acknowledged |
//! | `joiner-after-common-data` | the joining node stored the grid's common data, driver not started (`node`) |
//! | `during-snapshot-install` | a member installing a leader's snapshot: database restored, grid log not yet reset |

use crate::grid::core::{Core, Role};
use crate::grid::types::{Change, ChangeKind, Entry, Payload};

/// The armed point, if any (read once).
fn armed() -> Option<&'static str> {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ARMED
        .get_or_init(|| std::env::var("SOLIDGRID_FAULT").ok())
        .as_deref()
}

fn target_matches(change: &Change) -> bool {
    match std::env::var("SOLIDGRID_FAULT_TARGET") {
        Ok(t) => change.node.name.eq_ignore_ascii_case(&t),
        Err(_) => true,
    }
}

fn abort(point: &str) -> ! {
    eprintln!("SOLIDGRID_FAULT {point}: aborting");
    std::process::abort();
}

/// Aborts if `point` is armed.
pub fn point(point: &str) {
    if armed() == Some(point) {
        abort(point);
    }
}

/// The change a `Decide` in `entries` settles, if it commits one (looked up in the log).
fn committed_change<'a>(entries: &[Entry], core: &'a Core) -> Option<&'a Change> {
    let prepare = entries.iter().find_map(|e| match e.payload {
        Payload::Decide {
            prepare,
            commit: true,
        } => Some(prepare),
        _ => None,
    })?;
    core.entries()
        .iter()
        .find(|e| e.index == prepare)
        .and_then(|e| match &e.payload {
            Payload::Prepare(c) => Some(c),
            _ => None,
        })
}

/// Called by the driver just before it appends `entries` (an `AppendLog` command).
pub fn before_append(entries: &[Entry], core: &Core) {
    if armed() == Some("leader-after-quorum-before-commit")
        && core.role() == Role::Leader
        && committed_change(entries, core).is_some_and(target_matches)
    {
        abort("leader-after-quorum-before-commit");
    }
}

/// Called by the driver right after `entries` are durable, before any later command.
pub fn after_append(entries: &[Entry], core: &Core) {
    let Some(fault) = armed() else {
        return;
    };
    let prepares = || {
        entries.iter().filter_map(|e| match &e.payload {
            Payload::Prepare(c) if target_matches(c) => Some(c),
            _ => None,
        })
    };
    let fire = match fault {
        "leader-after-prepare-durable" => {
            core.role() == Role::Leader && prepares().next().is_some()
        }
        "leader-after-commit-before-broadcast" => {
            core.role() == Role::Leader
                && committed_change(entries, core).is_some_and(target_matches)
        }
        "joiner-after-prepare-durable" => {
            prepares().any(|c| c.kind == ChangeKind::Add && c.node.id == core.id())
        }
        _ => false,
    };
    if fire {
        abort(fault);
    }
}
