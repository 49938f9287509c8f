//! Membership rules: the transition table of design §5.1, validation of a requested change
//! against the current topology, applying PREPARE and decisions to a topology (computed on
//! a copy and checked before it is swapped in), and the quorum rule of §5.3.

use std::collections::BTreeSet;

use crate::error::{SolidError, code};
use crate::grid::types::{
    Change, ChangeKind, Entry, Index, Member, MemberState, NodeId, Payload, Topology,
};

/// The states a change passes through: from → via → (on commit | on rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub via: MemberState,
    pub on_commit: MemberState,
    pub on_abort: MemberState,
}

/// The transition table of design §5.1. `None`: the change is not allowed from `from`.
pub fn transition(kind: ChangeKind, from: MemberState) -> Option<Transition> {
    use MemberState::*;
    let t = |via, on_commit, on_abort| {
        Some(Transition {
            via,
            on_commit,
            on_abort,
        })
    };
    match (kind, from) {
        (ChangeKind::Add, NotMember) => t(BeingAdded, Online, NotMember),
        (ChangeKind::Offline, Online) => t(Disconnecting, Offline, Online),
        (ChangeKind::Fail, Online) => t(Disconnecting, Failed, Online),
        (ChangeKind::Online, Offline | Failed) => t(Reconnecting, Online, from),
        (ChangeKind::Drop, Online | Offline | Failed) => t(BeingDropped, NotMember, from),
        _ => None,
    }
}

/// A membership change as a user asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    pub kind: ChangeKind,
    pub name: String,
    /// `host:port`; needed for ADD only.
    pub addr: Option<String>,
}

/// Resolves a request against the topology: 18506 when a change is in flight, 18507 for an
/// unknown node (or a name/address already in the grid for ADD), 18508 when the node's state
/// does not allow the change.
pub fn check_change(topology: &Topology, req: &ChangeRequest) -> Result<Change, SolidError> {
    if let Some((index, c)) = &topology.in_flight {
        return Err(change_in_progress(*index, c));
    }
    let node = match req.kind {
        ChangeKind::Add => {
            let addr = req.addr.clone().unwrap_or_default();
            if let Some(m) = topology.by_name(&req.name) {
                return Err(SolidError::grid(
                    code::UNKNOWN_NODE,
                    format!(
                        "node name {} is already in grid {} (node id {}, {})",
                        req.name, topology.grid, m.id, m.state
                    ),
                ));
            }
            if let Some(m) = topology.by_addr(&addr) {
                return Err(SolidError::grid(
                    code::UNKNOWN_NODE,
                    format!(
                        "address {addr} is already in grid {} as node {}",
                        topology.grid, m.name
                    ),
                ));
            }
            Member {
                id: topology.next_node_id(),
                name: req.name.clone(),
                addr,
                state: MemberState::NotMember,
            }
        }
        _ => topology.by_name(&req.name).cloned().ok_or_else(|| {
            SolidError::grid(
                code::UNKNOWN_NODE,
                format!(
                    "node {} is not a member of grid {}",
                    req.name, topology.grid
                ),
            )
        })?,
    };
    let from = node.state;
    if transition(req.kind, from).is_none() {
        return Err(SolidError::grid(
            code::TRANSITION_NOT_ALLOWED,
            format!(
                "{} is not allowed for node {}: its state is {from}",
                req.kind.as_str(),
                node.name
            ),
        ));
    }
    Ok(Change {
        kind: req.kind,
        node,
        from,
    })
}

pub fn change_in_progress(index: Index, c: &Change) -> SolidError {
    SolidError::grid(
        code::CHANGE_IN_PROGRESS,
        format!(
            "another membership change is in progress: {} of node {} (grid log index {index}); try again when it has finished",
            c.kind.as_str(),
            c.node.name
        ),
    )
}

