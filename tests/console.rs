//! The web console (docs/console.md): its JSON endpoints against the CLI's
//! answers on a real quorum, its actions and their refusals, and a browser
//! (Debian's chromium through chromedriver) driving the page against
//! `cairn dev` while a chunk stops and its replicas are recovered.

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_node::fleet::Fleet;
use common::{http, http_get, wait_for, wait_until, Cluster, Dev};
use serde_json::{json, Value};

/// A console endpoint's JSON; `Err` names the status and body.
async fn api(addr: &str, path: &str) -> Result<Value, String> {
    let (status, _, body) = http_get(addr, path).await?;
    if !status.contains(" 200 ") {
        return Err(format!("GET {path}: {status}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: not JSON ({e}): {body}"))
}

/// A confirmed action; returns (status line, body).
async fn act(addr: &str, path: &str, confirm: bool) -> (String, String) {
    let headers: &[&str] = if confirm {
        &["x-cairn-confirm: yes"]
    } else {
        &[]
    };
    let (status, _, body) = http(addr, "POST", path, headers)
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (status, body)
}

fn cli_json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (ok, out, err) = cluster.cli(&args);
    assert!(ok, "cairn {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("cairn {args:?}: {e}: {out}"))
}

/// What must agree between the CLI's and the console's chunk list.
fn chunk_facts(v: &Value) -> BTreeMap<u64, (String, String, u64, String)> {
    v["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["cid"].as_u64().unwrap_or(0),
                (
                    c["alive"].as_str().unwrap_or("").to_string(),
                    c["state"].as_str().unwrap_or("").to_string(),
                    c["brick"].as_u64().unwrap_or(0),
                    c["hostname"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// The scheduler answers once every member and chunk has copy_commands.
async fn wait_copy_commands(cluster: &Cluster) {
    wait_for(
        cluster,
        Duration::from_secs(30),
        "copy_commands active",
        || {
            let (ok, out, err) = cluster.cli(&["upgrade", "status", "--json"]);
            async move {
                let v: Value =
                    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}{err}"))?;
                let active = v["active"].as_array().cloned().unwrap_or_default();
                if ok && active.contains(&json!("copy_commands")) {
                    Ok(())
                } else {
                    Err(v.to_string())
                }
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_serves_the_clis_reads_from_any_member_and_acts_only_when_confirmed() {
    let cluster = Cluster::start_insecure_with_metrics(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let fleet = Fleet::start(cluster.fleet_config(4))
        .await
        .expect("fleet starts");
    assert!(
        fleet.wait_registered(Duration::from_secs(30)).await,
        "every chunk registered\n{}",
        cluster.logs()
    );
    wait_copy_commands(&cluster).await;
    // A follower's console: it must answer with the leader's data too.
    let follower = cluster
        .members
        .iter()
        .find(|m| m.id != leader)
        .expect("a follower");
    let at = follower.metrics.clone();

    // The page and its assets, embedded.
    let (status, headers, body) = http_get(&at, "/").await.expect("GET /");
    assert!(status.contains(" 200 "), "{status}");
    assert!(headers.contains("content-type: text/html"), "{headers}");
    assert!(body.contains("/console.js"), "{body}");
    for (path, kind) in [
        ("/console.js", "text/javascript"),
        ("/console.css", "text/css"),
    ] {
        let (status, headers, body) = http_get(&at, path).await.expect(path);
        assert!(
            status.contains(" 200 ") && headers.contains(kind),
            "{path}: {status} {headers}"
        );
        assert!(body.len() > 1000, "{path} is {} bytes", body.len());
    }

    // Cluster: the three members with the CLI's roles, one leader, and
    // this member's leader history ending on that leader.
    let c = wait_for(
        &cluster,
        Duration::from_secs(10),
        "3 members, one leader",
        || {
            let at = at.clone();
            async move {
                let c = api(&at, "/api/cluster").await?;
                let leaders = c["members"]
                    .as_array()
                    .map_or(0, |m| m.iter().filter(|m| m["role"] == "leader").count());
                if c["members"].as_array().map(Vec::len) == Some(3) && leaders == 1 {
                    Ok(c)
                } else {
                    Err(c.to_string())
                }
            }
        },
    )
    .await;
    assert_eq!(c["this"], follower.id);
    let roles = |rows: &Value| -> BTreeMap<u64, (String, u64)> {
        rows.as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["id"].as_u64().unwrap_or(0),
                    (
                        m["role"].as_str().unwrap_or("").to_string(),
                        m["term"].as_u64().unwrap_or(0),
                    ),
                )
            })
            .collect()
    };
    let cli = cli_json(&cluster, &["cluster", "status"]);
    assert_eq!(roles(&c["members"]), roles(&cli), "console vs CLI");
    let history = c["leaders"].as_array().expect("leader history");
    assert_eq!(
        history.last().map(|l| l["leader"].clone()),
        Some(json!(leader)),
        "{history:?}"
    );
    assert!(c["commits"].is_array(), "{c}");

    // Chunks: the CLI's list, from the follower's console.
    let chunks = api(&at, "/api/read/chunks").await.expect("chunks");
    let cli = cli_json(&cluster, &["chunk", "list"]);
    assert_eq!(chunk_facts(&chunks), chunk_facts(&cli));
    assert_eq!(chunk_facts(&chunks).len(), 4, "{chunks}");
    let topo = api(&at, "/api/read/topology").await.expect("topology");
    assert!(topo.as_array().is_some_and(|t| !t.is_empty()), "{topo}");

    // Repairs: the leader's scheduler, reached from a follower.
    let s = api(&at, "/api/sched/status").await.expect("sched status");
    let cli = cli_json(&cluster, &["sched", "status"]);
    for key in [
        "leader",
        "term",
        "extents",
        "recover_paused",
        "migrate_paused",
    ] {
        assert_eq!(s[key], cli[key], "{key}: console {s} vs CLI {cli}");
    }
    assert_eq!(s["leader"], leader);
    assert_eq!(s["slots"].as_array().map(Vec::len), Some(4), "{s}");
    let (status, _, body) = http_get(&at, "/api/sched/explain/424242")
        .await
        .expect("explain");
    assert!(
        status.contains(" 404 ") && body.contains("424242"),
        "{status}: {body}"
    );

    // Upgrade: the CLI's status.
    let u = api(&at, "/api/upgrade/status")
        .await
        .expect("upgrade status");
    let cli = cli_json(&cluster, &["upgrade", "status"]);
    assert_eq!(u["active"], cli["active"]);
    assert_eq!(u["hold"], false);

    // Unknown reads and actions are refused by name.
    let (status, _, body) = http_get(&at, "/api/read/secrets").await.expect("GET");
    assert!(
        status.contains(" 404 ") && body.contains("chunks, topology"),
        "{status}: {body}"
    );
    let (status, body) = act(&at, "/api/sched/explode/recover", true).await;
    assert!(
        status.contains(" 404 ") && body.contains("pause, resume"),
        "{status}: {body}"
    );

    // Actions: refused without the page's confirmation header, done with it,
    // and the CLI sees the result.
    let (status, body) = act(&at, "/api/sched/pause/recover", false).await;
    assert!(
        status.contains(" 400 ") && body.contains("x-cairn-confirm"),
        "{status}: {body}"
    );
    assert_eq!(
        cli_json(&cluster, &["sched", "status"])["recover_paused"],
        false
    );
    let (status, body) = act(&at, "/api/sched/pause/recover", true).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(
        cli_json(&cluster, &["sched", "status"])["recover_paused"],
        true
    );
    let (status, body) = act(&at, "/api/sched/resume/recover", true).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(
        cli_json(&cluster, &["sched", "status"])["recover_paused"],
        false
    );
    let (status, body) = act(&at, "/api/upgrade/hold", true).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(cli_json(&cluster, &["upgrade", "status"])["hold"], true);
    let (status, body) = act(&at, "/api/upgrade/release", true).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(cli_json(&cluster, &["upgrade", "status"])["hold"], false);
    common::dump_logs(&cluster, "console_api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_of_a_tls_member_shows_the_cluster_but_refuses_actions() {
    let cluster = Cluster::start_with_metrics(3);
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    wait_copy_commands(&cluster).await;
    let at = cluster.members[0].metrics.clone();
    let who = api(&at, "/api/whoami").await.expect("whoami");
    assert_eq!(who["insecure"], false);
    assert_eq!(who["actions"], false);
    // Reads go through the member's own certificate (a member may read).
    wait_for(
        &cluster,
        Duration::from_secs(10),
        "3 members over TLS",
        || {
            let at = at.clone();
            async move {
                let c = api(&at, "/api/cluster").await?;
                let rows = c["members"].as_array().cloned().unwrap_or_default();
                if rows.len() == 3 && rows.iter().all(|m| m["error"].is_null()) {
                    Ok(())
                } else {
                    Err(c.to_string())
                }
            }
        },
    )
    .await;
    api(&at, "/api/upgrade/status")
        .await
        .expect("upgrade status");
    // No action: this port is plain HTTP, no admin certificate shows.
    let (status, body) = act(&at, "/api/sched/pause/recover", true).await;
    assert!(
        status.contains(" 403 ") && body.contains("read-only"),
        "{status}: {body}"
    );
    let (status, body) = act(&at, "/api/upgrade/hold", true).await;
    assert!(status.contains(" 403 "), "{status}: {body}");
    assert_eq!(
        cli_json(&cluster, &["sched", "status"])["recover_paused"],
        false
    );
    assert_eq!(cli_json(&cluster, &["upgrade", "status"])["hold"], false);
}

/// One HTTPS request to a TLS member's admin port, as `identity` (a
/// `cairn cert issue` directory) or with no certificate (`None`, trusting
/// the CA at `ca`). Returns (status line, body).
async fn https(
    addr: &str,
    ca: &std::path::Path,
    identity: Option<&std::path::Path>,
    method: &str,
    path: &str,
    headers: &[&str],
) -> (String, String) {
    use rustls::pki_types::pem::PemObject;
    let config = match identity {
        Some(dir) => cairn_node::tls::TlsIdentity::load(dir)
            .expect("identity")
            .client_config(b"http/1.1")
            .expect("client config"),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                rustls::pki_types::CertificateDer::pem_file_iter(ca.join("ca.pem")).expect("ca.pem")
            {
                roots.add(c.expect("a certificate")).expect("a root");
            }
            let mut c = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            std::sync::Arc::new(c)
        }
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(cairn_node::tls::SERVER_NAME).expect("name");
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the admin port");
    let (status, _, body) = common::exchange(&mut s, addr, method, path, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} over HTTPS: {e}"));
    (status, body)
}

/// Over HTTPS on the same admin port, the certificate decides: an admin
/// acts, a reader only views, no certificate or a chunk's gets nothing;
/// /metrics needs none. Plain HTTP stays read-only (loopback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_over_https_follows_the_certificates_role() {
    let cluster = Cluster::start_with_metrics(3);
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
    let certs = cluster.certs.as_ref().expect("a TLS cluster");
    // Actions go to the leader's console; a follower's sends the page there.
    let on = |leads: bool| {
        let m = cluster.members.iter().find(|m| (m.id == leader) == leads);
        m.expect("a member").metrics.clone()
    };
    let (at, follower) = (on(true), on(false));
    let admin = certs.identity("admin:ops");
    let reader = certs.identity("reader:watch");
    let chunk = certs.identity("chunk:9");

    let (status, body) = https(&at, &admin, Some(&admin), "GET", "/api/whoami", &[]).await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    let who: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (who["actions"].clone(), who["you"].clone()),
        (json!(true), json!("admin:ops")),
        "{who}"
    );
    let (status, body) = https(
        &at,
        &admin,
        Some(&admin),
        "POST",
        "/api/upgrade/hold",
        &["x-cairn-confirm: yes"],
    )
    .await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(cli_json(&cluster, &["upgrade", "status"])["hold"], true);
    let (status, body) = https(
        &at,
        &admin,
        Some(&admin),
        "POST",
        "/api/upgrade/release",
        &[],
    )
    .await;
    assert!(
        status.contains(" 400 ") && body.contains("x-cairn-confirm"),
        "an admin still confirms: {status}: {body}"
    );

    let (status, body) = https(
        &follower,
        &admin,
        Some(&admin),
        "POST",
        "/api/upgrade/release",
        &["x-cairn-confirm: yes"],
    )
    .await;
    assert!(
        status.contains(" 409 ") && body.contains("leader's console"),
        "{status}: {body}"
    );
    let (status, body) = https(
        &at,
        &admin,
        Some(&reader),
        "GET",
        "/api/upgrade/status",
        &[],
    )
    .await;
    assert!(
        status.contains(" 200 ") && body.contains("\"hold\":true"),
        "a reader views: {status}: {body}"
    );
    let (status, body) = https(
        &at,
        &admin,
        Some(&reader),
        "POST",
        "/api/upgrade/release",
        &["x-cairn-confirm: yes"],
    )
    .await;
    assert!(
        status.contains(" 403 ") && body.contains("reader:watch"),
        "{status}: {body}"
    );
    assert_eq!(cli_json(&cluster, &["upgrade", "status"])["hold"], true);

    for (who, id) in [
        ("no certificate", None),
        ("a chunk's", Some(chunk.as_path())),
    ] {
        let (status, body) = https(&at, &admin, id, "GET", "/api/cluster", &[]).await;
        assert!(status.contains(" 403 "), "{who}: {status}: {body}");
        let (status, body) = https(&at, &admin, id, "GET", "/metrics", &[]).await;
        assert!(
            status.contains(" 200 ") && body.contains("cairn_"),
            "{who} scrapes /metrics: {status}"
        );
    }
    let (status, body) = https(&at, &admin, None, "GET", "/api/cluster", &[]).await;
    assert!(body.contains("no client certificate"), "{status}: {body}");

    // Plain HTTP on the same port: metrics, and the console read-only.
    let (status, _, body) = http_get(&at, "/metrics").await.expect("GET /metrics");
    assert!(
        status.contains(" 200 ") && body.contains("cairn_"),
        "{status}"
    );
    let (status, body) = act(&at, "/api/upgrade/release", true).await;
    assert!(
        status.contains(" 403 ") && body.contains("https://"),
        "{status}: {body}"
    );
    let (status, body) = https(
        &at,
        &admin,
        Some(&admin),
        "POST",
        "/api/upgrade/release",
        &["x-cairn-confirm: yes"],
    )
    .await;
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert_eq!(cli_json(&cluster, &["upgrade", "status"])["hold"], false);
}

// ---- The browser test -----------------------------------------------------

async fn wait_page(
    client: &fantoccini::Client,
    dev: &Dev,
    within: Duration,
    what: &str,
    script: &str,
) -> Value {
    browser::wait_page(client, within, what, script, || dev.logs()).await
}

async fn screenshot(client: &fantoccini::Client, name: &str) {
    browser::screenshot(client, "console", name).await
}

async fn open(client: &fantoccini::Client, console: &str, page: &str) {
    client
        .goto(&format!("{console}#{page}"))
        .await
        .unwrap_or_else(|e| panic!("open #{page}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sees_the_quorum_a_stopped_chunk_expire_and_its_recovery() {
    let Some((_driver, client)) = browser::start().await else {
        return;
    };
    let dev = Dev::start(&["--insecure"]);
    let console = wait_until(
        Duration::from_secs(60),
        "cairn dev's console address",
        || {
            let out = dev.stdout();
            async move {
                let line = out.lines().find(|l| l.starts_with("web console: "))?;
                line.split_whitespace().nth(2).map(str::to_string)
            }
        },
    )
    .await;
    // Copies slow enough to watch: one recover destination slot per chunk
    // and 40 GiB on 8 chunks (60 replicas on the chunk that stops).
    let (ok, _, err) = dev.cli(&["config", "set", "recover_dst_slots", "1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = dev.cli(&[
        "volume",
        "create",
        "web",
        "--size",
        "40GiB",
        "--replicas",
        "3",
    ]);
    assert!(ok, "{err}");

    // Cluster: three members, one of them the leader.
    open(&client, &console, "cluster").await;
    let members = wait_page(
        &client,
        &dev,
        Duration::from_secs(30),
        "3 members, one leader",
        r#"
        const rows = [...document.querySelectorAll('#members tbody tr[data-id]')];
        const roles = rows.map(r => r.querySelector('.role').textContent);
        return rows.length === 3 && roles.filter(r => r === 'leader').length === 1 ? roles : null;
    "#,
    )
    .await;
    println!("members: {members}");
    wait_page(
        &client,
        &dev,
        Duration::from_secs(10),
        "the leader history and commit rate",
        r#"
        return document.querySelectorAll('#leaders tbody tr').length > 0
            && document.getElementById('commit-rate').textContent.includes('/s') ? true : null;
    "#,
    )
    .await;
    screenshot(&client, "cluster").await;

    // Chunks: eight, all alive, in the topology tree.
    open(&client, &console, "chunks").await;
    wait_page(&client, &dev, Duration::from_secs(30), "8 alive chunks under bricks", r#"
        const chunks = [...document.querySelectorAll('.brick .chunk')];
        return chunks.length === 8 && chunks.every(c => c.dataset.session === 'alive') ? true : null;
    "#).await;
    screenshot(&client, "chunks").await;

    // Stop chunk 3 with recover paused (so the recovery cannot finish
    // before the page is watching): its session expires on the page.
    let (ok, out, err) = dev.cli(&["sched", "pause", "recover"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = dev.cli(&["fleet", "stop", "3"]);
    assert!(ok, "{out}{err}");
    wait_page(
        &client,
        &dev,
        Duration::from_secs(40),
        "chunk 3 expired",
        r#"
        const c = document.getElementById('chunk-3');
        return c && c.dataset.session === 'expired' ? true : null;
    "#,
    )
    .await;
    screenshot(&client, "chunks-expired").await;

    // Repairs: the lost replicas counted, recover paused.
    open(&client, &console, "repairs").await;
    wait_page(&client, &dev, Duration::from_secs(20), "degraded extents and recover paused", r#"
        const b = document.getElementById('act-recover');
        const cards = document.getElementById('sched-summary').textContent;
        return b && b.dataset.action === 'resume' && /[1-9][0-9]*missing a replica/.test(cards) ? true : null;
    "#).await;
    // The drill-down: `sched explain` of an extent that had a replica on chunk 3.
    let (ok, out, err) = dev.cli(&["volume", "show", "1", "--json"]);
    assert!(ok, "{err}");
    let volume: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let pid = volume["extents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["loc"].as_array().is_some_and(|l| l.contains(&json!(3))))
        .and_then(|e| e["pid"].as_u64())
        .unwrap_or_else(|| panic!("no extent on chunk 3: {volume}"));
    client
        .execute(&format!("document.getElementById('explain-pid').value = {pid}; document.querySelector('#explain-form button').click();"), vec![])
        .await
        .expect("ask for an explanation");
    let text = wait_page(
        &client,
        &dev,
        Duration::from_secs(10),
        "sched explain's text",
        r#"
        const t = document.getElementById('explain').textContent;
        return t && !t.startsWith('explaining') ? t : null;
    "#,
    )
    .await;
    let (ok, cli_text, err) = dev.cli(&["sched", "explain", &pid.to_string()]);
    assert!(ok, "{err}");
    assert!(
        text.as_str()
            .is_some_and(|t| t.starts_with(&format!("extent {pid} ")) && t.contains("alive [")),
        "the explanation of extent {pid}: {text}"
    );
    // The same lines as the CLI's but the first (it stamps the time).
    let tail = |t: &str| t.lines().skip(1).take(2).collect::<Vec<_>>().join("\n");
    assert_eq!(
        tail(text.as_str().unwrap_or("")),
        tail(&cli_text),
        "console vs CLI"
    );

    // Resume recover through the page: it asks first, nothing before Confirm.
    client
        .execute("document.getElementById('act-recover').click()", vec![])
        .await
        .expect("click resume");
    wait_page(&client, &dev, Duration::from_secs(5), "the confirmation", r#"
        return document.getElementById('confirm').open ? document.getElementById('confirm-text').textContent : null;
    "#).await;
    let (_, out, _) = dev.cli(&["sched", "status", "--json"]);
    assert!(
        out.contains("\"recover_paused\": true"),
        "nothing happens before the confirmation: {out}"
    );
    screenshot(&client, "confirm").await;
    client
        .execute("document.getElementById('confirm-yes').click()", vec![])
        .await
        .expect("confirm");

    // Recover copies run, with progress reported by the chunks.
    let row = wait_page(
        &client,
        &dev,
        Duration::from_secs(60),
        "a recover copy with progress",
        r#"
        for (const tr of document.querySelectorAll('#running tbody tr')) {
            const pct = tr.querySelector('.progress svg').dataset.pct;
            if (tr.children[1].textContent === 'recover' && pct !== '' && Number(pct) > 0)
                return { pid: tr.dataset.pid, pct: Number(pct) };
        }
        return null;
    "#,
    )
    .await;
    println!("recovering: {row}");
    screenshot(&client, "repairs").await;
    let (_, out, _) = dev.cli(&["sched", "status", "--json"]);
    assert!(out.contains("\"recover_paused\": false"), "resumed: {out}");

    // Upgrade: every capability active, nothing blocking.
    open(&client, &console, "upgrade").await;
    wait_page(
        &client,
        &dev,
        Duration::from_secs(10),
        "lease_7s active",
        r#"
        const r = document.querySelector('#capabilities tr[data-cap="lease_7s"] .state');
        return r && r.textContent === 'active' ? true : null;
    "#,
    )
    .await;
    screenshot(&client, "upgrade").await;

    // An action asks first, then takes effect: pause migrate.
    open(&client, &console, "repairs").await;
    wait_page(
        &client,
        &dev,
        Duration::from_secs(10),
        "the pause button",
        r#"
        const b = document.getElementById('act-migrate');
        return b && !b.disabled && b.dataset.action === 'pause' ? true : null;
    "#,
    )
    .await;
    client
        .execute("document.getElementById('act-migrate').click()", vec![])
        .await
        .expect("click pause");
    wait_page(&client, &dev, Duration::from_secs(5), "the confirmation", r#"
        return document.getElementById('confirm').open ? document.getElementById('confirm-text').textContent : null;
    "#).await;
    let (_, out, _) = dev.cli(&["sched", "status", "--json"]);
    assert!(
        out.contains("\"migrate_paused\": false"),
        "nothing happens before the confirmation: {out}"
    );
    client
        .execute("document.getElementById('confirm-yes').click()", vec![])
        .await
        .expect("confirm");
    wait_until(Duration::from_secs(10), "migrate paused in the CLI", || {
        let (_, out, _) = dev.cli(&["sched", "status", "--json"]);
        async move { out.contains("\"migrate_paused\": true").then_some(()) }
    })
    .await;
    let _ = client.close().await;
}
