//! docs/gateway-http.md, "Approvals admin API": *"A client that can elicit is still asked in
//! band; the entry is listed for the administrator too, and whichever answer comes first
//! decides."* Each test runs the gateway with `--listen` and `--admin-token-file` in front of a
//! counting upstream (this executable started with `counting-upstream FILE`: every `tools/call`
//! of `count` appends a line to FILE, and it answers one message after another, so that once it
//! has answered a later `echo`, FILE holds every `count` the gateway sent it before). The client
//! is raw streamable HTTP of 2025-06-18 declaring elicitation, answering the gateway's
//! `elicitation/create` with a POST of its own.
//!
//! - the administrator approves while the client is asked: the call runs at once, exactly once;
//!   the gateway withdraws its `elicitation/create` (`notifications/cancelled`), and the
//!   client's late accept is ignored (202, nothing runs);
//! - the administrator refuses while the client is asked: the call is refused at once and never
//!   reaches the upstream, whatever the client answers afterwards;
//! - the client accepts first: the call runs once, the entry is no longer listed, and the
//!   administrator's later `POST /approvals/{id}` is 404 (a spent id), running nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "http_support/mod.rs"]
mod http_support;
#[path = "runner/mod.rs"]
mod runner;

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_support::{Gateway, PATIENCE, Raw, gateway, text, write};
use serde_json::{Value, json};

/// How long one test may take before it fails instead of hanging.
const DEADLINE: Duration = Duration::from_secs(300);

/// How long the client waits for a message the gateway owes it now (an answer that comes only
/// with an answer from someone else would never come).
const SOON: Duration = Duration::from_secs(20);

const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "echo": {},
    "count": { "approve_if": [{ "conditions": [], "reason": "counting needs a human" }] }
  }
}"#;

const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// The upstream: answers `initialize`, `tools/list` (`echo`, `count`) and each `tools/call`,
/// one message after another; a call of `count` first appends a line to `file`.
fn counting_upstream(file: &Path) {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) else { continue };
        let result = match method {
            "initialize" => json!({
                "protocolVersion": msg["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "counting-upstream", "version": "1"}
            }),
            "tools/list" => json!({"tools": [
                {"name": "echo", "inputSchema": {"type": "object"}},
                {"name": "count", "inputSchema": {"type": "object"}}]}),
            "tools/call" if msg["params"]["name"] == "count" => {
                let mut f =
                    std::fs::OpenOptions::new().create(true).append(true).open(file).unwrap();
                writeln!(f, "{}", msg["params"]["arguments"]).unwrap();
                f.sync_all().unwrap();
                json!({"content": [{"type": "text", "text": "counted"}]})
            }
            "tools/call" => json!({"content": [{"type": "text", "text": "ran"}]}),
            _ => json!({}),
        };
        writeln!(out, "{}", json!({"jsonrpc": "2.0", "id": id, "result": result})).unwrap();
        out.flush().unwrap();
    }
}

/// A gateway in front of the counting upstream, and a session of a client that can elicit.
struct Race {
    dir: tempfile::TempDir,
    gw: Gateway,
    client: Raw,
}

impl Race {
    async fn start() -> Race {
        let dir = tempfile::tempdir().unwrap();
        let policy = write(dir.path(), "policy.json", POLICY);
        let admin = write(dir.path(), "admin", &format!("{ADMIN_TOKEN}\n"));
        let log = dir.path().join("decisions.jsonl");
        let upstream: Vec<OsString> = vec![
            std::env::current_exe().unwrap().into_os_string(),
            "counting-upstream".into(),
            dir.path().join("counted").into_os_string(),
        ];
        let extra = [
            "--admin-token-file",
            admin.to_str().unwrap(),
            "--decision-log",
            log.to_str().unwrap(),
            "--grant",
            "agent",
        ];
        let gw = gateway(&policy, &extra, &upstream).await;
        let mut client = gw.client();
        client.initialize_with(json!({"elicitation": {}})).await.unwrap();
        Race { dir, gw, client }
    }

