//! Versions, the registry, and what each version supports.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use cairn_capability::{
    capabilities_of, capability, version_cmp, Advert, UnknownVersion, COPY_COMMANDS,
    CURRENT_VERSION, KNOWN_VERSIONS, LEASE_7S, REGISTRY,
};

#[test]
fn version_cmp_is_numeric_per_component() {
    assert_eq!(version_cmp("10.0", "2.0"), Some(Ordering::Greater));
    assert_eq!(version_cmp("2.0", "10.0"), Some(Ordering::Less));
    assert_eq!(version_cmp("2.10", "2.9"), Some(Ordering::Greater));
    assert_eq!(version_cmp("1.0", "2.0"), Some(Ordering::Less));
    assert_eq!(version_cmp("2.0", "2.0"), Some(Ordering::Equal));
    assert_eq!(version_cmp("2.0", "2.0.0"), Some(Ordering::Equal));
    assert_eq!(version_cmp("2", "2.0"), Some(Ordering::Equal));
    assert_eq!(version_cmp("2.0.1", "2.0"), Some(Ordering::Greater));
    assert_eq!(version_cmp("02.0", "2.0"), Some(Ordering::Equal));
}

#[test]
fn version_cmp_rejects_garbage() {
    for bad in [
        "",
        "abc",
        "2.",
        ".2",
        "2..0",
        "+2.0",
        "-2.0",
        " 2.0",
        "2.0 ",
        "2.0-rc1",
        "v2.0",
        "2,0",
        "99999999999999999999999.0",
    ] {
        assert_eq!(version_cmp(bad, "2.0"), None, "{bad:?} on the left");
        assert_eq!(version_cmp("2.0", bad), None, "{bad:?} on the right");
    }
}

#[test]
fn capabilities_of_1_0_is_empty() {
    assert_eq!(capabilities_of("1.0"), Ok(BTreeSet::new()));
}

#[test]
fn capabilities_of_2_0_has_both() {
    let expected: BTreeSet<String> = [LEASE_7S, COPY_COMMANDS]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(capabilities_of("2.0"), Ok(expected.clone()));
    assert_eq!(capabilities_of("2.0.0"), Ok(expected));
}

#[test]
fn capabilities_of_malformed_is_a_typed_error() {
    for bad in ["", "garbage", "2.x", "+2.0", "2..0"] {
        assert_eq!(
            capabilities_of(bad),
            Err(UnknownVersion::Malformed(bad.to_string())),
            "{bad:?}"
        );
    }
}

#[test]
fn capabilities_of_unknown_version_is_a_typed_error() {
    for unknown in ["0.9", "1.5", "3.0", "10.0"] {
        assert_eq!(
            capabilities_of(unknown),
            Err(UnknownVersion::Unknown(unknown.to_string())),
            "{unknown:?}"
        );
    }
}

#[test]
fn unknown_version_messages() {
    assert_eq!(
        UnknownVersion::Malformed("x".into()).to_string(),
        "version \"x\" is malformed: expected dot-separated numbers such as \"2.0\""
    );
    assert_eq!(
        UnknownVersion::Unknown("3.0".into()).to_string(),
        "version 3.0 is not known to this binary (it knows 1.0 to 2.0)"
    );
}

#[test]
fn current_version_is_the_newest_known_and_its_advert_has_everything() {
    assert_eq!(CURRENT_VERSION, "2.0");
    assert_eq!(KNOWN_VERSIONS.last(), Some(&CURRENT_VERSION));
    for pair in KNOWN_VERSIONS.windows(2) {
        assert_eq!(version_cmp(pair[0], pair[1]), Some(Ordering::Less));
    }
    let advert = Advert::current();
    assert_eq!(advert.version, CURRENT_VERSION);
    assert_eq!(Ok(advert.capabilities), capabilities_of(CURRENT_VERSION));
}

#[test]
fn registry_entries() {
    assert_eq!(
        REGISTRY.iter().map(|c| c.name).collect::<Vec<_>>(),
        vec![LEASE_7S, COPY_COMMANDS]
    );
    let lease = capability(LEASE_7S).expect("lease_7s is registered");
    assert_eq!(lease.since, "2.0");
    assert!(lease.needs_chunks);
    assert!(lease.changes.contains("14 s to 7 s"));
    assert!(lease.changes.contains("every 1 s instead of 2 s"));
    let copy = capability(COPY_COMMANDS).expect("copy_commands is registered");
    assert_eq!(copy.since, "2.0");
    assert!(!copy.needs_chunks);
    assert!(copy
        .changes
        .contains("IssueCopy / AdoptCopies / FinishCopy"));
    assert_eq!(capability("no_such_thing"), None);
    for c in REGISTRY {
        assert!(
            KNOWN_VERSIONS.contains(&c.since),
            "{} since {}",
            c.name,
            c.since
        );
    }
}
