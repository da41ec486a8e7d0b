//! The client speaks MCP over the gateway's own stdin and stdout (newline-delimited JSON).
//!
//! When stdin and stdout are pipes or sockets (as when a client starts the gateway: Python and
//! most clients give it pipes, Node's `child_process` gives it sockets), the relay reads and
//! writes them itself, on the runtime's own thread, next to the upstream's pipes: a call crosses
//! no thread and no task on its way through the gateway (see [`crate::lines`]). Each thread
//! crossing is a wake-up of an idle thread, which costs tens of microseconds on a virtual
//! machine, more than everything else the gateway does to a call. The descriptors are put in
//! non-blocking mode for that, and put back as they were when the gateway is done with them.
//!
//! Anything else (a terminal, a regular file) cannot be polled: then stdin and stdout get two
//! dedicated threads doing plain blocking I/O.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::lines::{LineReader, LineWriter, MAX_MESSAGE_BYTES, ReadEnd, WriteEnd, to_line};
use crate::transport::{CHANNEL_CAPACITY, ClientLink, ClientRx, ClientTx, Inbound};

/// How the client link was set up: on the runtime's thread, or on two threads of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// Stdin and stdout are polled by the runtime (pipes or sockets).
    Polled,
    /// Stdin and stdout are served by two blocking threads (a terminal, a file).
    Threads,
}

/// The client link over stdin/stdout, and what says when everything sent to the client has been
/// written ([`Written::wait`] before exiting, so that the last errors reach the client and the
/// descriptors get their flags back).
///
/// Must be called from within the tokio runtime.
pub fn serve() -> (ClientLink, Written) {
    serve_with(Io::Polled).0
}

/// Once the relay has dropped the client link: what it sent to the client is written, and stdin
/// and stdout (when they were polled) are blocking again, as they were.
#[derive(Debug)]
pub struct Written {
    done: oneshot::Receiver<()>,
    restore: Arc<Mutex<Option<(Restore, Restore)>>>,
}

impl Written {
    /// Waits for what was sent to the client to be written, at most `timeout`; `false` when it
    /// was not (a client that does not read its output). Either way, stdin and stdout have their
    /// flags back when it returns: call it last, before the process exits (what is still queued
    /// for the client is given up).
    pub async fn wait(self, timeout: Duration) -> bool {
        let written = matches!(tokio::time::timeout(timeout, self.done).await, Ok(Ok(())));
        drop(self.restore.lock().unwrap_or_else(PoisonError::into_inner).take());
        written
    }
}

/// As [`serve`], asking for `io`; falls back to [`Io::Threads`] when stdin or stdout cannot be
/// polled. Returns what was set up.
pub fn serve_with(io: Io) -> ((ClientLink, Written), Io) {
    if io == Io::Polled {
        match polled() {
            Ok(link) => return (link, Io::Polled),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
            Err(e) => eprintln!(
                "mcp-policy-gateway: cannot poll stdin/stdout ({e}); serving them from threads"
            ),
        }
    }
    (threads(), Io::Threads)
}

/// A descriptor in non-blocking mode that gets its flags back when dropped.
#[derive(Debug)]
struct Restore {
    fd: OwnedFd,
    flags: OFlag,
}

/// The flags of `fd`'s open file description.
fn flags(fd: &OwnedFd) -> io::Result<OFlag> {
    Ok(OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?))
}

impl Restore {
    /// `fd` made non-blocking; `flags` (read before any descriptor was changed) are put back.
    fn nonblocking(fd: OwnedFd, flags: OFlag) -> io::Result<Restore> {
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(Restore { fd, flags })
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = fcntl(&self.fd, FcntlArg::F_SETFL(self.flags));
    }
}

/// A descriptor the runtime can poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pipe,
    Socket,
}

/// What kind of descriptor `fd` is; `Unsupported` when it is neither a pipe nor a socket.
fn kind(fd: &OwnedFd) -> io::Result<Kind> {
    let file = File::from(fd.try_clone()?);
    let ty = file.metadata()?.file_type();
    if ty.is_fifo() {
        Ok(Kind::Pipe)
    } else if ty.is_socket() {
        Ok(Kind::Socket)
    } else {
        Err(io::Error::new(io::ErrorKind::Unsupported, "neither a pipe nor a socket"))
    }
}

