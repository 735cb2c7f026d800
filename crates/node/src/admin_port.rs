//! The admin port's listener (`--metrics-addr`): plain HTTP, and on a TLS
//! member HTTPS too, on the same port, told apart by the first byte (a TLS
//! handshake starts with 0x16, an HTTP request with a method's letter).
//! Prometheus keeps scraping `/metrics` over plain HTTP; a browser holding
//! a `reader:` or `admin:` certificate of the cluster's CA opens the
//! console over HTTPS and gets that role (docs/console.md).
//!
//! Handshakes run in their own tasks with a deadline, so a client that
//! connects and says nothing holds up no one; finished connections reach
//! axum through a channel.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::UnixTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::tls::{Auth, Authenticator};

/// How long a connection may take to send its first byte and finish a TLS
/// handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
/// Connections handshaken but not yet taken by the server.
const READY_QUEUE: usize = 64;
/// First byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// HTTPS on the admin port of a TLS member.
#[derive(Clone)]
pub struct AdminTls {
    pub config: Arc<rustls::ServerConfig>,
    pub authenticator: Authenticator,
}

/// Who is on the other end of a connection, as the console sees it.
#[derive(Clone, Debug)]
pub struct AdminPeer {
    pub addr: SocketAddr,
    /// `None`: plain HTTP (nobody proved anything). `Some`: HTTPS, and
    /// what the client's certificate proved.
    pub tls: Option<Auth>,
}

/// One accepted connection.
pub enum AdminIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, Auth),
}

impl AsyncRead for AdminIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AdminIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            AdminIo::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for AdminIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AdminIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            AdminIo::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AdminIo::Plain(s) => Pin::new(s).poll_flush(cx),
            AdminIo::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AdminIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            AdminIo::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The listener axum serves: connections ready to speak HTTP.
pub struct AdminListener {
    ready: mpsc::Receiver<(AdminIo, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl AdminListener {
    /// Takes over `listener`; `tls`: also accept HTTPS.
    pub fn new(listener: TcpListener, tls: Option<AdminTls>) -> io::Result<AdminListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(listener, tls, tx));
        Ok(AdminListener {
            ready,
            local,
            acceptor,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<AdminTls>,
    tx: mpsc::Sender<(AdminIo, SocketAddr)>,
) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, don't spin.
                tracing::warn!(error = %e, "admin port: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, tx) = (tls.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_DEADLINE, open(stream, tls)).await {
                Ok(Ok(io)) => {
                    let _ = tx.send((io, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "admin port: connection dropped"),
                Err(_) => tracing::debug!(%addr, "admin port: no request or handshake in time"),
            }
        });
    }
}

/// Plain, or TLS when it starts with a handshake and this member has TLS.
async fn open(stream: TcpStream, tls: Option<AdminTls>) -> io::Result<AdminIo> {
    let Some(tls) = tls else {
        return Ok(AdminIo::Plain(stream));
    };
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 || first[0] != TLS_HANDSHAKE {
        return Ok(AdminIo::Plain(stream));
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let stream = acceptor.accept(stream).await?;
    let auth = tls
        .authenticator
        .authenticate(stream.get_ref().1.peer_certificates(), UnixTime::now());
    Ok(AdminIo::Tls(Box::new(stream), auth))
}

impl Listener for AdminListener {
    type Io = AdminIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (AdminIo, SocketAddr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor ended (only when aborted, on drop): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, AdminListener>> for AdminPeer {
    fn connect_info(stream: IncomingStream<'_, AdminListener>) -> AdminPeer {
        let tls = match stream.io() {
            AdminIo::Plain(_) => None,
            AdminIo::Tls(_, auth) => Some(auth.clone()),
        };
        AdminPeer {
            addr: *stream.remote_addr(),
            tls,
        }
    }
}
