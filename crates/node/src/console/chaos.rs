//! The console's "Chaos" page: the reports `cairn-chaos` leaves in a
//! directory (a campaign's own directory, or a directory of them, such as
//! a soak's), served read-only.
//!
//! This crate does not know the checker's types (`cairn-chaos` depends on
//! it, not the reverse): it passes `campaign.json` and `verdict.json` on as
//! JSON, which the checker keeps backward compatible (fields are only
//! added), and the page reads the fields it knows.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::{ok, refused};

/// The files of a campaign's directory the page reads (names as
/// `cairn_chaos::history` writes them).
const CAMPAIGN: &str = "campaign.json";
const VERDICT: &str = "verdict.json";
const TIMELINE: &str = "timeline.svg";

/// The name the page uses for `dir` itself when it holds a campaign. Not
/// `.`, which a browser removes from a URL; a child's name never starts
/// with a dot, so it cannot collide.
const SELF: &str = ".this";

/// A run larger than this is not served (a verdict caps its details; a
/// file this large is not one).
const MAX_FILE: u64 = 16 << 20;

#[derive(Clone)]
pub struct Reports {
    pub dir: PathBuf,
}

/// `/api/chaos/runs`, `/api/chaos/run/{name}`, `/api/chaos/run/{name}/timeline.svg`.
pub fn router(reports: Reports) -> Router {
    Router::new()
        .route("/api/chaos/runs", get(runs))
        .route("/api/chaos/run/{name}", get(run))
        .route("/api/chaos/run/{name}/timeline.svg", get(timeline))
        .with_state(reports)
}

/// A campaign's directory, by the name the page has from `runs`: [`SELF`] for
/// the served directory itself, or one of its direct children. Anything
/// else (a path, `..`) is refused, so the page reaches nothing outside.
fn run_dir(root: &Path, name: &str) -> Option<PathBuf> {
    if name == SELF {
        return Some(root.to_path_buf());
    }
    let plain = !name.is_empty()
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.starts_with('.');
    plain.then(|| root.join(name)).filter(|d| d.is_dir())
}

fn is_run(dir: &Path) -> bool {
    dir.join(CAMPAIGN).is_file() || dir.join(VERDICT).is_file()
}

fn read_json(path: &Path) -> Result<Option<Value>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{}: {} bytes, more than the {MAX_FILE} a report may have",
            path.display(),
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

fn modified_ms(dir: &Path) -> Option<u64> {
    let m = std::fs::metadata(dir.join(VERDICT))
        .or_else(|_| std::fs::metadata(dir.join(CAMPAIGN)))
        .ok()?;
    let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(t.as_millis()).ok()
}

/// One row of the run list: enough to see which runs failed.
fn summary(name: &str, dir: &Path) -> Value {
    let campaign = read_json(&dir.join(CAMPAIGN));
    let verdict = read_json(&dir.join(VERDICT));
    let (valid, failed_checks, error) = match &verdict {
        Ok(Some(v)) => {
            let failed: Vec<Value> = v["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["status"] == "fail")
                .map(|c| c["name"].clone())
                .collect();
            (v["valid"].clone(), failed, None)
        }
        Ok(None) => (Value::Null, vec![], None),
        Err(e) => (Value::Null, vec![], Some(e.clone())),
    };
    let c = campaign.as_ref().ok().and_then(|c| c.as_ref());
    json!({
        "name": name,
        "mode": c.map(|c| c["mode"].clone()),
        "seed": c.map(|c| c["seed"].clone()),
        "nodes": c.map(|c| c["nodes"].clone()),
        "nemeses": c.map(|c| c["nemeses"].clone()),
        "duration_ms": c.map(|c| c["duration_ms"].clone()),
        "bug": c.map(|c| c["bug"].clone()),
        "checked": verdict.as_ref().is_ok_and(|v| v.is_some()),
        "valid": valid,
        "failed_checks": failed_checks,
        "modified_ms": modified_ms(dir),
        "error": error.or_else(|| campaign.err()),
    })
}

async fn runs(State(r): State<Reports>) -> Response {
    let dir = r.dir.clone();
    let listed = tokio::task::spawn_blocking(move || list(&dir)).await;
    match listed {
        Ok(Ok(v)) => ok(v),
        Ok(Err(e)) => refused(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing runs: {e}"),
        ),
    }
}

/// The served directory's runs, newest first.
fn list(root: &Path) -> Result<Value, String> {
    let mut rows = Vec::new();
    if is_run(root) {
        rows.push(summary(SELF, root));
    }
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(dir) = run_dir(root, &name) {
            if is_run(&dir) {
                rows.push(summary(&name, &dir));
            }
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r["modified_ms"].as_u64().unwrap_or(0)));
    Ok(json!({ "dir": root.display().to_string(), "runs": rows }))
}

