//! Who a certificate speaks for: the role Cairn reads from the one
//! `urn:cairn:<role>:<name>` URI in its subject alternative names.
//!
//! | role | URI | may (docs/security.md) |
//! |---|---|---|
//! | member | `urn:cairn:member:<node id>` | the `Raft` service; advertise itself |
//! | chunk | `urn:cairn:chunk:<cid>` | register, keep alive and report as that cid only |
//! | admin | `urn:cairn:admin:<name>` | every Meta and Fleet RPC |
//! | reader | `urn:cairn:reader:<name>` | Meta reads only |

use std::fmt;

use x509_parser::extensions::GeneralName;

const PREFIX: &str = "urn:cairn:";

/// A role with the identity it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Member(u64),
    Chunk(u32),
    Admin(String),
    Reader(String),
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RoleError {
    #[error("not a parsable X.509 certificate: {0}")]
    NotACertificate(String),
    #[error("the certificate names no Cairn role (no `urn:cairn:` URI in its subject alternative names)")]
    NoRole,
    #[error("the certificate names several Cairn roles: {0:?}")]
    SeveralRoles(Vec<String>),
    #[error("`{0}` is not a Cairn role: expected urn:cairn:member:<id>, chunk:<cid>, admin:<name> or reader:<name>")]
    BadRole(String),
}

impl Role {
    /// The URI that carries this role in a certificate.
    pub fn uri(&self) -> String {
        format!("{PREFIX}{self}")
    }

    /// Parses `urn:cairn:<role>:<name>`.
    pub fn from_uri(uri: &str) -> Result<Role, RoleError> {
        let bad = || RoleError::BadRole(uri.to_string());
        let rest = uri.strip_prefix(PREFIX).ok_or_else(bad)?;
        rest.parse().map_err(|_| bad())
    }

    /// The role of the certificate `der`: exactly one `urn:cairn:` URI.
    pub fn of_certificate(der: &[u8]) -> Result<Role, RoleError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| RoleError::NotACertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| RoleError::NotACertificate(e.to_string()))?;
        let uris: Vec<&str> = san
            .iter()
            .flat_map(|s| s.value.general_names.iter())
            .filter_map(|n| match n {
                GeneralName::URI(u) if u.starts_with(PREFIX) => Some(*u),
                _ => None,
            })
            .collect();
        match uris[..] {
            [] => Err(RoleError::NoRole),
            [one] => Role::from_uri(one),
            _ => Err(RoleError::SeveralRoles(
                uris.iter().map(|u| u.to_string()).collect(),
            )),
        }
    }
}

/// `member:3`, `chunk:5`, `admin:alice`, `reader:grafana`.
impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Member(id) => write!(f, "member:{id}"),
            Role::Chunk(cid) => write!(f, "chunk:{cid}"),
            Role::Admin(name) => write!(f, "admin:{name}"),
            Role::Reader(name) => write!(f, "reader:{name}"),
        }
    }
}

/// Parses what `Display` prints. Names are 1 to 64 of `[A-Za-z0-9._-]`;
/// ids are positive integers.
impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("`{s}`: expected <role>:<name>, e.g. member:3 or admin:alice")
        })?;
        let id = |what: &str| {
            name.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("`{s}`: {what} must be a positive integer"))
        };
        let plain = name.len() <= 64
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        match kind {
            "member" => id("a member id").map(Role::Member),
            "chunk" => id("a cid").and_then(|n| {
                u32::try_from(n)
                    .map(Role::Chunk)
                    .map_err(|_| format!("`{s}`: a cid fits in 32 bits"))
            }),
            "admin" | "reader" if !plain => Err(format!(
                "`{s}`: a name is 1 to 64 of letters, digits, `.`, `_` and `-`"
            )),
            "admin" => Ok(Role::Admin(name.to_string())),
            "reader" => Ok(Role::Reader(name.to_string())),
            other => Err(format!(
                "`{other}` is not a role: member, chunk, admin or reader"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_print_and_parse_back() {
        for r in [
            Role::Member(3),
            Role::Chunk(u32::MAX),
            Role::Admin("alice".into()),
            Role::Reader("grafana-1.b_c".into()),
        ] {
            assert_eq!(r.to_string().parse::<Role>(), Ok(r.clone()));
            assert_eq!(Role::from_uri(&r.uri()), Ok(r));
        }
    }

    #[test]
    fn malformed_roles_are_refused() {
        for bad in [
            "member:0",
            "member:x",
            "chunk:4294967296",
            "admin:",
            "admin:a b",
            "admin:../x",
            "root:1",
            "member",
        ] {
            assert!(bad.parse::<Role>().is_err(), "{bad}");
        }
        assert!(Role::from_uri("urn:other:member:1").is_err());
    }
}
