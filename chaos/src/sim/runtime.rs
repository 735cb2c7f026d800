//! The simulation's own executor and clock: one thread, virtual time, and
//! openraft's `AsyncRuntime` on top of it.
//!
//! Why not tokio's `current_thread` runtime with `start_paused(true)`: that
//! needs tokio's `test-util` feature, which this crate's Cargo.toml does not
//! enable, and tokio's per-runtime RNG (unbiased `select!`) can only be seeded
//! with `tokio_unstable`. openraft reaches time and tasks only through
//! [`AsyncRuntime`] (checked in openraft-0.9.25's source: `tokio::time` and
//! `tokio::spawn` appear only in `async_runtime.rs`, `instant.rs` and tests),
//! so a small executor of our own gives full control:
//!
//! - tasks run one at a time, in FIFO order of their wake-ups;
//! - when no task can run, the clock jumps to the earliest timer; timers with
//!   the same deadline fire in the order they were first registered;
//! - `thread_rng()` is a thread-local [`Rng`] seeded by the simulation, so
//!   election timeouts come from the seed.
//!
//! tokio's `sync` primitives (channels, watch, oneshot) work unchanged on
//! this executor: they only use wakers.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend};

use crate::rng::Rng;

/// Virtual time starts here (ns), far from 0, so that openraft's
/// `now - duration` never underflows.
const ORIGIN_NS: u64 = 1_000_000 * 1_000_000_000;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type ReadyQueue = Arc<Mutex<VecDeque<Arc<Task>>>>;

thread_local! {
    static EXEC: RefCell<Option<Rc<Exec>>> = const { RefCell::new(None) };
    static RNG: RefCell<Rng> = RefCell::new(Rng::new(0));
    /// Set while the future of a task that panicked is dropped.
    static DROPPING_PANICKED: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened (see `quiet_panics`).
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside a run are findings, recorded with their location: the
/// process-wide hook stays silent for them (a buggy run may panic hundreds of
/// times) and behaves as before for every other thread.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_run = EXEC.with(|e| e.try_borrow().map(|e| e.is_some()).unwrap_or(false));
            if in_run {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// A poisoned lock still yields its data: a panicking task is recorded as a
/// finding, it must not take the whole simulation down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Exec {
    now_ns: Cell<u64>,
    ready: ReadyQueue,
    /// (deadline, registration order) -> waker.
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    timer_seq: Cell<u64>,
    /// Every task not finished yet: dropped at the end of the run (their
    /// futures and the wakers they hold form cycles otherwise).
    tasks: RefCell<BTreeMap<u64, Arc<Task>>>,
    next_task: Cell<u64>,
    panics: RefCell<Vec<String>>,
}

struct Task {
    id: u64,
    future: Mutex<Option<BoxFuture>>,
    queued: AtomicBool,
    ready: ReadyQueue,
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst) {
            lock(&self.ready).push_back(self.clone());
        }
    }
}

fn with_exec<R>(f: impl FnOnce(&Exec) -> R) -> Option<R> {
    EXEC.with(|e| {
        let exec = e.try_borrow().ok()?.clone()?;
        Some(f(&exec))
    })
}

/// Nanoseconds since the start of the current run (0 outside a run).
pub fn elapsed_ns() -> u64 {
    with_exec(|e| e.now_ns.get() - ORIGIN_NS).unwrap_or(0)
}

fn now_ns() -> u64 {
    with_exec(|e| e.now_ns.get()).unwrap_or(ORIGIN_NS)
}

/// Seeds the thread-local generator openraft's `thread_rng()` reads.
pub fn seed_thread_rng(rng: Rng) {
    RNG.with(|r| *r.borrow_mut() = rng);
}

/// How a run ended when its main future did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// No task can run and no timer is pending: everyone waits for no one.
    Deadlock { at_ns: u64 },
    /// The virtual clock passed the limit.
    TimeLimit { at_ns: u64 },
    /// The main future panicked.
    Panicked(String),
}

/// What a run left behind besides its result.
pub struct RunReport<T> {
    pub result: Result<T, RunError>,
    /// Messages of every task that panicked (openraft's included).
    pub panics: Vec<String>,
    /// Virtual time at the end.
    pub elapsed_ns: u64,
}

