//! The session wire: keepalives as length-prefixed protobuf frames on the
//! members' own port, without HTTP/2.
//!
//! Why: with 10,000 chunks at one keepalive a second, the leader spent
//! ~18 % of a core in HTTP/2 stream bookkeeping and the per-stream task
//! wakeups of gRPC streams, for messages of a few dozen bytes. Here one
//! task per connection reads every frame that has arrived, renews them all
//! under one lock of the tracker, and answers with one write
//! (docs/sessions.md, "The session wire", has the figures and the
//! alternatives).
//!
//! A connection starts with [`MAGIC`]; the member's listener tells it from
//! HTTP/2 (whose preface starts with "PRI") by its first byte, so members
//! keep a single address. Frames: a 4-byte big-endian length, then one
//! protobuf message (`WireKeepAlive` in, `WireReply` out; proto/cairn.proto).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Code, Status};

use crate::chunk_service::renew_all;
use crate::limits::Bucket;
use crate::meta_service::LEADER_KEY;
use crate::sessions::Sessions;
use crate::tls::{Auth, Role};
use crate::transport::{Io, Peer, Transport};
use crate::types::{pb, Raft};

/// The first bytes of a session wire connection.
pub const MAGIC: &[u8; 8] = b"CAIRNKA1";
/// A keepalive is a few dozen bytes (a few hundred with space figures and
/// command results); anything this large is a broken or hostile peer.
pub const MAX_FRAME: usize = 1 << 20;
/// How long a new connection may take to send its magic.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A sender shared by many chunks gathers their keepalives this long
/// before it writes them: every write wakes the leader, and a wakeup costs
/// it far more than a keepalive (a context switch; on a VM, an exit).
/// A keepalive arrives at most this much later: nothing next to a lease
/// of seconds.
pub const COALESCE: Duration = Duration::from_millis(5);

#[derive(thiserror::Error, Debug)]
pub enum WireError {
    #[error("not a session wire connection (bad magic)")]
    BadMagic,
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("cannot decode a frame: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no magic within {HELLO_TIMEOUT:?}")]
    HelloTimeout,
}

/// Appends `m` as one frame.
pub fn encode_frame(m: &impl Message, out: &mut Vec<u8>) {
    let len = m.encoded_len();
    out.reserve(4 + len);
    // A frame's length always fits: messages are built by this process and
    // far smaller than 4 GiB.
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // Encoding into a Vec cannot run out of room (it grows).
    let _ = m.encode(out);
}

/// Decodes the next whole frame at the front of `buf` and consumes it, if
/// `buf` holds one. Decoding straight from the buffer (no `split_to`) keeps
/// the buffer unshared, so it is reused rather than reallocated.
pub fn take_frame<M: Message + Default>(buf: &mut BytesMut) -> Result<Option<M>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        // Room for the rest, so the next read completes the frame.
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    let m = M::decode(&buf[4..4 + len]);
    buf.advance(4 + len);
    Ok(Some(m?))
}

/// The reply carrying `result`, as the unary KeepAlive would have answered.
pub fn reply(seq: u64, result: Result<pb::KeepAliveResponse, Status>) -> pb::WireReply {
    use pb::wire_reply::Result as R;
    let result = match result {
        Ok(r) => R::Ok(r),
        Err(s) => R::Error(pb::WireError {
            code: s.code() as i32,
            message: s.message().to_string(),
            leader: s
                .metadata()
                .get(LEADER_KEY)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        }),
    };
    pb::WireReply {
        seq,
        result: Some(result),
    }
}

/// The inverse of [`reply`]: a gRPC-like result for the chunk's loop.
pub fn reply_result(r: pb::WireReply) -> Result<pb::KeepAliveResponse, Status> {
    use pb::wire_reply::Result as R;
    match r.result {
        Some(R::Ok(ok)) => Ok(ok),
        Some(R::Error(e)) => {
            let mut s = Status::new(Code::from_i32(e.code), e.message);
            if let Ok(v) = e.leader.parse() {
                if !e.leader.is_empty() {
                    s.metadata_mut().insert(LEADER_KEY, v);
                }
            }
            Err(s)
        }
        None => Err(Status::internal("empty reply on the session wire")),
    }
}

// ---------------------------------------------------------------- server

/// Serves one session wire connection until the peer closes it, it breaks
/// the protocol, or the member stops.
/// `peer` is what the connection's certificate proved: a chunk keeps alive
/// only its own cid (crate::authz), an unauthenticated peer gets
/// `UNAUTHENTICATED` with the reason for every keepalive.
/// `limit`: the connection's keepalive rate; over it, the next read waits.
pub async fn serve(
    stream: Io,
    peer: Peer,
    limit: Bucket,
    raft: Raft,
    sessions: Sessions,
    stop: watch::Receiver<bool>,
) {
    if let Err(e) = serve_conn(stream, &peer, limit, raft, sessions, stop).await {
        tracing::debug!(%peer, error = %e, "session wire connection closed");
    }
}

