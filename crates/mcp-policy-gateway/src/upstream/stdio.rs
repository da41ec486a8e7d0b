//! The upstream MCP server as a child process speaking MCP over its stdin and stdout.
//!
//! The child inherits the gateway's environment (servers read their credentials from it) and its
//! stderr (which passes through untouched). It runs in its own process group, so that stopping
//! it also stops what it started (`npx` starts `node`, `uvx` starts `python`): the gateway leaves
//! no process behind.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::net::unix::pipe;
use tokio::process::Command;
use tokio::sync::watch;

use crate::lines::{LineReader, LineWriter, MAX_MESSAGE_BYTES, ReadEnd, WriteEnd};
use crate::transport::{UpstreamLink, UpstreamRx, UpstreamTx};

/// How long the gateway keeps reading the upstream's stdout after the process exited (output
/// still in the pipe, or a grandchild holding it open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// The running upstream process.
#[derive(Debug)]
pub struct ChildProcess {
    pid: Option<i32>,
    status: watch::Receiver<Option<ExitStatus>>,
}

/// Starts `command` (program and arguments) and connects to it.
pub fn spawn(command: &[OsString]) -> io::Result<(UpstreamLink, ChildProcess)> {
    let Some((program, args)) = command.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no upstream command given"));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(io::Error::other("the upstream's stdin or stdout is not a pipe"));
    };

    crate::spin::watch(stdout.as_fd());
    let stdin = pipe::Sender::from_owned_fd(stdin.into_owned_fd()?)?;
    let stdout = pipe::Receiver::from_owned_fd(stdout.into_owned_fd()?)?;
    let (status_tx, status_rx) = watch::channel(None);
    let (exited_tx, exited) = watch::channel(false);
    tokio::spawn(async move {
        let status = child.wait().await;
        match status {
            Ok(s) => {
                let _ = status_tx.send(Some(s));
            }
            Err(e) => eprintln!("mcp-policy-gateway: cannot wait for the upstream: {e}"),
        }
        let _ = exited_tx.send(true);
    });

    // The relay writes the upstream's stdin and reads its stdout itself; dropping the writer
    // closes stdin (the upstream sees the end of its input). Once the process has exited,
    // what is still in the pipe is read (for as long as lines keep coming within
    // `DRAIN_AFTER_EXIT`: a grandchild may hold it open); then the relay sees the upstream gone.
    let tx = UpstreamTx::Lines(LineWriter::new(WriteEnd::Pipe(stdin), || {}));
    let lines = LineReader::new(ReadEnd::Pipe(stdout), MAX_MESSAGE_BYTES)
        .ending_after(exited, DRAIN_AFTER_EXIT);
    // Only the gateway's HTTP upstream says an HTTP status.
    let rx = UpstreamRx::Lines { lines, clean: super::http::strip_upstream_status };
    Ok((UpstreamLink { tx, rx }, ChildProcess { pid, status: status_rx }))
}

impl ChildProcess {
    /// The exit status, if the process has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.status.borrow()
    }

    /// Sends `signal` to the upstream's process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let waited = tokio::time::timeout(timeout, self.status.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|s| *s));
        waited.or_else(|| self.exit_status())
    }

    /// Stops the upstream: waits `grace` for it to exit by itself (its stdin is closed), then
    /// sends SIGTERM, then SIGKILL; in the end, kills what is left of its process group. Returns
    /// its exit status when it could be known.
    pub async fn shutdown(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut status = self.wait_timeout(grace).await;
        if status.is_none() {
            self.signal(Signal::SIGTERM);
            status = self.wait_timeout(Duration::from_secs(2)).await;
        }
        if status.is_none() {
            self.signal(Signal::SIGKILL);
            status = self.wait_timeout(Duration::from_secs(2)).await;
        }
        // Grandchildren the upstream left behind.
        self.signal(Signal::SIGKILL);
        status
    }
}

/// The exit code the gateway exits with for the upstream's `status`: its code, or 128 + the
/// signal that ended it (as shells report it).
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    }
}