/// Applies a committed PREPARE: the node enters the transitory state.
pub fn apply_prepare(
    topology: &Topology,
    index: Index,
    change: &Change,
) -> Result<Topology, String> {
    let t = transition(change.kind, change.from)
        .ok_or_else(|| format!("PREPARE at {index} has an illegal transition {change:?}"))?;
    if topology.in_flight.is_some() {
        return Err(format!(
            "PREPARE at {index} while another change is in flight"
        ));
    }
    let mut next = topology.clone();
    let current = next
        .members
        .get(&change.node.id)
        .map_or(MemberState::NotMember, |m| m.state);
    if current != change.from {
        return Err(format!(
            "PREPARE at {index} expects node {} in {}, it is {current}",
            change.node.id, change.from
        ));
    }
    let mut member = change.node.clone();
    if let Some(existing) = next.members.get(&change.node.id) {
        member = existing.clone();
    }
    member.state = t.via;
    next.next_id = next.next_node_id().max(member.id + 1);
    next.members.insert(member.id, member);
    next.in_flight = Some((index, change.clone()));
    check_invariants(&next)?;
    Ok(next)
}

/// Applies a committed decision on the PREPARE at `prepare`.
pub fn apply_decision(
    topology: &Topology,
    index: Index,
    prepare: Index,
    commit: bool,
) -> Result<Topology, String> {
    let Some((p, change)) = &topology.in_flight else {
        return Err(format!(
            "decision at {index} for {prepare} with no change in flight"
        ));
    };
    if *p != prepare {
        return Err(format!(
            "decision at {index} for {prepare}, but {p} is in flight"
        ));
    }
    let t = transition(change.kind, change.from).expect("validated when prepared");
    let outcome = if commit { t.on_commit } else { t.on_abort };
    let mut next = topology.clone();
    if outcome == MemberState::NotMember {
        next.members.remove(&change.node.id);
    } else if let Some(m) = next.members.get_mut(&change.node.id) {
        m.state = outcome;
    }
    next.in_flight = None;
    next.config_index = index;
    check_invariants(&next)?;
    Ok(next)
}

/// Applies one grid-log entry's membership effect (CREATE GRID, PREPARE, decision; other
/// entries leave the topology as it is).
pub fn apply_entry(topology: &Topology, e: &Entry) -> Result<Topology, String> {
    match &e.payload {
        Payload::CreateGrid { grid, founder } => {
            let mut t = Topology {
                grid: grid.clone(),
                config_index: e.index,
                ..Topology::default()
            };
            let mut f = founder.clone();
            f.state = MemberState::Online;
            t.members.insert(f.id, f);
            Ok(t)
        }
        Payload::Prepare(c) => apply_prepare(topology, e.index, c),
        Payload::Decide { prepare, commit } => apply_decision(topology, e.index, *prepare, *commit),
        Payload::Noop | Payload::Data(_) => Ok(topology.clone()),
    }
}

/// Structural invariants of a topology.
pub fn check_invariants(t: &Topology) -> Result<(), String> {
    let mut names = BTreeSet::new();
    let mut addrs = BTreeSet::new();
    for (id, m) in &t.members {
        if *id != m.id {
            return Err(format!("member keyed {id} has id {}", m.id));
        }
        if m.state == MemberState::NotMember {
            return Err(format!("node {id} is listed as NOT_MEMBER"));
        }
        if !names.insert(m.name.to_ascii_lowercase()) {
            return Err(format!("name {} appears twice", m.name));
        }
        if !addrs.insert(m.addr.clone()) {
            return Err(format!("address {} appears twice", m.addr));
        }
        let in_flight_node = t.in_flight.as_ref().map(|(_, c)| c.node.id) == Some(*id);
        if m.state.is_transitory() != in_flight_node {
            return Err(format!(
                "node {id} is {} but the in-flight change is {:?}",
                m.state, t.in_flight
            ));
        }
    }
    if !t.members.is_empty() && t.voters().is_empty() {
        return Err("a grid with members has no voter".into());
    }
    Ok(())
}