/// Runs `main` (and everything it spawns) to completion on this thread in
/// virtual time, at most `limit` of it. Tasks still alive at the end are
/// dropped.
pub fn block_on<F>(limit: Duration, main: F) -> RunReport<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let exec = Rc::new(Exec {
        now_ns: Cell::new(ORIGIN_NS),
        ready: Arc::default(),
        timers: RefCell::default(),
        timer_seq: Cell::new(0),
        tasks: RefCell::default(),
        next_task: Cell::new(0),
        panics: RefCell::default(),
    });
    quiet_panics();
    let previous = EXEC.with(|e| e.replace(Some(exec.clone())));
    let limit_ns = ORIGIN_NS.saturating_add(limit.as_nanos().min(u64::MAX as u128) as u64);
    let mut handle = spawn(main);
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let result = loop {
        if let Poll::Ready(r) = Pin::new(&mut handle).poll(&mut cx) {
            break r.map_err(|e| RunError::Panicked(e.to_string()));
        }
        let next = lock(&exec.ready).pop_front();
        if let Some(task) = next {
            run_task(&exec, task);
            continue;
        }
        // Idle: jump to the earliest timer and fire every timer due then.
        let first = exec.timers.borrow().first_key_value().map(|(k, _)| *k);
        let Some((deadline, _)) = first else {
            break Err(RunError::Deadlock {
                at_ns: exec.now_ns.get() - ORIGIN_NS,
            });
        };
        if deadline > limit_ns {
            break Err(RunError::TimeLimit {
                at_ns: exec.now_ns.get() - ORIGIN_NS,
            });
        }
        exec.now_ns.set(exec.now_ns.get().max(deadline));
        loop {
            let due = {
                let mut timers = exec.timers.borrow_mut();
                match timers.first_key_value() {
                    Some((k, _)) if k.0 <= exec.now_ns.get() => timers.pop_first(),
                    _ => None,
                }
            };
            match due {
                Some((_, w)) => w.wake(),
                None => break,
            }
        }
    };
    let elapsed = exec.now_ns.get() - ORIGIN_NS;
    teardown(&exec);
    let panics = exec.panics.take();
    EXEC.with(|e| *e.borrow_mut() = previous);
    RunReport {
        result,
        panics,
        elapsed_ns: elapsed,
    }
}

fn run_task(exec: &Exec, task: Arc<Task>) {
    task.queued.store(false, Ordering::SeqCst);
    let Some(mut fut) = lock(&task.future).take() else {
        return; // finished already: a stale wake-up
    };
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    let polled =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
    match polled {
        Ok(Poll::Pending) => *lock(&task.future) = Some(fut),
        Ok(Poll::Ready(())) => {
            exec.tasks.borrow_mut().remove(&task.id);
        }
        Err(payload) => {
            let msg = panic_message(&payload);
            exec.panics.borrow_mut().push(msg);
            exec.tasks.borrow_mut().remove(&task.id);
            // Dropping the future drops its Completion: the handle reports
            // the panic.
            DROPPING_PANICKED.with(|p| p.set(true));
            drop(fut);
            DROPPING_PANICKED.with(|p| p.set(false));
        }
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    };
    match PANIC_AT.with(|p| p.borrow_mut().take()) {
        Some(at) => format!("{msg} (at {at})"),
        None => msg,
    }
}

/// Drops every unfinished task, repeatedly: dropping a future may spawn.
fn teardown(exec: &Exec) {
    loop {
        let tasks = std::mem::take(&mut *exec.tasks.borrow_mut());
        if tasks.is_empty() {
            break;
        }
        for task in tasks.into_values() {
            let fut = lock(&task.future).take();
            drop(fut);
        }
    }
    lock(&exec.ready).clear();
    let timers = std::mem::take(&mut *exec.timers.borrow_mut());
    drop(timers);
}

// ---- tasks -----------------------------------------------------------------

/// Why a task gave no output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    pub panicked: bool,
    pub message: String,
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.panicked {
            write!(f, "task panicked: {}", self.message)
        } else {
            write!(f, "task cancelled: {}", self.message)
        }
    }
}

struct JoinState<T> {
    result: Option<Result<T, JoinError>>,
    waker: Option<Waker>,
}

