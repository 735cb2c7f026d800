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

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use serde_json::{json, Value};
use tonic::Code;

use crate::admin_port::AdminPeer;
use crate::client::{ClientError, MetaClient};
use crate::tls::{Auth, Role};
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

/// What a console may show and do for one request, from how the member
/// runs and who asks (docs/console.md, "Who may act").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads, and actions after the page's confirmation: `--insecure`, or
    /// HTTPS with an `admin:` certificate.
    Open,
    /// Reads only, and why not more.
    ReadOnly(String),
    /// Nothing (the cluster map is not for whoever reaches the port), and why.
    Closed(String),
}

const USE_ADMIN_CERT: &str = "open the console over https:// with an admin: certificate of the cluster's CA to act, or use `cairn sched pause|resume` / `cairn upgrade hold|release` with an admin identity";

/// `member_tls`: the member runs TLS; `admin`: its admin address; `peer`:
/// `None` for plain HTTP, else what the client's certificate proved.
pub fn access(member_tls: bool, admin: SocketAddr, peer: Option<&Auth>) -> Access {
    if !member_tls {
        return Access::Open;
    }
    match peer {
        Some(Auth::Verified(Role::Admin(_))) => Access::Open,
        Some(Auth::Verified(Role::Reader(name))) => Access::ReadOnly(format!(
            "reader:{name} may view; pausing schedulers and holding the upgrade need an admin: certificate"
        )),
        Some(Auth::Verified(other)) => Access::Closed(format!(
            "a {other} certificate does not open the console: use a reader: or admin: certificate (`cairn cert issue`)"
        )),
        Some(Auth::Refused(why)) => Access::Closed(why.clone()),
        Some(Auth::Insecure) => Access::Closed("no certificate was checked".into()),
        None if admin.ip().is_loopback() => Access::ReadOnly(format!(
            "read-only over plain HTTP on a TLS member (nobody proved who they are): {USE_ADMIN_CERT}"
        )),
        None => Access::Closed(format!(
            "no console over plain HTTP on {admin}: this member runs TLS, and anyone on the network could read the cluster map here. Open https://{admin}/ with a reader: or admin: certificate, or serve the admin port on loopback; /metrics is served over plain HTTP as before."
        )),
    }
}

#[derive(Clone)]
pub struct Console {
    pub node_id: u64,
    pub raft: Raft,
    /// The CLI's client, started at this member's own gRPC address.
    pub client: Arc<MetaClient>,
    pub timeline: Timeline,
    /// This member's proposer: actions on the leader go through it.
    pub proposer: crate::propose::Proposer,
    /// The member runs TLS (access then depends on who asks).
    pub tls: bool,
    /// Its admin address (plain HTTP is read-only on loopback only).
    pub admin: SocketAddr,
}

