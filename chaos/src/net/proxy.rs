//! In-process fault-injecting TCP proxy, one [`Proxy`] per directed link.
//!
//! Member `i` reaches member `j` through the proxy of link `i→j`, which
//! listens on `127.0.0.1:0` and forwards to `j`'s real address. Requests
//! travel `i → j` on that link and their replies `j → i` on the same
//! connection, which is what lets [`Mode::DropReplies`] lose only answers.
//!
//! A connection lives in the mode it was accepted in: every mode change
//! closes all connections open through the link, so no connection ever sees
//! two modes (a half-delivered HTTP/2 stream is garbage after a black hole;
//! closing makes the client reconnect cleanly).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::{Link, MemberId, NetError, Result};

/// What a link does to its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Forward each chunk after this delay, both directions, order kept.
    Delay(Duration),
    /// Accept connections, forward nothing either way (like a DROP rule: the
    /// client sees timeouts, not refusals). Upstream is never dialled.
    Blackhole,
    /// Forward client → upstream, discard upstream → client.
    DropReplies,
}

/// Counters of one link since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connections accepted.
    pub connections: u64,
    /// Bytes written onward, both directions.
    pub bytes_forwarded: u64,
    /// Bytes read and thrown away, both directions.
    pub bytes_dropped: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// The mode plus a generation bumped on every change: connections compare
/// generations, so they notice a change even if it was A → B → A.
#[derive(Clone, Copy, Debug)]
struct ModeState {
    mode: Mode,
    generation: u64,
}

const BUF: usize = 16 * 1024;

