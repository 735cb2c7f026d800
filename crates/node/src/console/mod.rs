//! The web console (docs/console.md): one page on the admin port, beside
//! `/metrics`, and the JSON it polls.
//!
//! Every JSON endpoint is a CLI command's RPC, made through the CLI's own
//! client (`MetaClient`, which follows the leader) and turned into JSON by
//! the CLI's own view functions (`views`, `upgrade::status`), so the console
//! and the CLI cannot disagree. The page, its script and its style are
//! compiled into the binary: no CDN, no build step.

pub mod chaos;
pub mod timeline;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::{json, Value};
use tonic::Code;

use crate::client::{ClientError, MetaClient};
use crate::types::{pb, Raft};
use timeline::Timeline;

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// The header the page sends with every action. A browser sends a custom
/// header across origins only after a CORS preflight, which this server
/// never grants: another site's page cannot act through a visitor's
/// browser.
pub const CONFIRM_HEADER: &str = "x-cairn-confirm";

/// How long one poll may wait for the cluster (a console must not hang on
/// an election; the next poll retries).
const POLL_DEADLINE: Duration = Duration::from_secs(3);

/// Whether this console may act (pause / resume, hold / release).
#[derive(Clone, Debug)]
pub enum Actions {
    Allowed,
    /// Why not, shown on the page and in the refusal.
    Refused(String),
}

/// What a member's console may show and do, from how the member runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// `--insecure`: reads, and actions after the page's confirmation.
    Open,
    /// TLS, admin port on loopback: reads only (reached on the host or
    /// through a tunnel; the plain-HTTP port cannot tell who asks).
    ReadOnly(String),
    /// TLS, admin port on another address: no console (the cluster map is
    /// not for whoever reaches a plain-HTTP port); `/metrics` stays.
    Closed(String),
}

pub fn access(tls: bool, admin: SocketAddr) -> Access {
    if !tls {
        return Access::Open;
    }
    if admin.ip().is_loopback() {
        return Access::ReadOnly(
            "the console is read-only on a TLS member: this port is plain HTTP, and actions need an admin certificate; use `cairn sched pause|resume` or `cairn upgrade hold|release` with an admin identity".into(),
        );
    }
    Access::Closed(format!(
        "no console on {admin}: this member runs TLS and its admin port is plain HTTP on a non-loopback address, where anyone could read the cluster map. Serve it on loopback (--metrics-addr 127.0.0.1:PORT) and reach it through an SSH tunnel; /metrics is served here as before."
    ))
}

