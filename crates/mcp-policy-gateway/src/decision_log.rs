//! The decision log: one JSON object per line and per decision.
//!
//! A line holds who called which tool, what the policy decided and why, and how the call went;
//! never the arguments' values, nor anything the upstream wrote on its stderr (which often holds
//! them).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};

/// The default of `--decision-log-queue`: the most bytes of lines waiting for the sink (about
/// 12,000 lines of 350 bytes).
pub const DEFAULT_QUEUE_BYTES: usize = 4 << 20;

/// The least `--decision-log-queue` accepted: room for any line the gateway writes in practice
/// (messages are bounded to 1 KiB).
pub const MIN_QUEUE_BYTES: usize = 64 << 10;

/// How long [`DecisionLog::finish`] waits for the sink to take the lines still queued.
pub const FINISH_BOUND: Duration = Duration::from_secs(2);

/// How long the writer thread lets lines gather once one is queued, before it writes them (less
/// when the queue is a quarter full, or the log is finished): a busy gateway then wakes it a few
/// hundred times a second at most, rather than once per call.
pub const LINGER: Duration = Duration::from_millis(5);

/// The least time between two warnings about dropped lines on stderr.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Where decisions are written, if anywhere.
///
/// [`write`](Self::write) never blocks on the sink: it formats the line and appends it to a
/// bounded queue, which a thread of its own (`decision-log`) writes to the sink. When the sink
/// does not keep up (a FIFO nobody reads, a pipe into a stopped pager, a hung network file
/// system) and the queue is full, the line is dropped and counted
/// ([`dropped`](Self::dropped), the metric `mcp_policy_gateway_decision_log_dropped_total`),
/// and stderr says so at most once per [`WARNING_INTERVAL`]; a write error counts the lines it
/// lost the same way. Call [`finish`](Self::finish) before the process exits: it writes what is
/// queued, waiting at most [`FINISH_BOUND`] for a stalled sink.
pub struct DecisionLog {
    sink: Option<Writer>,
    /// Sees every record written, whether its line is written or dropped (branch `http`: metrics).
    observer: Option<Observer>,
}

/// Called with every decision written to the log, whether the log is enabled or not (metrics).
pub type Observer = std::sync::Arc<dyn Fn(&Record, Outcome, Option<f64>) + Send + Sync>;

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog").field("enabled", &self.sink.is_some()).finish()
    }
}

/// The relay's side of the writer thread.
struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the relay and the writer thread share.
struct Shared {
    state: Mutex<State>,
    /// The writer waits here for lines (or for the end).
    data: Condvar,
    /// [`DecisionLog::finish`] waits here for the writer and the warning to end.
    ended: Condvar,
    /// Lines dropped so far.
    dropped: Counter,
    /// The most bytes queued and being written at once.
    capacity: usize,
}

#[derive(Default)]
struct State {
    /// Lines waiting for the writer, back to back.
    queued: Vec<u8>,
    /// How many lines `queued` holds.
    queued_lines: u64,
    /// The bytes and lines the writer is writing.
    in_flight: usize,
    in_flight_lines: u64,
    /// The writer waits for lines (the relay wakes it).
    writer_waiting: bool,
    /// No more lines are taken; the writer ends once it has written what is queued.
    closed: bool,
    /// The writer thread has ended (or was never started).
    done: bool,
    /// A warning is being written to stderr (by its own thread: stderr may be the stalled sink).
    warning: bool,
    last_warning: Option<Instant>,
    /// Warnings given so far.
    warnings: u64,
    /// The dropped count the last warning gave.
    reported: u64,
}

/// Why lines were dropped.
enum Loss {
    /// The queue was full: the sink does not keep up.
    Full,
    /// The sink failed.
    WriteError(io::Error),
    /// The log was finished (the gateway is exiting).
    Closed,
}
/// How a decided call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The gateway did not send the call to the upstream.
    NotDispatched,
    /// The upstream answered with a result.
    Ok,
    /// The upstream answered with a result whose `isError` is true.
    ToolError,
    /// The upstream answered with a JSON-RPC error.
    Error,
    /// The client cancelled the call.
    Cancelled,
    /// The upstream went away before answering.
    UpstreamClosed,
    /// The upstream did not answer within `--upstream-timeout`.
    UpstreamTimeout,
    /// The gateway asked the human (the next line holds the decision after the answer).
    ApprovalRequested,
}