async fn serve_conn(
    mut stream: Io,
    peer: &Peer,
    mut limit: Bucket,
    raft: Raft,
    sessions: Sessions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WireError> {
    let mut magic = [0u8; MAGIC.len()];
    tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut magic))
        .await
        .map_err(|_| WireError::HelloTimeout)??;
    if &magic != MAGIC {
        return Err(WireError::BadMagic);
    }
    let role = match &peer.auth {
        Auth::Verified(role) => Some(role.clone()),
        Auth::Insecure => None,
        Auth::Refused(why) => {
            tracing::warn!(%peer, "session wire refused: unauthenticated");
            return refuse_all(stream, Status::unauthenticated(why.clone()), stop).await;
        }
    };
    if !matches!(role, None | Some(Role::Chunk(_))) {
        tracing::warn!(%peer, "session wire refused: not a chunk");
        let role = role.map(|r| r.to_string()).unwrap_or_default();
        let msg = format!("{role} may not keep alive: the session wire is for chunks only");
        return refuse_all(stream, Status::permission_denied(msg), stop).await;
    }
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut out = Vec::with_capacity(64 << 10);
    let mut seqs = Vec::new();
    let mut reqs = Vec::new();
    loop {
        if buf.capacity() - buf.len() < 4 << 10 {
            buf.reserve(64 << 10);
        }
        let n = tokio::select! {
            r = rd.read_buf(&mut buf) => r?,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        // Everything that arrived is renewed together: one tracker lock and
        // one write for the batch, however many chunks share the connection.
        while let Some(m) = take_frame::<pb::WireKeepAlive>(&mut buf)? {
            seqs.push(m.seq);
            reqs.push(m.keepalive);
        }
        if reqs.is_empty() {
            continue;
        }
        // A connection over its rate waits here before it is served, and
        // reads nothing meanwhile: TCP pushes back on the flooding chunk.
        limit.take(reqs.len()).await;
        let results = renew_all(&raft, &sessions, role.as_ref(), reqs.drain(..));
        for (seq, r) in seqs.drain(..).zip(results) {
            encode_frame(&reply(seq, r), &mut out);
        }
        wr.write_all(&out).await?;
        out.clear();
    }
}

/// Answers the first keepalives of a refused connection with `status` (the
/// chunk reads why, instead of a dropped connection), then closes it: a
/// refused peer holds no connection open.
async fn refuse_all(
    stream: Io,
    status: Status,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WireError> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4 << 10);
    let mut out = Vec::new();
    while out.is_empty() {
        let n = tokio::select! {
            r = tokio::time::timeout(HELLO_TIMEOUT, rd.read_buf(&mut buf)) => match r {
                Ok(r) => r?,
                Err(_) => return Ok(()),
            },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        while let Some(m) = take_frame::<pb::WireKeepAlive>(&mut buf)? {
            encode_frame(&reply(m.seq, Err(status.clone())), &mut out);
        }
    }
    wr.write_all(&out).await?;
    wr.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------- client

/// The chunk side: one connection per member, shared by every chunk that
/// uses this client, with replies matched to requests by `seq`.
pub struct WireClient {
    transport: Transport,
    conns: tokio::sync::Mutex<HashMap<String, Arc<Conn>>>,
    seq: AtomicU64,
}

struct Conn {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Pending>,
}

#[derive(Default)]
struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<pb::WireReply>>>,
    closed: AtomicBool,
}

impl Pending {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<pb::WireReply>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection is gone: every waiting request fails at once.
    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.waiting().clear();
    }
}

impl WireClient {
    pub fn new(transport: Transport) -> WireClient {
        WireClient {
            transport,
            conns: Default::default(),
            seq: AtomicU64::new(0),
        }
    }

    /// One keepalive to the member at `addr`; an error carries the status
    /// the unary KeepAlive would have returned (with "cairn-leader").
    pub async fn keepalive(
        &self,
        addr: &str,
        req: pb::KeepAliveRequest,
        wait: Duration,
    ) -> Result<pb::KeepAliveResponse, Status> {
        let conn = self.conn(addr).await?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.waiting().insert(seq, tx);
        let mut frame = Vec::new();
        encode_frame(
            &pb::WireKeepAlive {
                seq,
                keepalive: Some(req),
            },
            &mut frame,
        );
        if conn.frames.send(frame).is_err() {
            conn.pending.close();
            return Err(Status::unavailable(format!(
                "session wire to {addr} closed"
            )));
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => reply_result(r),
            Ok(Err(_)) => Err(Status::unavailable(format!("session wire to {addr} lost"))),
            Err(_) => {
                conn.pending.waiting().remove(&seq);
                Err(Status::deadline_exceeded("no keepalive reply in time"))
            }
        }
    }

