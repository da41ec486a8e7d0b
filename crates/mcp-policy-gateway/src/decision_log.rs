//! The decision log: one JSON object per line and per decision.
//!
//! A line holds who called which tool, what the policy decided and why, and how the call went;
//! never the arguments' values, nor anything the upstream wrote on its stderr (which often holds
//! them).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Map, Value};

/// Where decisions are written, if anywhere.
pub struct DecisionLog {
    sink: Option<Mutex<Box<dyn Write + Send>>>,
    /// Sees every record written (branch `http`: metrics).
    observer: Option<Observer>,
}

/// Called with every decision written to the log, whether the log is enabled or not (metrics).
pub type Observer = std::sync::Arc<dyn Fn(&Record, Outcome, Option<f64>) + Send + Sync>;

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog").field("enabled", &self.sink.is_some()).finish()
    }
}

/// How a decided call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The gateway did not send the call to the upstream.
    NotDispatched,
    /// The upstream answered with a result.
    Ok,
    /// The upstream answered with a result whose `isError` is true.
    ToolError,
    /// The upstream answered with a JSON-RPC error.
    Error,
    /// The client cancelled the call.
    Cancelled,
    /// The upstream went away before answering.
    UpstreamClosed,
    /// The upstream did not answer within `--upstream-timeout`.
    UpstreamTimeout,
    /// The gateway asked the human (the next line holds the decision after the answer).
    ApprovalRequested,
}

impl Outcome {
    /// The outcome as written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NotDispatched => "not_dispatched",
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Error => "error",
            Outcome::Cancelled => "cancelled",
            Outcome::UpstreamClosed => "upstream_closed",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::ApprovalRequested => "approval_requested",
        }
    }
}

/// One decision, as the guard made it (owned, so that it can wait for the upstream's answer).
#[derive(Debug, Clone)]
pub struct Record {
    /// The tool called.
    pub tool: String,
    /// The grant of the call.
    pub grant: String,
    /// The session of the call.
    pub session: Option<String>,
    /// `allow`, `deny`, `limit` or `approve`: what the policy decided.
    pub decision: &'static str,
    /// The JSON Pointer of the rule that decided.
    pub rule: String,
    /// Why.
    pub message: String,
    /// The digest of the policy in force.
    pub policy: String,
    /// How long the evaluation took, in microseconds.
    pub eval_us: f64,
    /// Decided in monitor mode: the call was dispatched whatever the decision.
    pub monitor: bool,
    /// The human's answer, when one was asked (`accepted`, `declined`, `cancelled`, `failed`).
    pub approval: Option<&'static str>,
}

impl DecisionLog {
    /// A log that writes nothing.
    pub fn disabled() -> Self {
        DecisionLog { sink: None, observer: None }
    }

    /// A log on `target`: `-` for standard error, otherwise a file path (created, appended to).
    pub fn open(target: &str) -> io::Result<Self> {
        let sink: Box<dyn Write + Send> = if target == "-" {
            Box::new(io::stderr())
        } else {
            let file = OpenOptions::new().create(true).append(true).open(Path::new(target))?;
            Box::new(file)
        };
        Ok(Self::to_writer(sink))
    }

    /// A log on any writer (tests).
    pub fn to_writer(sink: Box<dyn Write + Send>) -> Self {
        DecisionLog { sink: Some(Mutex::new(sink)), observer: None }
    }

    /// The same log, with `observer` called on every record (branch `http`: metrics).
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Whether anything is written.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Writes one line for `record`: `upstream_ms` is how long the upstream took to answer (when
    /// it was asked).
    pub fn write(&self, record: &Record, outcome: Outcome, upstream_ms: Option<f64>) {
        if let Some(observe) = &self.observer {
            observe(record, outcome, upstream_ms);
        }
        let Some(sink) = &self.sink else { return };
        let line = render(record, outcome, upstream_ms);
        let Ok(mut sink) = sink.lock() else { return };
        // A log that cannot be written must not stop calls; say so once per failure on stderr.
        if let Err(e) = sink.write_all(line.as_bytes()).and_then(|()| sink.flush()) {
            eprintln!("mcp-policy-gateway: cannot write the decision log: {e}");
        }
    }
}

/// The JSON line of a record (with its final newline).
pub fn render(record: &Record, outcome: Outcome, upstream_ms: Option<f64>) -> String {
    let mut m = Map::new();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    m.insert("time".into(), now.into());
    m.insert("tool".into(), record.tool.clone().into());
    m.insert("grant".into(), record.grant.clone().into());
    m.insert("session".into(), record.session.clone().map_or(Value::Null, Value::String));
    m.insert("decision".into(), record.decision.into());
    m.insert("rule".into(), record.rule.clone().into());
    m.insert("message".into(), record.message.clone().into());
    m.insert("policy".into(), record.policy.clone().into());
    m.insert("eval_us".into(), round3(record.eval_us).into());
    m.insert("upstream_ms".into(), upstream_ms.map(round3).map_or(Value::Null, Value::from));
    m.insert("outcome".into(), outcome.as_str().into());
    if let Some(a) = record.approval {
        m.insert("approval".into(), a.into());
    }
    if record.monitor {
        m.insert("monitor".into(), true.into());
    }
    let mut line = Value::Object(m).to_string();
    line.push('\n');
    line
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_with_every_field() {
        let record = Record {
            tool: "cancel_run".into(),
            grant: "alice".into(),
            session: Some("s1".into()),
            decision: "limit",
            rule: "/tools/cancel_run/limits/0".into(),
            message: "limit reached".into(),
            policy: "abc".into(),
            eval_us: 1.23456,
            monitor: true,
            approval: None,
        };
        let line = render(&record, Outcome::NotDispatched, None);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["tool"], "cancel_run");
        assert_eq!(v["grant"], "alice");
        assert_eq!(v["session"], "s1");
        assert_eq!(v["decision"], "limit");
        assert_eq!(v["rule"], "/tools/cancel_run/limits/0");
        assert_eq!(v["policy"], "abc");
        assert_eq!(v["eval_us"], 1.235);
        assert_eq!(v["upstream_ms"], Value::Null);
        assert_eq!(v["outcome"], "not_dispatched");
        assert_eq!(v["monitor"], true);
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }
}
