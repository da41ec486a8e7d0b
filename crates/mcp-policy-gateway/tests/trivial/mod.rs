//! The trivial MCP server of the stdio tests and of the benchmarks: it answers `initialize`,
//! `tools/list` (tools `echo` and `other`) and every `tools/call` at once, with the text `ran`,
//! so that what is measured or tested is the gateway, not the server.
//!
//! [`stdio_upstream`] serves it on stdin/stdout (one JSON message per line); [`answer`] is the
//! reply to one message, for a server on another transport.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{BufRead, Write};

use serde_json::{Value, json};

/// The reply to `msg`: `None` for a notification, a response or something that is not JSON-RPC.
pub fn answer(msg: &Value) -> Option<Value> {
    let (Some(id), Some(method)) = (msg.get("id"), msg.get("method").and_then(Value::as_str))
    else {
        return None;
    };
    let result = match method {
        "initialize" => json!({
            "protocolVersion": msg["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "trivial-upstream", "version": "1"}
        }),
        "tools/list" => json!({"tools": [
            {"name": "echo", "inputSchema": {"type": "object"}},
            {"name": "other", "inputSchema": {"type": "object"}}]}),
        "tools/call" => json!({"content": [{"type": "text", "text": "ran"}]}),
        _ => json!({}),
    };
    Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// Serves [`answer`] on stdin/stdout until stdin closes.
pub fn stdio_upstream() {
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        if let Some(reply) = answer(&msg) {
            writeln!(out, "{reply}").unwrap();
            out.flush().unwrap();
        }
    }
}
