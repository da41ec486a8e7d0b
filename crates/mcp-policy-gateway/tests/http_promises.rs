//! Promises of docs/gateway-http.md that no other test holds, against the trivial upstream of
//! tests/trivial (this executable started with `trivial-upstream`), so these tests never skip:
//!
//! - the Origin/Host rule end to end: `--allowed-host` (a name allows any port) and
//!   `--allowed-origin` (compared case-insensitively, without a trailing `/`) reach the
//!   listener; `*.localhost` and all of 127.0.0.0/8 are loopback names; a refused request is 403
//!   with a JSON-RPC error naming the header; `/healthz` has no Host check, `/metrics` has
//!   (and no token);
//! - a body over 16 MiB is 413;
//! - `/approvals` is 404 without `--admin-token-file`; an admin token under 16 characters, or a
//!   Redis that cannot be reached, stops the gateway at start (exit 2);
//! - `--allow-remote` without authentication warns on stderr;
//! - `--grant-claim` names the claim that is the grant (a non-empty string, 401 otherwise);
//! - a session's upstream that ignores the end of its input and SIGTERM is killed with its
//!   process group when the session ends (DELETE) and when the gateway stops (SIGTERM).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "http_support/mod.rs"]
mod http_support;
#[path = "runner/mod.rs"]
mod runner;
#[path = "trivial/mod.rs"]
mod trivial;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_support::{gateway, write};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// How long one test may take before it fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(300);

fn policy(dir: &Path) -> PathBuf {
    write(dir, "policy.json", r#"{"version": "1", "default": "deny", "tools": {"echo": {}}}"#)
}

fn trivial_upstream() -> Vec<OsString> {
    vec![std::env::current_exe().unwrap().into_os_string(), "trivial-upstream".into()]
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}})
}

async fn the_origin_and_host_rule_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--allowed-host", "gw.internal", "--allowed-origin", "https://app.example"];
    let gw = gateway(&policy(dir.path()), &extra, &trivial_upstream()).await;
    let port = gw.base.rsplit(':').next().unwrap().to_owned();
    let post = |host: Option<String>, origin: Option<&str>| {
        let mut req = reqwest::Client::new()
            .post(gw.mcp())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(initialize().to_string());
        if let Some(h) = host {
            req = req.header("host", h);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    // Hosts: loopback names with any port, and each --allowed-host (a name: any port).
    for host in [
        format!("127.0.0.1:{port}"),
        format!("127.9.8.7:{port}"),
        format!("localhost:{port}"),
        format!("app.localhost:{port}"),
        format!("[::1]:{port}"),
        "gw.internal".to_owned(),
        "gw.internal:9999".to_owned(),
        "GW.Internal:80".to_owned(),
    ] {
        let (status, body) = post(Some(host.clone()), None).await;
        assert_eq!(status, 200, "Host `{host}`: {body}");
    }
    for host in [format!("rebound.evil.example:{port}"), "gw.internal.evil.example".to_owned()] {
        let (status, body) = post(Some(host.clone()), None).await;
        assert_eq!(status, 403, "Host `{host}`: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`Host`"), "the error names the header: {body}");
    }
    // Origins: none, a loopback origin on a loopback listener, each --allowed-origin.
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:9",
        "https://app.example",
        "HTTPS://App.Example/",
    ] {
        let (status, body) = post(None, Some(origin)).await;
        assert_eq!(status, 200, "Origin `{origin}`: {body}");
    }
    for origin in ["https://evil.example", "https://app.example:8443", "null"] {
        let (status, body) = post(None, Some(origin)).await;
        assert_eq!(status, 403, "Origin `{origin}`: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("`Origin`"), "the error names the header: {body}");
    }
    // /healthz is for probes: no Host check.
    let resp = reqwest::Client::new()
        .get(format!("{}/healthz", gw.base))
        .header("host", "probe.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
    // /metrics needs no token but is subject to the rule.
    let metrics = |origin: &'static str| {
        reqwest::Client::new().get(format!("{}/metrics", gw.base)).header("origin", origin).send()
    };
    assert_eq!(metrics("http://localhost:3000").await.unwrap().status(), 200);
    assert_eq!(metrics("https://evil.example").await.unwrap().status(), 403);
    // Without --admin-token-file there is no approvals API.
    assert_eq!(gw.get("/approvals", Some("admin-token-0123456789")).await.status(), 404);
    gw.stop().await;
}

