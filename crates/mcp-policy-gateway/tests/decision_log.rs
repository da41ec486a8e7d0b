//! The decision log never stalls the gateway, and loses nothing at a normal exit:
//! - a log on a FIFO nobody reads (its pipe fills, as with a stopped pager or a hung network
//!   file system): 2,000 calls over HTTP and over stdio all get their answers; the lines that
//!   did not fit are dropped, counted on /metrics (`decision_log_dropped_total`) and said on
//!   stderr; the gateway still exits (the last lines are given up after 2 s); the same with
//!   `--decision-log -` and a stderr nobody reads;
//! - a client that makes N calls and leaves (stdin closed, or SIGTERM to the listener): the log
//!   holds exactly N decision lines, although its sink took none of them before the exit began.
//!
//! Without the log's own thread, the first test's calls hang once the pipe is full; they would
//! time out and fail (each answer is awaited at most a minute). The upstream is the trivial
//! server of tests/trivial (this executable started with `trivial-upstream`), so these tests
//! never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "http_support/mod.rs"]
mod http_support;
#[path = "runner/mod.rs"]
mod runner;
#[path = "support/mod.rs"]
mod support;
#[path = "trivial/mod.rs"]
mod trivial;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use serde_json::{Value, json};

/// How long one test may take before it fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(300);

/// Calls made against a stalled log.
const CALLS: usize = 2000;

fn trivial_upstream() -> Vec<std::ffi::OsString> {
    vec![std::env::current_exe().unwrap().into_os_string(), "trivial-upstream".into()]
}

fn policy(dir: &Path) -> PathBuf {
    support::write(
        dir,
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"echo": {}}}"#,
    )
}

/// A FIFO at `dir/decisions.fifo`, and its read end opened without blocking (`O_RDWR` keeps
/// the pipe open for the gateway's writes, which then fill it since nobody reads).
fn stalled_fifo(dir: &Path) -> (PathBuf, std::fs::File) {
    let path = dir.join("decisions.fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .unwrap();
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(&path)
        .unwrap();
    (path, held)
}

/// Reads the FIFO `file` (opened `O_RDONLY | O_NONBLOCK`) until every writer has closed it.
fn drain(file: &mut std::fs::File) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the gateway kept the log open for a minute");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("reading the FIFO: {e}"),
        }
    }
    String::from_utf8(out).unwrap()
}

/// The decision lines of `text`, each checked to be whole JSON.
fn decisions(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// A metric's value in the Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (a minute at most) until `stderr` holds `needle`.
async fn said(stderr: &std::sync::Mutex<String>, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if stderr.lock().unwrap().contains(needle) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

const WARNING: &str = "decision-log lines are being dropped (the queue toward its sink is full";

/// Over HTTP (one serving thread): a log on a FIFO nobody reads holds up no call; /metrics
/// counts every decision and the dropped lines; stderr says so; SIGTERM still ends the gateway.
async fn a_stalled_log_holds_up_no_call_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, _held) = stalled_fifo(dir.path());
    let fifo_arg = fifo.to_str().unwrap();
    let args = [
        "--threads",
        "1",
        "--policy-poll",
        "0",
        "--decision-log",
        fifo_arg,
        "--decision-log-queue",
        "65536",
    ];
    let gw = http_support::gateway(&policy(dir.path()), &args, &trivial_upstream()).await;
    let mut c = gw.client();
    c.initialize().await.unwrap();
    for i in 0..CALLS {
        let id = i64::try_from(i).unwrap() + 1;
        if i % 2 == 0 {
            let r = c.call(id, "echo", json!({})).await;
            assert_eq!(http_support::text(&r), "ran", "call {i}: {r}");
        } else {
            let r = c.call(id, "other", json!({})).await;
            assert_eq!(r["isError"], true, "call {i}: {r}");
        }
    }
    let text = gw.metrics().await;
    // Every decision is counted, whether its line was written or dropped.
    let counted = metric(&text, "mcp_policy_gateway_decisions_total{");
    assert_eq!(counted, CALLS as f64, "{text}");
    let dropped = metric(&text, "mcp_policy_gateway_decision_log_dropped_total");
    // 2,000 lines of about 300 bytes: at most 64 KiB fit in the pipe and 64 KiB in the queue.
    assert!(dropped > 0.0 && dropped < CALLS as f64, "dropped {dropped}: {text}");
    assert!(said(&gw.stderr, WARNING).await, "{}", gw.stderr.lock().unwrap());
    // The thread that writes the log is the gateway's own.
    let pid = gw.child.id().unwrap();
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect();
    assert!(threads.iter().any(|n| n == "decision-log"), "{threads:?}");
    // The sink still takes nothing: the gateway gives up its last lines and exits.
    let stderr = gw.stderr.clone();
    let status = gw.stop().await;
    assert!(status.success(), "{status}");
    assert!(said(&stderr, "line(s) in all (the sink did not take").await);
}

/// Over stdio (one thread for everything): the same, and the gateway exits with the
/// upstream's status when the client leaves.
async fn a_stalled_log_holds_up_no_call_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, _held) = stalled_fifo(dir.path());
    let args = ["--decision-log", fifo.to_str().unwrap(), "--decision-log-queue", "65536"];
    let cmd = support::gateway_command(&policy(dir.path()), &args, &trivial_upstream());
    let (mut g, stderr) = support::Raw::spawn_with_stderr(cmd);
    g.initialize("2025-06-18", json!({})).await;
    for i in 0..CALLS {
        let id = i64::try_from(i).unwrap() + 1;
        let tool = if i % 2 == 0 { "echo" } else { "other" };
        let r = g.call(id, tool, json!({})).await;
        assert_eq!(r["result"]["isError"].as_bool() == Some(true), tool == "other", "{r}");
    }
    assert!(said(&stderr, WARNING).await, "{}", stderr.lock().unwrap());
    g.close_stdin();
    let status = g.wait_exit().await;
    assert!(status.success(), "{status}");
    assert!(said(&stderr, "line(s) in all (the sink did not take").await);
}

