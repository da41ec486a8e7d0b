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

use mcp_policy::{Decision, DecisionKind, Policy, Timestamp, ToolCall};
use serde::{Deserialize, Deserializer, de::Error as _};
use serde_json::Value;

use crate::replay::Replay;
use crate::{Out, Result};

/// Where each case's clock starts: 2026-01-01T00:00:00Z.
const START: u64 = 1_767_225_600_000_000_000;

/// `{"cases": [...]}`: any other key is an error, as in a case and a call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    cases: Vec<Case>,
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
    #[serde(default, deserialize_with = "object")]
    arguments: Option<Value>,
    #[serde(default)]
    grant: Option<String>,
    #[serde(default)]
    session: Option<String>,
    #[serde(default)]
    context: Option<Value>,
    /// Read as `check` reads it; an out-of-range time is an error at its line.
    #[serde(default, deserialize_with = "at")]
    at: Option<Timestamp>,
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

fn at<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Timestamp>, D::Error> {
    let v = Value::deserialize(d)?;
    crate::time::parse_at(&v).map(Some).map_err(D::Error::custom)
}

fn object<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    match Value::deserialize(d)? {
        v @ Value::Object(_) => Ok(Some(v)),
        other => Err(D::Error::custom(format!(
            "`arguments` must be an object, found {}",
            crate::time::type_name(&other)
        ))),
    }
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

/// Reads a cases file: `{"cases": [...]}` or a bare array, told apart by the first character
/// so that an error inside either names its field and line.
fn parse_cases(text: &str) -> std::result::Result<Vec<Case>, serde_json::Error> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<Case>>(text)
    } else {
        serde_json::from_str::<Wrapped>(text).map(|w| w.cases)
    }
}

pub(crate) fn run(policy_path: &Path, cases_path: &Path, out: &mut Out<'_>) -> Result<u8> {
    let policy = crate::check::load_policy(policy_path)?;
    let text = std::fs::read_to_string(cases_path)
        .map_err(|e| format!("cannot read `{}`: {e}", cases_path.display()))?;
    let cases = parse_cases(&text).map_err(|e| {
        format!(
            "`{}` is not a cases file (`{{\"cases\": [...]}}` or an array of cases): {e}",
            cases_path.display()
        )
    })?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for case in &cases {
        match run_case(&policy, case) {
            Ok(()) => {
                passed += 1;
                writeln!(out, "ok   {}", case.name)?;
            }
            Err(why) => {
                failed += 1;
                writeln!(out, "FAIL {}\n     {why}", case.name)?;
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(u8::from(failed > 0))
}

fn run_case(policy: &Policy, case: &Case) -> std::result::Result<(), String> {
    let mut replay = Replay::new(policy.clone(), Timestamp::from_unix_nanos(START));
    let mut number = 0u64;
    for step in &case.calls {
        let mut call = ToolCall::new(&step.tool).with_optional_session(step.session.as_deref());
        if let Some(a) = &step.arguments {
            call = call.with_arguments(a);
        }
        if let Some(g) = &step.grant {
            call = call.with_grant(g);
        }
        if let Some(c) = &step.context {
            call = call.with_context(c);
        }
        for _ in 0..step.repeat.max(1) {
            number += 1;
            replay
                .decide(&call, step.at, step.approved, |d| check(step, d))
                .map_err(|why| format!("call {number} (`{}`): {why}", step.tool))?;
        }
    }
    Ok(())
}

/// Whether `d` is what `step` expects; if not, what differs.
fn check(step: &Step, d: &Decision<'_>) -> std::result::Result<(), String> {
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