    /// The calls of `count` that reached the upstream, in order (their arguments).
    fn counted(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("counted")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Returns once the upstream has handled everything the gateway sent it so far: a call of
    /// `echo` goes after it, and the upstream answers in order.
    async fn settle(&self, id: i64) {
        let r = self.client.call(id, "echo", json!({})).await;
        assert_eq!(text(&r), "ran", "{r}");
    }

    /// `tools/call` of `count` with `arguments` (request `id`): the gateway asks the client
    /// first. Returns the open answer stream and the id of the gateway's `elicitation/create`.
    async fn ask(&self, id: i64, arguments: Value) -> (Events, Value) {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "count", "arguments": arguments}});
        let resp = self.client.post(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut events = Events::new(resp);
        let ask = events.next().await;
        assert_eq!(ask["method"], "elicitation/create", "the client is asked first: {ask}");
        let prompt = ask["params"]["message"].as_str().unwrap_or_default();
        assert!(prompt.contains("count"), "{ask}");
        (events, ask["id"].clone())
    }

    /// The client's answer to the gateway's `elicitation/create` `id`: accepted with `approve:
    /// true` (or declined); the status of its POST.
    async fn answer(&self, id: &Value, accept: bool) -> u16 {
        let result = if accept {
            json!({"action": "accept", "content": {"approve": true}})
        } else {
            json!({"action": "decline"})
        };
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result});
        self.client.post(&body).send().await.unwrap().status().as_u16()
    }

    /// `GET /approvals`: the entries waiting.
    async fn pending(&self) -> Vec<Value> {
        let resp = self.gw.get("/approvals", Some(ADMIN_TOKEN)).await;
        assert_eq!(resp.status(), 200);
        let list: Value = resp.json().await.unwrap();
        list["pending"].as_array().unwrap().clone()
    }

    /// The one entry waiting, for `count` with `arguments`: its id.
    async fn listed(&self, arguments: &Value) -> String {
        let pending = self.pending().await;
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0]["tool"], "count");
        assert_eq!(&pending[0]["arguments"], arguments);
        pending[0]["id"].as_str().unwrap().to_owned()
    }

    /// `POST /approvals/{id}`: its status.
    async fn resolve(&self, id: &str, approve: bool) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/approvals/{id}", self.gw.base))
            .bearer_auth(ADMIN_TOKEN)
            .body(json!({ "approve": approve }).to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// The decision log's lines for `count`, once there are at least `n`.
    async fn count_lines(&self, n: usize) -> Vec<Value> {
        let path = self.dir.path().join("decisions.jsonl");
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let whole = text.rfind('\n').map_or("", |end| &text[..end]);
            let lines: Vec<Value> = whole
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|l| l["tool"] == "count")
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(std::time::Instant::now() < deadline, "the log has {lines:?}, not {n} lines");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The messages of an SSE answer, read as they come.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    fn new(resp: reqwest::Response) -> Events {
        let sse = resp.headers().get("content-type").and_then(|v| v.to_str().ok());
        assert!(sse.is_some_and(|t| t.starts_with("text/event-stream")), "{sse:?}");
        Events { resp, buf: String::new() }
    }

    /// The next message; fails when none comes within [`SOON`] (keep-alive comments do not
    /// count) or the stream ends.
    async fn next(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(message) = http_support::event_message(&event) {
                    return message;
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("nothing came within {SOON:?} (read: {:?})", self.buf))
                .unwrap()
                .unwrap_or_else(|| panic!("the stream ended (read: {:?})", self.buf));
            self.buf.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n"));
        }
    }

    /// The messages up to the response to request `id` (included).
    async fn until_response(&mut self, id: i64) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let m = self.next().await;
            let done = m["id"] == id && m.get("method").is_none();
            seen.push(m);
            if done {
                return seen;
            }
        }
    }
}

/// The gateway withdrew its `elicitation/create` `ask` before the response that ends `seen`.
fn withdrawn(seen: &[Value], ask: &Value) -> bool {
    seen.iter()
        .any(|m| m["method"] == "notifications/cancelled" && &m["params"]["requestId"] == ask)
}

async fn the_administrator_approving_first_runs_the_call_once() {
    let race = Race::start().await;
    let args = json!({"n": 1});
    let (mut events, ask) = race.ask(1, args.clone()).await;
    let id = race.listed(&args).await;
    assert!(race.counted().is_empty(), "nothing runs before anyone answers");

    // The administrator answers first: the call runs now, without the client's answer.
    assert_eq!(race.resolve(&id, true).await, 200);
    let seen = events.until_response(1).await;
    let r = &seen.last().unwrap()["result"];
    assert_eq!(text(r), "counted", "{seen:?}");
    assert!(withdrawn(&seen, &ask), "the client is told it is no longer asked: {seen:?}");
    assert_eq!(race.counted(), vec![args.clone()]);
    assert!(race.pending().await.is_empty(), "a decided entry is not listed");

    // The client's late accept is ignored: nothing runs a second time.
    assert_eq!(race.answer(&ask, true).await, 202);
    race.settle(2).await;
    assert_eq!(race.counted(), vec![args.clone()], "the call ran exactly once");
    assert_eq!(race.resolve(&id, true).await, 404, "a spent approval id is unknown");
    race.settle(3).await;
    assert_eq!(race.counted().len(), 1);

    let lines = race.count_lines(2).await;
    let seen: Vec<(&Value, &Value, &Value)> =
        lines.iter().map(|l| (&l["decision"], &l["outcome"], &l["approval"])).collect();
    assert_eq!(
        seen,
        [
            (&json!("approve"), &json!("approval_requested"), &Value::Null),
            (&json!("allow"), &json!("ok"), &json!("approved_out_of_band")),
        ],
        "{lines:?}"
    );
}

