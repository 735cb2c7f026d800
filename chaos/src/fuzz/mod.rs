//! Hostile input on stable Rust (docs/security.md, "Fuzzing"): seeded,
//! property-based fuzz targets for every decoder of bytes from a disk or a
//! peer (`decoders`) and for every RPC handler of a live member (`rpc`).
//!
//! A target draws its cases from a deterministic generator (`--seed`):
//! arbitrary bytes, valid inputs mutated, arbitrary well-typed messages.
//! It passes when no case panics, none hangs (a decoder case runs under a
//! watchdog, an RPC under a deadline), and the member still serves at the
//! end. A failure names the target, the seed and the case, which replay it.

pub mod decoders;
pub mod mutate;
pub mod rpc;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// A decoder case slower than this is a hang.
pub const DECODER_DEADLINE: Duration = Duration::from_secs(5);
/// Every this many RPC cases, the member must still serve.
const CHECK_EVERY: u64 = 500;

/// What one target did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub target: String,
    pub seed: u64,
    pub cases: u64,
    /// Cases decoded / answered OK; the rest were refused with an error.
    pub accepted: u64,
    pub panics: u64,
    pub hangs: u64,
    /// RPC target: how many calls got each status (OK included).
    pub answers: std::collections::BTreeMap<String, u64>,
    /// RPC target: the first message of each status.
    pub examples: std::collections::BTreeMap<String, String>,
    pub secs: f64,
    /// The first failure: what and which case.
    pub failure: Option<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Panics anywhere in this process since the hook went in (a panic in a
/// member's handler task does not reach the fuzzer's call otherwise).
fn panics() -> &'static (AtomicU64, Mutex<Option<String>>) {
    static P: OnceLock<(AtomicU64, Mutex<Option<String>>)> = OnceLock::new();
    P.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let (n, first) = panics();
            n.fetch_add(1, Ordering::SeqCst);
            let mut first = first.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some(info.to_string());
            }
            drop(first);
            previous(info);
        }));
        (AtomicU64::new(0), Mutex::new(None))
    })
}

fn panic_count() -> u64 {
    panics().0.load(Ordering::SeqCst)
}