async fn a_body_over_16_mib_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&policy(dir.path()), &[], &trivial_upstream()).await;
    let mut c = gw.client();
    c.initialize().await.unwrap();
    // A tools/call whose arguments take the body past 16 MiB.
    let big = "x".repeat(16 * 1024 * 1024);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"big": big}}});
    let resp = c.post(&body).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    // One just under passes.
    let fits = "x".repeat(16 * 1024 * 1024 - 1024);
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"big": fits}}});
    let resp = c.post(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

/// Runs the gateway with `args` to its exit (a minute at most); its status and stderr.
async fn run_to_exit(args: &[OsString]) -> (Option<i32>, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-policy-gateway"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the gateway did not exit")
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn what_cannot_start_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path());
    let short = write(dir.path(), "admin.token", "0123456789abcde\n");
    let mut args: Vec<OsString> = vec!["--policy".into(), policy.clone().into()];
    args.extend(["--listen", "127.0.0.1:0", "--admin-token-file"].map(OsString::from));
    args.push(short.into());
    args.push("--".into());
    args.extend(trivial_upstream());
    let (code, err) = run_to_exit(&args).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("use at least 16 random characters"), "{err}");

    // A Redis nobody listens on (a port just bound and freed).
    let port = http_support::free_port();
    let mut args: Vec<OsString> = vec!["--policy".into(), policy.into()];
    args.extend(["--listen", "127.0.0.1:0", "--redis"].map(OsString::from));
    args.push(format!("redis://127.0.0.1:{port}/0").into());
    args.push("--".into());
    args.extend(trivial_upstream());
    let (code, err) = run_to_exit(&args).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot connect to Redis"), "{err}");
}

async fn listening_remotely_without_authentication_warns() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-policy-gateway"))
        .arg("--policy")
        .arg(policy(dir.path()))
        .args(["--listen", "0.0.0.0:0", "--allow-remote", "--grant", "everyone", "--"])
        .args(trivial_upstream())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the gateway did not start listening")
            .unwrap()
            .unwrap_or_else(|| panic!("the gateway exited: {said}"));
        said.push_str(&line);
        said.push('\n');
        if line.contains("serving MCP at") {
            break;
        }
    }
    assert!(
        said.contains("WARNING: listening on `0.0.0.0:") && said.contains("without authentication"),
        "{said}"
    );
    assert!(said.contains("every client gets the grant `everyone`"), "{said}");
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

/// An upstream that outlives the end of its input and ignores SIGTERM: a shell that ignores
/// it (as do the processes it starts), runs the trivial upstream, then sleeps for ever.
fn stubborn_upstream() -> Vec<OsString> {
    let script = r#"trap "" TERM; "$0" trivial-upstream; while :; do sleep 1; done"#;
    vec!["sh".into(), "-c".into(), script.into(), std::env::current_exe().unwrap().into()]
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let p = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields.get(1)? == &pid.to_string() && fields.first()? != &"Z").then_some(p)
        })
        .collect()
}

/// Whether a live (not zombie) process is in the process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
    })
}

/// Kills the process groups still alive when dropped: a failing test leaves no stubborn
/// upstream behind (it would hold the test's output open).
struct KillGroupsOnDrop(Vec<u32>);

impl Drop for KillGroupsOnDrop {
    fn drop(&mut self) {
        for pgid in self.0.iter().copied().filter(|g| group_alive(*g)) {
            let pgid = nix::unistd::Pid::from_raw(pgid as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::SIGKILL);
        }
    }
}

