//! Newline-delimited JSON on a pipe or a socket, read and written by the relay's own task.
//!
//! Over stdio, a call crosses the gateway twice (client to upstream, upstream to client). Each
//! crossing used to be three tasks: a reader, the relay, a writer, with a channel between each.
//! The relay now reads and writes the descriptors itself: a message is read, decided and
//! written in one go, with no task in between: a call gained 12 to 28 µs less than with the
//! tasks, measured side by side (round six of [`docs/performance.md`]).
//!
//! [`LineReader::next`] is cancel safe (it keeps what it read), so the relay can wait on the
//! client and the upstream at once. [`LineWriter::send`] writes at once when nothing is queued;
//! when the descriptor is full, the message is queued for a task of the writer's own, up to
//! [`QUEUED_MAX`] messages, so that a peer slow to read does not stop the relay at the first
//! full pipe.
//!
//! [`docs/performance.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/performance.md

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::sync::{Notify, watch};

/// The largest message the gateway reads (64 MiB); longer lines are refused.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How many messages a [`LineWriter`] queues when its descriptor is full, before
/// [`LineWriter::send`] waits.
pub const QUEUED_MAX: usize = 256;

/// How many bytes a [`LineWriter`] queues when its descriptor is full, before
/// [`LineWriter::send`] waits (a message is queued while fewer are; so at most this and one
/// message): 256 messages of up to 64 MiB each would otherwise be 16 GiB.
pub const QUEUED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How much a [`LineReader`] reads at once.
const CHUNK: usize = 64 * 1024;

/// One line as read: its bytes, or why it cannot be a message.
#[derive(Debug)]
pub enum Line {
    /// The line's bytes, without the surrounding whitespace and the newline; never empty.
    Text(Vec<u8>),
    /// A line longer than the reader's limit (skipped), with why.
    TooLong(String),
}

impl Line {
    /// The line as a [`Frame`]: parsed as JSON.
    pub fn parse(self) -> Frame {
        match self {
            Line::Text(bytes) => parse(&bytes),
            Line::TooLong(why) => Frame::Malformed(why),
        }
    }
}

/// `line` (not blank) as a JSON value, or why it is not one.
pub fn parse(line: &[u8]) -> Frame {
    match serde_json::from_slice::<Value>(line) {
        Ok(v) => Frame::Json(v),
        Err(e) => Frame::Malformed(format!("not JSON: {e}")),
    }
}

/// One line of newline-delimited JSON.
#[derive(Debug)]
pub enum Frame {
    /// A JSON value.
    Json(Value),
    /// A line that is not JSON (or too long), with why.
    Malformed(String),
}