pub struct JoinHandle<T> {
    state: Arc<Mutex<JoinState<T>>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.state);
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Owned by the task's future: completes the handle with the output, or
/// (dropped before that: panic or teardown) with an error.
struct Completion<T> {
    state: Arc<Mutex<JoinState<T>>>,
    done: bool,
}

impl<T> Completion<T> {
    fn complete(&mut self, r: Result<T, JoinError>) {
        self.done = true;
        let waker = {
            let mut s = lock(&self.state);
            s.result = Some(r);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        if !self.done {
            // A panic drops the task's state while unwinding (panicking()
            // is true then); the flag covers a future dropped after it.
            let panicked = std::thread::panicking() || DROPPING_PANICKED.with(|p| p.get());
            self.complete(Err(JoinError {
                panicked,
                message: if panicked {
                    "see the run's panics".into()
                } else {
                    "dropped".into()
                },
            }));
        }
    }
}

/// Spawns a task on the current run. Outside a run the future is dropped
/// and the handle reports it.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let state = Arc::new(Mutex::new(JoinState {
        result: None,
        waker: None,
    }));
    let mut completion = Completion {
        state: state.clone(),
        done: false,
    };
    let boxed: BoxFuture = Box::pin(async move {
        let out = future.await;
        completion.complete(Ok(out));
    });
    // Outside a run, `boxed` is dropped with the closure: its Completion
    // completes the handle with "dropped".
    let _spawned = with_exec(move |exec| {
        let id = exec.next_task.get();
        exec.next_task.set(id + 1);
        let task = Arc::new(Task {
            id,
            future: Mutex::new(Some(boxed)),
            queued: AtomicBool::new(true),
            ready: exec.ready.clone(),
        });
        exec.tasks.borrow_mut().insert(id, task.clone());
        lock(&exec.ready).push_back(task);
    });
    JoinHandle { state }
}

// ---- time ------------------------------------------------------------------

/// A point in virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimInstant(u64);

impl SimInstant {
    pub fn now() -> SimInstant {
        SimInstant(now_ns())
    }
}

impl openraft::Instant for SimInstant {
    fn now() -> Self {
        SimInstant::now()
    }
}

fn dur_ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl Add<Duration> for SimInstant {
    type Output = SimInstant;
    fn add(self, d: Duration) -> SimInstant {
        SimInstant(self.0.saturating_add(dur_ns(d)))
    }
}
impl AddAssign<Duration> for SimInstant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}
impl Sub<Duration> for SimInstant {
    type Output = SimInstant;
    fn sub(self, d: Duration) -> SimInstant {
        SimInstant(self.0.saturating_sub(dur_ns(d)))
    }
}
impl SubAssign<Duration> for SimInstant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}
impl Sub<SimInstant> for SimInstant {
    type Output = Duration;
    fn sub(self, o: SimInstant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(o.0))
    }
}

/// Completes when the virtual clock reaches its deadline.
#[derive(Debug)]
pub struct Sleep {
    deadline: u64,
    key: Option<(u64, u64)>,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        let key = self.key;
        let outcome = with_exec(|exec| {
            if exec.now_ns.get() >= deadline {
                if let Some(k) = key {
                    exec.timers.borrow_mut().remove(&k);
                }
                return None;
            }
            let k = key.unwrap_or_else(|| {
                let seq = exec.timer_seq.get();
                exec.timer_seq.set(seq + 1);
                (deadline, seq)
            });
            exec.timers.borrow_mut().insert(k, cx.waker().clone());
            Some(k)
        });
        match outcome {
            Some(Some(k)) => {
                self.key = Some(k);
                Poll::Pending
            }
            // Due, or no run at all (then nothing would ever wake us).
            Some(None) | None => {
                self.key = None;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            with_exec(|exec| {
                if let Ok(mut t) = exec.timers.try_borrow_mut() {
                    t.remove(&k);
                }
            });
        }
    }
}

pub fn sleep(d: Duration) -> Sleep {
    sleep_until(SimInstant::now() + d)
}

pub fn sleep_until(deadline: SimInstant) -> Sleep {
    Sleep {
        deadline: deadline.0,
        key: None,
    }
}

/// The deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

