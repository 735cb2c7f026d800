//! rustls configurations for a member, a chunk or the CLI, and the check
//! of a peer's certificate after the handshake.
//!
//! A member's listener asks every client for a certificate but lets the
//! handshake finish whatever it presents (the client still has to prove it
//! holds the key of the certificate it sent). The chain is checked right
//! after, against the cluster's CA, and the outcome travels with the
//! connection ([`Auth`]): the RPC layer then refuses a client without a
//! valid certificate with `UNAUTHENTICATED` and a message that says why
//! (expired, another CA, none), instead of a bare TLS alert the operator
//! would have to decode (docs/security.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use super::certs::{self, CertError};
use super::role::Role;

/// ALPN of gRPC over a member's listener.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN of the session wire (`session_wire.rs`) over the same listener.
pub const ALPN_SESSION_WIRE: &[u8] = b"cairn-ka1";

#[derive(thiserror::Error, Debug)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// What the peer of a connection proved, checked once after the handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// TLS is off (`--insecure`): nobody is authenticated, nothing checked.
    Insecure,
    /// A certificate of this cluster's CA, valid now, naming this role.
    Verified(Role),
    /// Why the peer is not authenticated (sent back with `UNAUTHENTICATED`).
    Refused(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The three files of an identity directory (`cairn cert issue`).
#[derive(Clone)]
pub struct TlsIdentity {
    pub dir: PathBuf,
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn pem_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certs_of(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

impl TlsIdentity {
    /// Reads `ca.pem`, `cert.pem` and `key.pem` from `dir`.
    pub fn load(dir: &Path) -> Result<TlsIdentity, TlsError> {
        let (ca_path, cert_path, key_path) = (
            dir.join(certs::CA_CERT),
            dir.join(certs::CERT),
            dir.join(certs::KEY),
        );
        let ca_pem = certs::read(&ca_path)?;
        let cert_pem = certs::read(&cert_path)?;
        let key_pem = certs::read(&key_path)?;
        let ca = certs_of(&ca_path, &ca_pem)?;
        let chain = certs_of(&cert_path, &cert_pem)?;
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| pem_err(&key_path, e))?;
        Ok(TlsIdentity {
            dir: dir.to_path_buf(),
            ca,
            chain,
            key: Arc::new(key),
            ca_pem,
            cert_pem,
            key_pem,
        })
    }

    /// The role this identity's own certificate names.
    pub fn role(&self) -> Result<Role, TlsError> {
        Role::of_certificate(&self.chain[0]).map_err(|e| pem_err(&self.dir.join(certs::CERT), e))
    }

    /// What this identity's own certificate proves to a member of its CA
    /// now (Verified with its role, or why not: expired, another CA).
    pub fn self_check(&self) -> Auth {
        match self.authenticator() {
            Ok(a) => a.authenticate(Some(&self.chain), UnixTime::now()),
            Err(e) => Auth::Refused(e.to_string()),
        }
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in &self.ca {
            roots
                .add(c.clone())
                .map_err(|e| pem_err(&self.dir.join(certs::CA_CERT), e))?;
        }
        Ok(Arc::new(roots))
    }

    /// Checks peers' certificates against this identity's CA.
    pub fn authenticator(&self) -> Result<Authenticator, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Authenticator { verifier })
    }

    /// A member's listener: its certificate, client certificates asked for
    /// (checked by [`Authenticator`] after the handshake), gRPC and the
    /// session wire told apart by ALPN.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.server_config_for(&[ALPN_H2, ALPN_SESSION_WIRE])
    }

    /// The admin port's HTTPS (`admin_port.rs`): the same certificate and
    /// optional client certificates (checked by [`Authenticator`]; none is
    /// fine for `/metrics`), HTTP/1.1 only.
    pub fn admin_server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        self.server_config_for(&[b"http/1.1"])
    }

    fn server_config_for(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = Arc::new(Reporting(self.authenticator()?.verifier));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A client of members: presents this identity's certificate and
    /// accepts only a member certificate of this CA ([`super::SERVER_NAME`]).
    pub fn client_config(&self, alpn: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }
}

/// Checks a peer's certificate chain after the handshake.
#[derive(Clone, Debug)]
pub struct Authenticator {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl Authenticator {
    /// What the certificates a peer presented prove, as of `now`.
    pub fn authenticate(&self, peer: Option<&[CertificateDer<'_>]>, now: UnixTime) -> Auth {
        let Some((leaf, intermediates)) = peer.and_then(|p| p.split_first()) else {
            return Auth::Refused(
                "no client certificate: connect with --tls DIR (see `cairn cert issue`)".into(),
            );
        };
        if let Err(e) = self.verifier.verify_client_cert(leaf, intermediates, now) {
            return Auth::Refused(format!("client certificate refused: {}", explain(&e)));
        }
        match Role::of_certificate(leaf) {
            Ok(role) => Auth::Verified(role),
            Err(e) => Auth::Refused(format!("client certificate refused: {e}")),
        }
    }
}

/// An operator's reading of a rustls certificate error.
fn explain(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired) => "expired".into(),
        rustls::Error::InvalidCertificate(C::ExpiredContext { not_after, .. }) => {
            format!(
                "expired (not valid after unix time {})",
                not_after.as_secs()
            )
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "not valid yet (check the clocks)".into()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "not issued by this cluster's CA".into()
        }
        rustls::Error::InvalidCertificate(C::BadSignature) => {
            "bad signature (not issued by this cluster's CA?)".into()
        }
        other => other.to_string(),
    }
}

/// The listener's verifier: asks for a certificate, checks the handshake
/// signature (the client holds the key), and leaves the chain to
/// [`Authenticator`] so that a refusal reaches the client as a status.
#[derive(Debug)]
struct Reporting(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Reporting {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
