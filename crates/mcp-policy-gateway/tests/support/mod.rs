//! Shared test support: locating the real MCP components the tests start (installed by
//! `.ci/run`), a raw stdio client, and an rmcp client.
#![allow(
    dead_code,
    deprecated,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationCapability, Implementation, ListRootsResult, Root, RootsCapabilities,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long a test waits for one message before failing (instead of hanging).
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
        "\n**** SKIPPED: {what} is missing (run `bash .ci/run`, or see crates/mcp-policy-gateway/tests/support); set {var}=1 to fail instead ****\n"
    );
    false
}

fn node_ok() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `node <package's entry point>` for an npm MCP server installed under the deps dir.
pub fn node_server(package: &str) -> Option<Vec<OsString>> {
    let entry = deps_dir().join("node/node_modules").join(package).join("dist/index.js");
    if !node_ok() || !entry.exists() {
        skip("MCP_POLICY_REQUIRE_NODE", &format!("node or the npm package `{package}`"));
        return None;
    }
    Some(vec!["node".into(), entry.into()])
}

/// The venv's python, when it has the `mcp` SDK.
pub fn python_with_sdk() -> Option<PathBuf> {
    let python = deps_dir().join("venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import mcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip("MCP_POLICY_REQUIRE_PYTHON", "the Python MCP SDK (`mcp` from PyPI)");
        return None;
    }
    Some(python)
}

/// `mcp-server-time` from PyPI, installed in the venv.
pub fn time_server() -> Option<Vec<OsString>> {
    let bin = deps_dir().join("venv/bin/mcp-server-time");
    if !bin.exists() {
        skip("MCP_POLICY_REQUIRE_PYTHON", "`mcp-server-time` from PyPI");
        return None;
    }
    Some(vec![bin.into()])
}

/// The gateway binary under test.
pub fn gateway_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-policy-gateway")
}

/// `mcp-policy-gateway --policy POLICY EXTRA... -- UPSTREAM...`
pub fn gateway_command(policy: &Path, extra: &[&str], upstream: &[OsString]) -> Command {
    let mut cmd = Command::new(gateway_bin());
    cmd.arg("--policy").arg(policy).args(extra).arg("--").args(upstream);
    cmd.kill_on_drop(true);
    cmd
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Replaces a file the way editors do: write a temporary file, rename it over.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The decision log's lines (right after a call, use [`log_lines_at_least`]: the gateway's own
/// thread writes them).
pub fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The decision log's lines once it holds at least `n` whole ones, waiting up to [`PATIENCE`]:
/// the gateway's own thread writes them, just after it answered the calls they record.
pub async fn log_lines_at_least(path: &Path, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // A line being written is not read until it is whole.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<Value> = whole.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the decision log holds {} line(s) after a minute, not {n}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // The fields after the command name (which is in parentheses).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|f| f.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next());
            state != Some(Some('Z'))
        }
        Err(_) => false,
    }
}