/// Waits (a minute at most) until no process of the group `pgid` is alive.
async fn group_ends(pgid: u32, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while group_alive(pgid) {
        assert!(std::time::Instant::now() < deadline, "{what}: a process of the upstream was left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ended_sessions_kill_a_stubborn_upstreams_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&policy(dir.path()), &[], &stubborn_upstream()).await;
    let pid = gw.child.id().unwrap();
    let mut a = gw.client();
    a.initialize().await.unwrap();
    assert_eq!(http_support::text(&a.call(1, "echo", json!({})).await), "ran");
    let first = children_of(pid);
    assert_eq!(first.len(), 1, "{first:?}");
    let mut b = gw.client();
    b.initialize().await.unwrap();
    assert_eq!(http_support::text(&b.call(1, "echo", json!({})).await), "ran");
    let second: Vec<u32> = children_of(pid).into_iter().filter(|p| !first.contains(p)).collect();
    assert_eq!(second.len(), 1, "{second:?}");
    // Each upstream leads a process group of its own.
    let (ga, gb) = (first[0], second[0]);
    let _cleanup = KillGroupsOnDrop(vec![ga, gb]);
    assert!(group_alive(ga) && group_alive(gb));

    let resp = a
        .http
        .delete(&a.url)
        .header("mcp-session-id", a.session.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "DELETE: {}", resp.status());
    group_ends(ga, "DELETE").await;
    assert!(group_alive(gb), "the other session's upstream runs on");
    gw.stop().await;
    group_ends(gb, "the gateway's SIGTERM").await;
}

async fn the_grant_claim_names_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(dir.path(), "jwt.secret", &format!("{}\n", http_support::SECRET));
    let log = dir.path().join("decisions.jsonl");
    let (secret, log_arg) = (secret.to_str().unwrap(), log.to_str().unwrap());
    let extra = ["--jwt-secret-file", secret, "--grant-claim", "team", "--decision-log", log_arg];
    let gw = gateway(&policy(dir.path()), &extra, &trivial_upstream()).await;
    let exp = http_support::now() + 600;
    let token =
        http_support::jwt(json!({"sub": "alice", "team": "ops", "exp": exp}), http_support::SECRET);
    let mut c = gw.client().with_token(&token);
    c.initialize().await.unwrap();
    assert_eq!(http_support::text(&c.call(1, "echo", json!({})).await), "ran");
    // A token whose grant claim is empty, or missing, is refused.
    for claims in
        [json!({"sub": "alice", "team": "", "exp": exp}), json!({"sub": "alice", "exp": exp})]
    {
        let token = http_support::jwt(claims.clone(), http_support::SECRET);
        let resp = gw.client().with_token(&token).initialize().await.err().unwrap();
        assert_eq!(resp.status(), 401, "{claims}");
    }
    gw.stop().await;
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["grant"], "ops", "{lines:?}");
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("trivial-upstream") {
        trivial::stdio_upstream();
        return;
    }
    let tests: [runner::Test; 6] = [
        ("the_origin_and_host_rule_as_documented", || {
            Box::pin(the_origin_and_host_rule_as_documented())
        }),
        ("a_body_over_16_mib_is_413", || Box::pin(a_body_over_16_mib_is_413())),
        ("what_cannot_start_exits_2", || Box::pin(what_cannot_start_exits_2())),
        ("listening_remotely_without_authentication_warns", || {
            Box::pin(listening_remotely_without_authentication_warns())
        }),
        ("ended_sessions_kill_a_stubborn_upstreams_process_group", || {
            Box::pin(ended_sessions_kill_a_stubborn_upstreams_process_group())
        }),
        ("the_grant_claim_names_the_grant", || Box::pin(the_grant_claim_names_the_grant())),
    ];
    runner::run(&tests, DEADLINE);
}
