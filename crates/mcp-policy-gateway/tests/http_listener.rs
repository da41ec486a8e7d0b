//! The HTTP listener in front of a command (a child process per session):
//! - `--threads`: the listener runs on that many worker threads, or with one on the process's
//!   own thread (no worker thread at all), and serves sessions either way;
//! - an ended session leaves no descriptor open in the gateway (its upstream's pipes close);
//! - with the spin (`--spin`), an idle gateway still sleeps.
//!
//! The upstream is the trivial server of tests/trivial (this executable started with
//! `trivial-upstream`), so these tests never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "http_support/mod.rs"]
mod http_support;
#[path = "trivial/mod.rs"]
mod trivial;

use http_support::{gateway, text, write};
use serde_json::json;

/// The names of the gateway's threads (as the kernel keeps them: 15 bytes at most).
fn thread_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let comm = task.unwrap().path().join("comm");
        if let Ok(name) = std::fs::read_to_string(comm) {
            names.push(name.trim().to_owned());
        }
    }
    names
}

fn policy(dir: &std::path::Path) -> std::path::PathBuf {
    write(dir, "policy.json", r#"{"version": "1", "default": "deny", "tools": {"echo": {}}}"#)
}

fn trivial_upstream() -> [std::ffi::OsString; 2] {
    [std::env::current_exe().unwrap().into_os_string(), "trivial-upstream".into()]
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// Sessions opened, used and ended (DELETE) one after another leave the gateway's open
/// descriptors where they were: nothing of a session (its upstream's pipes, its connection)
/// is kept once it has ended.
async fn ended_sessions_leave_no_descriptor_open() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&policy(dir.path()), &["--policy-poll", "0"], &trivial_upstream()).await;
    let pid = gw.child.id().unwrap();
    let session = || async {
        let mut c = gw.client();
        c.initialize().await.unwrap();
        assert_eq!(text(&c.call(1, "echo", json!({})).await), "ran");
        let status = c
            .http
            .delete(&c.url)
            .header("mcp-session-id", c.session.clone().unwrap())
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "DELETE: {status}");
    };
    session().await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = open_descriptors(pid);
    for _ in 0..40 {
        session().await;
    }
    // The last session's child is stopped after the DELETE's answer: give it a moment.
    let mut after = open_descriptors(pid);
    for _ in 0..100 {
        if after <= before + 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = open_descriptors(pid);
    }
    assert!(
        after <= before + 4,
        "40 ended sessions: {before} descriptors open before, {after} after"
    );
    gw.stop().await;
}

/// The spin before the thread sleeps (`--spin`, here its largest budget, 10 ms) polls the
/// client's and the upstream's sockets, and the thread then sleeps: a gateway with sessions
/// open but no call coming uses next to no CPU. (A spin that did not let the thread sleep, or
/// that a watched connection kept from ending, would use a whole core: 3 s in 3 s.)
async fn an_idle_gateway_with_the_spin_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--policy-poll", "0", "--threads", "1", "--spin", "10000"];
    let gw = gateway(&policy(dir.path()), &extra, &trivial_upstream()).await;
    let pid = gw.child.id().unwrap();
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut c = gw.client();
        c.initialize().await.unwrap();
        assert_eq!(text(&c.call(i, "echo", json!({})).await), "ran");
        clients.push(c);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = http_support::proc_cpu_time(pid);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let used = http_support::proc_cpu_time(pid) - before;
    assert!(used.as_millis() < 500, "an idle gateway used {used:?} of CPU in 3 s");
    // And it still serves.
    assert_eq!(text(&clients[0].call(99, "echo", json!({})).await), "ran");
    gw.stop().await;
}

/// Starts the gateway with `--threads N` (none: the default), serves `sessions` sessions of
/// two calls each, one allowed and one refused; the number of tokio worker threads it runs.
async fn serve(threads: Option<&str>, sessions: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.json",
        r#"{"version": "1", "default": "deny", "tools": {"echo": {}}}"#,
    );
    let this = std::env::current_exe().unwrap();
    let upstream = [this.into_os_string(), "trivial-upstream".into()];
    // No polling of the policy file: each poll reads it on a blocking thread, which tokio names
    // as it names its workers.
    let mut extra = vec!["--policy-poll", "0"];
    if let Some(n) = threads {
        extra.extend(["--threads", n]);
    }
    let gw = gateway(&policy, &extra, &upstream).await;
    let mut clients = Vec::new();
    for _ in 0..sessions {
        let mut c = gw.client();
        c.initialize().await.unwrap();
        clients.push(c);
    }
    let calls = clients.iter().enumerate().map(|(i, c)| async move {
        let id = i64::try_from(i).unwrap() * 2;
        let allowed = c.call(id + 1, "echo", json!({})).await;
        let refused = c.call(id + 2, "other", json!({})).await;
        (allowed, refused)
    });
    for (allowed, refused) in futures_util::future::join_all(calls).await {
        assert_eq!(text(&allowed), "ran", "{allowed}");
        assert_eq!(refused["isError"], true, "{refused}");
        assert_ne!(text(&refused), "ran", "{refused}");
    }
    let names = thread_names(gw.child.id().unwrap());
    gw.stop().await;
    // tokio's default name for its threads.
    names.iter().filter(|n| n.as_str() == "tokio-rt-worker").count()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("trivial-upstream") {
        trivial::stdio_upstream();
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // One thread: the runtime is the process's own thread; no worker thread is started.
        assert_eq!(serve(Some("1"), 8).await, 0, "--threads 1 started worker threads");
        println!("test threads_1_serves_sessions_on_the_process_thread ... ok");
        let workers = serve(Some("3"), 8).await;
        assert_eq!(workers, 3, "--threads 3 ran {workers} worker threads");
        println!("test threads_3_runs_three_workers ... ok");
        // The default: half the cores, at least one (one thread means no worker thread).
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let expected = match (cores / 2).max(1) {
            1 => 0,
            n => n,
        };
        let workers = serve(None, 4).await;
        assert_eq!(workers, expected, "{cores} cores: the default ran {workers} workers");
        println!("test the_default_is_half_the_cores ... ok");
        ended_sessions_leave_no_descriptor_open().await;
        println!("test ended_sessions_leave_no_descriptor_open ... ok");
        an_idle_gateway_with_the_spin_sleeps().await;
        println!("test an_idle_gateway_with_the_spin_sleeps ... ok");
    });
    println!("\ntest result: ok. 5 passed; 0 failed");
}
