//! Smoke test of `cairn bench compare-etcd` and `cairn bench failover`: the
//! built binary starts a real 3-member etcd and a 3-member Cairn on
//! 127.0.0.1 with short settings; the `--json` output must carry figures
//! for both systems, and the benches must leave nothing behind (no data,
//! no member process).
//!
//! The two tests run one at a time ([`SERIAL`]): each starts a 3-member
//! Cairn with simulated chunks and a 3-member etcd, and the failover test
//! asserts that no chunk session expires, which a concurrent bench starving
//! the CPU could break.
//!
//! Needs etcd (Debian package etcd-server): scripts/setup.sh installs it,
//! and CI runs the set-up, so a missing etcd fails the test.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// Held by each test for its whole run: the benches never overlap.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one still runs alone.
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn etcd_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()))
}

fn require_etcd() {
    assert!(
        etcd_on_path(),
        "etcd is not on PATH: run scripts/setup.sh (it installs the etcd-server package); CI installs it the same way"
    );
}

/// Runs `cairn <args> --json --dir <dir>` with a deadline; returns its JSON.
fn run_bench(args: &[&str], dir: &Path, within: Duration) -> Value {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--json")
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cairn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for cairn") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        None => panic!("cairn {args:?} did not finish within {within:?}\nstderr:\n{err}"),
        Some(s) => assert!(s.success(), "cairn {args:?} failed ({s})\nstderr:\n{err}"),
    }
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("cairn {args:?}: not JSON ({e}):\n{out}\nstderr:\n{err}"))
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {v}"))
}

/// Live processes (zombies count as gone: this container's PID 1 does not
/// reap) whose command line mentions `dir`: (pid, command line).
fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = vec![];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // Gone meanwhile: skip.
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).into_owned();
        // `dir` itself or a path under it, as any argument or part of one
        // (e.g. `--data-dir=<dir>/...`).
        let mentions = cmdline
            .split('\0')
            .any(|a| a.ends_with(&needle) || a.contains(&format!("{needle}/")));
        if !mentions {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s == "Z"))
            })
            .unwrap_or(true);
        if !zombie {
            found.push((pid, cmdline.trim_end_matches('\0').replace('\0', " ")));
        }
    }
    found
}

/// The bench removed everything it created under `dir`, and no process it
/// started there survives (a killed child may take a moment to go).
fn assert_cleaned_up(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("read the bench dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the bench left {left:?} behind");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive = processes_under(dir);
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bench left processes running: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn compare_etcd_prints_figures_for_both_systems() {
    let _serial = serial();
    require_etcd();
    let dir = tempfile::tempdir().expect("temp dir");
    let v = run_bench(
        &[
            "bench",
            "compare-etcd",
            "--clients",
            "1,4",
            "--duration",
            "1s",
            "--warmup",
            "300ms",
        ],
        dir.path(),
        Duration::from_secs(90),
    );
    assert!(f(&v, "payload_bytes") > 0.0, "{v}");
    for system in ["cairn", "etcd"] {
        let points = v["systems"][system]["points"]
            .as_array()
            .unwrap_or_else(|| panic!("no {system} points in {v}"));
        let clients: Vec<u64> = points
            .iter()
            .filter_map(|p| p["clients"].as_u64())
            .collect();
        assert_eq!(clients, [1, 4], "{system}: {v}");
        for p in points {
            assert!(f(p, "writes") > 0.0, "{system}: no writes: {p}");
            assert!(f(p, "writes_per_s") > 0.0, "{system}: {p}");
            let (p50, p99, p999) = (f(p, "p50_ms"), f(p, "p99_ms"), f(p, "p999_ms"));
            assert!(
                0.0 < p50 && p50 <= p99 && p99 <= p999,
                "{system}: latencies out of order: {p}"
            );
        }
    }
    let ratios = v["ratios"].as_array().expect("ratios");
    assert_eq!(ratios.len(), 2, "{v}");
    for r in ratios {
        assert!(f(r, "writes_per_s") > 0.0 && f(r, "p99") > 0.0, "{r}");
    }
    assert_cleaned_up(dir.path());
}

#[test]
fn failover_times_both_systems_without_session_expiries() {
    let _serial = serial();
    require_etcd();
    let dir = tempfile::tempdir().expect("temp dir");
    let v = run_bench(
        &[
            "bench",
            "failover",
            "--kills",
            "2",
            "--clients",
            "4",
            "--chunks",
            "4",
            "--warmup",
            "300ms",
            "--settle",
            "200ms",
            "--max-failover",
            "20s",
        ],
        dir.path(),
        Duration::from_secs(120),
    );
    for system in ["cairn", "etcd"] {
        let s = &v["systems"][system];
        let times = s["failover_ms"]
            .as_array()
            .unwrap_or_else(|| panic!("no {system} failover times in {v}"));
        assert_eq!(times.len(), 2, "{system}: a kill without an ack: {s}");
        for t in times {
            assert!(t.as_f64().is_some_and(|t| t > 0.0), "{system}: {s}");
        }
        assert_eq!(s["no_ack"].as_u64(), Some(0), "{system}: {s}");
        let (min, median, p99, max) = (
            f(s, "min_ms"),
            f(s, "median_ms"),
            f(s, "p99_ms"),
            f(s, "max_ms"),
        );
        assert!(
            0.0 < min && min <= median && median <= p99 && p99 <= max,
            "{system}: {s}"
        );
        assert!(f(s, "writes") > 0.0, "{system}: {s}");
    }
    assert_eq!(
        v["systems"]["cairn"]["session_expiries"].as_u64(),
        Some(0),
        "Cairn chunk sessions expired during the failovers: {v}"
    );
    assert!(v["systems"]["etcd"]["session_expiries"].is_null(), "{v}");
    assert_cleaned_up(dir.path());
}
