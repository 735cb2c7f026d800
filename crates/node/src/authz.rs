//! Who may call what (docs/security.md, "Roles").
//!
//! Two levels. The coarse rule goes by gRPC method and runs before any
//! handler ([`AuthzLayer`]): a reader never reaches a write handler, a chunk
//! never reaches `Raft`. The fine rules need the request's content, so the
//! handlers apply them ([`check_chunk`], [`check_member_self`]): a chunk
//! speaks only for the cid its certificate names, a member advertises and
//! adds only itself.
//!
//! An unauthenticated peer (no certificate, another CA, expired) gets
//! `UNAUTHENTICATED` with the reason; an authenticated one calling beyond
//! its role gets `PERMISSION_DENIED` naming its role and what it may do.
//! Both are logged. With `--insecure` nothing is checked.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::Status;

use crate::tls::{Auth, Role};
use crate::transport::Peer;

/// Which roles a method admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any authenticated peer (health checks).
    Anyone,
    /// Members only: `Raft`.
    Members,
    /// Chunks only (each for its own cid): the `Chunk` service.
    Chunks,
    /// Admins, read-only admins and members: reads of the cluster's state.
    Readers,
    /// Admins, and members for what names themselves (`Propose` of their
    /// own advertisement, `AddLearner` of themselves when joining).
    AdminsAndSelf,
    /// Admins only: every other write.
    Admins,
}

impl Access {
    pub fn admits(self, role: &Role) -> bool {
        matches!(
            (self, role),
            (Access::Anyone, _)
                | (Access::Members, Role::Member(_))
                | (Access::Chunks, Role::Chunk(_))
                | (
                    Access::Readers,
                    Role::Admin(_) | Role::Reader(_) | Role::Member(_)
                )
                | (Access::AdminsAndSelf, Role::Admin(_) | Role::Member(_))
                | (Access::Admins, Role::Admin(_))
        )
    }

    fn who(self) -> &'static str {
        match self {
            Access::Anyone => "any authenticated peer",
            Access::Members => "members only",
            Access::Chunks => "chunks only",
            Access::Readers => "admins, read-only admins (reader) and members",
            Access::AdminsAndSelf => "admins (and a member for itself)",
            Access::Admins => "admins only",
        }
    }
}

/// The rule of a gRPC method path (`/cairn.v1.Meta/Read`). Unknown paths
/// are admins-only: a method added without a rule stays closed.
pub fn access_of(path: &str) -> Access {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    match service {
        "grpc.health.v1.Health" => Access::Anyone,
        "cairn.v1.Raft" => Access::Members,
        "cairn.v1.Chunk" => Access::Chunks,
        "cairn.v1.Meta" => match method {
            "Status" | "Read" | "ListSessions" | "SchedStatus" | "SchedExplain"
            | "UpgradeStatus" => Access::Readers,
            "Propose" | "AddLearner" => Access::AdminsAndSelf,
            _ => Access::Admins,
        },
        _ => Access::Admins,
    }
}

/// The coarse judgement of one call: `Ok` lets it through to its handler.
pub fn judge(peer: Option<&Peer>, path: &str) -> Result<(), Status> {
    let Some(peer) = peer else {
        // Every connection a member accepts carries its Peer; a request
        // without one did not come through the listener.
        tracing::warn!(%path, "refused: a request without connection information");
        return Err(Status::unauthenticated("no connection information"));
    };
    match &peer.auth {
        Auth::Insecure => Ok(()),
        Auth::Refused(why) => {
            tracing::warn!(%peer, %path, "refused: unauthenticated");
            Err(Status::unauthenticated(why.clone()))
        }
        Auth::Verified(role) => {
            let access = access_of(path);
            if access.admits(role) {
                Ok(())
            } else {
                tracing::warn!(%peer, %path, "refused: beyond the caller's role");
                Err(Status::permission_denied(format!(
                    "{role} may not call {path}: {}",
                    access.who()
                )))
            }
        }
    }
}

/// The role the caller of `request` proved; None under `--insecure`. A
/// request without connection information, or from an unauthenticated
/// peer, is refused here too: the handlers do not rely on [`AuthzLayer`]
/// having run.
pub fn role_of<T>(request: &tonic::Request<T>) -> Result<Option<Role>, Status> {
    match request.extensions().get::<Peer>().map(|p| &p.auth) {
        Some(Auth::Verified(role)) => Ok(Some(role.clone())),
        Some(Auth::Insecure) => Ok(None),
        Some(Auth::Refused(why)) => Err(Status::unauthenticated(why.clone())),
        None => Err(Status::unauthenticated("no connection information")),
    }
}

/// A chunk may register, keep alive and report only as the cid its
/// certificate names (and never as a new chunk: its cid is given first).
pub fn check_chunk(role: Option<&Role>, cid: u32, what: &str) -> Result<(), Status> {
    match role {
        None => Ok(()),
        Some(Role::Chunk(own)) if *own == cid => Ok(()),
        Some(Role::Chunk(own)) if cid == 0 => {
            tracing::warn!(role = %Role::Chunk(*own), what, "refused: chunk registering as new");
            Err(Status::permission_denied(format!(
                "chunk:{own} may {what} only as cid {own}, not as a new chunk (cid 0)"
            )))
        }
        Some(role) => {
            tracing::warn!(%role, cid, what, "refused: speaking for another chunk");
            Err(Status::permission_denied(format!(
                "{role} may not {what} as cid {cid}: a chunk certificate speaks for its own cid only"
            )))
        }
    }
}

