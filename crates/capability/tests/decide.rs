//! `decide`: which capabilities switch on, and who blocks the others.

use std::collections::BTreeSet;

use cairn_capability::{
    decide, Advert, Blocker, Decision, Inputs, Party, Pending, COPY_COMMANDS, LEASE_7S,
};

fn advert(version: &str, caps: &[&str]) -> Advert {
    Advert {
        version: version.to_string(),
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
    }
}

fn v1() -> Advert {
    advert("1.0", &[])
}

fn v2() -> Advert {
    advert("2.0", &[LEASE_7S, COPY_COMMANDS])
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn run(
    members: &[(u64, Option<&Advert>)],
    chunks: &[(u32, &Advert)],
    active: &[&str],
    hold: bool,
) -> Decision {
    let active = set(active);
    decide(&Inputs {
        members,
        chunks,
        active: &active,
        hold,
    })
}

fn blocker(who: Party, version: Option<&str>, lacks: &'static str) -> Blocker {
    Blocker {
        who,
        version: version.map(str::to_string),
        lacks,
    }
}

#[test]
fn all_support_activates_both_in_registry_order() {
    let (a, b) = (v2(), v2());
    let d = run(
        &[(1, Some(&a)), (2, Some(&a)), (3, Some(&a))],
        &[(7, &b), (9, &b)],
        &[],
        false,
    );
    assert_eq!(d.activate, vec![LEASE_7S, COPY_COMMANDS]);
    assert!(d.pending.is_empty());
    assert!(d.active.is_empty());
}

#[test]
fn member_lacking_blocks_both_with_its_version() {
    let (new, old) = (v2(), v1());
    let d = run(
        &[(1, Some(&new)), (2, Some(&old)), (3, Some(&new))],
        &[(7, &new)],
        &[],
        false,
    );
    assert!(d.activate.is_empty());
    assert_eq!(
        d.pending,
        vec![
            Pending {
                name: LEASE_7S,
                held: false,
                blockers: vec![blocker(Party::Member(2), Some("1.0"), LEASE_7S)],
            },
            Pending {
                name: COPY_COMMANDS,
                held: false,
                blockers: vec![blocker(Party::Member(2), Some("1.0"), COPY_COMMANDS)],
            },
        ]
    );
}

#[test]
fn member_lacking_one_capability_blocks_only_that_one() {
    let (new, partial) = (v2(), advert("2.0", &[COPY_COMMANDS]));
    let d = run(
        &[(1, Some(&new)), (2, Some(&partial))],
        &[(7, &new)],
        &[],
        false,
    );
    assert_eq!(d.activate, vec![COPY_COMMANDS]);
    assert_eq!(
        d.pending,
        vec![Pending {
            name: LEASE_7S,
            held: false,
            blockers: vec![blocker(Party::Member(2), Some("2.0"), LEASE_7S)],
        }]
    );
}

#[test]
fn member_not_advertised_blocks_with_version_none() {
    let new = v2();
    let d = run(&[(1, Some(&new)), (4, None)], &[(7, &new)], &[], false);
    assert!(d.activate.is_empty());
    assert_eq!(d.pending.len(), 2);
    for p in &d.pending {
        assert_eq!(p.blockers, vec![blocker(Party::Member(4), None, p.name)]);
        assert!(!p.held);
    }
}

#[test]
fn chunk_lacking_blocks_lease_7s_but_not_copy_commands() {
    let (new, old) = (v2(), v1());
    let d = run(
        &[(1, Some(&new)), (2, Some(&new))],
        &[(5, &new), (12, &old)],
        &[],
        false,
    );
    assert_eq!(d.activate, vec![COPY_COMMANDS]);
    assert_eq!(
        d.pending,
        vec![Pending {
            name: LEASE_7S,
            held: false,
            blockers: vec![blocker(Party::Chunk(12), Some("1.0"), LEASE_7S)],
        }]
    );
}

#[test]
fn no_live_chunks_listed_does_not_block() {
    // The old chunks' sessions expired: the caller lists no chunk at all.
    let new = v2();
    let d = run(&[(1, Some(&new)), (2, Some(&new))], &[], &[], false);
    assert_eq!(d.activate, vec![LEASE_7S, COPY_COMMANDS]);
    assert!(d.pending.is_empty());
}

#[test]
fn removed_member_not_listed_does_not_block() {
    // Member 2 ran 1.0 and was removed: only 1 and 3 are in the membership.
    let new = v2();
    let before = run(
        &[(1, Some(&new)), (2, Some(&v1())), (3, Some(&new))],
        &[(7, &new)],
        &[],
        false,
    );
    assert!(before.activate.is_empty());
    let after = run(
        &[(1, Some(&new)), (3, Some(&new))],
        &[(7, &new)],
        &[],
        false,
    );
    assert_eq!(after.activate, vec![LEASE_7S, COPY_COMMANDS]);
    assert!(after.pending.is_empty());
}

#[test]
fn hold_prevents_activation_and_marks_held_without_blockers() {
    let new = v2();
    let d = run(&[(1, Some(&new)), (2, Some(&new))], &[(7, &new)], &[], true);
    assert!(d.activate.is_empty());
    assert_eq!(
        d.pending,
        vec![
            Pending {
                name: LEASE_7S,
                held: true,
                blockers: vec![],
            },
            Pending {
                name: COPY_COMMANDS,
                held: true,
                blockers: vec![],
            },
        ]
    );
}

#[test]
fn hold_with_blockers_reports_both() {
    let (new, old) = (v2(), v1());
    let d = run(&[(1, Some(&new))], &[(12, &old)], &[], true);
    assert!(d.activate.is_empty());
    assert_eq!(
        d.pending,
        vec![
            Pending {
                name: LEASE_7S,
                held: true,
                blockers: vec![blocker(Party::Chunk(12), Some("1.0"), LEASE_7S)],
            },
            Pending {
                name: COPY_COMMANDS,
                held: true,
                blockers: vec![],
            },
        ]
    );
}

#[test]
fn already_active_is_neither_activated_nor_pending() {
    let new = v2();
    let d = run(
        &[(1, Some(&new))],
        &[(7, &new)],
        &[LEASE_7S, COPY_COMMANDS],
        false,
    );
    assert!(d.activate.is_empty());
    assert!(d.pending.is_empty());
    assert_eq!(
        d.active,
        vec![COPY_COMMANDS.to_string(), LEASE_7S.to_string()]
    );
}

#[test]
fn already_active_is_not_pending_even_with_an_old_member_or_hold() {
    // Active is final here: a lacking node is check_join's business.
    let old = v1();
    let d = run(&[(1, Some(&old))], &[(7, &old)], &[LEASE_7S], true);
    assert!(d.activate.is_empty());
    assert_eq!(
        d.pending.iter().map(|p| p.name).collect::<Vec<_>>(),
        vec![COPY_COMMANDS]
    );
}

#[test]
fn partially_active_activates_only_the_rest() {
    let new = v2();
    let d = run(&[(1, Some(&new))], &[(7, &new)], &[COPY_COMMANDS], false);
    assert_eq!(d.activate, vec![LEASE_7S]);
    assert!(d.pending.is_empty());
    assert_eq!(d.active, vec![COPY_COMMANDS.to_string()]);
}

#[test]
fn empty_membership_decides_nothing() {
    let new = v2();
    let d = run(&[], &[(7, &new)], &[], false);
    assert!(d.activate.is_empty());
    assert!(d.pending.is_empty());
    assert!(d.active.is_empty());
}

#[test]
fn unknown_active_names_pass_through_and_never_block() {
    let new = v2();
    let d = run(
        &[(1, Some(&new))],
        &[(7, &new)],
        &["zz_future", "aa_future"],
        false,
    );
    assert_eq!(d.activate, vec![LEASE_7S, COPY_COMMANDS]);
    assert!(d.pending.is_empty());
    assert_eq!(
        d.active,
        vec!["aa_future".to_string(), "zz_future".to_string()]
    );
}

#[test]
fn blockers_are_members_by_id_then_chunks_by_cid() {
    let old = v1();
    let new = v2();
    let d = run(
        &[(9, Some(&old)), (3, None), (1, Some(&new)), (5, Some(&old))],
        &[(40, &old), (2, &old), (17, &new), (11, &old)],
        &[],
        false,
    );
    let lease = &d.pending[0];
    assert_eq!(lease.name, LEASE_7S);
    assert_eq!(
        lease.blockers,
        vec![
            blocker(Party::Member(3), None, LEASE_7S),
            blocker(Party::Member(5), Some("1.0"), LEASE_7S),
            blocker(Party::Member(9), Some("1.0"), LEASE_7S),
            blocker(Party::Chunk(2), Some("1.0"), LEASE_7S),
            blocker(Party::Chunk(11), Some("1.0"), LEASE_7S),
            blocker(Party::Chunk(40), Some("1.0"), LEASE_7S),
        ]
    );
    let copy = &d.pending[1];
    assert_eq!(copy.name, COPY_COMMANDS);
    assert_eq!(
        copy.blockers.iter().map(|b| b.who).collect::<Vec<_>>(),
        vec![Party::Member(3), Party::Member(5), Party::Member(9)]
    );
}

#[test]
fn party_display() {
    assert_eq!(Party::Member(2).to_string(), "member 2");
    assert_eq!(Party::Chunk(12).to_string(), "chunk 12");
}

#[test]
fn display_pending_with_blockers() {
    let (new, old) = (v2(), v1());
    let d = run(
        &[(1, Some(&new)), (2, Some(&old))],
        &[(5, &old)],
        &[],
        false,
    );
    assert_eq!(
        d.to_string(),
        "lease_7s: pending, blocked by member 2 (version 1.0), chunk 5 (version 1.0)\n\
         copy_commands: pending, blocked by member 2 (version 1.0)"
    );
}

#[test]
fn display_active_activating_held_unadvertised_and_unknown() {
    let new = v2();
    let d = run(
        &[(1, Some(&new))],
        &[],
        &[COPY_COMMANDS, "future_thing"],
        false,
    );
    assert_eq!(
        d.to_string(),
        "lease_7s: activating now\n\
         copy_commands: active\n\
         future_thing: active (unknown to version 2.0)"
    );
    let d = run(&[(1, Some(&new)), (4, None)], &[], &[], true);
    assert_eq!(
        d.to_string(),
        "lease_7s: pending (held), blocked by member 4 (not advertised yet)\n\
         copy_commands: pending (held), blocked by member 4 (not advertised yet)"
    );
    let d = run(&[(1, Some(&new))], &[], &[], true);
    assert_eq!(
        d.to_string(),
        "lease_7s: pending (held)\ncopy_commands: pending (held)"
    );
}