/// `--decision-log -` with the gateway's stderr a pipe nobody reads (a stopped pager): the calls
/// go on, and the gateway still exits when the client leaves.
async fn a_stalled_stderr_log_holds_up_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--decision-log", "-", "--decision-log-queue", "65536"];
    let mut cmd = support::gateway_command(&policy(dir.path()), &args, &trivial_upstream());
    // Piped, and never read: the pipe fills.
    cmd.stderr(std::process::Stdio::piped());
    let mut g = support::Raw::spawn(cmd);
    g.initialize("2025-06-18", json!({})).await;
    for i in 0..CALLS {
        let id = i64::try_from(i).unwrap() + 1;
        let r = g.call(id, "other", json!({})).await;
        assert_eq!(r["result"]["isError"], true, "{r}");
    }
    g.close_stdin();
    let status = g.wait_exit().await;
    assert!(status.success(), "{status}");
}

/// The read end of a FIFO at `dir/decisions.fifo`, opened without blocking (the gateway's
/// open then succeeds at once); read only when the test says.
fn fifo_read_end(dir: &Path) -> (PathBuf, std::fs::File) {
    let path = dir.join("decisions.fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(&path)
        .unwrap();
    (path, file)
}

/// Calls made before the client leaves: their lines are far more than the pipe holds (64
/// KiB), so most are still queued in the gateway when it begins to exit.
const AT_EXIT: usize = 1000;

/// The calls of the at-exit tests: `AT_EXIT` of them, ids from 1, allowed and refused in turn.
fn at_exit_calls() -> impl Iterator<Item = (i64, &'static str)> {
    (0..AT_EXIT).map(|i| (i64::try_from(i).unwrap() + 1, if i % 2 == 0 { "echo" } else { "other" }))
}

/// Waits (at most a minute) until the gateway `pid` has no child process left.
async fn upstream_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !support::children_of(pid).is_empty() {
        assert!(Instant::now() < deadline, "the upstream did not stop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A stdio client makes N calls and closes stdin: once its upstream has gone, the gateway is
/// exiting with most lines still queued (nobody read the FIFO yet); reading the FIFO then
/// yields exactly N lines, before the gateway exits.
async fn nothing_is_lost_at_exit_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, mut reader) = fifo_read_end(dir.path());
    let args = ["--decision-log", fifo.to_str().unwrap()];
    let cmd = support::gateway_command(&policy(dir.path()), &args, &trivial_upstream());
    let mut g = support::Raw::spawn(cmd);
    g.initialize("2025-06-18", json!({})).await;
    for (id, tool) in at_exit_calls() {
        g.call(id, tool, json!({})).await;
    }
    let pid = g.child.id().unwrap();
    g.close_stdin();
    // The upstream is stopped first; then the gateway flushes its log and exits.
    upstream_stopped(pid).await;
    let lines = decisions(&drain(&mut reader));
    assert_eq!(lines.len(), AT_EXIT);
    assert_eq!(lines.iter().filter(|l| l["decision"] == "allow").count(), AT_EXIT / 2);
    let status = g.wait_exit().await;
    assert!(status.success(), "{status}");
}

/// The same over HTTP, ended by SIGTERM: every decision line reaches the log.
async fn nothing_is_lost_at_sigterm_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (fifo, mut reader) = fifo_read_end(dir.path());
    let args = ["--threads", "1", "--policy-poll", "0", "--decision-log", fifo.to_str().unwrap()];
    let gw = http_support::gateway(&policy(dir.path()), &args, &trivial_upstream()).await;
    let mut c = gw.client();
    c.initialize().await.unwrap();
    for (id, tool) in at_exit_calls() {
        c.call(id, tool, json!({})).await;
    }
    let pid = gw.child.id().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGTERM)
        .unwrap();
    // The session's upstream is stopped first; then the gateway flushes its log and exits.
    upstream_stopped(pid).await;
    let lines = decisions(&drain(&mut reader));
    assert_eq!(lines.len(), AT_EXIT);
    let status = gw.stop().await;
    assert!(status.success(), "{status}");
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("trivial-upstream") {
        trivial::stdio_upstream();
        return;
    }
    let tests: [runner::Test; 5] = [
        ("a_stalled_log_holds_up_no_call_over_http", || {
            Box::pin(a_stalled_log_holds_up_no_call_over_http())
        }),
        ("a_stalled_log_holds_up_no_call_over_stdio", || {
            Box::pin(a_stalled_log_holds_up_no_call_over_stdio())
        }),
        ("a_stalled_stderr_log_holds_up_no_call", || {
            Box::pin(a_stalled_stderr_log_holds_up_no_call())
        }),
        ("nothing_is_lost_at_exit_over_stdio", || Box::pin(nothing_is_lost_at_exit_over_stdio())),
        ("nothing_is_lost_at_sigterm_over_http", || {
            Box::pin(nothing_is_lost_at_sigterm_over_http())
        }),
    ];
    runner::run(&tests, DEADLINE);
}
