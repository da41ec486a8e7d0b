//! `mcp-policy check`: replay a JSON-lines call log, one decision per line, in constant memory.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use mcp_policy::{Decision, DecisionKind, Policy, Timestamp, ToolCall};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::replay::Replay;
use crate::time::{parse_at, type_name};
use crate::{Failure, Out, Result};

/// The fields of a call line; any other is an error, so a typo (`grnat`) cannot replay the call
/// as someone else's.
pub(crate) const CALL_FIELDS: &[&str] =
    &["tool", "arguments", "grant", "session", "context", "at", "approved"];

pub(crate) fn run(
    policy_path: &Path,
    calls: Option<&Path>,
    summary: bool,
    out: &mut Out<'_>,
) -> Result<u8> {
    let policy = load_policy(policy_path)?;
    let input: Box<dyn Read> = match calls {
        Some(path) => Box::new(
            std::fs::File::open(path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?,
        ),
        None => Box::new(std::io::stdin().lock()),
    };
    let wall = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut replay = Replay::new(policy, wall);
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut tally = summary.then(Tally::default);
    let mut buf = Vec::new();
    let mut scratch = Vec::with_capacity(256);
    let mut line_no = 0usize;
    let mut malformed = 0usize;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Failure::Usage(format!("cannot read the calls: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let result = match std::str::from_utf8(&buf) {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => one(&mut replay, line.trim(), line_no, tally.as_mut(), &mut scratch, out),
            Err(_) => Err(Line::Malformed("the line is not UTF-8".to_owned())),
        };
        match result {
            Ok(()) => {}
            Err(Line::Malformed(message)) => {
                malformed += 1;
                let v = serde_json::json!({ "line": line_no, "error": message });
                writeln!(out, "{v}")?;
            }
            Err(Line::Output(e)) => return Err(Failure::Output(e)),
        }
    }
    if let Some(tally) = &tally {
        // The decisions are all out before the summary comes.
        out.flush()?;
        tally.print(malformed);
    }
    if malformed > 0 {
        crate::report::note_line(&format!(
            "{malformed} malformed line{} skipped",
            if malformed == 1 { "" } else { "s" }
        ));
        return Ok(1);
    }
    Ok(0)
}

/// Loads the policy a replay runs under; an invalid one is a usage error.
pub(crate) fn load_policy(path: &Path) -> Result<Policy> {
    Policy::from_path(path).map_err(|e| {
        Failure::Usage(match e {
            mcp_policy::PolicyError::Invalid(_) => format!(
                "`{}` is not a valid policy (run `mcp-policy validate {}`): {e}",
                path.display(),
                path.display()
            ),
            other => other.to_string(),
        })
    })
}

enum Line {
    Malformed(String),
    Output(std::io::Error),
}

/// A decision as `check` prints it: the decision JSON with the input line's number first.
#[derive(Serialize)]
struct Printed<'a, 'd> {
    line: usize,
    #[serde(flatten)]
    decision: &'a Decision<'d>,
}

/// Decides one line and writes its decision.
fn one(
    replay: &mut Replay,
    line: &str,
    line_no: usize,
    tally: Option<&mut Tally>,
    scratch: &mut Vec<u8>,
    out: &mut Out<'_>,
) -> std::result::Result<(), Line> {
    let v: Value =
        serde_json::from_str(line).map_err(|e| Line::Malformed(format!("not JSON: {e}")))?;
    let Value::Object(map) = &v else {
        return Err(Line::Malformed(format!("a call is a JSON object, found {}", type_name(&v))));
    };
    let (call, at, approved) = call_of(map).map_err(Line::Malformed)?;
    replay.decide(&call, at, approved, |d| {
        if let Some(t) = tally {
            t.add(d);
        }
        // One write per line: serde_json writes in small pieces, each a dynamic call on `out`.
        scratch.clear();
        serde_json::to_writer(&mut *scratch, &Printed { line: line_no, decision: d })
            .map_err(|e| Line::Output(e.into()))?;
        scratch.push(b'\n');
        out.write_all(scratch).map_err(Line::Output)
    })
}

/// The call a JSON object describes, with its `at` and `approved`.
pub(crate) fn call_of(
    map: &Map<String, Value>,
) -> std::result::Result<(ToolCall<'_>, Option<Timestamp>, bool), String> {
    if let Some(unknown) = map.keys().find(|k| !CALL_FIELDS.contains(&k.as_str())) {
        return Err(unknown_field(unknown, CALL_FIELDS));
    }
    let tool = match map.get("tool") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => return Err(format!("`tool` must be a string, found {}", type_name(other))),
        None => return Err("`tool` is missing".to_owned()),
    };
    let mut call = ToolCall::new(tool);
    match map.get("arguments") {
        Some(a @ Value::Object(_)) => call = call.with_arguments(a),
        Some(other) => {
            return Err(format!("`arguments` must be an object, found {}", type_name(other)));
        }
        None => {}
    }
    match map.get("grant") {
        Some(Value::String(g)) => call = call.with_grant(g),
        Some(other) => return Err(format!("`grant` must be a string, found {}", type_name(other))),
        None => {}
    }
    match map.get("session") {
        Some(Value::String(s)) => call = call.with_session(s),
        Some(Value::Null) | None => {}
        Some(other) => {
            return Err(format!("`session` must be a string or null, found {}", type_name(other)));
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
            return Err(format!("`approved` must be true or false, found {}", type_name(other)));
        }
    };
    Ok((call, at, approved))
}