/// `fd` (already non-blocking) registered with the runtime for reading.
fn read_end(fd: OwnedFd) -> io::Result<ReadEnd> {
    match kind(&fd)? {
        Kind::Pipe => {
            Ok(ReadEnd::Pipe(tokio::net::unix::pipe::Receiver::from_owned_fd_unchecked(fd)?))
        }
        Kind::Socket => Ok(ReadEnd::Socket(tokio::net::UnixStream::from_std(fd.into())?)),
    }
}

/// `fd` (already non-blocking) registered with the runtime for writing.
fn write_end(fd: OwnedFd) -> io::Result<WriteEnd> {
    match kind(&fd)? {
        Kind::Pipe => {
            Ok(WriteEnd::Pipe(tokio::net::unix::pipe::Sender::from_owned_fd_unchecked(fd)?))
        }
        Kind::Socket => Ok(WriteEnd::Socket(tokio::net::UnixStream::from_std(fd.into())?)),
    }
}

fn polled() -> io::Result<(ClientLink, Written)> {
    let stdin = io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = io::stdout().as_fd().try_clone_to_owned()?;
    // Both must be pollable before either is touched.
    kind(&stdin)?;
    kind(&stdout)?;
    // Both flags are read before either is changed: stdin and stdout may be one open file
    // description (one socket for both, as inetd, systemd's `Accept=yes` or socat give), whose
    // flags the second read would see already non-blocking.
    let (in_flags, out_flags) = (flags(&stdin)?, flags(&stdout)?);
    let restore_in = Restore::nonblocking(stdin.try_clone()?, in_flags)?;
    crate::spin::watch(stdin.as_fd());
    let restore_out = Restore::nonblocking(stdout.try_clone()?, out_flags)?;
    let input = read_end(stdin)?;
    let output = write_end(stdout)?;

    let (done_tx, done) = oneshot::channel();
    let restore = Arc::new(Mutex::new(Some((restore_in, restore_out))));
    let restore_when_written = restore.clone();
    // Once the relay has dropped the writer and what it queued is written: blocking again
    // before anyone is told that the gateway is done with stdin and stdout. (A client that does
    // not read gets them back from `Written::wait`.)
    let writer = LineWriter::new(output, move || {
        drop(restore_when_written.lock().unwrap_or_else(PoisonError::into_inner).take());
        let _ = done_tx.send(());
    });
    let link = ClientLink {
        tx: ClientTx::Lines(Arc::new(writer)),
        rx: ClientRx::Lines(LineReader::new(input, MAX_MESSAGE_BYTES)),
    };
    Ok((link, Written { done, restore }))
}

fn threads() -> (ClientLink, Written) {
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(CHANNEL_CAPACITY);
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new().name("mcp-stdin".into()).spawn(move || read_stdin(&in_tx)).ok();
    let spawned = std::thread::Builder::new().name("mcp-stdout".into()).spawn(move || {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        while let Some(msg) = out_rx.blocking_recv() {
            if out.write_all(&to_line(&msg)).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        eprintln!("mcp-policy-gateway: cannot start the stdout thread: {e}");
    }
    let written = Written { done: done_rx, restore: Arc::new(Mutex::new(None)) };
    (ClientLink { tx: out_tx.into(), rx: in_rx.into() }, written)
}

fn read_stdin(tx: &mpsc::Sender<Inbound>) {
    let stdin = io::stdin();
    let mut reader = BufReader::new(stdin.lock());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let limit = u64::try_from(MAX_MESSAGE_BYTES).unwrap_or(u64::MAX).saturating_add(1);
        let n = match (&mut reader).take(limit).read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("mcp-policy-gateway: cannot read standard input: {e}");
                return;
            }
        };
        if n == 0 {
            return;
        }
        let inbound = if buf.len() > MAX_MESSAGE_BYTES && buf.last() != Some(&b'\n') {
            // Skip the rest of the line.
            loop {
                buf.clear();
                match (&mut reader).take(1 << 20).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
            Inbound::Malformed(format!("message longer than {MAX_MESSAGE_BYTES} bytes"))
        } else {
            let line = buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(v) => Inbound::Message(v),
                Err(e) => Inbound::Malformed(format!("not JSON: {e}")),
            }
        };
        if tx.blocking_send(inbound).is_err() {
            return;
        }
    }
}