/// A message as one line of JSON, with its newline.
pub fn to_line(msg: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(msg).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The reading end: a pipe or a socket, registered with the runtime (non-blocking).
#[derive(Debug)]
pub enum ReadEnd {
    /// A pipe.
    Pipe(pipe::Receiver),
    /// A Unix socket (Node gives its children sockets for stdio).
    Socket(UnixStream),
}

impl ReadEnd {
    async fn readable(&self) -> io::Result<()> {
        match self {
            ReadEnd::Pipe(p) => p.readable().await,
            ReadEnd::Socket(s) => s.readable().await,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            ReadEnd::Pipe(p) => p.as_fd(),
            ReadEnd::Socket(s) => s.as_fd(),
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ReadEnd::Pipe(p) => p.try_read(buf),
            ReadEnd::Socket(s) => s.try_read(buf),
        }
    }
}

/// The writing end: a pipe or a socket, registered with the runtime (non-blocking).
#[derive(Debug)]
pub enum WriteEnd {
    /// A pipe.
    Pipe(pipe::Sender),
    /// A Unix socket.
    Socket(UnixStream),
}

impl WriteEnd {
    async fn writable(&self) -> io::Result<()> {
        match self {
            WriteEnd::Pipe(p) => p.writable().await,
            WriteEnd::Socket(s) => s.writable().await,
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteEnd::Pipe(p) => p.try_write(buf),
            WriteEnd::Socket(s) => s.try_write(buf),
        }
    }

    /// Writes as much of `buf` as the descriptor takes now; the count written.
    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.try_write(buf.get(done..).unwrap_or_default()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// When a reader stops: at the end of its input, or some time after a signal (the upstream
/// process exited: what it wrote before is still read, for as long as lines keep coming).
#[derive(Debug)]
struct EndSignal {
    signal: watch::Receiver<bool>,
    drain: Duration,
    /// Once the signal came: by when the next line must come (a wait cancelled by the caller
    /// does not push it back).
    deadline: Option<tokio::time::Instant>,
}

/// Reads newline-delimited JSON from a descriptor, one [`Frame`] at a time.
#[derive(Debug)]
pub struct LineReader {
    lines: Lines,
    end_signal: Option<EndSignal>,
}

/// What a [`LineReader`] read and has not yet returned.
#[derive(Debug)]
struct Lines {
    end: ReadEnd,
    buf: Vec<u8>,
    /// Where the next line starts in `buf`.
    start: usize,
    /// How far `buf` has been searched for a newline.
    scanned: usize,
    /// A line over `max` bytes is being skipped.
    skipping: bool,
    eof: bool,
    max: usize,
    chunk: Box<[u8]>,
}

impl LineReader {
    /// Reads from `end`; lines over `max` bytes are skipped and reported as malformed.
    pub fn new(end: ReadEnd, max: usize) -> LineReader {
        let lines = Lines {
            end,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            skipping: false,
            eof: false,
            max,
            chunk: vec![0; CHUNK].into_boxed_slice(),
        };
        LineReader { lines, end_signal: None }
    }

    /// Once `signal` says `true` (or its sender is gone), reading ends at the first wait for a
    /// line longer than `drain`.
    #[must_use]
    pub fn ending_after(mut self, signal: watch::Receiver<bool>, drain: Duration) -> LineReader {
        self.end_signal = Some(EndSignal { signal, drain, deadline: None });
        self
    }

    /// The descriptor read.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.lines.end.fd()
    }

    /// Whether [`LineReader::next_line`] returns without waiting for the descriptor: a whole
    /// line is buffered, more than a line's limit is (to be skipped), or the input has ended.
    pub fn ready(&self) -> bool {
        let l = &self.lines;
        let pending = l.buf.get(l.scanned.max(l.start)..).unwrap_or_default();
        l.eof || pending.contains(&b'\n') || l.buf.len() - l.start > l.max
    }

    /// Reads what the descriptor holds now, with one system call of its own, not through the
    /// runtime (whose readiness lags a turn of its driver behind, a few microseconds: see
    /// [`crate::spin::for_lines`]); what it reads is what [`LineReader::next_line`] returns
    /// next. Returns whether anything came, or the end of the input.
    pub fn read_now(&mut self) -> bool {
        let l = &mut self.lines;
        if l.eof {
            return true;
        }
        match nix::unistd::read(l.end.fd(), &mut l.chunk) {
            Ok(0) => {
                l.eof = true;
                true
            }
            Ok(n) => {
                l.buf.extend_from_slice(l.chunk.get(..n).unwrap_or_default());
                true
            }
            // Nothing yet, or an error the runtime's read reports.
            Err(_) => false,
        }
    }

    /// The next non-blank line, parsed; `None` at the end of the input. Cancel safe: what was
    /// read stays for the next call.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        Ok(self.next_line().await?.map(Line::parse))
    }

    /// The next non-blank line, as read; `None` at the end of the input. Cancel safe.
    pub async fn next_line(&mut self) -> io::Result<Option<Line>> {
        let LineReader { lines, end_signal } = self;
        let Some(end) = end_signal else {
            return lines.next_line().await;
        };
        let deadline = match end.deadline {
            Some(d) => d,
            None => {
                tokio::select! {
                    biased;
                    r = lines.next_line() => return r,
                    _ = end.signal.wait_for(|ended| *ended) => {}
                }
                *end.deadline.insert(tokio::time::Instant::now() + end.drain)
            }
        };
        match tokio::time::timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(frame))) => {
                end.deadline = Some(tokio::time::Instant::now() + end.drain);
                Ok(Some(frame))
            }
            Ok(other) => other,
            Err(_) => Ok(None),
        }
    }
}

