//! `check_join`: refusing nodes that lack an active capability.

use std::collections::BTreeSet;

use cairn_capability::{check_join, Advert, JoinRefused, Party, COPY_COMMANDS, LEASE_7S};

fn advert(version: &str, caps: &[&str]) -> Advert {
    Advert {
        version: version.to_string(),
        capabilities: caps.iter().map(|c| c.to_string()).collect(),
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn chunk_lacking_active_lease_is_refused_with_exact_message() {
    let err = check_join(&set(&[LEASE_7S]), Party::Chunk(12), &advert("1.0", &[]))
        .expect_err("a 1.0 chunk must be refused once lease_7s is active");
    assert_eq!(
        err,
        JoinRefused {
            capability: LEASE_7S,
            who: Party::Chunk(12),
            version: "1.0".to_string(),
        }
    );
    assert_eq!(
        err.to_string(),
        "capability lease_7s is active; chunk 12 (version 1.0) lacks it; upgrade it before it joins"
    );
}

#[test]
fn member_lacking_active_capability_is_refused_with_exact_message() {
    let err = check_join(
        &set(&[COPY_COMMANDS]),
        Party::Member(4),
        &advert("1.0", &[]),
    )
    .expect_err("a 1.0 member must be refused once copy_commands is active");
    assert_eq!(
        err.to_string(),
        "capability copy_commands is active; member 4 (version 1.0) lacks it; upgrade it before it joins"
    );
}

#[test]
fn several_missing_names_the_first_in_registry_order() {
    // Registry order is lease_7s, copy_commands (not alphabetical).
    let err = check_join(
        &set(&[LEASE_7S, COPY_COMMANDS]),
        Party::Member(4),
        &advert("1.0", &[]),
    )
    .expect_err("must be refused");
    assert_eq!(err.capability, LEASE_7S);
    assert_eq!(
        err.to_string(),
        "capability lease_7s is active; member 4 (version 1.0) lacks it; upgrade it before it joins"
    );
}

#[test]
fn chunk_needs_only_chunk_capabilities() {
    // copy_commands is meta-internal: a chunk without it may join.
    let old = advert("1.0", &[]);
    assert_eq!(
        check_join(&set(&[COPY_COMMANDS]), Party::Chunk(3), &old),
        Ok(())
    );
    // ...but a chunk with copy_commands and without lease_7s may not.
    let err = check_join(
        &set(&[LEASE_7S, COPY_COMMANDS]),
        Party::Chunk(3),
        &advert("2.0", &[COPY_COMMANDS]),
    )
    .expect_err("lease_7s missing");
    assert_eq!(err.capability, LEASE_7S);
    assert_eq!(err.version, "2.0");
}

#[test]
fn member_needs_every_active_capability() {
    let err = check_join(
        &set(&[LEASE_7S, COPY_COMMANDS]),
        Party::Member(2),
        &advert("2.0", &[LEASE_7S]),
    )
    .expect_err("copy_commands missing");
    assert_eq!(err.capability, COPY_COMMANDS);
    assert_eq!(err.who, Party::Member(2));
}

#[test]
fn supporting_nodes_are_admitted() {
    let new = Advert::current();
    let all = set(&[LEASE_7S, COPY_COMMANDS]);
    assert_eq!(check_join(&all, Party::Member(1), &new), Ok(()));
    assert_eq!(check_join(&all, Party::Chunk(1), &new), Ok(()));
}

#[test]
fn nothing_active_admits_anyone() {
    let old = advert("1.0", &[]);
    assert_eq!(check_join(&BTreeSet::new(), Party::Member(1), &old), Ok(()));
    assert_eq!(check_join(&BTreeSet::new(), Party::Chunk(1), &old), Ok(()));
}

#[test]
fn unknown_active_names_do_not_refuse() {
    let old = advert("1.0", &[]);
    let active = set(&["future_thing"]);
    assert_eq!(check_join(&active, Party::Member(1), &old), Ok(()));
    assert_eq!(check_join(&active, Party::Chunk(1), &old), Ok(()));
}