/// The voters after `change` commits.
pub fn voters_after(topology: &Topology, change: &Change) -> Vec<NodeId> {
    let t = transition(change.kind, change.from).expect("validated change");
    let mut voters: BTreeSet<NodeId> = topology.voters().into_iter().collect();
    if t.on_commit == MemberState::Online {
        voters.insert(change.node.id);
    } else {
        voters.remove(&change.node.id);
    }
    voters.into_iter().collect()
}

/// Whether more than half of `voters` satisfy `has`.
pub fn majority(voters: &[NodeId], has: impl Fn(NodeId) -> bool) -> bool {
    let yes = voters.iter().filter(|&&v| has(v)).count();
    yes * 2 > voters.len()
}

/// The quorum rule of design §5.3: durably prepared on a majority of the voters before the
/// change and a majority of the voters after it, and, for ADD and RECONNECT, on the node.
pub fn quorum_rule_holds(
    topology: &Topology,
    change: &Change,
    prepared: impl Fn(NodeId) -> bool,
) -> bool {
    let before = topology.voters();
    let after = voters_after(topology, change);
    let needs_node = matches!(change.kind, ChangeKind::Add | ChangeKind::Online);
    majority(&before, &prepared)
        && majority(&after, &prepared)
        && (!needs_node || prepared(change.node.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::*;

    fn member(id: NodeId, state: MemberState) -> Member {
        Member {
            id,
            name: format!("n{id}"),
            addr: format!("127.0.0.1:{}", 1000 + id),
            state,
        }
    }

    fn grid(states: &[MemberState]) -> Topology {
        let mut t = Topology {
            grid: "G".into(),
            ..Topology::default()
        };
        for (i, s) in states.iter().enumerate() {
            t.members.insert(i as u64 + 1, member(i as u64 + 1, *s));
        }
        t
    }

    #[test]
    fn the_transition_table_is_exactly_design_5_1() {
        let all = [
            NotMember,
            BeingAdded,
            Online,
            Disconnecting,
            Offline,
            Failed,
            Reconnecting,
            BeingDropped,
        ];
        let kinds = [
            ChangeKind::Add,
            ChangeKind::Drop,
            ChangeKind::Offline,
            ChangeKind::Fail,
            ChangeKind::Online,
        ];
        let mut allowed = Vec::new();
        for k in kinds {
            for s in all {
                if let Some(t) = transition(k, s) {
                    allowed.push((k, s, t.via, t.on_commit, t.on_abort));
                }
            }
        }
        assert_eq!(
            allowed,
            vec![
                (ChangeKind::Add, NotMember, BeingAdded, Online, NotMember),
                (ChangeKind::Drop, Online, BeingDropped, NotMember, Online),
                (ChangeKind::Drop, Offline, BeingDropped, NotMember, Offline),
                (ChangeKind::Drop, Failed, BeingDropped, NotMember, Failed),
                (ChangeKind::Offline, Online, Disconnecting, Offline, Online),
                (ChangeKind::Fail, Online, Disconnecting, Failed, Online),
                (ChangeKind::Online, Offline, Reconnecting, Online, Offline),
                (ChangeKind::Online, Failed, Reconnecting, Online, Failed),
            ]
        );
    }

    #[test]
    fn add_prepares_commits_and_rolls_back() {
        let t = grid(&[Online, Online, Online]);
        let req = ChangeRequest {
            kind: ChangeKind::Add,
            name: "n4".into(),
            addr: Some("127.0.0.1:1004".into()),
        };
        let c = check_change(&t, &req).unwrap();
        assert_eq!(c.node.id, 4);
        let p = apply_prepare(&t, 10, &c).unwrap();
        assert_eq!(p.members[&4].state, BeingAdded);
        assert_eq!(p.voters(), vec![1, 2, 3], "a joining node is not a voter");
        assert_eq!(
            check_change(&p, &req).unwrap_err().code,
            code::CHANGE_IN_PROGRESS
        );
        let committed = apply_decision(&p, 11, 10, true).unwrap();
        assert_eq!(committed.members[&4].state, Online);
        assert_eq!(committed.voters(), vec![1, 2, 3, 4]);
        assert_eq!(committed.config_index, 11);
        let aborted = apply_decision(&p, 11, 10, false).unwrap();
        assert_eq!(
            aborted,
            Topology {
                config_index: 11,
                next_id: 5,
                ..t.clone()
            },
            "a rollback restores the membership but keeps id 4 used"
        );
        assert_eq!(
            aborted.next_node_id(),
            5,
            "a rolled-back add's id is never reused"
        );
        assert!(apply_decision(&p, 11, 9, true).is_err());
    }

    #[test]
    fn refusals_have_their_codes() {
        let t = grid(&[Online, Offline]);
        let add = |name: &str, addr: &str| ChangeRequest {
            kind: ChangeKind::Add,
            name: name.into(),
            addr: Some(addr.into()),
        };
        assert_eq!(
            check_change(&t, &add("n1", "x:1")).unwrap_err().code,
            code::UNKNOWN_NODE
        );
        assert_eq!(
            check_change(&t, &add("N1", "x:1")).unwrap_err().code,
            code::UNKNOWN_NODE
        );
        assert_eq!(
            check_change(&t, &add("new", "127.0.0.1:1002"))
                .unwrap_err()
                .code,
            code::UNKNOWN_NODE
        );
        let req = |kind, name: &str| ChangeRequest {
            kind,
            name: name.into(),
            addr: None,
        };
        assert_eq!(
            check_change(&t, &req(ChangeKind::Drop, "zz"))
                .unwrap_err()
                .code,
            code::UNKNOWN_NODE
        );
        let e = check_change(&t, &req(ChangeKind::Offline, "n2")).unwrap_err();
        assert_eq!(e.code, code::TRANSITION_NOT_ALLOWED);
        assert!(e.message.contains("MEMBER_OFFLINE"), "{e}");
        assert_eq!(
            check_change(&t, &req(ChangeKind::Online, "n1"))
                .unwrap_err()
                .code,
            code::TRANSITION_NOT_ALLOWED
        );
        assert!(check_change(&t, &req(ChangeKind::Online, "n2")).is_ok());
    }

    #[test]
    fn quorum_rule_needs_both_majorities_and_the_joining_node() {
        let t = grid(&[Online, Online, Online]);
        let add = check_change(
            &t,
            &ChangeRequest {
                kind: ChangeKind::Add,
                name: "n4".into(),
                addr: Some("h:4".into()),
            },
        )
        .unwrap();
        let has = |ids: &'static [NodeId]| move |id: NodeId| ids.contains(&id);
        // Old majority {1,2} but the new node missing: not enough.
        assert!(!quorum_rule_holds(&t, &add, has(&[1, 2])));
        // {1,2,4}: 2 of 3 old, 3 of 4 new, the node itself.
        assert!(quorum_rule_holds(&t, &add, has(&[1, 2, 4])));
        // {1,4}: 1 of 3 old: not enough even with the node.
        assert!(!quorum_rule_holds(&t, &add, has(&[1, 4])));
        // Drop of 3 from {1,2,3}: after = {1,2} needs both.
        let drop = check_change(
            &t,
            &ChangeRequest {
                kind: ChangeKind::Drop,
                name: "n3".into(),
                addr: None,
            },
        )
        .unwrap();
        assert!(!quorum_rule_holds(&t, &drop, has(&[1, 3])));
        assert!(quorum_rule_holds(&t, &drop, has(&[1, 2])));
    }

    #[test]
    fn invariants_catch_broken_topologies() {
        let mut t = grid(&[Online, Online]);
        assert!(check_invariants(&t).is_ok());
        t.members.get_mut(&2).unwrap().state = BeingAdded;
        assert!(
            check_invariants(&t).is_err(),
            "transitory state without a change"
        );
        let mut t = grid(&[Online, Online]);
        t.members.get_mut(&2).unwrap().name = "N1".into();
        assert!(check_invariants(&t).is_err(), "duplicate name");
        let t = grid(&[Offline]);
        assert!(check_invariants(&t).is_err(), "no voter");
    }
}