impl Lines {
    async fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(frame) = self.take_line() {
                return Ok(Some(frame));
            }
            if self.eof {
                // A last line without its newline.
                let rest = std::mem::take(&mut self.buf);
                let (start, skipping) = (self.start, self.skipping);
                self.start = 0;
                self.scanned = 0;
                self.skipping = false;
                if skipping {
                    return Ok(Some(self.too_long()));
                }
                return Ok(text(rest.get(start..).unwrap_or_default()));
            }
            self.end.readable().await?;
            match self.end.try_read(&mut self.chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(self.chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete line in the buffer, if there is one.
    fn take_line(&mut self) -> Option<Line> {
        loop {
            let from = self.scanned.max(self.start);
            let found = self.buf.get(from..).and_then(|b| b.iter().position(|&c| c == b'\n'));
            let Some(at) = found.map(|i| from + i) else {
                self.scanned = self.buf.len();
                if self.skipping {
                    // Nothing of a skipped line is kept.
                    self.buf.clear();
                    self.start = 0;
                    self.scanned = 0;
                } else if self.buf.len() - self.start > self.max {
                    self.skipping = true;
                    self.buf.clear();
                    self.start = 0;
                    self.scanned = 0;
                } else if self.start > 0 {
                    self.buf.drain(..self.start);
                    self.scanned -= self.start;
                    self.start = 0;
                }
                return None;
            };
            let line = self.buf.get(self.start..at).unwrap_or_default();
            let over = line.len() > self.max;
            let parsed = if self.skipping || over { None } else { text(line) };
            let skipped = self.skipping || over;
            self.start = at + 1;
            self.scanned = self.start;
            self.skipping = false;
            if self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
                self.scanned = 0;
            }
            if skipped {
                return Some(self.too_long());
            }
            if let Some(f) = parsed {
                return Some(f);
            }
        }
    }

    fn too_long(&self) -> Line {
        Line::TooLong(format!("message longer than {} bytes", self.max))
    }
}

/// `line` without its surrounding whitespace; `None` when it is blank.
fn text(line: &[u8]) -> Option<Line> {
    let line = line.trim_ascii();
    (!line.is_empty()).then(|| Line::Text(line.to_vec()))
}

#[derive(Debug, Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    /// The bytes of `lines`.
    bytes: usize,
    /// How much of the first line is written.
    offset: usize,
    /// The descriptor failed (the peer has gone): every later send fails.
    broken: bool,
    /// The writer was dropped: the flusher writes what is queued and ends.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    end: WriteEnd,
    queue: Mutex<Queue>,
    /// Something was queued, or the writer was closed.
    flush: Notify,
    /// The queue has room, or the descriptor broke.
    room: Notify,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Queue {
    /// Whether a message is queued now rather than waited with.
    fn has_room(&self) -> bool {
        self.lines.len() < QUEUED_MAX && self.bytes < QUEUED_BYTES_MAX
    }

    fn push(&mut self, line: Vec<u8>) {
        self.bytes += line.len();
        self.lines.push_back(line);
    }

    fn pop(&mut self) {
        if let Some(line) = self.lines.pop_front() {
            self.bytes -= line.len();
        }
        self.offset = 0;
    }
}

/// Writes newline-delimited JSON to a descriptor: at once when nothing is queued, else
/// through a queue that a task of its own writes out. Dropping it closes the descriptor once
/// what is queued is written.
#[derive(Debug)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

/// The peer has gone: a [`LineWriter`] could not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl LineWriter {
    /// Writes to `end`; `finished` runs once the writer is dropped and what it queued is
    /// written (or the descriptor failed). Must be called within the tokio runtime.
    pub fn new(end: WriteEnd, finished: impl FnOnce() + Send + 'static) -> LineWriter {
        let shared = Arc::new(Shared {
            end,
            queue: Mutex::new(Queue::default()),
            flush: Notify::new(),
            room: Notify::new(),
        });
        tokio::spawn(flusher(shared.clone(), finished));
        LineWriter { shared }
    }

    /// Sends `msg`; waits only when [`QUEUED_MAX`] messages, or [`QUEUED_BYTES_MAX`] bytes, are
    /// already queued.
    pub async fn send(&self, msg: &Value) -> Result<(), Gone> {
        self.send_line(to_line(msg)).await
    }

    /// Whether [`LineWriter::send`] would return without waiting: the queue has room (or the
    /// descriptor failed, and `send` fails at once).
    pub fn has_room(&self) -> bool {
        let q = self.shared.queue();
        q.broken || q.has_room()
    }

    /// Whether a write has failed: the reader has gone (every later send fails).
    pub fn is_broken(&self) -> bool {
        self.shared.queue().broken
    }