impl Outcome {
    /// The outcome as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotDispatched => "not_dispatched",
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
            Outcome::UpstreamClosed => "upstream_closed",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::ApprovalRequested => "approval_requested",
        }
    }
}

/// One decision, as the guard made it (owned, so that it can wait for the upstream's answer).
#[derive(Debug, Clone)]
pub struct Record {
    /// The tool called.
    pub tool: String,
    /// The grant of the call.
    pub grant: String,
    /// The session of the call.
    pub session: Option<String>,
    /// `allow`, `deny`, `limit` or `approve`: what the policy decided.
    pub decision: &'static str,
    /// The JSON Pointer of the rule that decided.
    pub rule: String,
    /// Why.
    pub message: String,
    /// The digest of the policy in force.
    pub policy: String,
    /// How long the evaluation took, in microseconds.
    pub eval_us: f64,
    /// Decided in monitor mode: the call was dispatched whatever the decision.
    pub monitor: bool,
    /// The human's answer, when one was asked (`accepted`, `declined`, `cancelled`, `failed`).
    pub approval: Option<&'static str>,
}

impl DecisionLog {
    /// A log that writes nothing.
    pub fn disabled() -> Self {
        DecisionLog { sink: None, observer: None }
    }

    /// A log on `target`: `-` for standard error, otherwise a file path (created, appended to),
    /// with a queue of at most `queue_bytes` (at least [`MIN_QUEUE_BYTES`]) toward it; lines
    /// dropped are counted in `dropped` (e.g. [`Metrics::decision_log_dropped`]).
    ///
    /// [`Metrics::decision_log_dropped`]: crate::metrics::Metrics::decision_log_dropped
    pub fn open(target: &str, queue_bytes: usize, dropped: Counter) -> io::Result<Self> {
        let sink: Box<dyn Write + Send> = if target == "-" {
            Box::new(io::stderr())
        } else {
            let file = OpenOptions::new().create(true).append(true).open(Path::new(target))?;
            Box::new(file)
        };
        Self::to_writer(sink, queue_bytes, dropped)
    }