    /// The open connection to `addr`, or a new one.
    async fn conn(&self, addr: &str) -> Result<Arc<Conn>, Status> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(addr) {
            if !c.pending.closed.load(Ordering::Relaxed) {
                return Ok(c.clone());
            }
        }
        let unavailable = |e: String| Status::unavailable(format!("session wire to {addr}: {e}"));
        // The TLS handshake costs a round trip more than TCP's.
        let connect = self.transport.connect_wire(addr);
        let mut stream = tokio::time::timeout(Duration::from_millis(1000), connect)
            .await
            .map_err(|_| unavailable("connect timed out".into()))?
            .map_err(|e| unavailable(e.to_string()))?;
        stream
            .write_all(MAGIC)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let (rd, wr) = tokio::io::split(stream);
        let (frames, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        tokio::spawn(write_loop(wr, rx, pending.clone()));
        tokio::spawn(read_loop(rd, pending.clone()));
        let c = Arc::new(Conn { frames, pending });
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// Sends frames in batches: after the first frame it gathers for
/// [`COALESCE`], then writes everything queued at once.
async fn write_loop(
    mut wr: tokio::io::WriteHalf<Io>,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pending: Arc<Pending>,
) {
    let mut out = Vec::with_capacity(64 << 10);
    while let Some(first) = rx.recv().await {
        out.extend_from_slice(&first);
        tokio::time::sleep(COALESCE).await;
        while out.len() < 256 << 10 {
            match rx.try_recv() {
                Ok(more) => out.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if wr.write_all(&out).await.is_err() || pending.closed.load(Ordering::Relaxed) {
            break;
        }
        out.clear();
    }
    pending.close();
    // The read half lives on in read_loop: only a shutdown tells the
    // member (and through its close, read_loop) that this connection is over.
    let _ = wr.shutdown().await;
}

/// Hands each reply to the request waiting for it.
async fn read_loop(mut rd: tokio::io::ReadHalf<Io>, pending: Arc<Pending>) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let r: Result<(), WireError> = async {
        loop {
            if buf.capacity() - buf.len() < 4 << 10 {
                buf.reserve(64 << 10);
            }
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            while let Some(r) = take_frame::<pb::WireReply>(&mut buf)? {
                if let Some(tx) = pending.waiting().remove(&r.seq) {
                    let _ = tx.send(r);
                }
            }
        }
    }
    .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "session wire reply stream ended");
    }
    pending.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ka(cid: u32) -> pb::WireKeepAlive {
        pb::WireKeepAlive {
            seq: u64::from(cid) * 10,
            keepalive: Some(pb::KeepAliveRequest {
                cid,
                session_id: 7,
                space: None,
                results: vec![],
                progress: vec![],
            }),
        }
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_in_order() {
        let mut wire = Vec::new();
        for cid in 1..=3 {
            encode_frame(&ka(cid), &mut wire);
        }
        // Feed the bytes in every split point: a frame is taken only once
        // it is complete, and never twice.
        for cut in 0..=wire.len() {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(part);
                while let Some(m) = take_frame::<pb::WireKeepAlive>(&mut buf).expect("valid") {
                    got.push(m);
                }
            }
            assert_eq!(got, vec![ka(1), ka(2), ka(3)], "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering_it() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(matches!(
            take_frame::<pb::WireKeepAlive>(&mut buf),
            Err(WireError::TooLarge(_))
        ));
    }

    #[test]
    fn errors_keep_their_code_and_leader_across_the_wire() {
        let mut s = Status::unavailable("not the leader");
        s.metadata_mut()
            .insert(LEADER_KEY, "127.0.0.1:7401".parse().expect("ascii"));
        let back = reply_result(reply(5, Err(s))).expect_err("an error");
        assert_eq!(back.code(), Code::Unavailable);
        assert_eq!(back.message(), "not the leader");
        assert_eq!(
            back.metadata()
                .get(LEADER_KEY)
                .and_then(|v| v.to_str().ok()),
            Some("127.0.0.1:7401")
        );
        let gone = reply_result(reply(6, Err(Status::not_found("session over")))).expect_err("err");
        assert_eq!(gone.code(), Code::NotFound);
        assert!(gone.metadata().get(LEADER_KEY).is_none());
        let ok = pb::KeepAliveResponse {
            lease_ms: 14_000,
            keepalive_ms: 2_000,
            commands: vec![],
            term: 3,
        };
        assert_eq!(reply_result(reply(7, Ok(ok.clone()))).expect("ok"), ok);
    }
}