fn first_panic() -> String {
    panics()
        .1
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Names of every target.
pub fn targets() -> Vec<String> {
    let mut v: Vec<String> = decoders::decoders()
        .iter()
        .map(|d| d.name.to_string())
        .collect();
    v.push("rpc".into());
    v
}

/// Runs decoder target `d` for `cases` cases from `seed`.
pub fn run_decoder(d: &decoders::Decoder, cases: u64, seed: u64) -> Outcome {
    panics();
    let start = Instant::now();
    // The watchdog: the case in progress and since when.
    let progress = Arc::new((AtomicU64::new(u64::MAX), AtomicU64::new(0)));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let (progress, done, name) = (progress.clone(), done.clone(), d.name);
        std::thread::spawn(move || {
            let epoch = Instant::now();
            while !done.load(Ordering::SeqCst) {
                let case = progress.0.load(Ordering::SeqCst);
                let since = progress.1.load(Ordering::SeqCst);
                let now = epoch.elapsed().as_millis() as u64;
                if case != u64::MAX
                    && now.saturating_sub(since) > DECODER_DEADLINE.as_millis() as u64
                {
                    // A decoder that never returns cannot be stopped from
                    // here: say which case, and end the process.
                    eprintln!(
                        "fuzz: target {name} case {case} (seed {seed}) ran over {DECODER_DEADLINE:?}: a hang"
                    );
                    std::process::exit(2);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let epoch = Instant::now();
    let mut rng = Rng::new(seed);
    // Counted here, not by the process-wide hook: a decoder case runs on
    // this thread, and other threads may panic meanwhile (other tests).
    let (mut accepted, mut panics, mut failure) = (0, 0, None);
    for case in 0..cases {
        // Each case from its own generator: `--seed S --cases N` replays.
        let mut case_rng = rng.fork();
        let input = decoders::input(&mut case_rng, d);
        progress
            .1
            .store(epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
        progress.0.store(case, Ordering::SeqCst);
        let run = d.run;
        match std::panic::catch_unwind(AssertUnwindSafe(|| run(&input))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(payload) => {
                panics += 1;
                let why = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failure.get_or_insert(format!(
                    "case {case}: panicked ({why}) on {} bytes {:02x?}",
                    input.len(),
                    &input[..input.len().min(64)]
                ));
            }
        }
        progress.0.store(u64::MAX, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    Outcome {
        target: d.name.to_string(),
        seed,
        cases,
        accepted,
        panics,
        hangs: 0,
        answers: Default::default(),
        examples: Default::default(),
        secs: start.elapsed().as_secs_f64(),
        failure,
    }
}

/// Runs the RPC target: `cases` calls against a live member.
pub async fn run_rpc(cases: u64, seed: u64) -> anyhow::Result<Outcome> {
    panics();
    let start = Instant::now();
    let target = rpc::Target::start().await?;
    let before = panic_count();
    let mut rng = Rng::new(seed);
    let (mut accepted, mut hangs, mut failure) = (0, 0, None);
    let mut answers = std::collections::BTreeMap::<String, u64>::new();
    let mut examples = std::collections::BTreeMap::<String, String>::new();
    for case in 0..cases {
        let mut case_rng = rng.fork();
        match target.case(&mut case_rng).await {
            Ok((code, message)) => {
                accepted += u64::from(code == tonic::Code::Ok);
                *answers.entry(format!("{code:?}")).or_default() += 1;
                examples.entry(format!("{code:?}")).or_insert(message);
            }
            Err(path) => {
                hangs += 1;
                failure.get_or_insert(format!(
                    "case {case}: {path} did not answer within {:?}",
                    rpc::CALL_DEADLINE
                ));
            }
        }
        if panic_count() > before {
            failure.get_or_insert(format!("case {case}: panicked: {}", first_panic()));
            break;
        }
        if (case + 1) % CHECK_EVERY == 0 || case + 1 == cases {
            if let Err(e) = target.serving().await {
                failure.get_or_insert(format!("after case {case}: {e}"));
                break;
            }
        }
    }
    target.stop().await;
    Ok(Outcome {
        target: "rpc".into(),
        seed,
        cases,
        accepted,
        panics: panic_count() - before,
        hangs,
        answers,
        examples,
        secs: start.elapsed().as_secs_f64(),
        failure,
    })
}

/// Runs the named targets (every one for "all").
pub async fn run(names: &[String], cases: u64, seed: u64) -> anyhow::Result<Vec<Outcome>> {
    let all = targets();
    let wanted: Vec<String> = if names.iter().any(|n| n == "all") || names.is_empty() {
        all.clone()
    } else {
        for n in names {
            if !all.contains(n) {
                anyhow::bail!("unknown target {n:?}: one of {}", all.join(", "));
            }
        }
        names.to_vec()
    };
    let mut out = vec![];
    for d in decoders::decoders() {
        if wanted.iter().any(|w| w == d.name) {
            out.push(run_decoder(&d, cases, seed));
        }
    }
    if wanted.iter().any(|w| w == "rpc") {
        out.push(run_rpc(cases, seed).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI's run: 10,000 cases of every decoder target (the RPC target's
    /// 10,000 run in tests/chaos.rs, against a live member).
    #[test]
    fn every_decoder_survives_10000_hostile_inputs() {
        for d in decoders::decoders() {
            let o = run_decoder(&d, 10_000, 1);
            assert!(o.passed(), "{o:?}");
            assert_eq!(o.panics, 0, "{o:?}");
            // The seeds decode: the generator reaches past the first check.
            assert!(o.accepted > 0, "{}: nothing ever decoded: {o:?}", d.name);
            assert!(
                o.accepted < o.cases,
                "{}: nothing was ever refused: {o:?}",
                d.name
            );
        }
    }

    #[test]
    fn a_decoder_that_panics_is_caught_with_its_case() {
        let d = decoders::Decoder {
            name: "broken",
            seeds: vec![vec![1, 2, 3]],
            max_len: 8,
            run: |b| {
                assert!(b.len() != 5, "a deliberately broken decoder");
                true
            },
        };
        let o = run_decoder(&d, 2_000, 3);
        assert!(!o.passed());
        assert!(o.panics > 0);
        assert!(
            o.failure
                .as_deref()
                .unwrap_or("")
                .contains("deliberately broken"),
            "{o:?}"
        );
    }
}
