//! Mutual TLS: the cluster's CA and certificates (`certs`), the roles they
//! carry (`role`), and the rustls configurations and post-handshake check
//! (`verify`). docs/security.md has the threat model and the workflow.

pub mod certs;
pub mod role;
pub mod verify;

pub use certs::{Ca, CertError};
pub use role::{Role, RoleError};
pub use verify::{Auth, Authenticator, TlsError, TlsIdentity};

/// The name every member certificate carries and every client checks:
/// members are reached by address, and any member of the cluster's CA may
/// answer for the cluster.
pub const SERVER_NAME: &str = "member.cairn";

#[cfg(test)]
mod tests;