    /// A log on any writer, written by a thread of its own named `decision-log`.
    ///
    /// ```
    /// use mcp_policy_gateway::decision_log::{DecisionLog, MIN_QUEUE_BYTES};
    /// let log = DecisionLog::to_writer(Box::new(std::io::sink()), MIN_QUEUE_BYTES, Default::default())?;
    /// assert!(log.enabled());
    /// assert!(log.finish());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn to_writer(
        sink: Box<dyn Write + Send>,
        queue_bytes: usize,
        dropped: Counter,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            data: Condvar::new(),
            ended: Condvar::new(),
            dropped,
            capacity: queue_bytes.max(MIN_QUEUE_BYTES),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_lines(&theirs, sink))?;
        Ok(DecisionLog {
            sink: Some(Writer { shared, thread: Mutex::new(Some(thread)) }),
            observer: None,
        })
    }

    /// The same log, with `observer` called on every record (branch `http`: metrics).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Whether anything is written.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// How many lines were dropped so far (the queue was full, the sink failed, or the log was
    /// finished).
    pub fn dropped(&self) -> u64 {
        self.sink.as_ref().map_or(0, |w| w.shared.dropped.get())
    }

    /// Writes one line for `record`: `upstream_ms` is how long the upstream took to answer (when
    /// it was asked). Never blocks on the sink: the line is queued for the writer thread, or
    /// dropped and counted when the queue is full. The observer sees every record.
    pub fn write(&self, record: &Record, outcome: Outcome, upstream_ms: Option<f64>) {
        if let Some(observe) = &self.observer {
            observe(record, outcome, upstream_ms);
        }
        let Some(writer) = &self.sink else { return };
        let line = render(record, outcome, upstream_ms);
        writer.shared.push(line.as_bytes());
    }

    /// Closes the log and waits, at most [`FINISH_BOUND`], for the writer thread to write what
    /// is queued; says on stderr how many lines were dropped in all, if any. Returns whether
    /// every queued line was handed to the sink (false when the sink stalled). Lines written
    /// afterwards are dropped (and counted). The gateway calls it before exiting.
    pub fn finish(&self) -> bool {
        self.finish_within(FINISH_BOUND)
    }

    /// [`finish`](Self::finish), waiting at most `bound`.
    pub fn finish_within(&self, bound: Duration) -> bool {
        let Some(writer) = &self.sink else { return true };
        let shared = &writer.shared;
        let deadline = Instant::now() + bound;
        let mut st = shared.lock();
        st.closed = true;
        shared.data.notify_all();
        st = shared.wait_until(st, deadline, |s| s.done);
        let flushed = st.done;
        if !flushed {
            // What the sink did not take is lost when the process exits.
            let lost = st.queued_lines + st.in_flight_lines;
            st.queued.clear();
            st.queued_lines = 0;
            st.in_flight_lines = 0;
            shared.dropped.inc_by(lost);
        }
        // The last word on what was dropped, unless a warning is still stuck on stderr.
        let total = shared.dropped.get();
        let summary = (total > st.reported && !st.warning).then(|| {
            st.warning = true;
            st.reported = total;
            let not_taken = if flushed {
                String::new()
            } else {
                format!(" (the sink did not take the last lines within {} s)", bound.as_secs_f64())
            };
            format!(
                "mcp-policy-gateway: the decision log dropped {total} line(s) in all{not_taken}"
            )
        });
        drop(st);
        if let Some(message) = summary {
            shared.warn(message);
            // The summary's own bound: the writer may have used all of `bound`.
            let st = shared.lock();
            let until = deadline.max(Instant::now() + Duration::from_millis(500));
            drop(shared.wait_until(st, until, |s| !s.warning));
        }
        if flushed {
            let handle = writer.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
        flushed
    }
}