/// One directed link's proxy. Must be created inside a tokio runtime.
pub struct Proxy {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    mode_tx: watch::Sender<ModeState>,
    shutdown_tx: watch::Sender<bool>,
    counters: Arc<Counters>,
    /// The accept loop; it owns every connection task (in a JoinSet), so
    /// aborting it aborts them all.
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards to `upstream`, in `Pass` mode.
    pub async fn start(upstream: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| NetError::io("proxy: bind 127.0.0.1:0", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| NetError::io("proxy: local_addr", e))?;
        let (mode_tx, mode_rx) = watch::channel(ModeState {
            mode: Mode::Pass,
            generation: 0,
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(
            listener,
            upstream,
            mode_rx,
            shutdown_rx,
            counters.clone(),
        ));
        Ok(Proxy {
            local_addr,
            upstream,
            mode_tx,
            shutdown_tx,
            counters,
            task: Some(task),
        })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn mode(&self) -> Mode {
        self.mode_tx.borrow().mode
    }

    /// Switches the mode. If it differs from the current one, every open
    /// connection is closed; returns whether it did.
    pub fn set_mode(&self, mode: Mode) -> bool {
        self.mode_tx.send_if_modified(|s| {
            if s.mode == mode {
                false
            } else {
                s.mode = mode;
                s.generation += 1;
                true
            }
        })
    }

    pub fn stats(&self) -> LinkStats {
        LinkStats {
            connections: self.counters.connections.load(Ordering::Relaxed),
            bytes_forwarded: self.counters.forwarded.load(Ordering::Relaxed),
            bytes_dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Closes the listener and every connection, and waits until they are.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(task) = self.task.take() {
            // The loop ends by itself on the signal; an error here is only
            // a panic or an abort, and either way the task is gone.
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Cannot await here: abort; the JoinSet inside the accept loop
        // aborts the connection tasks when it is dropped.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode_rx: watch::Receiver<ModeState>,
    mut shutdown_rx: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown_rx.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let start = *mode_rx.borrow();
                    conns.spawn(connection(client, upstream, start, mode_rx.clone(), counters.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            // Reap finished connections so the set does not grow forever.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Runs one connection in the mode it was accepted in, until it ends or the
/// link's mode changes. Returning drops both sockets, which closes them.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    start: ModeState,
    mut mode_rx: watch::Receiver<ModeState>,
    counters: Arc<Counters>,
) {
    let changed = async move {
        loop {
            if mode_rx.borrow_and_update().generation != start.generation {
                return;
            }
            if mode_rx.changed().await.is_err() {
                // The proxy is gone; its shutdown path ends us anyway.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = changed => {}
        res = serve(client, upstream, start.mode, &counters) => {
            if let Err(e) = res {
                tracing::debug!(error = %e, %upstream, "proxy: connection ended");
            }
        }
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mode: Mode,
    counters: &Counters,
) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let (mut client_r, mut client_w) = client.into_split();
    if mode == Mode::Blackhole {
        // Read so the bytes can be counted; client_w is held, never
        // written. When the client gives up, so do we.
        return drain(&mut client_r, counters).await;
    }
    let up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    let (mut up_r, mut up_w) = up.into_split();
    match mode {
        Mode::Pass => {
            tokio::try_join!(
                pump(&mut client_r, &mut up_w, counters),
                pump(&mut up_r, &mut client_w, counters),
            )?;
        }
        Mode::Delay(d) => {
            tokio::try_join!(
                delayed_pump(&mut client_r, &mut up_w, d, counters),
                delayed_pump(&mut up_r, &mut client_w, d, counters),
            )?;
        }
        Mode::DropReplies => {
            tokio::try_join!(
                pump(&mut client_r, &mut up_w, counters),
                drain(&mut up_r, counters),
            )?;
        }
        Mode::Blackhole => {}
    }
    Ok(())
}

/// Copies until EOF, then half-closes the writer so the far side sees it.
async fn pump<R, W>(r: &mut R, w: &mut W, counters: &Counters) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        counters.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Reads until EOF, throwing everything away.
async fn drain<R>(r: &mut R, counters: &Counters) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Like [`pump`], each chunk written `d` after it was read. Reading goes on
/// meanwhile (a queue in between), so the delay is latency, not a
/// throughput cap; the bounded queue still gives backpressure.
async fn delayed_pump<R, W>(
    r: &mut R,
    w: &mut W,
    d: Duration,
    counters: &Counters,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // None marks EOF, delayed like data so the FIN does not overtake it.
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>(256);
    let reader = async move {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = r.read(&mut buf).await?;
            let due = Instant::now() + d;
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            if tx.send((due, chunk)).await.is_err() || n == 0 {
                // Writer gone (it failed and reports why) or EOF queued.
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            match chunk {
                Some(c) => {
                    w.write_all(&c).await?;
                    counters
                        .forwarded
                        .fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                None => return w.shutdown().await,
            }
        }
        Ok(())
    };
    tokio::try_join!(reader, writer)?;
    Ok(())
}

/// A proxy for every directed link between the members.
pub struct ProxyNet {
    upstreams: BTreeMap<MemberId, SocketAddr>,
    proxies: BTreeMap<Link, Proxy>,
}

impl ProxyNet {
    /// Starts `n·(n-1)` proxies; `upstreams` maps each member to its real
    /// Raft listen address.
    pub async fn start(upstreams: &BTreeMap<MemberId, SocketAddr>) -> Result<ProxyNet> {
        let mut proxies = BTreeMap::new();
        for &from in upstreams.keys() {
            for (&to, &addr) in upstreams {
                if from != to {
                    // On error the proxies started so far drop and stop.
                    proxies.insert(Link::new(from, to), Proxy::start(addr).await?);
                }
            }
        }
        Ok(ProxyNet {
            upstreams: upstreams.clone(),
            proxies,
        })
    }

    pub fn members(&self) -> Vec<MemberId> {
        self.upstreams.keys().copied().collect()
    }

    pub fn links(&self) -> Vec<Link> {
        self.proxies.keys().copied().collect()
    }

    pub fn proxy(&self, link: Link) -> Option<&Proxy> {
        self.proxies.get(&link)
    }

    /// The address member `from` must dial to reach `to`.
    pub fn proxy_addr(&self, from: MemberId, to: MemberId) -> Option<SocketAddr> {
        self.proxies
            .get(&Link::new(from, to))
            .map(Proxy::local_addr)
    }

    /// Peer id → proxy address, for starting member `from`.
    pub fn routes_for(&self, from: MemberId) -> BTreeMap<MemberId, SocketAddr> {
        self.proxies
            .iter()
            .filter(|(l, _)| l.from == from)
            .map(|(l, p)| (l.to, p.local_addr()))
            .collect()
    }

    /// See [`Proxy::set_mode`].
    pub fn set_mode(&self, link: Link, mode: Mode) -> Result<bool> {
        Ok(self.get(link)?.set_mode(mode))
    }

    pub fn mode(&self, link: Link) -> Result<Mode> {
        Ok(self.get(link)?.mode())
    }

    pub fn stats(&self, link: Link) -> Result<LinkStats> {
        Ok(self.get(link)?.stats())
    }

    /// All links' counters.
    pub fn all_stats(&self) -> BTreeMap<Link, LinkStats> {
        self.proxies.iter().map(|(l, p)| (*l, p.stats())).collect()
    }

    /// Closes every listener and connection, and waits until they are.
    pub async fn shutdown(self) {
        for (_, p) in self.proxies {
            p.shutdown().await;
        }
    }

    fn get(&self, link: Link) -> Result<&Proxy> {
        self.proxies.get(&link).ok_or_else(|| {
            let missing = if self.upstreams.contains_key(&link.from) {
                link.to
            } else {
                link.from
            };
            if link.from == link.to {
                NetError::InvalidSpec(format!("no link {link}"))
            } else {
                NetError::UnknownMember(missing)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Faults;
    use tokio::time::timeout;

    /// How long a read must stay silent to count as "nothing arrives".
    const SILENCE: Duration = Duration::from_millis(300);
    /// Upper bound for things that must happen (generous: CI is slow).
    const SOON: Duration = Duration::from_secs(5);

    #[derive(Clone, Default)]
    struct Echo {
        connections: Arc<AtomicU64>,
        bytes: Arc<AtomicU64>,
    }

    /// A TCP echo server that counts what it receives.
    async fn echo_server() -> (SocketAddr, Echo, JoinHandle<()>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = Echo::default();
        let e = echo.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                e.connections.fetch_add(1, Ordering::SeqCst);
                let e = e.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                e.bytes.fetch_add(n as u64, Ordering::SeqCst);
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, echo, task)
    }

    /// Polls `f` until true, failing after [`SOON`].
    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + SOON;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn roundtrip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        stream.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        timeout(SOON, stream.read_exact(&mut got))
            .await
            .expect("echo timed out")
            .unwrap();
        got
    }

    /// The connection must be closed: EOF or a reset, soon.
    async fn assert_closed(stream: &mut TcpStream) {
        let mut buf = [0u8; 16];
        match timeout(SOON, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("expected a closed connection, read {n} bytes"),
            Err(_) => panic!("connection still open after a mode change"),
        }
    }

    /// Nothing must arrive within [`SILENCE`]: the expected outcome is the
    /// timeout.
    async fn assert_silent(stream: &mut TcpStream) {
        let mut buf = [0u8; 16];
        let res = timeout(SILENCE, stream.read(&mut buf)).await;
        assert!(res.is_err(), "expected silence, got {res:?}");
    }

    #[tokio::test]
    async fn pass_forwards_both_ways() {
        let (addr, echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"hello").await, b"hello");
        assert_eq!(roundtrip(&mut c, b"world!").await, b"world!");
        eventually("counters", || proxy.stats().bytes_forwarded == 22).await;
        let s = proxy.stats();
        assert_eq!(s.connections, 1);
        assert_eq!(s.bytes_dropped, 0);
        assert_eq!(echo.bytes.load(Ordering::SeqCst), 11);
        proxy.shutdown().await;
    }

    #[tokio::test]
    async fn pass_propagates_half_close() {
        let (addr, _echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        c.write_all(b"bye").await.unwrap();
        c.shutdown().await.unwrap();
        let mut got = Vec::new();
        timeout(SOON, c.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"bye");
    }

    #[tokio::test]
    async fn blackhole_forwards_nothing_then_heals() {
        let (addr, echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        assert!(proxy.set_mode(Mode::Blackhole));
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        c.write_all(b"anyone?").await.unwrap();
        assert_silent(&mut c).await;
        assert_eq!(echo.connections.load(Ordering::SeqCst), 0);
        assert_eq!(echo.bytes.load(Ordering::SeqCst), 0);
        eventually("dropped count", || proxy.stats().bytes_dropped == 7).await;
        assert_eq!(proxy.stats().bytes_forwarded, 0);

        // Heal: the black-holed connection is closed, a new one works.
        assert!(proxy.set_mode(Mode::Pass));
        assert_closed(&mut c).await;
        let mut c2 = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut c2, b"back").await, b"back");
        assert_eq!(echo.connections.load(Ordering::SeqCst), 1);
        assert_eq!(proxy.stats().connections, 2);
    }

    #[tokio::test]
    async fn mode_change_closes_open_connections() {
        let (addr, _echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let mut a = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let mut b = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(roundtrip(&mut a, b"a").await, b"a");
        assert_eq!(roundtrip(&mut b, b"b").await, b"b");
        // Setting the same mode is not a change: nothing is closed.
        assert!(!proxy.set_mode(Mode::Pass));
        assert_eq!(roundtrip(&mut a, b"still").await, b"still");
        assert!(proxy.set_mode(Mode::Delay(Duration::from_millis(1))));
        assert_closed(&mut a).await;
        assert_closed(&mut b).await;
    }

    #[tokio::test]
    async fn delay_adds_at_least_the_delay() {
        let (addr, _echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let d = Duration::from_millis(120);
        proxy.set_mode(Mode::Delay(d));
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        for msg in [&b"one"[..], b"two", b"three"] {
            let t0 = Instant::now();
            assert_eq!(roundtrip(&mut c, msg).await, msg);
            // Delayed on the way there and on the way back.
            let took = t0.elapsed();
            assert!(took >= 2 * d, "round trip took {took:?}, delay {d:?}");
        }
        // Order is kept when chunks queue up.
        let mut expected = Vec::new();
        for i in 0..50u8 {
            c.write_all(&[i]).await.unwrap();
            expected.push(i);
        }
        let mut got = vec![0u8; expected.len()];
        timeout(SOON, c.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn drop_replies_delivers_requests_loses_answers() {
        let (addr, echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        proxy.set_mode(Mode::DropReplies);
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        c.write_all(b"request").await.unwrap();
        eventually("request at upstream", || {
            echo.bytes.load(Ordering::SeqCst) == 7
        })
        .await;
        assert_silent(&mut c).await;
        // The echo's answer was read and thrown away.
        eventually("answer dropped", || proxy.stats().bytes_dropped == 7).await;
        assert_eq!(proxy.stats().bytes_forwarded, 7);
    }

    #[tokio::test]
    async fn shutdown_closes_listener_and_connections() {
        let (addr, _echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let local = proxy.local_addr();
        let mut c = TcpStream::connect(local).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"x").await, b"x");
        proxy.shutdown().await;
        assert_closed(&mut c).await;
        assert!(TcpStream::connect(local).await.is_err());
    }

    #[tokio::test]
    async fn drop_stops_the_proxy() {
        let (addr, _echo, _srv) = echo_server().await;
        let proxy = Proxy::start(addr).await.unwrap();
        let local = proxy.local_addr();
        let mut c = TcpStream::connect(local).await.unwrap();
        assert_eq!(roundtrip(&mut c, b"x").await, b"x");
        drop(proxy);
        assert_closed(&mut c).await;
        eventually("listener closed", || {
            std::net::TcpStream::connect(local).is_err()
        })
        .await;
    }

    #[tokio::test]
    async fn proxy_net_and_faults() {
        let mut upstreams = BTreeMap::new();
        let mut echoes = BTreeMap::new();
        let mut servers = Vec::new();
        for id in 1..=3 {
            let (addr, echo, srv) = echo_server().await;
            upstreams.insert(id, addr);
            echoes.insert(id, echo);
            servers.push(srv);
        }
        let net = ProxyNet::start(&upstreams).await.unwrap();
        assert_eq!(net.links().len(), 6);
        assert_eq!(net.routes_for(1).len(), 2);
        let mut faults = Faults::proxy(net);
        assert_eq!(faults.kind(), "proxy");
        assert_eq!(faults.describe(), "healthy");

        // One way 1→2: 1's requests to 2 vanish, 2's requests to 1 arrive
        // but 1's answers are lost.
        faults.block(1, 2).unwrap();
        let net = faults.as_proxy().unwrap();
        assert_eq!(net.mode(Link::new(1, 2)).unwrap(), Mode::Blackhole);
        assert_eq!(net.mode(Link::new(2, 1)).unwrap(), Mode::DropReplies);
        assert_eq!(net.mode(Link::new(1, 3)).unwrap(), Mode::Pass);
        let mut c = TcpStream::connect(net.proxy_addr(1, 2).unwrap())
            .await
            .unwrap();
        c.write_all(b"ping").await.unwrap();
        assert_silent(&mut c).await;
        assert_eq!(echoes[&2].bytes.load(Ordering::SeqCst), 0);
        let mut c13 = TcpStream::connect(net.proxy_addr(1, 3).unwrap())
            .await
            .unwrap();
        assert_eq!(roundtrip(&mut c13, b"ok").await, b"ok");

        // Isolating 3 adds to the block; 1→3 changes mode and closes.
        faults.isolate(3).unwrap();
        assert_closed(&mut c13).await;
        assert_eq!(
            faults.describe(),
            "block 1->2; isolate 3 :: blocked 1->2 1->3 2->3 3->1 3->2"
        );

        faults.delay(2, 1, Duration::from_millis(10)).unwrap();
        assert!(matches!(
            faults.delay(2, 2, Duration::from_millis(10)),
            Err(NetError::InvalidSpec(_))
        ));
        assert!(matches!(
            faults.block(1, 9),
            Err(NetError::UnknownMember(9))
        ));
        // The blocked state wins over the delay on 2→1's reverse.
        let net = faults.as_proxy().unwrap();
        assert_eq!(net.mode(Link::new(2, 1)).unwrap(), Mode::DropReplies);

        faults.heal().unwrap();
        assert_eq!(faults.describe(), "healthy");
        let net = faults.as_proxy().unwrap();
        for link in net.links() {
            assert_eq!(net.mode(link).unwrap(), Mode::Pass, "{link}");
        }
        let mut c = TcpStream::connect(net.proxy_addr(1, 2).unwrap())
            .await
            .unwrap();
        assert_eq!(roundtrip(&mut c, b"healed").await, b"healed");
        assert!(net.stats(Link::new(1, 2)).unwrap().connections >= 2);
        faults.drop_replies(3, 1).unwrap();
        assert_eq!(
            faults.as_proxy().unwrap().mode(Link::new(3, 1)).unwrap(),
            Mode::DropReplies
        );
    }
}