impl Console {
    pub fn new(
        node_id: u64,
        raft: Raft,
        mut client: MetaClient,
        timeline: Timeline,
        proposer: crate::propose::Proposer,
        tls: bool,
        admin: SocketAddr,
    ) -> Console {
        client.deadline = POLL_DEADLINE;
        Console {
            node_id,
            raft,
            client: Arc::new(client),
            timeline,
            proposer,
            tls,
            admin,
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
/// Serve it with `into_make_service_with_connect_info::<AdminPeer>()`
/// (`metrics::serve`): every `/api` request is let in or refused by
/// [`access`], from who asks.
pub fn router(console: Console) -> Router {
    let api = Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/cluster", get(cluster))
        .route("/api/read/{kind}", get(read))
        .route("/api/read/{kind}/{arg}", get(read_one))
        .route("/api/sched/status", get(sched_status))
        .route("/api/sched/explain/{pid}", get(sched_explain))
        .route("/api/upgrade/status", get(upgrade_status))
        .route("/api/sched/{action}/{which}", post(sched_action))
        .route("/api/upgrade/{action}", post(upgrade_action))
        .route_layer(middleware::from_fn_with_state(console.clone(), gate))
        .with_state(console);
    assets().merge(api)
}

/// Lets a request in with its [`Access`] (an extension the handlers read),
/// or refuses it with why.
async fn gate(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<AdminPeer>,
    mut req: Request,
    next: Next,
) -> Response {
    let a = access(c.tls, c.admin, peer.tls.as_ref());
    if let Access::Closed(why) = &a {
        tracing::debug!(peer = %peer.addr, "console refused: {why}");
        return refused(StatusCode::FORBIDDEN, why.clone());
    }
    req.extensions_mut().insert(Seen {
        access: a,
        who: match &peer.tls {
            Some(Auth::Verified(role)) => role.to_string(),
            _ => "anonymous (plain HTTP)".into(),
        },
    });
    next.run(req).await
}

/// What [`gate`] found for a request.
#[derive(Clone, Debug)]
struct Seen {
    access: Access,
    who: String,
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

async fn whoami(State(c): State<Console>, Extension(seen): Extension<Seen>) -> Response {
    let (allowed, why) = match &seen.access {
        Access::Open => (true, None),
        Access::ReadOnly(why) | Access::Closed(why) => (false, Some(why.clone())),
    };
    ok(json!({
        "mode": "cluster",
        // A member's console shows no chaos reports: `cairn-chaos serve` does.
        "chaos": false,
        "node_id": c.node_id,
        "version": cairn_capability::CURRENT_VERSION,
        "insecure": !c.tls,
        "you": seen.who,
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
fn may_act(seen: &Seen, headers: &HeaderMap) -> Option<Response> {
    if let Access::ReadOnly(why) | Access::Closed(why) = &seen.access {
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
    Extension(seen): Extension<Seen>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = may_act(&seen, &headers) {
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
    let cmd = cairn_state::Cmd::SetConfig {
        key: format!("{which}_paused"),
        value: pause.to_string(),
    };
    match write(&c, cmd).await {
        Ok(log_index) => {
            tracing::info!(%action, %which, who = %seen.who, log_index, "console: scheduler {action}");
            ok(json!({ "done": format!("{which} {action}d"), "log_index": log_index }))
        }
        Err(r) => r,
    }
}

/// Proposes an action's command. On the leader, through its own proposer:
/// the console has checked who asks (its gRPC client holds this member's
/// certificate, which may not write such commands). Elsewhere through the
/// client, which follows the leader, when no certificate is checked
/// (`--insecure`); under TLS the page is sent to the leader's console.
async fn write(c: &Console, cmd: cairn_state::Cmd) -> Result<u64, Response> {
    let leader = c.raft.metrics().borrow().current_leader;
    let proposed = if leader == Some(c.node_id) {
        c.proposer.submit(vec![cmd]).await
    } else if !c.tls {
        Ok(c.client.propose(&[cmd]).await.map_err(|e| failed(&e))?)
    } else {
        let who = leader.map_or("no leader right now".to_string(), |l| format!("member {l}"));
        return Err(refused(
            StatusCode::CONFLICT,
            format!(
                "member {} is not the leader ({who}): act from the leader's console",
                c.node_id
            ),
        ));
    };
    match proposed {
        Ok((mut results, log_index)) => match results.pop() {
            Some(Err(e)) => Err(refused(StatusCode::CONFLICT, e.to_string())),
            _ => Ok(log_index),
        },
        Err(status) => Err(failed(&ClientError::Rejected {
            code: status.code(),
            message: status.message().to_string(),
        })),
    }
}

/// `cairn upgrade hold|release`.
async fn upgrade_action(
    State(c): State<Console>,
    Path(action): Path<String>,
    Extension(seen): Extension<Seen>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = may_act(&seen, &headers) {
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
    match write(&c, cairn_state::Cmd::HoldUpgrade { hold }).await {
        Ok(log_index) => {
            tracing::info!(%action, who = %seen.who, log_index, "console: upgrade {action}");
            let done = if hold {
                "upgrade held"
            } else {
                "upgrade released"
            };
            ok(json!({ "done": done, "log_index": log_index }))
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_view_and_act() {
        let lo: SocketAddr = "127.0.0.1:9400".parse().expect("addr");
        let lo6: SocketAddr = "[::1]:9400".parse().expect("addr");
        let lan: SocketAddr = "10.0.0.5:9400".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:9400".parse().expect("addr");
        let admin = Auth::Verified(Role::Admin("ops".into()));
        let reader = Auth::Verified(Role::Reader("ro".into()));
        let member = Auth::Verified(Role::Member(2));
        let chunk = Auth::Verified(Role::Chunk(7));
        let expired = Auth::Refused("client certificate refused: expired".into());
        // --insecure: open, whoever asks.
        for addr in [lo, lan] {
            assert_eq!(access(false, addr, None), Access::Open);
        }
        // TLS, HTTPS: the certificate's role, wherever the port is.
        for addr in [lo, lan, any] {
            assert_eq!(access(true, addr, Some(&admin)), Access::Open);
            assert!(
                matches!(access(true, addr, Some(&reader)), Access::ReadOnly(w) if w.contains("reader:ro"))
            );
            for other in [&member, &chunk] {
                assert!(
                    matches!(access(true, addr, Some(other)), Access::Closed(w) if w.contains("reader: or admin:"))
                );
            }
            assert!(
                matches!(access(true, addr, Some(&expired)), Access::Closed(w) if w.contains("expired"))
            );
        }
        // TLS, plain HTTP: read-only on loopback, closed elsewhere.
        assert!(matches!(access(true, lo, None), Access::ReadOnly(w) if w.contains("https://")));
        assert!(matches!(access(true, lo6, None), Access::ReadOnly(_)));
        for addr in [lan, any] {
            assert!(
                matches!(access(true, addr, None), Access::Closed(w) if w.contains("https://")),
                "{addr}"
            );
        }
    }
}
