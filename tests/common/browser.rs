//! A headless browser for the console's tests: Debian's chromium driven
//! through chromedriver (WebDriver) on an ephemeral loopback port. Shared
//! by tests/console.rs and tests/chaos.rs (`#[path]` module: it needs
//! nothing of `common`, which only the `cairn-node` tests can build).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// chromedriver, and chromium's profile directory; both go on drop.
pub struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(env: &str, paths: &[&str]) -> Option<PathBuf> {
    std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(paths.iter().map(PathBuf::from))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Where screenshots go: `$CAIRN_ARTIFACTS/<sub>`, else
/// `test-artifacts/<sub>` in the target directory.
pub fn artifacts(sub: &str) -> PathBuf {
    let dir = match std::env::var_os("CAIRN_ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        // The test binary runs from <target>/<profile>/deps/.
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("test-artifacts")))
            .unwrap_or_else(|| PathBuf::from("test-artifacts")),
    }
    .join(sub);
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// A browser session, or `None` (test skipped) when chromium is missing
/// and `CAIRN_SKIP_BROWSER` is set; missing without it is a failure, so CI
/// cannot pass without running the browser.
pub async fn start() -> Option<(Driver, fantoccini::Client)> {
    let driver = find("CHROMEDRIVER", &["/usr/bin/chromedriver"]);
    let chromium = find("CHROMIUM", &["/usr/bin/chromium"]);
    let (Some(driver), Some(chromium)) = (driver, chromium) else {
        assert!(
            std::env::var_os("CAIRN_SKIP_BROWSER").is_some(),
            "the browser test needs Debian's chromium and chromium-driver: run scripts/setup.sh (or set CAIRN_SKIP_BROWSER=1 to skip it)"
        );
        println!("SKIPPED: no chromium / chromedriver, and CAIRN_SKIP_BROWSER is set");
        return None;
    };
    let port = free_port();
    let child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().expect("profile dir");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let driver = Driver {
        child,
        _profile: profile,
    };
    // chromedriver takes a moment to listen: retry the session until then.
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match fantoccini::ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return Some((driver, client)),
            Err(e) if Instant::now() > deadline => {
                panic!("no chromium session through chromedriver at {url} within 30 s: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Runs `script` in the page until it returns something other than null;
/// on timeout panics with the page's text and `context()`.
pub async fn wait_page(
    client: &fantoccini::Client,
    within: Duration,
    what: &str,
    script: &str,
    context: impl Fn() -> String,
) -> Value {
    let start = Instant::now();
    let mut last = Value::Null;
    loop {
        match client.execute(script, vec![]).await {
            Ok(Value::Null) => {}
            Ok(v) => return v,
            Err(e) => last = json!(e.to_string()),
        }
        if start.elapsed() > within {
            let shown = client
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            panic!(
                "timed out after {within:?} waiting for the page to show {what}\nlast error: {last}\npage:\n{}\n{}",
                shown.as_str().unwrap_or(""),
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves the page as `<artifacts>/<sub>/<name>.png`.
pub async fn screenshot(client: &fantoccini::Client, sub: &str, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = artifacts(sub).join(format!("{name}.png"));
    std::fs::write(&path, png).expect("save screenshot");
    println!("screenshot: {}", path.display());
}
