//! A simulated chunk: `cairn_node::fleet`'s chunk loop on the simulated
//! network and clock. It keeps alive every interval (lease / 7) through the
//! node it believes leads, follows leader hints (or rotates through the
//! members), registers again when told its session is over, runs the
//! copies the leader's keepalive replies carry (`cairn_node::copy_exec`,
//! the fleet's own chunk-side code) and reports them in its next
//! keepalives. Stopped by the nemesis, it is silent and loses its copies;
//! started again, it registers (a restarted chunk).
//!
//! Chunks reach the members over the simulated network at their own
//! addresses ([`chunk_addr`]): latency, loss, partitions (the nemesis puts
//! each chunk on one side), refused by a crashed member, held by a paused
//! one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_node::copy_exec::{ChunkCopies, ACK_POLL_MS};
use cairn_sched::keepalive_interval_ms;
use cairn_state::{ChunkSpaceInfo, Cid};

use super::leader::{self, ChunkError, Node};
use super::runtime::{elapsed_ns, lock, sleep, timeout};
use super::world::{chunk_addr, World};

/// Chunk-side slot limit per kind (as the state's default slot limits).
pub const CHUNK_SLOTS: u32 = 8;
/// Disk bandwidth: a 256 MiB extent copies in two seconds (long enough
/// for leader changes to fall in the middle of copies).
pub const BANDWIDTH_MB_S: u64 = 128;
/// After a failed call, before the next (the fleet's `retry`).
const RETRY: Duration = Duration::from_millis(100);
/// A registration that takes longer is given up (the fleet's 10 s).
const REGISTER_WAIT: Duration = Duration::from_secs(10);

/// What every simulated chunk reports: equal figures everywhere, so the
/// planners see balanced chunks with plenty of room.
pub fn space() -> ChunkSpaceInfo {
    let tib = 1u64 << 40;
    ChunkSpaceInfo {
        valid_data_space: tib,
        total_data_capacity: tib,
        ..ChunkSpaceInfo::default()
    }
}

/// One round trip to member `to`; `f` runs at the member. None: refused
/// (the member is down). A message a partition (or the network's loss)
/// drops never completes: the caller's timeout ends the call.
async fn call<T, F, Fut>(world: &Arc<World>, cid: Cid, to: u64, what: &str, f: F) -> Option<T>
where
    F: FnOnce(Node) -> Fut,
    Fut: Future<Output = T>,
{
    let addr = chunk_addr(cid);
    let (id, latency) = world.draw_message();
    world.trace(format_args!("chunk c{cid} m{id} -> n{to} {what}"));
    sleep(latency).await;
    if !world.passes(addr, to) {
        world.trace(format_args!("drop m{id}"));
        std::future::pending::<()>().await;
    }
    world.wait_unpaused(to).await;
    let Some(inc) = world.incarnation(to) else {
        world.trace(format_args!("refused m{id}"));
        return None;
    };
    let out = f(Node::new(world.clone(), to, &inc)).await;
    sleep(world.draw_latency()).await;
    if !world.passes(to, addr) {
        world.trace(format_args!("drop reply m{id}"));
        std::future::pending::<()>().await;
    }
    world.wait_unpaused(to).await;
    world.trace(format_args!("chunk c{cid} reply m{id}"));
    Some(out)
}