async fn the_administrator_refusing_first_keeps_the_call_from_the_upstream() {
    let race = Race::start().await;
    let args = json!({"n": 2});
    let (mut events, ask) = race.ask(1, args.clone()).await;
    let id = race.listed(&args).await;

    assert_eq!(race.resolve(&id, false).await, 200);
    let seen = events.until_response(1).await;
    let r = &seen.last().unwrap()["result"];
    assert_eq!(r["isError"], true, "{seen:?}");
    assert!(text(r).starts_with("Approval refused"), "{seen:?}");
    assert!(withdrawn(&seen, &ask), "{seen:?}");
    assert!(race.pending().await.is_empty());

    // Whatever the client answers afterwards, the call never reaches the upstream.
    assert_eq!(race.answer(&ask, true).await, 202);
    race.settle(2).await;
    assert!(race.counted().is_empty(), "{:?}", race.counted());
    assert_eq!(race.resolve(&id, true).await, 404, "a refused entry is gone once applied");

    // The refusal held for that call only: the same call again is asked again.
    let (mut events, ask) = race.ask(3, args.clone()).await;
    assert_eq!(race.answer(&ask, true).await, 202);
    let seen = events.until_response(3).await;
    assert_eq!(text(&seen.last().unwrap()["result"]), "counted", "{seen:?}");
    assert_eq!(race.counted(), vec![args]);

    let lines = race.count_lines(4).await;
    let refused = &lines[1];
    assert_eq!(
        (&refused["outcome"], &refused["approval"]),
        (&json!("not_dispatched"), &json!("refused_out_of_band")),
        "{lines:?}"
    );
    assert_eq!(lines.iter().filter(|l| l["outcome"] == "ok").count(), 1, "{lines:?}");
}

async fn the_client_accepting_first_runs_the_call_once() {
    let race = Race::start().await;
    let args = json!({"n": 3});
    let (mut events, ask) = race.ask(1, args.clone()).await;
    let id = race.listed(&args).await;

    assert_eq!(race.answer(&ask, true).await, 202);
    let seen = events.until_response(1).await;
    assert_eq!(text(&seen.last().unwrap()["result"]), "counted", "{seen:?}");
    assert!(!withdrawn(&seen, &ask), "an answered elicitation is not cancelled: {seen:?}");
    assert_eq!(race.counted(), vec![args.clone()]);
    assert!(race.pending().await.is_empty(), "the spent entry is no longer listed");

    // The administrator comes too late: the id is spent (404), and nothing runs again.
    assert_eq!(race.resolve(&id, true).await, 404);
    assert_eq!(race.resolve(&id, false).await, 404);
    race.settle(2).await;
    assert_eq!(race.counted(), vec![args]);

    let lines = race.count_lines(2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        (&lines[1]["outcome"], &lines[1]["approval"]),
        (&json!("ok"), &json!("accepted")),
        "{lines:?}"
    );
}

async fn the_client_declining_first_refuses_the_entry_too() {
    let race = Race::start().await;
    let args = json!({"n": 4});
    let (mut events, ask) = race.ask(1, args.clone()).await;
    let id = race.listed(&args).await;

    assert_eq!(race.answer(&ask, false).await, 202);
    let seen = events.until_response(1).await;
    let r = &seen.last().unwrap()["result"];
    assert_eq!(r["isError"], true, "{seen:?}");
    assert!(race.pending().await.is_empty(), "a declined entry is no longer waiting");

    // The administrator comes too late: the first answer stands, and nothing runs.
    assert_eq!(race.resolve(&id, true).await, 409, "the human's decline answered first");
    race.settle(2).await;
    assert!(race.counted().is_empty(), "{:?}", race.counted());

    // The agent's retry is refused once, as after a refusal out of band (not run on an
    // administrator's late approval), then asked again.
    let r = race.client.call(3, "count", args.clone()).await;
    assert!(text(&r).starts_with("Approval refused"), "{r}");
    let (mut events, ask) = race.ask(4, args.clone()).await;
    assert_eq!(race.answer(&ask, true).await, 202);
    let seen = events.until_response(4).await;
    assert_eq!(text(&seen.last().unwrap()["result"]), "counted", "{seen:?}");
    assert_eq!(race.counted(), vec![args]);
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("counting-upstream") {
        counting_upstream(&PathBuf::from(args.next().unwrap()));
        return;
    }
    let tests: [runner::Test; 4] = [
        ("the_administrator_approving_first_runs_the_call_once", || {
            Box::pin(the_administrator_approving_first_runs_the_call_once())
        }),
        ("the_administrator_refusing_first_keeps_the_call_from_the_upstream", || {
            Box::pin(the_administrator_refusing_first_keeps_the_call_from_the_upstream())
        }),
        ("the_client_accepting_first_runs_the_call_once", || {
            Box::pin(the_client_accepting_first_runs_the_call_once())
        }),
        ("the_client_declining_first_refuses_the_entry_too", || {
            Box::pin(the_client_declining_first_refuses_the_entry_too())
        }),
    ];
    runner::run(&tests, DEADLINE);
}