/// The console's routes on a member whose console is [`Access::Closed`]:
/// each answers 403 with why, so an operator who opens the port learns
/// what to do instead of seeing a 404.
pub fn closed_router(why: String) -> Router {
    let page = why.clone();
    Router::new()
        .route(
            "/",
            get(move || {
                let page = page.clone();
                async move {
                    (
                        StatusCode::FORBIDDEN,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        page,
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/api/{*rest}",
            any(move || {
                let why = why.clone();
                async move { refused(StatusCode::FORBIDDEN, why) }
            }),
        )
}

#[derive(Clone)]
pub struct Console {
    pub node_id: u64,
    pub raft: Raft,
    /// The CLI's client, started at this member's own gRPC address.
    pub client: Arc<MetaClient>,
    pub timeline: Timeline,
    pub actions: Actions,
    pub insecure: bool,
}

impl Console {
    pub fn new(
        node_id: u64,
        raft: Raft,
        mut client: MetaClient,
        timeline: Timeline,
        actions: Actions,
        insecure: bool,
    ) -> Console {
        client.deadline = POLL_DEADLINE;
        Console {
            node_id,
            raft,
            client: Arc::new(client),
            timeline,
            actions,
            insecure,
        }
    }
}

/// The page, its script and its style.
fn assets<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route(
            "/console.css",
            get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
}

/// `cairn-chaos serve DIR`: the same page with only its Chaos view, over
/// the campaign reports in `dir`. Read-only; no cluster behind it.
pub fn reports_router(dir: PathBuf) -> Router {
    assets()
        .route(
            "/api/whoami",
            get(|| async {
                ok(json!({
                    "mode": "chaos",
                    "version": cairn_capability::CURRENT_VERSION,
                    "insecure": false,
                    "actions": false,
                    "actions_refused": "chaos reports are read-only",
                }))
            }),
        )
        .merge(chaos::router(chaos::Reports { dir }))
}

/// The console's routes, to merge into the admin port's router.
pub fn router(console: Console) -> Router {
    assets()
        .route("/api/whoami", get(whoami))
        .route("/api/cluster", get(cluster))
        .route("/api/read/{kind}", get(read))
        .route("/api/read/{kind}/{arg}", get(read_one))
        .route("/api/sched/status", get(sched_status))
        .route("/api/sched/explain/{pid}", get(sched_explain))
        .route("/api/upgrade/status", get(upgrade_status))
        .route("/api/sched/{action}/{which}", post(sched_action))
        .route("/api/upgrade/{action}", post(upgrade_action))
        .with_state(console)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn reply(code: StatusCode, v: Value) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        v.to_string(),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    reply(StatusCode::OK, v)
}

fn refused(code: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    reply(code, json!({ "error": message }))
}

/// A failed call as an HTTP answer: the CLI's message, and a status a
/// page (or a script) can act on.
fn failed(e: &ClientError) -> Response {
    let code = match e.code() {
        Some(Code::InvalidArgument | Code::OutOfRange) => StatusCode::BAD_REQUEST,
        Some(Code::NotFound) => StatusCode::NOT_FOUND,
        Some(Code::PermissionDenied | Code::Unauthenticated) => StatusCode::FORBIDDEN,
        Some(Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists) => {
            StatusCode::CONFLICT
        }
        Some(Code::ResourceExhausted) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    refused(code, e.to_string())
}

async fn whoami(State(c): State<Console>) -> Response {
    let (allowed, why) = match &c.actions {
        Actions::Allowed => (true, None),
        Actions::Refused(why) => (false, Some(why.clone())),
    };
    ok(json!({
        "mode": "cluster",
        // A member's console shows no chaos reports: `cairn-chaos serve` does.
        "chaos": false,
        "node_id": c.node_id,
        "version": cairn_capability::CURRENT_VERSION,
        "insecure": c.insecure,
        "actions": allowed,
        "actions_refused": why,
    }))
}

/// Every member's own status (`cairn cluster status`), this member's
/// leader history and commit rate.
async fn cluster(State(c): State<Console>) -> Response {
    let members: Vec<(u64, String)> = {
        let m = c.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    };
    let asks = members.iter().map(|(_, addr)| {
        let client = c.client.clone();
        async move {
            match tokio::time::timeout(POLL_DEADLINE, client.status_of(addr, true)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("{addr}: no answer within {POLL_DEADLINE:?}")),
            }
        }
    });
    let answers = futures::future::join_all(asks).await;
    let rows: Vec<(String, Result<pb::StatusResponse, String>)> = members
        .iter()
        .map(|(_, addr)| addr.clone())
        .zip(answers)
        .collect();
    ok(json!({
        "this": c.node_id,
        "members": crate::views::cluster_status(&rows),
        "leaders": c.timeline.leaders(),
        "commits": c.timeline.samples(),
    }))
}

/// Reads the page may make: the CLI's `Read` views, linearizable.
const READABLE: [&str; 4] = ["chunks", "topology", "config", "copies"];

async fn read(State(c): State<Console>, Path(kind): Path<String>) -> Response {
    if !READABLE.contains(&kind.as_str()) {
        return refused(
            StatusCode::NOT_FOUND,
            format!("no read {kind:?}: {}", READABLE.join(", ")),
        );
    }
    match c.client.read(&kind, false).await {
        Ok(v) => ok(v),
        Err(e) => failed(&e),
    }
}

async fn read_one(State(c): State<Console>, Path((kind, arg)): Path<(String, u64)>) -> Response {
    if kind != "extent" && kind != "volume" {
        return refused(
            StatusCode::NOT_FOUND,
            format!("no read {kind:?} <id>: extent <pid>, volume <id>"),
        );
    }
    match c.client.read(&format!("{kind} {arg}"), false).await {
        Ok(v) => ok(v),
        Err(e) => failed(&e),
    }
}

async fn sched_status(State(c): State<Console>) -> Response {
    match c.client.sched_status(pb::SchedStatusRequest {}).await {
        Ok(s) => ok(crate::views::sched_status(&s)),
        Err(e) => failed(&e),
    }
}

async fn sched_explain(State(c): State<Console>, Path(pid): Path<u64>) -> Response {
    match c
        .client
        .sched_explain(pb::SchedExplainRequest { pid })
        .await
    {
        Ok(r) => ok(json!({ "pid": pid, "text": r.text })),
        Err(e) => failed(&e),
    }
}

async fn upgrade_status(State(c): State<Console>) -> Response {
    match c.client.upgrade_status(pb::UpgradeStatusRequest {}).await {
        Ok(r) => match serde_json::from_str::<Value>(&r.json) {
            Ok(v) => ok(v),
            Err(e) => refused(
                StatusCode::BAD_GATEWAY,
                format!("the leader's upgrade status is not JSON: {e}"),
            ),
        },
        Err(e) => failed(&e),
    }
}

/// Why an action may not run from here, if so.
fn may_act(c: &Console, headers: &HeaderMap) -> Option<Response> {
    if let Actions::Refused(why) = &c.actions {
        return Some(refused(StatusCode::FORBIDDEN, why.clone()));
    }
    let confirmed = headers
        .get(CONFIRM_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "yes");
    if !confirmed {
        return Some(refused(
            StatusCode::BAD_REQUEST,
            format!(
                "an action needs the header {CONFIRM_HEADER}: yes (the console's confirmation)"
            ),
        ));
    }
    None
}

/// `cairn sched pause|resume recover|migrate`.
async fn sched_action(
    State(c): State<Console>,
    Path((action, which)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = may_act(&c, &headers) {
        return r;
    }
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return refused(
                StatusCode::NOT_FOUND,
                format!("no scheduler action {other:?}: pause, resume"),
            )
        }
    };
    if which != "recover" && which != "migrate" {
        return refused(
            StatusCode::NOT_FOUND,
            format!("no scheduler {which:?}: recover, migrate"),
        );
    }
    let req = pb::SetConfigRequest {
        key: format!("{which}_paused"),
        value: pause.to_string(),
    };
    match c.client.set_config(req).await {
        Ok(w) => {
            tracing::info!(%action, %which, log_index = w.log_index, "console: scheduler {action}");
            ok(json!({ "done": format!("{which} {action}d"), "log_index": w.log_index }))
        }
        Err(e) => failed(&e),
    }
}

/// `cairn upgrade hold|release`.
async fn upgrade_action(
    State(c): State<Console>,
    Path(action): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = may_act(&c, &headers) {
        return r;
    }
    let hold = match action.as_str() {
        "hold" => true,
        "release" => false,
        other => {
            return refused(
                StatusCode::NOT_FOUND,
                format!("no upgrade action {other:?}: hold, release"),
            )
        }
    };
    match c
        .client
        .propose(&[cairn_state::Cmd::HoldUpgrade { hold }])
        .await
    {
        Ok((mut results, log_index)) => match results.pop() {
            Some(Err(e)) => refused(StatusCode::CONFLICT, e.to_string()),
            _ => {
                tracing::info!(%action, log_index, "console: upgrade {action}");
                let done = if hold {
                    "upgrade held"
                } else {
                    "upgrade released"
                };
                ok(json!({ "done": done, "log_index": log_index }))
            }
        },
        Err(e) => failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_member_shows_its_console_only_on_loopback_and_never_acts() {
        let lo: SocketAddr = "127.0.0.1:9400".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:9400".parse().expect("addr");
        let lan: SocketAddr = "10.0.0.5:9400".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:9400".parse().expect("addr");
        assert_eq!(access(false, lan), Access::Open);
        assert_eq!(access(false, lo), Access::Open);
        assert!(matches!(access(true, lo), Access::ReadOnly(w) if w.contains("read-only")));
        assert!(matches!(access(true, lo6), Access::ReadOnly(_)));
        for addr in [lan, any] {
            assert!(
                matches!(access(true, addr), Access::Closed(w) if w.contains("loopback")),
                "{addr}"
            );
        }
    }
}
