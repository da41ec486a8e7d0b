//! Just enough of an MCP client to ask a stdio server for its tools: `initialize`,
//! `notifications/initialized`, then `tools/list` page by page, as newline-delimited JSON-RPC
//! over the child's standard input and output.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The protocol version `init` asks for; a server may answer with an older one, and `tools/list`
/// is the same in all of them.
const PROTOCOL_VERSION: &str = "2025-11-25";

/// More pages than any real server has: a server that hands out cursors forever is stopped.
const MAX_PAGES: usize = 10_000;

/// How long a server gets to exit after its input is closed before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Starts `command` as a stdio MCP server and returns the tools it lists (each a JSON object
/// as the server sent it), waiting at most `timeout` for each answer.
pub(crate) fn list_tools(command: &[String], timeout: Duration) -> Result<Vec<Value>, String> {
    let (program, args) = command.split_first().ok_or("`--server` needs a command after `--`")?;
    let shown = command.join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the server `{shown}`: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
        return Err(format!("cannot talk to the server `{shown}`: no pipes"));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let stop = line.is_err();
            if tx.send(line).is_err() || stop {
                break;
            }
        }
    });
    let mut session =
        Session { child: Guard(child), stdin: Some(stdin), rx, next_id: 0, timeout, shown };
    let tools = session.tools();
    session.close();
    tools
}

/// Kills the server when `init` stops early, whatever the reason.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

struct Session {
    child: Guard,
    stdin: Option<ChildStdin>,
    rx: Receiver<std::io::Result<String>>,
    next_id: u64,
    timeout: Duration,
    shown: String,
}

impl Session {
    fn tools(&mut self) -> Result<Vec<Value>, String> {
        let init = self.request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": { "name": "mcp-policy", "version": env!("CARGO_PKG_VERSION") }
            }),
        )?;
        if init.pointer("/capabilities/tools").is_none() {
            return Err(format!(
                "the server `{}` does not offer tools (no `tools` in its capabilities)",
                self.shown
            ));
        }
        self.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request("tools/list", params)?;
            match page.get("tools") {
                Some(Value::Array(list)) => tools.extend(list.iter().cloned()),
                _ => {
                    return Err(format!(
                        "the server `{}` answered `tools/list` without a `tools` array",
                        self.shown
                    ));
                }
            }
            match page.get("nextCursor") {
                Some(Value::String(next)) if cursor.as_deref() != Some(next) => {
                    cursor = Some(next.clone());
                }
                Some(Value::String(_)) => {
                    return Err(format!(
                        "the server `{}` gave the same `nextCursor` twice",
                        self.shown
                    ));
                }
                _ => return Ok(tools),
            }
        }
        Err(format!("the server `{}` listed more than {MAX_PAGES} pages of tools", self.shown))
    }

    /// Closes the server's input (the MCP way to end a stdio session) and gives it a moment
    /// to exit; the guard kills it otherwise.
    fn close(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn send(&mut self, message: &Value) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the server's input is closed")?;
        let mut line = message.to_string();
        line.push('\n');
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot write to the server `{}`: {e}", self.shown))
    }

    /// Sends a request and waits for its answer, replying to what the server asks meanwhile.
    fn request(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.rx.recv_timeout(left) {
                Ok(Ok(line)) => line,
                Ok(Err(e)) => {
                    return Err(format!("cannot read from the server `{}`: {e}", self.shown));
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the server `{}` did not answer `{method}` within {} s (see `--timeout`)",
                        self.shown,
                        self.timeout.as_secs()
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = match self.child.0.try_wait() {
                        Ok(Some(s)) => format!(" ({s})"),
                        _ => String::new(),
                    };
                    return Err(format!(
                        "the server `{}` closed its output before answering `{method}`{status}",
                        self.shown
                    ));
                }
            };
            // A stdio server must write only JSON-RPC to its output; skip anything else.
            let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
            let is_ours = message.get("id").and_then(Value::as_u64) == Some(id);
            match (message.get("method"), message.get("id")) {
                // A request of the server: answer a ping, refuse anything else.
                (Some(m), Some(their_id)) => {
                    let reply = if m == "ping" {
                        json!({ "jsonrpc": "2.0", "id": their_id, "result": {} })
                    } else {
                        json!({ "jsonrpc": "2.0", "id": their_id,
                                "error": { "code": -32601, "message": "method not found" } })
                    };
                    self.send(&reply)?;
                }
                // A notification (logging, progress): nothing to do.
                (Some(_), None) => {}
                (None, _) if is_ours => {
                    if let Some(result) = message.get("result") {
                        return Ok(result.clone());
                    }
                    let why = message
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("no result and no error message");
                    return Err(format!("the server `{}` refused `{method}`: {why}", self.shown));
                }
                // An answer to something else: not ours to read.
                (None, _) => {}
            }
        }
    }
}