async fn run(State(r): State<Reports>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(dir) = run_dir(&r.dir, &name).filter(|d| is_run(d)) else {
        return refused(StatusCode::NOT_FOUND, format!("no campaign {name:?} here"));
    };
    // A file that cannot be read is named in `errors`, the rest is shown.
    let read = tokio::task::spawn_blocking(move || {
        let mut errors = Vec::new();
        let mut file = |f: &str| {
            read_json(&dir.join(f)).unwrap_or_else(|e| {
                errors.push(e);
                None
            })
        };
        let (campaign, verdict) = (file(CAMPAIGN), file(VERDICT));
        json!({
            "name": name,
            "campaign": campaign,
            "verdict": verdict,
            "timeline": dir.join(TIMELINE).is_file(),
            "errors": errors,
        })
    })
    .await;
    match read {
        Ok(v) => ok(v),
        Err(e) => refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the run: {e}"),
        ),
    }
}

async fn timeline(State(r): State<Reports>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(path) = run_dir(&r.dir, &name).map(|d| d.join(TIMELINE)) else {
        return refused(StatusCode::NOT_FOUND, format!("no campaign {name:?} here"));
    };
    match tokio::fs::read(&path).await {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                // The SVG is drawn from a run's text (member logs, error
                // messages): it is shown as an image and may run nothing.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            svg,
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => refused(
            StatusCode::NOT_FOUND,
            format!("{name}: no {TIMELINE} (run `cairn-chaos check` on it)"),
        ),
        Err(e) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}: {e}", path.display()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_served_directory_and_its_children_are_reachable() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("c7")).expect("mkdir");
        assert_eq!(run_dir(root.path(), SELF), Some(root.path().to_path_buf()));
        assert_eq!(run_dir(root.path(), "c7"), Some(root.path().join("c7")));
        for bad in [
            ".", "..", "../c7", "c7/..", "/etc", "", ".hidden", "missing", "c7\\x",
        ] {
            assert_eq!(run_dir(root.path(), bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn runs_are_listed_with_their_verdict_and_broken_files_named() {
        let root = tempfile::tempdir().expect("tempdir");
        let good = root.path().join("good");
        let bad = root.path().join("bad");
        let broken = root.path().join("broken");
        let other = root.path().join("not-a-run");
        for d in [&good, &bad, &broken, &other] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let campaign = r#"{"mode":"run","seed":7,"nodes":3,"chunks":4,"nemeses":["kill"],"duration_ms":1000,"lease_ms":7000}"#;
        std::fs::write(good.join(CAMPAIGN), campaign).expect("write");
        std::fs::write(
            good.join(VERDICT),
            r#"{"valid":true,"checks":[{"name":"linearizable","status":"pass","details":[]}]}"#,
        )
        .expect("write");
        std::fs::write(bad.join(CAMPAIGN), campaign).expect("write");
        std::fs::write(bad.join(VERDICT), r#"{"valid":false,"checks":[{"name":"no lost writes","status":"fail","details":["1 violation"]},{"name":"linearizable","status":"pass","details":[]}]}"#).expect("write");
        std::fs::write(broken.join(VERDICT), "{not json").expect("write");
        std::fs::write(other.join("notes.txt"), "x").expect("write");

        let v = list(root.path()).expect("lists");
        let runs = v["runs"].as_array().expect("runs");
        let by = |n: &str| runs.iter().find(|r| r["name"] == n).cloned();
        assert_eq!(runs.len(), 3, "{v}");
        assert!(by("not-a-run").is_none());
        let good = by("good").expect("good listed");
        assert_eq!(good["valid"], true);
        assert_eq!(good["seed"], 7);
        assert_eq!(good["failed_checks"], json!([]));
        let bad = by("bad").expect("bad listed");
        assert_eq!(bad["valid"], false);
        assert_eq!(bad["failed_checks"], json!(["no lost writes"]));
        let broken = by("broken").expect("broken listed");
        assert!(
            broken["error"]
                .as_str()
                .is_some_and(|e| e.contains("not JSON")),
            "{broken}"
        );
    }
}
