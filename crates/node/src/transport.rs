//! How bytes travel between Cairn processes: plain TCP (`--insecure`) or
//! mutual TLS with the process's identity (docs/security.md).
//!
//! The client side ([`Transport`]) dials members for gRPC (the CLI, a
//! member's Raft and advertiser, chunks) and for the session wire. The
//! member side ([`Listening`]) accepts on the member's one port, finishes
//! the handshake, judges the peer's certificate once ([`Auth`]) and hands
//! the connection to gRPC or to the session wire by ALPN.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::verify::{ALPN_H2, ALPN_SESSION_WIRE};
use crate::tls::{Auth, Authenticator, Role, TlsError, TlsIdentity, SERVER_NAME};

/// How long a new connection may take to finish its TLS handshake (or, in
/// plain mode, to send its first byte) before the member drops it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client side: how this process reaches members.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP: no one is authenticated (`--insecure`).
    Insecure,
    Tls(Arc<TlsClient>),
}

pub struct TlsClient {
    grpc: TlsConnector,
    wire: TlsConnector,
    /// The role this process's own certificate names.
    pub role: Role,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Insecure => f.write_str("insecure"),
            Transport::Tls(c) => write!(f, "tls as {}", c.role),
        }
    }
}

impl Transport {
    /// Mutual TLS as the identity in `dir` (`cairn cert issue`).
    pub fn tls(identity: &TlsIdentity) -> Result<Transport, TlsError> {
        Ok(Transport::Tls(Arc::new(TlsClient {
            grpc: TlsConnector::from(identity.client_config(ALPN_H2)?),
            wire: TlsConnector::from(identity.client_config(ALPN_SESSION_WIRE)?),
            role: identity.role()?,
        })))
    }

    /// Mutual TLS as the identity in `dir`.
    pub fn load(dir: &std::path::Path) -> Result<Transport, TlsError> {
        Transport::tls(&TlsIdentity::load(dir)?)
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// A gRPC channel to the member at `addr` (`host:port`) that connects
    /// on first use; `tune` sets its timeouts and keepalives.
    pub fn channel(
        &self,
        addr: &str,
        tune: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad address {addr:?}: {e}"))?;
        let endpoint = tune(endpoint.tcp_nodelay(true));
        Ok(match self {
            Transport::Insecure => endpoint.connect_lazy(),
            Transport::Tls(c) => endpoint.connect_with_connector_lazy(Dial(c.grpc.clone())),
        })
    }

    /// A session wire connection to the member at `addr`.
    pub async fn connect_wire(&self, addr: &str) -> io::Result<Io> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        match self {
            Transport::Insecure => Ok(Io::Plain(tcp)),
            Transport::Tls(c) => handshake(&c.wire, tcp).await,
        }
    }
}

async fn handshake(connector: &TlsConnector, tcp: TcpStream) -> io::Result<Io> {
    let name = ServerName::try_from(SERVER_NAME)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let tls = connector.connect(name, tcp).await?;
    Ok(Io::Client(Box::new(tls)))
}

/// tonic's connector for TLS channels: TCP, then the handshake.
#[derive(Clone)]
struct Dial(TlsConnector);

impl tower_service::Service<Uri> for Dial {
    type Response = TokioIo<Io>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Io>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.0.clone();
        Box::pin(async move {
            // An IPv6 host comes bracketed ("[::1]").
            let host = uri.host().unwrap_or_default();
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(handshake(&connector, tcp).await?))
        })
    }
}

/// One connection, plain or TLS, either side.
pub enum Io {
    Plain(TcpStream),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Io::Plain($s) => $e,
            Io::Server($s) => $e,
            Io::Client($s) => $e,
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Server(s) => s.is_write_vectored(),
            Io::Client(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Who is at the other end of a connection a member accepted: travels
/// with every request on it (`request.extensions().get::<Peer>()`).
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
    pub auth: Auth,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addr = self.addr.map_or("?".to_string(), |a| a.to_string());
        match &self.auth {
            Auth::Insecure => write!(f, "{addr} (insecure)"),
            Auth::Verified(role) => write!(f, "{addr} ({role})"),
            Auth::Refused(why) => write!(f, "{addr} (unauthenticated: {why})"),
        }
    }
}

/// A connection for the gRPC server, with its [`Peer`].
pub struct ServerIo {
    io: Io,
    peer: Peer,
    /// The member's count of open connections (crate::limits).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl ServerIo {
    /// Counted among the member's open connections until it closes.
    pub fn holding(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> ServerIo {
        self._permit = Some(permit);
        self
    }
}

impl Connected for ServerIo {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The member side: how its listener takes connections.
#[derive(Clone)]
pub enum Listening {
    Insecure,
    Tls {
        acceptor: TlsAcceptor,
        authenticator: Authenticator,
    },
}

/// An accepted connection, sorted.
pub enum Accepted {
    Grpc(ServerIo),
    /// The session wire (crate::session_wire), with its peer.
    Wire(Io, Peer),
}

impl Listening {
    /// A member serving mutual TLS as `identity`.
    pub fn tls(identity: &TlsIdentity) -> Result<Listening, TlsError> {
        Ok(Listening::Tls {
            acceptor: TlsAcceptor::from(identity.server_config()?),
            authenticator: identity.authenticator()?,
        })
    }

    /// Finishes setting up a new connection: the TLS handshake and the
    /// check of the peer's certificate, or in plain mode a look at the
    /// first byte. None: the peer went away, stayed silent for
    /// [`HANDSHAKE_TIMEOUT`] or failed the handshake (logged).
    pub async fn accept(&self, tcp: TcpStream) -> Option<Accepted> {
        let addr = tcp.peer_addr().ok();
        match self {
            Listening::Insecure => {
                let mut first = [0u8; 1];
                let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await;
                let peer = Peer {
                    addr,
                    auth: Auth::Insecure,
                };
                match peeked {
                    Ok(Ok(1)) if first[0] == crate::session_wire::MAGIC[0] => {
                        Some(Accepted::Wire(Io::Plain(tcp), peer))
                    }
                    Ok(Ok(1)) => Some(Accepted::Grpc(ServerIo {
                        io: Io::Plain(tcp),
                        peer,
                        _permit: None,
                    })),
                    // Closed, failed or silent before saying anything.
                    _ => None,
                }
            }
            Listening::Tls {
                acceptor,
                authenticator,
            } => {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(peer = ?addr, error = %e, "TLS handshake failed");
                        return None;
                    }
                    Err(_) => {
                        tracing::warn!(peer = ?addr, "TLS handshake timed out");
                        return None;
                    }
                };
                let (_, conn) = tls.get_ref();
                let auth = authenticator.authenticate(conn.peer_certificates(), UnixTime::now());
                let wire = conn.alpn_protocol() == Some(ALPN_SESSION_WIRE);
                let peer = Peer { addr, auth };
                let io = Io::Server(Box::new(tls));
                Some(if wire {
                    Accepted::Wire(io, peer)
                } else {
                    Accepted::Grpc(ServerIo {
                        io,
                        peer,
                        _permit: None,
                    })
                })
            }
        }
    }
}
