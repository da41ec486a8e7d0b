//! `mcp-policy test`: policy unit tests.
//!
//! A cases file is `{"cases": [CASE, ...]}` or a bare array of cases. A case is a named sequence
//! of calls, each with the decision it must get:
//!
//! ```json
//! { "name": "a runaway agent is stopped at 10 a minute",
//!   "calls": [
//!     { "tool": "cancel_run", "grant": "a", "at": "2026-01-01T00:00:00Z", "repeat": 10, "expect": "allow" },
//!     { "tool": "cancel_run", "grant": "a", "expect": "limit", "rule": "/tools/cancel_run/limits/0",
//!       "retry_after": 60 }
//!   ] }
//! ```
//!
//! Each case starts with fresh counters and a clock at 2026-01-01T00:00:00Z.

use std::path::Path;

use mcp_policy::{Decision, DecisionKind, Policy, Timestamp};
use serde::Deserialize;
use serde_json::Value;

use crate::replay::Replay;

/// Where each case's clock starts: 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000_000_000;

#[derive(Deserialize)]
#[serde(untagged)]
enum CasesFile {
    Wrapped { cases: Vec<Case> },
    Bare(Vec<Case>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    calls: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    tool: String,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    grant: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    at: Option<Value>,
    #[serde(default)]
    approved: bool,
    /// How many times to make this call (default 1); each must get the expected decision.
    #[serde(default = "one")]
    repeat: u64,
    expect: Expect,
    /// The rule pointer the decision must name.
    #[serde(default)]
    rule: Option<String>,
    /// A text the decision's message must contain.
    #[serde(default)]
    message: Option<String>,
    /// The `retry_after` (seconds) a `limit` must give.
    #[serde(default)]
    retry_after: Option<f64>,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Deny,
    Limit,
    Approve,
}

impl Expect {
    fn kind(self) -> DecisionKind {
        match self {
            Expect::Allow => DecisionKind::Allow,
            Expect::Deny => DecisionKind::Deny,
            Expect::Limit => DecisionKind::Limit,
            Expect::Approve => DecisionKind::Approve,
        }
    }
}

pub(crate) fn run(policy_path: &Path, cases_path: &Path) -> Result<u8, String> {
    let policy = Policy::from_path(policy_path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(cases_path)
        .map_err(|e| format!("cannot read `{}`: {e}", cases_path.display()))?;
    let cases = match serde_json::from_str::<CasesFile>(&text) {
        Ok(CasesFile::Wrapped { cases } | CasesFile::Bare(cases)) => cases,
        Err(_) => {
            // Untagged enums hide the reason; ask the plain shape for it.
            let why = serde_json::from_str::<Vec<Case>>(&text)
                .err()
                .or_else(|| serde_json::from_str::<Wrapped>(&text).err())
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(format!("`{}` is not a cases file: {why}", cases_path.display()));
        }
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &cases {
        match run_case(&policy, case) {
            Ok(()) => {
                passed += 1;
                println!("ok   {}", case.name);
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {}\n     {why}", case.name);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(u8::from(failed > 0))
}

#[derive(Deserialize)]
struct Wrapped {
    #[allow(dead_code)]
    cases: Vec<Case>,
}

fn run_case(policy: &Policy, case: &Case) -> Result<(), String> {
    let mut replay = Replay::new(policy.clone(), Timestamp::from_unix_nanos(START));
    let mut number = 0u64;
    for step in &case.calls {
        let value = serde_json::json!({
            "tool": step.tool,
            "arguments": step.arguments,
            "grant": step.grant,
            "session": step.session,
            "context": step.context,
            "at": step.at,
            "approved": step.approved,
        });
        // Absent fields are null in `value`; drop them so they read as absent.
        let value = match value {
            Value::Object(map) => {
                Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            other => other,
        };
        let (call, at, approved) = crate::check::call_of(&value)?;
        for _ in 0..step.repeat.max(1) {
            number += 1;
            replay
                .decide(&call, at, approved, |d| check(step, d))
                .map_err(|why| format!("call {number} (`{}`): {why}", step.tool))?;
        }
    }
    Ok(())
}

/// Whether `d` is what `step` expects; if not, what differs.
fn check(step: &Step, d: &Decision<'_>) -> Result<(), String> {
    let got = format!("got {} by `{}`: {}", d.kind(), d.rule(), d.message());
    if d.kind() != step.expect.kind() {
        return Err(format!("expected {}, {got}", step.expect.kind()));
    }
    if let Some(rule) = &step.rule
        && d.rule() != rule.as_str()
    {
        return Err(format!("expected rule `{rule}`, {got}"));
    }
    if let Some(m) = &step.message
        && !d.message().contains(m.as_str())
    {
        return Err(format!("expected a message containing `{m}`, {got}"));
    }
    if let Some(r) = step.retry_after {
        let actual = d.retry_after().map(|x| x.as_secs_f64());
        if actual.is_none_or(|a| (a - r).abs() > 0.001) {
            return Err(format!("expected retry_after {r}, got {actual:?}"));
        }
    }
    Ok(())
}