impl Drop for DecisionLog {
    /// Closes the queue (the writer thread ends once it has written what is queued) without
    /// waiting: [`finish`](Self::finish) is the way to wait.
    fn drop(&mut self) {
        if let Some(writer) = &self.sink {
            writer.shared.lock().closed = true;
            writer.shared.data.notify_all();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits on `ended` until `ready` or `deadline`.
    fn wait_until<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        deadline: Instant,
        ready: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        while !ready(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self.ended.wait_timeout(st, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        st
    }

    /// Queues one line, or drops it when the queue is full or closed.
    fn push(self: &Arc<Self>, line: &[u8]) {
        let mut st = self.lock();
        if st.closed {
            self.lost(st, 1, Loss::Closed);
            return;
        }
        if st.queued.len() + st.in_flight + line.len() > self.capacity {
            self.lost(st, 1, Loss::Full);
            return;
        }
        let before = st.queued.len();
        st.queued.extend_from_slice(line);
        st.queued_lines += 1;
        // The writer is woken by the first line after it went idle, and again (cutting its
        // linger short) when the queue passes a quarter of its room.
        let hurry = before < self.capacity / 4 && st.queued.len() >= self.capacity / 4;
        if st.writer_waiting || hurry {
            st.writer_waiting = false;
            self.data.notify_one();
        }
    }

    /// Counts `n` lines lost for `why`, and says so on stderr unless it did less than
    /// [`WARNING_INTERVAL`] ago (or is still saying it).
    fn lost(self: &Arc<Self>, mut st: MutexGuard<'_, State>, n: u64, why: Loss) {
        self.dropped.inc_by(n);
        let total = self.dropped.get();
        let due = !st.warning && st.last_warning.is_none_or(|t| t.elapsed() >= WARNING_INTERVAL);
        if !due || matches!(why, Loss::Closed) {
            return;
        }
        st.warning = true;
        st.last_warning = Some(Instant::now());
        st.warnings += 1;
        st.reported = total;
        drop(st);
        let cause = match why {
            Loss::Full => {
                "the queue toward its sink is full: the sink is slow or stalled".to_owned()
            }
            Loss::WriteError(e) => format!("cannot write it: {e}"),
            Loss::Closed => String::new(),
        };
        self.warn(format!(
            "mcp-policy-gateway: decision-log lines are being dropped ({cause}); {total} dropped \
             so far (metric mcp_policy_gateway_decision_log_dropped_total); calls are not held up"
        ));
    }

    /// Writes `message` on stderr from a thread of its own: stderr may be the stalled sink
    /// (`--decision-log -`), and no session may wait on it. `st.warning` is set by the caller;
    /// it is cleared once the message is written.
    fn warn(self: &Arc<Self>, message: String) {
        let me = self.clone();
        let spawned = std::thread::Builder::new().name("decision-warn".into()).spawn(move || {
            let _ = writeln!(io::stderr(), "{message}");
            me.lock().warning = false;
            me.ended.notify_all();
        });
        if spawned.is_err() {
            self.lock().warning = false;
        }
    }
}

/// The writer thread: once a line is queued, lets others gather for [`LINGER`], then takes every
/// queued line at once and writes them in one piece, so that lines reach the sink within a few
/// milliseconds (`tail -f` sees them at once) in few system calls and few wake-ups; ends when the
/// log is closed and the queue empty.
fn write_lines(shared: &Arc<Shared>, mut sink: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    // A write error left a part of a line in the sink: the next lines start on a line of their
    // own.
    let mut torn = false;
    loop {
        let lines = {
            let mut st = shared.lock();
            st.in_flight = 0;
            st.in_flight_lines = 0;
            while st.queued.is_empty() && !st.closed {
                st.writer_waiting = true;
                st = shared.data.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.writer_waiting = false;
            let quarter = shared.capacity / 4;
            if !st.closed && st.queued.len() < quarter {
                st = shared
                    .data
                    .wait_timeout_while(st, LINGER, |s| !s.closed && s.queued.len() < quarter)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if st.queued.is_empty() {
                st.done = true;
                shared.ended.notify_all();
                return;
            }
            batch.clear();
            std::mem::swap(&mut batch, &mut st.queued);
            st.in_flight = batch.len();
            st.in_flight_lines = std::mem::take(&mut st.queued_lines);
            st.in_flight_lines
        };
        if torn && write_batch(&mut sink, b"\n").is_ok() {
            torn = false;
        }
        if let Err((written, e)) = write_batch(&mut sink, &batch) {
            // Lines the sink took whole are written; the others (a part of one included) lost.
            let taken = batch.get(..written).unwrap_or_default();
            torn |= taken.last().is_some_and(|&b| b != b'\n');
            let whole = taken.iter().filter(|&&b| b == b'\n').count();
            let lost = lines.saturating_sub(u64::try_from(whole).unwrap_or(u64::MAX));
            if lost > 0 {
                shared.lost(shared.lock(), lost, Loss::WriteError(e));
            }
        }
    }
}

/// Writes `batch` whole; on error, how many bytes were written and the error.
fn write_batch(sink: &mut dyn Write, batch: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while let Some(rest) = batch.get(written..).filter(|r| !r.is_empty()) {
        match sink.write(rest) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    sink.flush().map_err(|e| (written, e))
}

/// The JSON line of a record (with its final newline).
pub fn render(record: &Record, outcome: Outcome, upstream_ms: Option<f64>) -> String {
    let mut m = Map::new();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    m.insert("time".into(), now.into());
    m.insert("tool".into(), record.tool.clone().into());
    m.insert("grant".into(), record.grant.clone().into());
    m.insert("session".into(), record.session.clone().map_or(Value::Null, Value::String));
    m.insert("decision".into(), record.decision.into());
    m.insert("rule".into(), record.rule.clone().into());
    m.insert("message".into(), record.message.clone().into());
    m.insert("policy".into(), record.policy.clone().into());
    m.insert("eval_us".into(), round3(record.eval_us).into());
    m.insert("upstream_ms".into(), upstream_ms.map(round3).map_or(Value::Null, Value::from));
    m.insert("outcome".into(), outcome.as_str().into());
    if let Some(a) = record.approval {
        m.insert("approval".into(), a.into());
    }
    if record.monitor {
        m.insert("monitor".into(), true.into());
    }
    let mut line = Value::Object(m).to_string();
    line.push('\n');
    line
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn record(tool: &str) -> Record {
        Record {
            tool: tool.into(),
            grant: "g".into(),
            session: None,
            decision: "deny",
            rule: "/default".into(),
            message: "no".into(),
            policy: "p".into(),
            eval_us: 1.0,
            monitor: false,
            approval: None,
        }
    }

    /// A sink into memory.
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Memory {
        fn tools(&self) -> Vec<String> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["tool"].as_str().unwrap().into())
                .collect()
        }
    }

    /// A sink that blocks every write until released (a FIFO nobody reads), then writes to
    /// memory.
    #[derive(Clone, Default)]
    struct Stalled {
        released: Arc<(Mutex<bool>, Condvar)>,
        out: Memory,
    }

    impl Stalled {
        fn release(&self) {
            *self.released.0.lock().unwrap() = true;
            self.released.1.notify_all();
        }
    }

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (lock, cond) = &*self.released;
            let _g = cond.wait_while(lock.lock().unwrap(), |r| !*r).unwrap();
            self.out.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink that takes `left` bytes, then fails.
    struct Failing {
        left: usize,
        out: Memory,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "broken pipe"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            self.out.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Polls `cond` (the writer thread runs on its own) for up to a minute.
    fn eventually(cond: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn lines_reach_the_sink_in_order_without_waiting_for_finish() {
        let out = Memory::default();
        let log =
            DecisionLog::to_writer(Box::new(out.clone()), MIN_QUEUE_BYTES, Counter::default())
                .unwrap();
        for i in 0..100 {
            log.write(&record(&format!("t{i}")), Outcome::NotDispatched, None);
        }
        // Written within a few milliseconds: no finish needed to see them.
        assert!(eventually(|| out.tools().len() == 100), "{:?}", out.tools());
        let expected: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        assert_eq!(out.tools(), expected);
        assert!(log.finish());
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn finish_writes_everything_queued() {
        let sink = Stalled::default();
        let log =
            DecisionLog::to_writer(Box::new(sink.clone()), MIN_QUEUE_BYTES, Counter::default())
                .unwrap();
        for i in 0..50 {
            log.write(&record(&format!("t{i}")), Outcome::Ok, Some(1.0));
        }
        // Nothing is written yet (the sink holds the writer); finish waits for it.
        assert!(sink.out.tools().is_empty());
        let releaser = {
            let s = sink.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                s.release();
            })
        };
        assert!(log.finish_within(Duration::from_secs(60)));
        releaser.join().unwrap();
        assert_eq!(sink.out.tools().len(), 50);
        assert_eq!(log.dropped(), 0);
        // After finish, lines are dropped and counted.
        log.write(&record("late"), Outcome::Ok, None);
        assert_eq!(log.dropped(), 1);
        assert_eq!(sink.out.tools().len(), 50);
    }

    #[test]
    fn a_stalled_sink_never_blocks_a_write_and_drops_are_counted() {
        let sink = Stalled::default();
        let counter = Counter::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let observed = seen.clone();
        let log = DecisionLog::to_writer(Box::new(sink.clone()), MIN_QUEUE_BYTES, counter.clone())
            .unwrap()
            .with_observer(Arc::new(move |_, _, _| {
                observed.fetch_add(1, Ordering::SeqCst);
            }));
        let line = render(&record("t"), Outcome::NotDispatched, None).len();
        let calls = 3 * MIN_QUEUE_BYTES / line;
        // Each write returns although the sink never takes a byte (this thread would block
        // forever otherwise).
        for _ in 0..calls {
            log.write(&record("t"), Outcome::NotDispatched, None);
        }
        // The observer (metrics) saw every record, dropped or not.
        assert_eq!(seen.load(Ordering::SeqCst), calls);
        let kept = MIN_QUEUE_BYTES / line;
        let dropped = log.dropped();
        assert_eq!(dropped, counter.get());
        assert!(dropped >= u64::try_from(calls - kept).unwrap(), "{dropped} of {calls}");
        // One warning on stderr, however many lines were dropped (one per 10 s at most).
        assert_eq!(log.sink.as_ref().unwrap().shared.lock().warnings, 1);
        // The sink stays stalled: finish gives up after its bound and counts what it held.
        assert!(!log.finish_within(Duration::from_millis(100)));
        assert_eq!(log.dropped(), u64::try_from(calls).unwrap());
        sink.release();
    }

    #[test]
    fn a_write_error_counts_the_lines_it_lost() {
        let line = render(&record("t"), Outcome::NotDispatched, None).len();
        let out = Memory::default();
        // The sink takes two lines and a half, then fails.
        let sink = Failing { left: 2 * line + line / 2, out: out.clone() };
        let log =
            DecisionLog::to_writer(Box::new(sink), MIN_QUEUE_BYTES, Counter::default()).unwrap();
        for _ in 0..10 {
            log.write(&record("t"), Outcome::NotDispatched, None);
        }
        assert!(log.finish_within(Duration::from_secs(60)));
        assert_eq!(log.dropped(), 8);
        assert_eq!(out.0.lock().unwrap().len(), 2 * line + line / 2);
    }

    /// A sink that takes `left` bytes, fails once, then takes everything.
    struct Flaky {
        left: Option<usize>,
        out: Memory,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.left {
                Some(0) => {
                    self.left = None;
                    Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device"))
                }
                Some(left) => {
                    let n = buf.len().min(left);
                    self.left = Some(left - n);
                    self.out.write(&buf[..n])
                }
                None => self.out.write(buf),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_a_write_error_lines_start_on_a_line_of_their_own() {
        let line = render(&record("t"), Outcome::NotDispatched, None).len();
        let out = Memory::default();
        let sink = Flaky { left: Some(line + line / 2), out: out.clone() };
        let log =
            DecisionLog::to_writer(Box::new(sink), MIN_QUEUE_BYTES, Counter::default()).unwrap();
        for _ in 0..10 {
            log.write(&record("t"), Outcome::NotDispatched, None);
        }
        assert!(eventually(|| log.dropped() > 0));
        for _ in 0..5 {
            log.write(&record("after"), Outcome::NotDispatched, None);
        }
        assert!(log.finish_within(Duration::from_secs(60)));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let (whole, torn): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| serde_json::from_str::<Value>(l).is_ok());
        // One torn line, alone on its line; every other line whole, written or counted.
        assert_eq!(torn.len(), 1, "{text}");
        assert_eq!(u64::try_from(whole.len()).unwrap() + log.dropped(), 15, "{text}");
        assert!(whole.iter().filter(|l| l.contains("\"after\"")).count() == 5, "{text}");
    }

    #[test]
    fn the_queue_is_at_least_the_minimum() {
        let sink = Stalled::default();
        let log = DecisionLog::to_writer(Box::new(sink.clone()), 1, Counter::default()).unwrap();
        let line = render(&record("t"), Outcome::NotDispatched, None).len();
        for _ in 0..MIN_QUEUE_BYTES / line {
            log.write(&record("t"), Outcome::NotDispatched, None);
        }
        assert_eq!(log.dropped(), 0);
        sink.release();
        assert!(log.finish_within(Duration::from_secs(60)));
        assert_eq!(sink.out.tools().len(), MIN_QUEUE_BYTES / line);
    }

    #[test]
    fn renders_one_line_with_every_field() {
        let record = Record {
            tool: "cancel_run".into(),
            grant: "alice".into(),
            session: Some("s1".into()),
            decision: "limit",
            rule: "/tools/cancel_run/limits/0".into(),
            message: "limit reached".into(),
            policy: "abc".into(),
            eval_us: 1.23456,
            monitor: true,
            approval: None,
        };
        let line = render(&record, Outcome::NotDispatched, None);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["tool"], "cancel_run");
        assert_eq!(v["grant"], "alice");
        assert_eq!(v["session"], "s1");
        assert_eq!(v["decision"], "limit");
        assert_eq!(v["rule"], "/tools/cancel_run/limits/0");
        assert_eq!(v["policy"], "abc");
        assert_eq!(v["eval_us"], 1.235);
        assert_eq!(v["upstream_ms"], Value::Null);
        assert_eq!(v["outcome"], "not_dispatched");
        assert_eq!(v["monitor"], true);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
