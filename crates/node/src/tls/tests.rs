use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::verify::ALPN_H2;
use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

fn ca(name: &str) -> Ca {
    Ca::generate(name, now() - days(1), now() + days(3650)).unwrap()
}

/// An identity directory for `role`, valid from `from` to `to` (days from now).
fn identity(ca: &Ca, role: Role, from: i64, to: i64) -> (tempfile::TempDir, TlsIdentity) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("id");
    ca.issue_into(&role, now() + days(from), now() + days(to), &path)
        .unwrap();
    let id = TlsIdentity::load(&path).unwrap();
    (dir, id)
}

fn leaf(id: &TlsIdentity) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_certificate_of_the_cluster_ca_proves_its_role() {
    let ca = ca("a");
    let (_d, server) = identity(&ca, Role::Member(1), 0, 365);
    let auth = server.authenticator().unwrap();
    for role in [
        Role::Member(3),
        Role::Chunk(5),
        Role::Admin("alice".into()),
        Role::Reader("grafana".into()),
    ] {
        let (_d, id) = identity(&ca, role.clone(), 0, 365);
        assert_eq!(id.role().unwrap(), role);
        assert_eq!(
            auth.authenticate(Some(&leaf(&id)), UnixTime::now()),
            Auth::Verified(role)
        );
    }
}

#[test]
fn another_ca_an_expired_certificate_and_none_are_refused_with_the_reason() {
    let (ours, theirs) = (ca("ours"), ca("theirs"));
    let (_d, server) = identity(&ours, Role::Member(1), 0, 365);
    let auth = server.authenticator().unwrap();
    let refused = |id: &TlsIdentity| match auth.authenticate(Some(&leaf(id)), UnixTime::now()) {
        Auth::Refused(why) => why,
        other => panic!("accepted: {other:?}"),
    };
    let (_d, foreign) = identity(&theirs, Role::Admin("mallory".into()), 0, 365);
    assert!(
        refused(&foreign).contains("not issued by this cluster's CA"),
        "{}",
        refused(&foreign)
    );
    let (_d, expired) = identity(&ours, Role::Admin("alice".into()), -30, -1);
    assert!(
        refused(&expired).contains("expired"),
        "{}",
        refused(&expired)
    );
    let (_d, early) = identity(&ours, Role::Admin("alice".into()), 2, 30);
    assert!(
        refused(&early).contains("not valid yet"),
        "{}",
        refused(&early)
    );
    match auth.authenticate(None, UnixTime::now()) {
        Auth::Refused(why) => assert!(why.contains("no client certificate"), "{why}"),
        other => panic!("accepted: {other:?}"),
    }
}

#[test]
fn identity_files_are_never_overwritten_and_the_key_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let ca = ca("a");
    let dir = tempfile::tempdir().unwrap();
    let cadir = dir.path().join("ca");
    ca.save(&cadir).unwrap();
    assert!(matches!(ca.save(&cadir), Err(CertError::Exists(_))));
    let again = Ca::load(&cadir).unwrap();
    assert_eq!(again.cert_pem(), ca.cert_pem());
    let id = dir.path().join("m1");
    again
        .issue_into(&Role::Member(1), now(), now() + days(1), &id)
        .unwrap();
    let mode = |f: &str| std::fs::metadata(id.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("key.pem"), 0o600);
    assert_eq!(mode("cert.pem"), 0o644);
    assert_eq!(
        std::fs::metadata(cadir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let before = std::fs::read(id.join("key.pem")).unwrap();
    assert!(matches!(
        again.issue_into(&Role::Member(1), now(), now() + days(1), &id),
        Err(CertError::Exists(_))
    ));
    assert_eq!(std::fs::read(id.join("key.pem")).unwrap(), before);
}

/// A TLS handshake between `server` and `client` over an in-memory pipe;
/// returns what the server's authenticator makes of the client, or the
/// client's handshake error.
async fn handshake(server: &TlsIdentity, client: &TlsIdentity) -> Result<Auth, String> {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server.server_config().unwrap());
    let connector = tokio_rustls::TlsConnector::from(client.client_config(ALPN_H2).unwrap());
    let auth = server.authenticator().unwrap();
    let serve = tokio::spawn(async move {
        let mut tls = acceptor.accept(s).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let who = auth.authenticate(conn.peer_certificates(), UnixTime::now());
        assert_eq!(conn.alpn_protocol(), Some(ALPN_H2));
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        tls.write_all(&b).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(who)
    });
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    let talk = async {
        let mut tls = connector
            .connect(name, c)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    let talked = tokio::time::timeout(Duration::from_secs(10), talk)
        .await
        .map_err(|_| "handshake timed out".to_string())?;
    match talked {
        Ok(()) => serve.await.map_err(|e| e.to_string())?,
        Err(e) => {
            serve.abort();
            Err(e)
        }
    }
}

#[tokio::test]
async fn members_serve_clients_of_every_role_and_report_bad_certificates_after_the_handshake() {
    let (ours, theirs) = (ca("ours"), ca("theirs"));
    let (_d1, member) = identity(&ours, Role::Member(1), 0, 365);
    let (_d2, admin) = identity(&ours, Role::Admin("alice".into()), 0, 365);
    assert_eq!(
        handshake(&member, &admin).await,
        Ok(Auth::Verified(Role::Admin("alice".into())))
    );
    // An expired client certificate: the handshake completes, the refusal
    // (with its reason) is the server's to send as a status.
    let (_d3, expired) = identity(&ours, Role::Chunk(5), -30, -1);
    match handshake(&member, &expired).await {
        Ok(Auth::Refused(why)) => assert!(why.contains("expired"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A client of another CA does not trust our member: it stops the
    // handshake itself.
    let (_d4, foreign) = identity(&theirs, Role::Admin("mallory".into()), 0, 365);
    assert!(handshake(&member, &foreign).await.is_err());
    // A chunk certificate cannot serve as a member: no server name.
    let (_d5, chunk) = identity(&ours, Role::Chunk(7), 0, 365);
    let err = handshake(&chunk, &admin).await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn a_certificate_without_a_role_names_none() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["example.org".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    assert_eq!(Role::of_certificate(cert.der()), Err(RoleError::NoRole));
}