    /// Waits until [`LineWriter::has_room`]. Cancel safe.
    pub async fn room(&self) {
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.has_room() {
                return;
            }
            room.await;
        }
    }

    /// [`LineWriter::send`] for a message already written as a line (ending with its newline).
    pub async fn send_line(&self, line: Vec<u8>) -> Result<(), Gone> {
        // First without registering for room: the common case writes at once.
        let mut line = match self.try_send_line(line) {
            Offered::Taken => return Ok(()),
            Offered::Gone => return Err(Gone),
            Offered::Full(line) => line,
        };
        loop {
            // Registered before the queue is looked at again, so that room made in between
            // is not missed.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            line = match self.try_send_line(line) {
                Offered::Taken => return Ok(()),
                Offered::Gone => return Err(Gone),
                Offered::Full(line) => line,
            };
            room.await;
        }
    }

    /// [`LineWriter::send_line`] without waiting: writes `line` at once when nothing is queued
    /// (what the descriptor does not take is queued), queues it when the queue has room, and
    /// gives it back when it has none.
    pub fn try_send_line(&self, line: Vec<u8>) -> Offered {
        let mut q = self.shared.queue();
        if q.broken {
            return Offered::Gone;
        }
        if q.lines.is_empty() {
            return match self.shared.end.write_now(&line) {
                Ok(n) if n == line.len() => Offered::Taken,
                Ok(n) => {
                    q.push(line);
                    q.offset = n;
                    self.shared.flush.notify_one();
                    Offered::Taken
                }
                Err(_) => {
                    q.broken = true;
                    self.shared.room.notify_waiters();
                    Offered::Gone
                }
            };
        }
        if q.has_room() {
            q.push(line);
            return Offered::Taken;
        }
        Offered::Full(line)
    }
}

/// What [`LineWriter::try_send_line`] did with a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    /// Written, or queued to be written in order.
    Taken,
    /// The queue is full: the line, given back.
    Full(Vec<u8>),
    /// The peer has gone (a write failed).
    Gone,
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.flush.notify_one();
    }
}