/// Whether `pid` is gone, waiting up to [`PATIENCE`] for a killed process to finish dying (a
/// signal is delivered when the process next runs, which can take a while on a loaded machine).
pub async fn gone(pid: u32) -> bool {
    let deadline = std::time::Instant::now() + PATIENCE;
    while alive(pid) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

// ---- a raw client: bytes over the gateway's stdin/stdout ----

/// The gateway driven by hand over stdio.
pub struct Raw {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    /// Messages read while waiting for something else.
    pub queue: VecDeque<Value>,
}

impl Raw {
    pub fn spawn(mut cmd: Command) -> Raw {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        Raw::wrap(cmd.spawn().unwrap())
    }

    /// Spawns with stderr collected into the returned buffer.
    pub fn spawn_with_stderr(mut cmd: Command) -> (Raw, Arc<std::sync::Mutex<String>>) {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let buf = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = buf.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                eprintln!("[gateway stderr] {l}");
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        (Raw::wrap(child), buf)
    }

    fn wrap(mut child: Child) -> Raw {
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        Raw { child, stdin, lines: BufReader::new(stdout).lines(), queue: VecDeque::new() }
    }

    pub async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub async fn send(&mut self, msg: Value) {
        self.send_line(&msg.to_string()).await;
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next message from the gateway; `None` at end of output.
    pub async fn next(&mut self) -> Option<Value> {
        if let Some(m) = self.queue.pop_front() {
            return Some(m);
        }
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("the gateway wrote nothing for a minute")
            .unwrap()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// The next line from the gateway as written (nothing may be queued); `None` at end of
    /// output.
    pub async fn next_text(&mut self) -> Option<String> {
        assert!(self.queue.is_empty(), "messages were read ahead: {:?}", self.queue);
        tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("the gateway wrote nothing for a minute")
            .unwrap()
    }

    /// Reads until a message satisfies `pred`; others are kept in the queue.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let mut kept = VecDeque::new();
        loop {
            let m = match self.queue.pop_front() {
                Some(m) => m,
                None => {
                    let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
                        .await
                        .expect("the gateway wrote nothing for a minute")
                        .unwrap()
                        .expect("the gateway closed its output");
                    serde_json::from_str(&line).unwrap()
                }
            };
            if pred(&m) {
                kept.extend(self.queue.drain(..));
                self.queue = kept;
                return m;
            }
            kept.push_back(m);
        }
    }

    /// The response to the request with `id`.
    pub async fn response(&mut self, id: Value) -> Value {
        self.until(|m| m.get("id") == Some(&id) && m.get("method").is_none()).await
    }

    /// Sends a request and waits for its response.
    pub async fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        self.response(json!(id)).await
    }

    /// `initialize` + `notifications/initialized`; returns the initialize response.
    pub async fn initialize(&mut self, version: &str, capabilities: Value) -> Value {
        let r = self
            .request(
                0,
                "initialize",
                json!({
                    "protocolVersion": version,
                    "capabilities": capabilities,
                    "clientInfo": {"name": "raw-test", "version": "1"}
                }),
            )
            .await;
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
        r
    }

    pub async fn call(&mut self, id: i64, tool: &str, args: Value) -> Value {
        self.request(id, "tools/call", json!({"name": tool, "arguments": args})).await
    }

    pub async fn wait_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the gateway did not exit")
            .unwrap()
    }
}

// ---- the rmcp client ----

/// An rmcp client: it approves (`Some(true)`), declines (`Some(false)`) or cannot be asked
/// (`None`), and offers `roots` when given.
#[derive(Clone, Default)]
pub struct TestClient {
    pub approve: Option<bool>,
    pub roots: Option<PathBuf>,
    pub asked: Arc<AtomicUsize>,
    pub roots_asked: Arc<AtomicUsize>,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        if self.approve.is_some() {
            capabilities.elicitation = Some(ElicitationCapability::new());
        }
        if self.roots.is_some() {
            capabilities.roots = Some(RootsCapabilities::default());
        }
        ClientConfig::new(capabilities, Implementation::new("mcp-policy-gateway-test", "0.1.0"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let ElicitRequestParams::FormElicitationParams { message, .. } = request else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        assert!(message.starts_with("Approve the call of `"), "{message}");
        Ok(match self.approve {
            Some(true) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(json!({"approve": true}))
            }
            _ => ElicitResult::new(ElicitationAction::Decline),
        })
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.roots_asked.fetch_add(1, Ordering::SeqCst);
        let roots =
            self.roots.iter().map(|r| Root::new(format!("file://{}", r.display()))).collect();
        Ok(ListRootsResult::new(roots))
    }
}

/// Starts the gateway as a child process of an rmcp client.
pub async fn rmcp_client(
    cmd: Command,
    handler: TestClient,
) -> RunningService<RoleClient, TestClient> {
    let transport = TokioChildProcess::new(cmd).unwrap();
    handler.serve(transport).await.unwrap()
}