/// "unknown field `grnat`; did you mean `grant`?" (or the list of fields when nothing is close).
pub(crate) fn unknown_field(field: &str, fields: &[&str]) -> String {
    match crate::report::closest(field, fields.iter().copied()) {
        Some(f) => format!("unknown field `{field}`; did you mean `{f}`?"),
        None => format!(
            "unknown field `{field}`; a call has {}",
            fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The order kinds are listed in a summary.
const KINDS: [DecisionKind; 4] =
    [DecisionKind::Allow, DecisionKind::Deny, DecisionKind::Limit, DecisionKind::Approve];

/// Decisions counted per kind.
#[derive(Default)]
struct Counts([u64; KINDS.len()]);

impl Counts {
    fn add(&mut self, kind: DecisionKind) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind)
            && let Some(c) = self.0.get_mut(i)
        {
            *c += 1;
        }
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = KINDS
            .iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// `check --summary`: decisions per tool and per rule.
#[derive(Default)]
struct Tally {
    all: Counts,
    tools: HashMap<String, Counts>,
    rules: HashMap<String, Counts>,
}

impl Tally {
    fn add(&mut self, d: &Decision<'_>) {
        self.all.add(d.kind());
        bump(&mut self.tools, d.tool(), d.kind());
        bump(&mut self.rules, &d.rule(), d.kind());
    }

    fn print(&self, malformed: usize) {
        let mut text = format!("summary: {} calls", self.all.total());
        if self.all.total() > 0 {
            text.push_str(&format!(": {}", self.all));
        }
        if malformed > 0 {
            text.push_str(&format!(
                "; {malformed} malformed line{}",
                if malformed == 1 { "" } else { "s" }
            ));
        }
        text.push('\n');
        for (title, map) in [("by tool", &self.tools), ("by rule", &self.rules)] {
            let mut rows: Vec<(&String, &Counts)> = map.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            let width = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
            text.push_str(&format!("{title}:\n"));
            for (key, counts) in rows {
                text.push_str(&format!("  {key:width$}  {counts}\n"));
            }
        }
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

fn bump(map: &mut HashMap<String, Counts>, key: &str, kind: DecisionKind) {
    match map.get_mut(key) {
        Some(c) => c.add(kind),
        None => map.entry(key.to_owned()).or_default().add(kind),
    }
}
