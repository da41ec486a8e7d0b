//! `mcp-policy check`: replay a JSON-lines call log, one decision per line, in constant memory.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use mcp_policy::{Policy, Timestamp, ToolCall};
use serde_json::Value;

use crate::replay::{Replay, parse_at};

pub(crate) fn run(policy_path: &Path, calls: Option<&Path>) -> Result<u8, String> {
    let policy = Policy::from_path(policy_path).map_err(|e| match e {
        mcp_policy::PolicyError::Invalid(_) => format!(
            "`{}` is not a valid policy (run `mcp-policy validate {}`): {e}",
            policy_path.display(),
            policy_path.display()
        ),
        other => other.to_string(),
    })?;
    let input: Box<dyn Read> = match calls {
        Some(path) => Box::new(
            std::fs::File::open(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdin().lock()),
    };
    let wall = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut replay = Replay::new(policy, wall);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut malformed = 0usize;
    loop {
        buf.clear();
        let n =
            input.read_until(b'\n', &mut buf).map_err(|e| format!("cannot read the calls: {e}"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = match std::str::from_utf8(&buf) {
            Ok(l) => l.trim(),
            Err(_) => {
                malformed += 1;
                write_error(&mut out, "the line is not UTF-8", line_no)?;
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        match one(&mut replay, line, &mut out) {
            Ok(()) => {}
            Err(Line::Malformed(message)) => {
                malformed += 1;
                write_error(&mut out, &message, line_no)?;
            }
            Err(Line::Io(e)) => return Err(format!("cannot write the decisions: {e}")),
        }
    }
    out.flush().map_err(|e| format!("cannot write the decisions: {e}"))?;
    if malformed > 0 {
        eprintln!("{malformed} malformed line{} skipped", if malformed == 1 { "" } else { "s" });
        return Ok(1);
    }
    Ok(0)
}

enum Line {
    Malformed(String),
    Io(std::io::Error),
}

fn write_error(out: &mut impl Write, message: &str, line: usize) -> Result<(), String> {
    let v = serde_json::json!({ "error": message, "line": line });
    writeln!(out, "{v}").map_err(|e| format!("cannot write the decisions: {e}"))
}

/// Decides one line and writes its decision.
fn one(replay: &mut Replay, line: &str, out: &mut impl Write) -> Result<(), Line> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| Line::Malformed(format!("not JSON: {e}")))?;
    let (call, at, approved) = call_of(&v).map_err(Line::Malformed)?;
    replay.decide(&call, at, approved, |d| {
        serde_json::to_writer(&mut *out, d).map_err(|e| Line::Io(e.into()))?;
        out.write_all(b"\n").map_err(Line::Io)
    })
}

/// The call a JSON object describes, with its `at` and `approved`.
pub(crate) fn call_of(v: &Value) -> Result<(ToolCall<'_>, Option<Timestamp>, bool), String> {
    let Value::Object(map) = v else {
        return Err(format!("a call is a JSON object, found {}", kind(v)));
    };
    let tool = match map.get("tool") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => return Err(format!("`tool` must be a string, found {}", kind(other))),
        None => return Err("`tool` is missing".to_owned()),
    };
    let mut call = ToolCall::new(tool);
    match map.get("arguments") {
        Some(a @ Value::Object(_)) => call = call.with_arguments(a),
        Some(other) => return Err(format!("`arguments` must be an object, found {}", kind(other))),
        None => {}
    }
    match map.get("grant") {
        Some(Value::String(g)) => call = call.with_grant(g),
        Some(other) => return Err(format!("`grant` must be a string, found {}", kind(other))),
        None => {}
    }
    match map.get("session") {
        Some(Value::String(s)) => call = call.with_session(s),
        Some(Value::Null) | None => {}
        Some(other) => {
            return Err(format!("`session` must be a string or null, found {}", kind(other)));
        }
    }
    if let Some(c) = map.get("context") {
        call = call.with_context(c);
    }
    let at = map.get("at").map(parse_at).transpose()?;
    let approved = match map.get("approved") {
        Some(Value::Bool(b)) => *b,
        None => false,
        Some(other) => {
            return Err(format!("`approved` must be true or false, found {}", kind(other)));
        }
    };
    Ok((call, at, approved))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
