//! Support for the HTTP tests: the gateway started with `--listen 127.0.0.1:0` (its address read
//! from its stderr), real upstream servers, a raw HTTP client, JWTs, and a `redis-server` of the
//! test's own; in `inline`, a raw client of revision 2026-07-28 and a recording upstream.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub mod inline;

/// How long a test waits for something before failing instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Where `.ci/run` installs the npm and PyPI packages the tests use.
pub fn deps_dir() -> PathBuf {
    match std::env::var_os("MCP_POLICY_TEST_DEPS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-deps"),
    }
}

/// Prints a loud SKIPPED (and returns false), or fails when `var` is set to 1.
pub fn skip(var: &str, what: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        panic!("{what} is missing and {var}=1: install it (bash .ci/run does)");
    }
    eprintln!(
        "\n**** SKIPPED: {what} is missing (run `bash .ci/run`); set {var}=1 to fail instead ****\n"
    );
    false
}

/// `node <entry point>` of an npm MCP server installed under the deps dir.
pub fn node_server(package: &str) -> Option<Vec<OsString>> {
    let entry = deps_dir().join("node/node_modules").join(package).join("dist/index.js");
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node || !entry.exists() {
        skip("MCP_POLICY_REQUIRE_NODE", &format!("node or the npm package `{package}`"));
        return None;
    }
    Some(vec!["node".into(), entry.into()])
}

/// A memory figure of process `pid` from `/proc/PID/status`, in KiB: `VmRSS` (resident now),
/// `VmHWM` (its peak).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{field}` in /proc/{pid}/status"))
}

/// The CPU time (user + system) process `pid` has used so far, from `/proc/PID/stat`.
pub fn proc_cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11..13].iter().map(|t| t.parse::<u64>().unwrap()).sum();
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// A free loopback port (for servers that cannot be told to pick one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running gateway with `--listen`.
pub struct Gateway {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub stderr: Arc<Mutex<String>>,
}

/// Starts `mcp-policy-gateway --policy POLICY --listen 127.0.0.1:0 EXTRA... [-- UPSTREAM...]`.
pub async fn gateway(policy: &Path, extra: &[&str], upstream: &[OsString]) -> Gateway {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-policy-gateway"));
    cmd.arg("--policy").arg(policy).args(["--listen", "127.0.0.1:0"]).args(extra);
    if !upstream.is_empty() {
        cmd.arg("--").args(upstream);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let buf = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sink = buf.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[gateway] {l}");
            if let Some(rest) = l.split("serving MCP at ").nth(1)
                && let Some(t) = tx.take()
            {
                let _ = t.send(rest.trim_end_matches("/mcp").to_owned());
            }
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    let base = tokio::time::timeout(PATIENCE, rx)
        .await
        .expect("the gateway did not start listening")
        .unwrap_or_else(|_| panic!("the gateway exited: {}", buf.lock().unwrap()));
    Gateway { child, base, stderr: buf }
}

impl Gateway {
    pub fn mcp(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn client(&self) -> Raw {
        Raw {
            http: reqwest::Client::new(),
            url: self.mcp(),
            token: None,
            session: None,
            version: "2025-06-18".to_owned(),
        }
    }

    /// Stops the gateway with SIGTERM and waits for it.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the gateway did not stop")
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics", None).await.text().await.unwrap()
    }
}

/// A raw streamable-HTTP client (reqwest), to see statuses and headers.
pub struct Raw {
    pub http: reqwest::Client,
    pub url: String,
    pub token: Option<String>,
    pub session: Option<String>,
    /// The protocol revision `initialize` asks for (and `MCP-Protocol-Version` then says).
    pub version: String,
}

/// Reads a response (JSON or SSE) into its JSON-RPC messages.
pub async fn messages(resp: reqwest::Response) -> Vec<Value> {
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = tokio::time::timeout(PATIENCE, resp.text()).await.unwrap().unwrap();
    if !sse {
        return match serde_json::from_str::<Value>(&text).unwrap() {
            Value::Array(a) => a,
            v => vec![v],
        };
    }
    text.split("\n\n").filter_map(event_message).collect()
}

/// The JSON message a server-sent event carries in its `data:` lines; `None` for an event
/// without data (rmcp's server opens its streams with one, a priming event).
pub fn event_message(event: &str) -> Option<Value> {
    let data: Vec<&str> =
        event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
    let data = data.join("\n");
    (!data.trim().is_empty()).then(|| serde_json::from_str(&data).unwrap())
}

impl Raw {
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    pub fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s).header("mcp-protocol-version", &self.version);
        }
        req
    }

    /// `initialize` (its answer read whole) + `notifications/initialized`; the initialize
    /// response message, or the HTTP response when it was refused.
    pub async fn initialize(&mut self) -> Result<Value, reqwest::Response> {
        self.initialize_with(json!({})).await
    }

    /// [`Raw::initialize`] declaring `capabilities`.
    pub async fn initialize_with(
        &mut self,
        capabilities: Value,
    ) -> Result<Value, reqwest::Response> {
        let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": self.version, "capabilities": capabilities,
            "clientInfo": {"name": "http-test", "version": "1"}}});
        let resp = self.post(&body).send().await.unwrap();
        if !resp.status().is_success() {
            return Err(resp);
        }
        let session = resp.headers().get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
        assert!(session.is_some(), "no Mcp-Session-Id on the initialize response");
        let answer = messages(resp).await.into_iter().find(|m| m["id"] == 0).unwrap();
        self.session = session;
        let init = self
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .send()
            .await
            .unwrap();
        assert_eq!(init.status(), 202);
        Ok(answer)
    }

    /// A request; returns its response message.
    pub async fn request(&self, id: i64, method: &str, params: Value) -> Value {
        let resp = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "HTTP {}", resp.status());
        messages(resp)
            .await
            .into_iter()
            .find(|m| m["id"] == id && m.get("method").is_none())
            .unwrap()
    }

    /// A tool call; returns its `result`.
    pub async fn call(&self, id: i64, tool: &str, args: Value) -> Value {
        let r = self.request(id, "tools/call", json!({"name": tool, "arguments": args})).await;
        r.get("result").cloned().unwrap_or_else(|| panic!("no result: {r}"))
    }
}

/// The text of a tool result.
pub fn text(result: &Value) -> String {
    result["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect()
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The HS256 secret the tests sign with.
pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An HS256 JWT with `claims`, signed with `secret`.
pub fn jwt(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid token for `sub` (audience `gw`, issuer `idp`).
pub fn token_for(sub: &str) -> String {
    jwt(json!({"sub": sub, "aud": "gw", "iss": "idp", "exp": now() + 600}), SECRET)
}

// ---- redis-server ----

/// A `redis-server` on a free loopback port, stopped when dropped.
pub struct RedisServer {
    pub port: u16,
    child: std::process::Child,
}

impl RedisServer {
    /// Starts one, or skips (None) when `redis-server` is missing (unless
    /// MCP_POLICY_REQUIRE_REDIS=1).
    pub async fn start() -> Option<RedisServer> {
        let found = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            skip("MCP_POLICY_REQUIRE_REDIS", "redis-server");
            return None;
        }
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RedisServer { port, child };
        for _ in 0..500 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                s.write_all(b"PING\r\n").await.unwrap();
                let mut buf = [0u8; 7];
                if s.read_exact(&mut buf).await.is_ok() && &buf == b"+PONG\r\n" {
                    return Some(server);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not answer on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
