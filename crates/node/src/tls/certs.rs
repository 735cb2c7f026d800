//! A cluster's certificate authority and the certificates it issues
//! (`cairn cert init|issue`), generated with rcgen.
//!
//! Files: a CA directory holds `ca.pem` and `ca.key` (mode 0600); an
//! identity directory holds `ca.pem`, `cert.pem` and `key.pem` (0600), the
//! three files a member, a chunk or the CLI is started with (`--tls DIR`).
//! Nothing is ever overwritten: an existing file is an error.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use super::role::Role;
use super::SERVER_NAME;

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";

#[derive(thiserror::Error, Debug)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} exists already; Cairn never overwrites a certificate or key (remove it first, or choose another directory)")]
    Exists(PathBuf),
    #[error("{path}: not a usable {what}: {reason}")]
    Bad {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate and its private key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A validity of `days` from now, backdated an hour: a peer whose clock is
/// slightly behind still accepts a certificate issued a moment ago.
pub fn validity(days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (
        now - time::Duration::hours(1),
        now + time::Duration::days(i64::from(days)),
    )
}

/// The cluster's certificate authority.
pub struct Ca {
    cert_pem: String,
    key: KeyPair,
}

impl Ca {
    /// A new self-signed CA valid from `not_before` to `not_after`.
    pub fn generate(
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("Cairn CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Reads `ca.pem` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Ca, CertError> {
        let cert_pem = read(&dir.join(CA_CERT))?;
        let key_path = dir.join(CA_KEY);
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| CertError::Bad {
            path: key_path,
            what: "private key",
            reason: e.to_string(),
        })?;
        // Checked now, not at the first `issue`.
        Issuer::from_ca_cert_pem(&cert_pem, &key).map_err(|e| CertError::Bad {
            path: dir.join(CA_CERT),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        Ok(Ca { cert_pem, key })
    }

    /// Writes `ca.pem` and `ca.key` (0600) into `dir`, creating it.
    pub fn save(&self, dir: &Path) -> Result<(), CertError> {
        create_dir(dir)?;
        write_new(&dir.join(CA_CERT), &self.cert_pem, false)?;
        write_new(&dir.join(CA_KEY), &self.key.serialize_pem(), true)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `role`, signed by this CA. Members get the server
    /// name every client checks ([`SERVER_NAME`]) and may serve and call;
    /// the other roles may only call.
    pub fn issue(
        &self,
        role: &Role,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, CertError> {
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("cairn {role}"));
        params.subject_alt_names = vec![SanType::URI(role.uri().try_into()?)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Role::Member(_) = role {
            params
                .subject_alt_names
                .push(SanType::DnsName(SERVER_NAME.try_into()?));
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate for `role` into the identity directory `dir`:
    /// `ca.pem`, `cert.pem` and `key.pem` (0600).
    pub fn issue_into(
        &self,
        role: &Role,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        dir: &Path,
    ) -> Result<(), CertError> {
        let issued = self.issue(role, not_before, not_after)?;
        create_dir(dir)?;
        for name in [CA_CERT, CERT, KEY] {
            if dir.join(name).exists() {
                return Err(CertError::Exists(dir.join(name)));
            }
        }
        write_new(&dir.join(CA_CERT), &self.cert_pem, false)?;
        write_new(&dir.join(CERT), &issued.cert_pem, false)?;
        write_new(&dir.join(KEY), &issued.key_pem, true)
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Cairn");
    dn.push(DnType::CommonName, common_name);
    dn
}

pub(crate) fn read(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates `path` (which must not exist), readable by its owner only when
/// `secret`, and syncs it.
fn write_new(path: &Path, text: &str, secret: bool) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => CertError::Exists(path.to_path_buf()),
            _ => io(e),
        })?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}
