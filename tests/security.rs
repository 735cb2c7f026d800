//! Certificates and (as issue 10 lands) the refusals of mutual TLS, through
//! the `cairn` binary as an operator runs it.

use std::path::Path;
use std::process::Command;

fn cairn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[test]
fn an_operator_creates_a_ca_and_issues_identities_that_are_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, m1, alice) = (
        tmp.path().join("ca"),
        tmp.path().join("member-1"),
        tmp.path().join("alice"),
    );
    let (ok, out, err) = cairn(&["cert", "init", "--dir", p(&ca)]);
    assert!(ok, "{err}");
    assert!(out.contains("keep it offline"), "{out}");
    for (role, dir) in [("member:1", &m1), ("admin:alice", &alice)] {
        let (ok, _, err) = cairn(&[
            "cert",
            "issue",
            "--ca",
            p(&ca),
            "--role",
            role,
            "--out",
            p(dir),
        ]);
        assert!(ok, "{err}");
        let (ok, out, err) = cairn(&["--json", "cert", "show", p(dir)]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["role"], role);
        assert_eq!(v["check"], "valid: chains to ca.pem");
    }
    // Issuing again into the same directory changes nothing.
    let key = std::fs::read(m1.join("key.pem")).unwrap();
    let (ok, _, err) = cairn(&[
        "cert",
        "issue",
        "--ca",
        p(&ca),
        "--role",
        "member:1",
        "--out",
        p(&m1),
    ]);
    assert!(!ok);
    assert!(err.contains("exists already"), "{err}");
    assert_eq!(std::fs::read(m1.join("key.pem")).unwrap(), key);
    // So does a second init.
    let (ok, _, err) = cairn(&["cert", "init", "--dir", p(&ca)]);
    assert!(!ok && err.contains("exists already"), "{err}");
    // A role that is not one is refused before anything is written.
    let (ok, _, err) = cairn(&[
        "cert",
        "issue",
        "--ca",
        p(&ca),
        "--role",
        "root:1",
        "--out",
        p(&tmp.path().join("x")),
    ]);
    assert!(!ok && err.contains("is not a role"), "{err}");
    assert!(!tmp.path().join("x").exists());
    // An identity of another CA does not chain to this one's ca.pem.
    let other = tmp.path().join("other-ca");
    assert!(cairn(&["cert", "init", "--dir", p(&other)]).0);
    let mixed = tmp.path().join("mixed");
    assert!(
        cairn(&[
            "cert",
            "issue",
            "--ca",
            p(&other),
            "--role",
            "reader:r",
            "--out",
            p(&mixed)
        ])
        .0
    );
    std::fs::copy(ca.join("ca.pem"), mixed.join("ca.pem")).unwrap();
    let (ok, out, err) = cairn(&["--json", "cert", "show", p(&mixed)]);
    assert!(ok, "{err}");
    assert!(out.contains("not issued by this cluster's CA"), "{out}");
}