/// `fut`, or [`Elapsed`] at the deadline. The future is polled first, as
/// tokio's `timeout` does.
pub struct Timeout<F> {
    fut: Pin<Box<F>>,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

pub fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
    timeout_at(SimInstant::now() + d, fut)
}

pub fn timeout_at<F: Future>(deadline: SimInstant, fut: F) -> Timeout<F> {
    Timeout {
        fut: Box::pin(fut),
        sleep: sleep_until(deadline),
    }
}

// ---- signals ---------------------------------------------------------------

/// A broadcast wake-up whose waiters wake in the order they began waiting.
///
/// Used instead of `tokio::sync::watch` (and `Notify`): a watch spreads its
/// waiters over 8 `Notify`s chosen with tokio's thread-local RNG
/// (tokio-1.54.1 src/sync/watch.rs:422, `BigNotify::notified`), so several
/// tasks woken by one `send` run in a random order.
#[derive(Clone, Default)]
pub struct Signal {
    inner: Arc<Mutex<SignalInner>>,
}

#[derive(Default)]
struct SignalInner {
    version: u64,
    next_waiter: u64,
    waiters: BTreeMap<u64, Waker>,
}

impl Signal {
    /// How many times it was notified.
    pub fn version(&self) -> u64 {
        lock(&self.inner).version
    }

    /// Wakes every waiter, oldest first.
    pub fn notify(&self) {
        let waiters = {
            let mut s = lock(&self.inner);
            s.version += 1;
            std::mem::take(&mut s.waiters)
        };
        for w in waiters.into_values() {
            w.wake();
        }
    }

    /// Completes once the version is past `seen`.
    pub fn changed_since(&self, seen: u64) -> Changed {
        Changed {
            signal: self.clone(),
            seen,
            key: None,
        }
    }
}

pub struct Changed {
    signal: Signal,
    seen: u64,
    key: Option<u64>,
}

impl Future for Changed {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = lock(&self.signal.inner);
        if s.version > self.seen {
            if let Some(k) = self.key {
                s.waiters.remove(&k);
            }
            drop(s);
            self.key = None;
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let k = s.next_waiter;
                s.next_waiter += 1;
                k
            }
        };
        s.waiters.insert(key, cx.waker().clone());
        drop(s);
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            lock(&self.signal.inner).waiters.remove(&k);
        }
    }
}

// ---- randomness ------------------------------------------------------------

/// A handle on the thread-local, simulation-seeded generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimRng;

impl rand::RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        RNG.with(|r| r.borrow_mut().next_u64())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        RNG.with(|r| rand::RngCore::fill_bytes(&mut *r.borrow_mut(), dest))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// ---- openraft --------------------------------------------------------------

/// openraft's runtime in the simulator: everything on the executor above.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct SimRuntime;

impl AsyncRuntime for SimRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = SimInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = SimRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.panicked
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        SimRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (TokioOneShotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_virtual_time_in_deadline_then_registration_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let report = block_on(Duration::from_secs(10), async move {
            let mut hs = vec![];
            for (i, ms) in [30u64, 10, 30, 20].into_iter().enumerate() {
                let o = o.clone();
                hs.push(spawn(async move {
                    sleep(Duration::from_millis(ms)).await;
                    lock(&o).push((i, elapsed_ns() / 1_000_000));
                }));
            }
            for h in hs {
                h.await.unwrap();
            }
            let t = timeout(Duration::from_millis(5), sleep(Duration::from_secs(1))).await;
            assert_eq!(t, Err(Elapsed));
            elapsed_ns()
        });
        assert_eq!(report.result, Ok(35_000_000));
        assert_eq!(*lock(&order), vec![(1, 10), (3, 20), (0, 30), (2, 30)]);
    }

    #[test]
    fn panics_and_deadlocks_are_reported_not_propagated() {
        let report = block_on(Duration::from_secs(10), async {
            let h = spawn(async { panic!("boom") });
            let r: Result<(), JoinError> = h.await;
            assert!(r.unwrap_err().panicked);
            let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
            let _ = rx.await; // never sent, never dropped: a deadlock
        });
        assert!(matches!(report.result, Err(RunError::Deadlock { .. })));
        assert_eq!(report.panics.len(), 1);
        assert!(
            report.panics[0].starts_with("boom (at "),
            "{:?}",
            report.panics
        );
    }
}