/// A member may name only itself (its advertisement, joining as a learner).
pub fn check_member_self(role: Option<&Role>, node_id: u64, what: &str) -> Result<(), Status> {
    match role {
        Some(Role::Member(own)) if *own != node_id => {
            tracing::warn!(role = %Role::Member(*own), node_id, what, "refused: member naming another");
            Err(Status::permission_denied(format!(
                "member:{own} may not {what} for member {node_id}: a member speaks for itself only"
            )))
        }
        _ => Ok(()),
    }
}

/// A Raft message speaks for the member its certificate names: the leader
/// of an `AppendEntries` or `InstallSnapshot`, the candidate of a `Vote`.
/// Without this, any member certificate could act as the leader.
pub fn check_raft_sender(
    role: Option<&Role>,
    sender: Option<u64>,
    what: &str,
) -> Result<(), Status> {
    match role {
        Some(Role::Member(own)) if sender != Some(*own) => {
            tracing::warn!(role = %Role::Member(*own), ?sender, what, "refused: raft message for another member");
            Err(Status::permission_denied(format!(
                "member:{own} may not send {what} as member {}: a member speaks for itself only",
                sender.map_or("(none)".to_string(), |s| s.to_string())
            )))
        }
        _ => Ok(()),
    }
}

/// The tower layer that applies [`judge`] to every call of a member's
/// gRPC server.
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthzLayer;

impl<S> tower_layer::Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Authz<S> {
        Authz { inner }
    }
}

#[derive(Clone, Debug)]
pub struct Authz<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower_service::Service<http::Request<B>> for Authz<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match judge(req.extensions().get::<Peer>(), req.uri().path()) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(auth: Auth) -> Peer {
        Peer { addr: None, auth }
    }

    fn code(auth: Auth, path: &str) -> Option<tonic::Code> {
        judge(Some(&peer(auth)), path).err().map(|s| s.code())
    }

    #[test]
    fn each_role_reaches_only_its_methods() {
        use tonic::Code::PermissionDenied as Denied;
        let member = Auth::Verified(Role::Member(1));
        let chunk = Auth::Verified(Role::Chunk(5));
        let admin = Auth::Verified(Role::Admin("ops".into()));
        let reader = Auth::Verified(Role::Reader("ro".into()));
        let cases: &[(&str, [Option<tonic::Code>; 4])] = &[
            // path: member, chunk, admin, reader
            (
                "/cairn.v1.Raft/Vote",
                [None, Some(Denied), Some(Denied), Some(Denied)],
            ),
            (
                "/cairn.v1.Raft/AppendEntries",
                [None, Some(Denied), Some(Denied), Some(Denied)],
            ),
            (
                "/cairn.v1.Chunk/Register",
                [Some(Denied), None, Some(Denied), Some(Denied)],
            ),
            (
                "/cairn.v1.Chunk/KeepAliveStream",
                [Some(Denied), None, Some(Denied), Some(Denied)],
            ),
            ("/cairn.v1.Meta/Read", [None, Some(Denied), None, None]),
            ("/cairn.v1.Meta/Status", [None, Some(Denied), None, None]),
            (
                "/cairn.v1.Meta/UpgradeStatus",
                [None, Some(Denied), None, None],
            ),
            (
                "/cairn.v1.Meta/Propose",
                [None, Some(Denied), None, Some(Denied)],
            ),
            (
                "/cairn.v1.Meta/AddLearner",
                [None, Some(Denied), None, Some(Denied)],
            ),
            (
                "/cairn.v1.Meta/CreateVolume",
                [Some(Denied), Some(Denied), None, Some(Denied)],
            ),
            (
                "/cairn.v1.Meta/ChangeMembership",
                [Some(Denied), Some(Denied), None, Some(Denied)],
            ),
            (
                "/cairn.v1.Meta/SetConfig",
                [Some(Denied), Some(Denied), None, Some(Denied)],
            ),
            (
                "/cairn.v1.Meta/ManualCopy",
                [Some(Denied), Some(Denied), None, Some(Denied)],
            ),
            (
                "/cairn.v1.Meta/NewMethodWithoutARule",
                [Some(Denied), Some(Denied), None, Some(Denied)],
            ),
            ("/grpc.health.v1.Health/Check", [None, None, None, None]),
            (
                "/some.Other/Thing",
                [Some(Denied), Some(Denied), None, Some(Denied)],
            ),
        ];
        for (path, want) in cases {
            for (auth, want) in [&member, &chunk, &admin, &reader].into_iter().zip(want) {
                assert_eq!(code(auth.clone(), path), *want, "{auth:?} calling {path}");
            }
        }
    }

    #[test]
    fn unauthenticated_peers_are_refused_with_the_reason_and_insecure_passes() {
        let refused = judge(
            Some(&peer(Auth::Refused("expired".into()))),
            "/cairn.v1.Meta/Read",
        )
        .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert_eq!(refused.message(), "expired");
        assert_eq!(
            judge(None, "/cairn.v1.Meta/Read").unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(judge(Some(&peer(Auth::Insecure)), "/cairn.v1.Raft/Vote").is_ok());
    }

    #[test]
    fn a_chunk_speaks_for_its_own_cid_and_a_member_for_itself() {
        let five = Role::Chunk(5);
        assert!(check_chunk(Some(&five), 5, "keep alive").is_ok());
        assert!(check_chunk(None, 7, "keep alive").is_ok());
        let e = check_chunk(Some(&five), 7, "keep alive").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("chunk:5") && e.message().contains("cid 7"),
            "{e}"
        );
        assert_eq!(
            check_chunk(Some(&five), 0, "register").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let two = Role::Member(2);
        assert!(check_member_self(Some(&two), 2, "advertise").is_ok());
        assert_eq!(
            check_member_self(Some(&two), 3, "advertise")
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert!(check_member_self(Some(&Role::Admin("a".into())), 3, "join").is_ok());
    }
}