/// Writes out what [`LineWriter::send`] queued, until the writer is dropped and the queue is
/// empty, or the descriptor fails.
async fn flusher(shared: Arc<Shared>, finished: impl FnOnce()) {
    loop {
        let queued = {
            let q = shared.queue();
            if q.broken || (q.closed && q.lines.is_empty()) {
                break;
            }
            !q.lines.is_empty()
        };
        if !queued {
            shared.flush.notified().await;
            continue;
        }
        if shared.end.writable().await.is_err() {
            shared.queue().broken = true;
            shared.room.notify_waiters();
            break;
        }
        let mut q = shared.queue();
        let mut freed = false;
        while let Some(first) = q.lines.front() {
            let rest = first.get(q.offset..).unwrap_or_default();
            match shared.end.write_now(rest) {
                Ok(n) if n == rest.len() => {
                    q.pop();
                    freed = true;
                }
                Ok(n) => {
                    q.offset += n;
                    break;
                }
                Err(_) => {
                    q.broken = true;
                    freed = true;
                    break;
                }
            }
        }
        drop(q);
        if freed {
            shared.room.notify_waiters();
        }
    }
    finished();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::io::Write;

    use serde_json::json;

    use super::*;

    fn pipe_pair() -> (pipe::Sender, pipe::Receiver) {
        pipe::pipe().unwrap()
    }

    async fn put(tx: &mut pipe::Sender, bytes: &[u8]) {
        tokio::io::AsyncWriteExt::write_all(tx, bytes).await.unwrap();
    }

    async fn frames_of(input: &[u8], max: usize) -> Vec<Frame> {
        let (tx, rx) = pipe_pair();
        let input = input.to_vec();
        // Written in small pieces from another thread: lines cross reads.
        let writer = std::thread::spawn(move || {
            let fd = tx.into_blocking_fd().unwrap();
            let mut file = std::fs::File::from(fd);
            for piece in input.chunks(7) {
                file.write_all(piece).unwrap();
            }
        });
        let mut reader = LineReader::new(ReadEnd::Pipe(rx), max);
        let mut frames = Vec::new();
        while let Some(f) = reader.next().await.unwrap() {
            frames.push(f);
        }
        writer.join().unwrap();
        frames
    }

    #[tokio::test]
    async fn reads_lines_skips_blank_and_reports_garbage() {
        let frames = frames_of(b"{\"a\":1}\n\n  \nnot json\n\xff\xfe\n{\"b\":2}", 1024).await;
        assert_eq!(frames.len(), 4, "{frames:?}");
        assert!(matches!(&frames[0], Frame::Json(v) if v["a"] == 1));
        assert!(matches!(&frames[1], Frame::Malformed(_)));
        assert!(matches!(&frames[2], Frame::Malformed(_)));
        assert!(matches!(&frames[3], Frame::Json(v) if v["b"] == 2));
    }

    #[tokio::test]
    async fn skips_lines_over_the_limit() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\n{\"ok\":true}\n");
        input.extend_from_slice(&[b'y'; 300]);
        let frames = frames_of(&input, 100).await;
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert!(matches!(&frames[0], Frame::Malformed(m) if m.contains("longer than 100")));
        assert!(matches!(&frames[1], Frame::Json(v) if v["ok"] == true));
        // The last line, without its newline, is too long as well.
        assert!(matches!(&frames[2], Frame::Malformed(m) if m.contains("longer than 100")));
    }

    #[tokio::test]
    async fn a_reader_cancelled_while_waiting_loses_nothing() {
        let (mut tx, rx) = pipe_pair();
        let mut reader = LineReader::new(ReadEnd::Pipe(rx), 1024);
        put(&mut tx, b"{\"a\":").await;
        // Half a line: the wait is cancelled, and the half is kept.
        let waited = tokio::time::timeout(Duration::from_millis(50), reader.next()).await;
        assert!(waited.is_err());
        put(&mut tx, b"1}\n").await;
        let f = reader.next().await.unwrap().unwrap();
        assert!(matches!(f, Frame::Json(v) if v == json!({"a": 1})));
    }

    #[tokio::test]
    async fn a_reader_ends_a_while_after_its_signal() {
        let (mut tx, rx) = pipe_pair();
        let (signal, watched) = watch::channel(false);
        let mut reader = LineReader::new(ReadEnd::Pipe(rx), 1024)
            .ending_after(watched, Duration::from_millis(100));
        put(&mut tx, b"{\"a\":1}\n").await;
        signal.send(true).unwrap();
        // What was written before is still read; then, with the pipe still open (a grandchild
        // holding it), reading ends.
        assert!(matches!(reader.next().await.unwrap(), Some(Frame::Json(_))));
        // A caller that gives up each wait sooner than the drain time (the relay, busy with
        // its client) does not keep the reader alive: reading ends all the same.
        let mut ended = false;
        for _ in 0..500 {
            match tokio::time::timeout(Duration::from_millis(20), reader.next()).await {
                Err(_) => {}
                Ok(r) => {
                    assert!(r.unwrap().is_none());
                    ended = true;
                    break;
                }
            }
        }
        assert!(ended, "reading never ended");
        drop(tx);
    }

    #[tokio::test]
    async fn a_writer_queues_what_a_full_pipe_cannot_take_and_writes_it_in_order() {
        let (tx, rx) = pipe_pair();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let writer = LineWriter::new(WriteEnd::Pipe(tx), move || {
            let _ = done_tx.send(());
        });
        // Nobody reads yet: a pipe holds 64 KiB, so these 200 messages of 1 KiB fill it and
        // the rest is queued, without waiting.
        let big = "x".repeat(1000);
        for i in 0..200 {
            tokio::time::timeout(Duration::from_secs(30), writer.send(&json!({"i": i, "p": big})))
                .await
                .expect("a send waited with room in the queue")
                .unwrap();
        }
        drop(writer);
        let mut reader = LineReader::new(ReadEnd::Pipe(rx), MAX_MESSAGE_BYTES);
        for i in 0..200 {
            match reader.next().await.unwrap() {
                Some(Frame::Json(v)) => assert_eq!(v["i"], i),
                other => panic!("{other:?}"),
            }
        }
        assert!(reader.next().await.unwrap().is_none(), "the pipe was not closed");
        done_rx.await.unwrap();
    }

    /// A message sent while an earlier one is still queued goes after it, even when the pipe
    /// has room at that moment (written at once, it would land inside the earlier line).
    #[tokio::test]
    async fn a_message_sent_while_another_is_queued_goes_after_it() {
        let (tx, rx) = pipe_pair();
        let writer = LineWriter::new(WriteEnd::Pipe(tx), || {});
        // Twice what the pipe holds: half of it stays queued.
        writer.send(&json!({"i": 1, "p": "x".repeat(128 * 1024)})).await.unwrap();
        // Room in the pipe, taken before the writer's task could run (one thread).
        let mut room = vec![0; 16 * 1024];
        let mut taken = Vec::new();
        while taken.len() < room.len() {
            match rx.try_read(&mut room) {
                Ok(n) => taken.extend_from_slice(&room[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => rx.readable().await.unwrap(),
                Err(e) => panic!("{e}"),
            }
        }
        writer.send(&json!({"i": 2})).await.unwrap();
        drop(writer);
        let mut rest = Vec::new();
        let mut rx = rx;
        tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut rest).await.unwrap();
        taken.extend_from_slice(&rest);
        let lines: Vec<Value> = taken
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0]["i"].as_i64(), lines[1]["i"].as_i64()), (Some(1), Some(2)));
    }

    /// Large messages toward a peer that does not read are queued up to [`QUEUED_BYTES_MAX`]
    /// (and one message), not [`QUEUED_MAX`] of them (256 of 64 MiB would be 16 GiB); then
    /// `send` waits, and what was queued is written in order once the peer reads.
    #[tokio::test]
    async fn a_writer_queues_a_bounded_number_of_bytes() {
        let (tx, rx) = pipe_pair();
        let writer = LineWriter::new(WriteEnd::Pipe(tx), || {});
        let mib = "x".repeat(1 << 20);
        let mut sent = 0;
        loop {
            let msg = json!({"i": sent, "p": mib});
            match tokio::time::timeout(Duration::from_millis(500), writer.send(&msg)).await {
                Ok(r) => {
                    r.unwrap();
                    sent += 1;
                }
                Err(_) => break,
            }
            assert!(sent <= QUEUED_MAX, "the queue is not bounded in bytes");
        }
        let most = QUEUED_BYTES_MAX / (1 << 20) + 2;
        assert!(sent <= most, "{sent} messages of 1 MiB queued, at most {most} expected");
        assert!(!writer.has_room());
        drop(writer);
        let mut reader = LineReader::new(ReadEnd::Pipe(rx), MAX_MESSAGE_BYTES);
        for i in 0..sent {
            match reader.next().await.unwrap() {
                Some(Frame::Json(v)) => assert_eq!(v["i"], i),
                other => panic!("{other:?}"),
            }
        }
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_writer_waits_when_its_queue_is_full_and_fails_once_the_reader_is_gone() {
        let (tx, rx) = pipe_pair();
        let writer = LineWriter::new(WriteEnd::Pipe(tx), || {});
        let big = json!({"p": "x".repeat(4000)});
        let mut sent = 0;
        loop {
            match tokio::time::timeout(Duration::from_millis(200), writer.send(&big)).await {
                Ok(r) => {
                    r.unwrap();
                    sent += 1;
                }
                Err(_) => break,
            }
            assert!(sent <= QUEUED_MAX + 100, "the queue is not bounded");
        }
        assert!(sent >= QUEUED_MAX, "{sent}");
        drop(rx);
        let r = tokio::time::timeout(Duration::from_secs(30), writer.send(&big)).await.unwrap();
        assert_eq!(r, Err(Gone));
    }

    #[tokio::test]
    async fn trying_to_send_writes_queues_or_gives_the_line_back() {
        let (tx, rx) = pipe_pair();
        let writer = LineWriter::new(WriteEnd::Pipe(tx), || {});
        let line =
            |n: usize| format!("{{\"n\":{n},\"p\":\"{}\"}}\n", "x".repeat(4000)).into_bytes();
        // Taken until the pipe and then the queue are full; the full queue gives the line back
        // untouched, and the lines taken reach the reader in order.
        let mut taken = 0;
        let back = loop {
            match writer.try_send_line(line(taken)) {
                Offered::Taken => taken += 1,
                Offered::Full(back) => break back,
                Offered::Gone => panic!("the reader is there"),
            }
            assert!(taken <= QUEUED_MAX + 100, "the queue is not bounded");
        };
        assert_eq!(back, line(taken));
        assert!(!writer.has_room());
        let mut reader = LineReader::new(ReadEnd::Pipe(rx), MAX_MESSAGE_BYTES);
        for n in 0..taken {
            let Some(Line::Text(got)) = reader.next_line().await.unwrap() else { panic!("{n}") };
            assert_eq!(got, line(n)[..line(n).len() - 1], "line {n}");
        }
        // Once the reader has gone, the next write fails and says so.
        drop(reader);
        let gone = loop {
            match writer.try_send_line(line(0)) {
                Offered::Taken => tokio::time::sleep(Duration::from_millis(1)).await,
                Offered::Full(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Offered::Gone => break true,
            }
        };
        assert!(gone);
        assert!(writer.is_broken());
    }
}