/// The chunk's loop, forever (the run's teardown ends it). `session_id`:
/// the session the setup opened for it.
pub async fn run(world: Arc<World>, cid: Cid, mut session_id: u64, lease_ms: u64) {
    let mut copies = ChunkCopies::default();
    let mut leader: Option<u64> = None;
    let mut next = (cid as usize) % world.ids.len().max(1);
    let mut interval = Duration::from_millis(keepalive_interval_ms(lease_ms));
    let space = space();
    // The setup reported it with the session, as a registration does.
    let mut acked_space = Some(space);
    // The chunk knows the setup's session as if its registration's reply
    // had come now (the checks count only sessions a chunk knew).
    if let Some(c) = lock(&world.chunks).get_mut(&cid) {
        c.last_ack.entry(session_id).or_insert_with(elapsed_ns);
    }
    // As after a registration: the first keepalive one interval later (the
    // leader's tracker learns of the setup's sessions at its next tick).
    sleep(interval).await;
    loop {
        if world.chunk_stopped(cid) {
            // Silent until started, then back as a restarted chunk.
            session_id = 0;
            copies.crash(&world.disks);
            loop {
                let (signal, seen) = world.chunk_signal(cid);
                if !world.chunk_stopped(cid) {
                    break;
                }
                signal.changed_since(seen).await;
            }
            continue;
        }
        let to = match leader {
            Some(l) => l,
            None => {
                next = (next + 1) % world.ids.len().max(1);
                world.ids[next]
            }
        };
        if session_id == 0 {
            let r = timeout(
                REGISTER_WAIT,
                call(&world, cid, to, "register", |node| async move {
                    leader::register(&node, cid, space).await
                }),
            )
            .await;
            match r {
                Ok(Some(Ok((sid, lease)))) => {
                    world.trace(format_args!("chunk c{cid} registered session {sid}"));
                    session_id = sid;
                    acked_space = Some(space);
                    interval = Duration::from_millis(keepalive_interval_ms(lease));
                    leader = Some(to);
                    if let Some(c) = lock(&world.chunks).get_mut(&cid) {
                        c.registrations += 1;
                        c.last_ack.insert(sid, elapsed_ns());
                    }
                }
                Ok(Some(Err(e))) => {
                    leader = hint(to, &e);
                    sleep(RETRY).await;
                    continue;
                }
                Ok(None) | Err(_) => {
                    leader = None;
                    sleep(RETRY).await;
                    continue;
                }
            }
        } else {
            let now = leader::now_ms();
            let (results, _progress) = copies.poll(now, &world.disks);
            let report = (acked_space != Some(space)).then_some(space);
            // A keepalive that takes longer than an interval is as good as lost.
            let wait = interval.max(Duration::from_millis(500));
            let r = timeout(
                wait,
                call(&world, cid, to, "keepalive", |node| async move {
                    leader::keepalive(&node, cid, session_id, report, results)
                }),
            )
            .await;
            match r {
                Ok(Some(Ok(reply))) => {
                    copies.on_reply(
                        leader::now_ms(),
                        reply.term,
                        &reply.commands,
                        &world.disks,
                        BANDWIDTH_MB_S,
                    );
                    acked_space = Some(space);
                    interval = Duration::from_millis(reply.keepalive_ms.max(50));
                    leader = Some(to);
                    if let Some(c) = lock(&world.chunks).get_mut(&cid) {
                        c.keepalives += 1;
                        c.last_ack.insert(session_id, elapsed_ns());
                    }
                }
                Ok(Some(Err(ChunkError::NotFound(why)))) => {
                    world.trace(format_args!(
                        "chunk c{cid} session {session_id} over: {why}"
                    ));
                    if let Some(c) = lock(&world.chunks).get_mut(&cid) {
                        c.lost += 1;
                    }
                    session_id = 0;
                    continue;
                }
                Ok(Some(Err(ChunkError::Renewing(_)))) => {
                    // `fleet.rs`: the same member again, shortly.
                    sleep(RETRY).await;
                    continue;
                }
                Ok(Some(Err(e))) => {
                    leader = hint(to, &e);
                    sleep(RETRY).await;
                    continue;
                }
                Ok(None) | Err(_) => {
                    leader = None;
                    sleep(RETRY).await;
                    continue;
                }
            }
        }
        // One interval, or less: a copy finishing, results not yet recorded,
        // or a stop.
        let mut pause = interval;
        let now = leader::now_ms();
        if let Some(at) = copies.next_finish_ms() {
            pause = pause.min(Duration::from_millis(at.saturating_sub(now) + 1));
        }
        if copies.awaiting_ack() {
            pause = pause.min(Duration::from_millis(ACK_POLL_MS));
        }
        let (signal, seen) = world.chunk_signal(cid);
        let _ = timeout(pause, signal.changed_since(seen)).await;
    }
}

/// The leader a refusal names (not the member that refused), as
/// `fleet.rs` Conn::failed follows it.
fn hint(to: u64, e: &ChunkError) -> Option<u64> {
    match e {
        ChunkError::NotLeader(Some(l)) if *l != to => Some(*l),
        _ => None,
    }
}
