//! Policy decisions on `tools/list` and `tools/call`, independent of any transport.
//!
//! The guard decides; the relay acts. A refused call becomes an `isError` tool result whose text
//! is the decision's client text. It carries the decision JSON as `structuredContent` only for a
//! tool known to have no `outputSchema` (clients validate structured content against the output
//! schema even on errors), and never the approval key: a client that held the key could approve
//! its own call.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mcp_policy::{AsyncCounterStore, ChargeReceipt, Decision, DecisionKind, Evaluator, ToolCall};
use serde_json::{Map, Value, json};

use crate::decision_log::Record;

/// Whether the gateway refuses what the policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Refuse what the policy refuses (the default).
    #[default]
    Enforce,
    /// Decide and log every call, dispatch it whatever the decision.
    Monitor,
}

impl Mode {
    /// The core's mode: an evaluator built with it charges in monitor mode only what enforcing
    /// would charge, and leaves no approval pending.
    pub fn core(self) -> mcp_policy::Mode {
        match self {
            Mode::Enforce => mcp_policy::Mode::Enforce,
            Mode::Monitor => mcp_policy::Mode::Monitor,
        }
    }
}

/// What the gateway knows of the upstream's tools, from the listings it relayed or made.
#[derive(Debug, Default, Clone)]
pub struct ToolCache {
    /// Tool name → whether the tool declares an `outputSchema`.
    tools: HashMap<String, bool>,
}

impl ToolCache {
    /// Records the tools of one `tools/list` page.
    pub fn record(&mut self, tools: &[Value]) {
        for t in tools {
            if let Some(name) = t.get("name").and_then(Value::as_str) {
                let has_schema = t.get("outputSchema").is_some_and(|s| !s.is_null());
                self.tools.insert(name.to_owned(), has_schema);
            }
        }
    }

    /// Replaces everything known with `other` (a complete fresh listing).
    pub fn replace(&mut self, other: ToolCache) {
        *self = other;
    }

    /// `Some(true)` when the tool declares an `outputSchema`, `None` when the tool is unknown.
    pub fn has_output_schema(&self, tool: &str) -> Option<bool> {
        self.tools.get(tool).copied()
    }

    /// How many tools are known.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is known.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

/// What to do with a `tools/call`.
#[derive(Debug)]
pub enum Verdict {
    /// Send it to the upstream; `receipt` is what it charged (to give back if the dispatch could
    /// not be made).
    Dispatch {
        /// The charge of the call.
        receipt: Option<ChargeReceipt>,
        /// For the decision log.
        record: Record,
    },
    /// Answer the client with this tool result; the upstream never sees the call.
    Refuse {
        /// The `isError` result.
        result: Value,
        /// For the decision log.
        record: Record,
    },
    /// A human must approve the call first.
    Approve {
        /// The approval key (secret: never sent to the client).
        key: String,
        /// The id the admin API lists the call's entry under, when there is one (out-of-band
        /// approvals enabled, enforce mode).
        id: Option<String>,
        /// The question for the human.
        prompt: String,
        /// The refusal to answer when nobody can be asked.
        refusal: Value,
        /// For the decision log.
        record: Record,
    },
}

/// Decides tool calls for one identity (grant) against an evaluator.
pub struct Guard<S = mcp_policy::MemoryStore> {
    evaluator: Arc<Evaluator<S>>,
    grant: String,
    mode: Mode,
    /// Branch `http`: the call context (`{"claims": ...}` of a verified JWT).
    context: Option<Value>,
    /// Out-of-band approvals (the admin API serves the evaluator's pending approvals).
    out_of_band: bool,
}

impl<S> std::fmt::Debug for Guard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("grant", &self.grant).field("mode", &self.mode).finish()
    }
}

/// The most of a call's arguments shown to the human who approves it.
const PROMPT_ARGUMENTS_MAX: usize = 2000;

impl<S> Guard<S> {
    /// A guard deciding every call with the grant `grant`.
    pub fn new(evaluator: Arc<Evaluator<S>>, grant: impl Into<String>, mode: Mode) -> Self {
        Guard { evaluator, grant: grant.into(), mode, context: None, out_of_band: false }
    }

    /// The same guard, deciding every call with `context` (conditions see it as `context.*`).
    pub fn with_context(mut self, context: Value) -> Self {
        self.context = Some(context);
        self
    }

    /// The same guard, with approvals out of band: an `approve` decision the client cannot ask
    /// a human about waits in the evaluator's pending approvals for an administrator (the admin
    /// API), and the refusal tells the agent the approval's id.
    pub fn with_out_of_band_approvals(mut self) -> Self {
        self.out_of_band = true;
        self
    }

    /// Whether approvals can be given out of band.
    pub fn out_of_band(&self) -> bool {
        self.out_of_band
    }

    /// The evaluator (for reloads).
    pub fn evaluator(&self) -> &Arc<Evaluator<S>> {
        &self.evaluator
    }

    /// The grant of every call.
    pub fn grant(&self) -> &str {
        &self.grant
    }

    /// Enforce or monitor.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The decision-log record of a call refused before the policy was asked (an approval
    /// answer that matches no pending round, or a human's refusal): `deny`, with `message`.
    pub fn refusal_record(&self, tool: &str, session: Option<&str>, message: &str) -> Record {
        Record {
            tool: tool.to_owned(),
            grant: self.grant.clone(),
            session: session.map(str::to_owned),
            decision: "deny",
            rule: String::new(),
            message: message.to_owned(),
            policy: self.evaluator.policy().digest().to_owned(),
            eval_us: 0.0,
            monitor: self.mode == Mode::Monitor,
            approval: None,
        }
    }

    /// The decision-log record of the retry that continues a call the upstream answered with
    /// an `input_required` result of its own: dispatched without a new decision (`allow`, no
    /// rule, nothing charged), its `approval` field `continuation`.
    pub fn continuation_record(&self, tool: &str, session: Option<&str>) -> Record {
        Record {
            tool: tool.to_owned(),
            grant: self.grant.clone(),
            session: session.map(str::to_owned),
            decision: "allow",
            rule: String::new(),
            message: "continues a call the upstream asked input for: not decided nor charged again"
                .to_owned(),
            policy: self.evaluator.policy().digest().to_owned(),
            eval_us: 0.0,
            monitor: self.mode == Mode::Monitor,
            approval: Some("continuation"),
        }
    }

    /// Keeps in `tools` (the `tools` array of a `tools/list` result) only the tools the policy
    /// lets a client see: hidden tools and tools only the default denies are removed; entries
    /// without a string `name` are removed too. In monitor mode nothing is removed (the calls
    /// will be dispatched anyway). Returns how many were removed.
    pub fn filter_tools(&self, tools: &mut Vec<Value>) -> usize {
        let before = tools.len();
        let policy = self.evaluator.policy();
        let monitor = self.mode == Mode::Monitor;
        tools.retain(|t| match t.get("name").and_then(Value::as_str) {
            Some(name) => monitor || policy.is_visible(name),
            None => false,
        });
        before - tools.len()
    }
}

/// A call the policy has decided, before the gateway says what it does with it
/// ([`Guard::verdict`]).
#[derive(Debug)]
pub struct Evaluated<'a> {
    decision: Decision<'a>,
    eval_us: f64,
}

impl<S: AsyncCounterStore> Guard<S> {
    /// Decides the call of `tool` with `arguments` (an object) in `session`. With `approval_key`,
    /// the call comes back after a human approved it.
    pub async fn decide(
        &self,
        tool: &str,
        arguments: &Value,
        session: Option<&str>,
        approval_key: Option<&str>,
        cache: &ToolCache,
    ) -> Verdict {
        let evaluated = self.evaluate(tool, arguments, session, approval_key).await;
        self.verdict(evaluated, tool, arguments, session, approval_key, cache)
    }

    /// The policy's decision on the call (what [`Guard::decide`] does first): it charges what
    /// the call costs.
    pub async fn evaluate<'a>(
        &'a self,
        tool: &'a str,
        arguments: &'a Value,
        session: Option<&'a str>,
        approval_key: Option<&'a str>,
    ) -> Evaluated<'a> {
        let mut call = ToolCall::new(tool)
            .with_arguments(arguments)
            .with_grant(&self.grant)
            .with_optional_session(session);
        if let Some(key) = approval_key {
            call = call.with_approval_key(key);
        }
        if let Some(context) = &self.context {
            call = call.with_context(context);
        }
        let started = Instant::now();
        let decision = self.evaluator.evaluate_async(&call).await;
        let eval_us = started.elapsed().as_secs_f64() * 1e6;
        Evaluated { decision, eval_us }
    }
}

impl<S> Guard<S> {
    /// Whether [`Guard::verdict`] of `evaluated` is [`Verdict::Dispatch`] (the relay may send
    /// the call on before it asks for the verdict).
    pub fn dispatches(&self, evaluated: &Evaluated<'_>, approval_key: Option<&str>) -> bool {
        let decision = &evaluated.decision;
        let refused_out_of_band = approval_key.is_none() && decision.refused_by_human();
        // The evaluator is built with `Mode::core()`, so a monitored decision says so itself;
        // `monitor` also covers a guard whose evaluator was built in enforce mode.
        !refused_out_of_band && (decision.should_dispatch() || self.mode == Mode::Monitor)
    }

    /// The charge and the decision-log record of the call `evaluated`, sent on to the upstream
    /// (what [`Verdict::Dispatch`] holds, when [`Guard::dispatches`] says so).
    pub fn dispatched(
        &self,
        evaluated: Evaluated<'_>,
        tool: &str,
        session: Option<&str>,
        approval_key: Option<&str>,
    ) -> (Option<ChargeReceipt>, Record) {
        let Evaluated { mut decision, eval_us } = evaluated;
        let mut record = self.record(&decision, eval_us, tool, session);
        // Without a key, a human's answer came out of band: an approval lets it through once.
        if approval_key.is_none() && decision.approved_by_human() {
            record.approval = Some("approved_out_of_band");
        }
        (decision.take_receipt(), record)
    }

    /// The decision-log record of `decision`.
    fn record(
        &self,
        decision: &Decision<'_>,
        eval_us: f64,
        tool: &str,
        session: Option<&str>,
    ) -> Record {
        Record {
            tool: tool.to_owned(),
            grant: self.grant.clone(),
            session: session.map(str::to_owned),
            decision: decision.kind().as_str(),
            rule: decision.rule().into_owned(),
            message: value_free_message(decision),
            policy: self.evaluator.policy().digest().to_owned(),
            eval_us,
            monitor: self.mode == Mode::Monitor,
            approval: None,
        }
    }

    /// What the gateway does with the call `evaluated` (see [`Guard::decide`]).
    pub fn verdict(
        &self,
        evaluated: Evaluated<'_>,
        tool: &str,
        arguments: &Value,
        session: Option<&str>,
        approval_key: Option<&str>,
        cache: &ToolCache,
    ) -> Verdict {
        if self.dispatches(&evaluated, approval_key) {
            let (receipt, record) = self.dispatched(evaluated, tool, session, approval_key);
            return Verdict::Dispatch { receipt, record };
        }
        let Evaluated { decision, eval_us } = evaluated;
        let policy = self.evaluator.policy();
        let monitor = self.mode == Mode::Monitor;
        let mut record = self.record(&decision, eval_us, tool, session);
        // A human's refusal came out of band (also with a key: the client accepted after an
        // administrator refused, the relay not having heard it yet): it denies this exact call
        // once (the core then forgets the entry).
        if decision.refused_by_human() {
            record.approval = Some("refused_out_of_band");
            return Verdict::Refuse { result: declined(tool, "refused"), record };
        }
        // Out of band, the core's pending entry is what the administrator resolves.
        let pending_id = (self.out_of_band && !monitor)
            .then(|| decision.approval_id().map(str::to_owned))
            .flatten();
        if !policy.is_visible(tool) {
            // Hidden, or only the default denies it: answer as for a tool nobody has heard of,
            // so that the answer reveals nothing of the policy (the log keeps the rule).
            return Verdict::Refuse { result: unknown_tool(tool), record };
        }
        let structured = cache.has_output_schema(tool) == Some(false);
        match decision.kind() {
            DecisionKind::Approve => {
                let key = decision.approval_key().unwrap_or_default().to_owned();
                let mut args = arguments.to_string();
                if args.len() > PROMPT_ARGUMENTS_MAX {
                    let mut cut = PROMPT_ARGUMENTS_MAX;
                    while !args.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    args.truncate(cut);
                    args.push('…');
                }
                let prompt = format!(
                    "Approve the call of `{tool}` with arguments {args}? Policy: {}",
                    decision.message()
                );
                let waiting = pending_id.as_deref().map(|id| {
                    format!(
                        " Waiting for an administrator to approve it (approval `{id}`): retry \
                         the same call once it is approved."
                    )
                });
                let refusal =
                    refusal(&decision, waiting.as_deref().unwrap_or(NO_APPROVER), structured);
                Verdict::Approve { key, id: pending_id, prompt, refusal, record }
            }
            _ => Verdict::Refuse { result: refusal(&decision, "", structured), record },
        }
    }
}

/// The most of a decision's message the gateway writes (log and refusals).
pub const MESSAGE_MAX: usize = 1024;

/// The decision's message with no argument value in it, at most [`MESSAGE_MAX`] bytes.
///
/// An `arguments` schema failure's message from the core quotes the offending value after
/// ``argument `/ptr` is invalid:``; the gateway keeps the pointer and drops the rest, so that
/// neither its decision log nor its refusals carry argument values, whatever the core's version.
pub fn value_free_message(d: &Decision<'_>) -> String {
    let message = d.message();
    let mut out = if d.rule().ends_with("/arguments")
        && message.starts_with("argument `")
        && let Some(end) = message.find(" is invalid")
    {
        format!("{} is invalid (it does not match the tool's `arguments` schema)", &message[..end])
    } else {
        message.to_owned()
    };
    if out.len() > MESSAGE_MAX {
        let mut cut = MESSAGE_MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Appended to an approval refusal when nobody can be asked.
pub const NO_APPROVER: &str = " No approver is configured: this client cannot ask a human (it \
did not declare form elicitation) and the gateway has no approvals admin API.";

/// An `isError` tool result with `text`.
pub fn error_result(text: &str, structured: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("content".into(), json!([{ "type": "text", "text": text }]));
    m.insert("isError".into(), true.into());
    if let Some(s) = structured {
        m.insert("structuredContent".into(), s);
    }
    Value::Object(m)
}

/// The refusal of a decision that is not allow: its client text (plus `extra`), and, when
/// `structured`, the decision JSON without the approval key.
pub fn refusal(d: &Decision<'_>, extra: &str, structured: bool) -> Value {
    let message = value_free_message(d);
    let mut text = d.client_text().unwrap_or_else(|| d.message().to_owned());
    if message != d.message() {
        text = text.replace(d.message(), &message);
    }
    text.push_str(extra);
    let structured = structured.then(|| {
        let mut json = d.client_json();
        if let Some(obj) = json.as_object_mut() {
            obj.insert("message".into(), message.clone().into());
        }
        json
    });
    error_result(&text, structured)
}

/// The answer for a tool the client may not know exists.
pub fn unknown_tool(tool: &str) -> Value {
    error_result(&format!("Unknown tool: `{tool}`."), None)
}

/// A refusal that came from an approval round rather than from the policy.
pub fn round_refusal(message: &str) -> Value {
    error_result(&format!("Denied: {message}. Do not retry this call unless the human asks."), None)
}

/// The answer when the human declined (or could not be asked, or the answer was not a yes).
pub fn declined(tool: &str, how: &str) -> Value {
    error_result(
        &format!(
            "Approval {how}: a human did not approve this call of `{tool}`. Do not retry it \
             unless the human asks."
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_policy::Policy;

    fn guard(text: &str, mode: Mode) -> Guard {
        let policy: Policy = text.parse().unwrap();
        Guard::new(Arc::new(Evaluator::new(policy).with_mode(mode.core())), "g", mode)
    }

    const POLICY: &str = r#"{"version": "1", "default": "deny", "hide": ["secret_*"],
        "tools": {"read": {}, "write": {"approve_if": [{"conditions": []}]}, "secret_x": {}}}"#;

    #[test]
    fn filters_listings() {
        let g = guard(POLICY, Mode::Enforce);
        let mut tools = vec![
            json!({"name": "read"}),
            json!({"name": "secret_x"}),
            json!({"name": "other"}),
            json!({"nameless": true}),
        ];
        assert_eq!(g.filter_tools(&mut tools), 3);
        assert_eq!(tools, vec![json!({"name": "read"})]);
        let m = guard(POLICY, Mode::Monitor);
        let mut tools = vec![json!({"name": "read"}), json!({"name": "secret_x"})];
        assert_eq!(m.filter_tools(&mut tools), 0);
    }

    #[tokio::test]
    async fn hidden_and_default_denied_tools_answer_alike() {
        let g = guard(POLICY, Mode::Enforce);
        let cache = ToolCache::default();
        let args = json!({});
        let a = g.decide("secret_x", &args, None, None, &cache).await;
        let b = g.decide("nobody_knows", &args, None, None, &cache).await;
        let (Verdict::Refuse { result: ra, record }, Verdict::Refuse { result: rb, .. }) = (a, b)
        else {
            panic!("expected refusals")
        };
        assert_eq!(ra["content"][0]["text"], "Unknown tool: `secret_x`.");
        assert_eq!(rb["content"][0]["text"], "Unknown tool: `nobody_knows`.");
        assert_eq!(record.rule, "/hide/0");
    }

    #[tokio::test]
    async fn approval_refusal_never_carries_the_key() {
        let g = guard(POLICY, Mode::Enforce);
        let mut cache = ToolCache::default();
        cache.record(&[json!({"name": "write"})]);
        let Verdict::Approve { key, refusal, .. } =
            g.decide("write", &json!({"x": 1}), None, None, &cache).await
        else {
            panic!("expected approve")
        };
        assert!(!key.is_empty());
        assert!(!refusal.to_string().contains(&key));
        assert!(refusal["structuredContent"].is_object());
    }

    /// A key accepted in band after an administrator refused its entry (the relay had not heard
    /// it yet) is refused as the out-of-band refusal is: the same answer, the same log value.
    #[tokio::test]
    async fn a_key_refused_out_of_band_is_refused_as_out_of_band() {
        let g = guard(POLICY, Mode::Enforce).with_out_of_band_approvals();
        let cache = ToolCache::default();
        let args = json!({"x": 1});
        let Verdict::Approve { key, id: Some(id), .. } =
            g.decide("write", &args, Some("s"), None, &cache).await
        else {
            panic!("expected approve with an id")
        };
        g.evaluator().resolve_approval(&id, false).unwrap();
        let Verdict::Refuse { result, record } =
            g.decide("write", &args, Some("s"), Some(&key), &cache).await
        else {
            panic!("expected a refusal")
        };
        assert_eq!(result, declined("write", "refused"));
        assert_eq!(record.approval, Some("refused_out_of_band"));
    }

    #[tokio::test]
    async fn no_structured_content_for_tools_with_an_output_schema_or_unknown() {
        let g = guard(
            r#"{"version": "1", "default": "allow", "tools": {"t": {"deny_if": [{"conditions": []}]}}}"#,
            Mode::Enforce,
        );
        let mut cache = ToolCache::default();
        let args = json!({"x": 1});
        let Verdict::Refuse { result, .. } = g.decide("t", &args, None, None, &cache).await else {
            panic!("expected refusal")
        };
        assert!(result.get("structuredContent").is_none());
        cache.record(&[json!({"name": "t", "outputSchema": {"type": "object"}})]);
        let Verdict::Refuse { result, .. } = g.decide("t", &args, None, None, &cache).await else {
            panic!("expected refusal")
        };
        assert!(result.get("structuredContent").is_none());
        cache.record(&[json!({"name": "t"})]);
        let Verdict::Refuse { result, .. } = g.decide("t", &args, None, None, &cache).await else {
            panic!("expected refusal")
        };
        assert_eq!(result["structuredContent"]["decision"], "deny");
        assert_eq!(result["isError"], true);
    }

    #[tokio::test]
    async fn schema_failures_are_logged_and_refused_without_the_value() {
        let g = guard(
            r#"{"version": "1", "default": "deny", "tools": {"t": {"arguments": {"type": "object",
                "properties": {"n": {"type": "integer"}}}}}}"#,
            Mode::Enforce,
        );
        let mut cache = ToolCache::default();
        cache.record(&[json!({"name": "t"})]);
        let secret = "SELECT secret_column FROM users";
        let Verdict::Refuse { result, record } =
            g.decide("t", &json!({"n": secret}), None, None, &cache).await
        else {
            panic!("expected refusal")
        };
        assert!(!record.message.contains("secret_column"), "{}", record.message);
        assert!(record.message.contains("`/n`"), "{}", record.message);
        assert!(!result.to_string().contains("secret_column"), "{result}");
        let long = "x".repeat(100_000);
        let Verdict::Refuse { result, record } =
            g.decide("t", &json!({"n": long}), None, None, &cache).await
        else {
            panic!("expected refusal")
        };
        assert!(record.message.len() <= MESSAGE_MAX + 4);
        assert!(result.to_string().len() < 4 * MESSAGE_MAX);
    }

    /// What README.md and docs/gateway.md show the agent on the 11th `cancel_run`.
    #[tokio::test]
    async fn the_seed_policy_limits_the_eleventh_cancel_run_as_documented() {
        let g = guard(include_str!("../seed-policy.json"), Mode::Enforce);
        let mut cache = ToolCache::default();
        cache.record(&[json!({"name": "cancel_run"})]);
        for i in 0..10 {
            let v = g.decide("cancel_run", &json!({"run_id": i}), None, None, &cache).await;
            assert!(matches!(v, Verdict::Dispatch { .. }), "call {i}: {v:?}");
        }
        let Verdict::Refuse { result, .. } =
            g.decide("cancel_run", &json!({"run_id": 10}), None, None, &cache).await
        else {
            panic!("expected a refusal")
        };
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                "Rate limited by policy: limit reached: counter `cancel_run_rate` admits 10 per \
                 minute per grant. Retry after "
            ),
            "{text}"
        );
        assert!(text.ends_with(" seconds."), "{text}");
        assert_eq!(result["isError"], true);
        assert_eq!(result["structuredContent"]["decision"], "limit");
        assert!(result["structuredContent"]["retry_after"].is_number());
    }

    #[tokio::test]
    async fn conditions_read_the_guards_context() {
        let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"t": {"require": [
            {"conditions": [{"path": "context.claims.role", "op": "eq", "value": "admin"}]}]}}}"#
            .parse()
            .unwrap();
        let evaluator = Arc::new(Evaluator::new(policy));
        let cache = ToolCache::default();
        let admin = Guard::new(evaluator.clone(), "a", Mode::Enforce)
            .with_context(json!({"claims": {"role": "admin"}}));
        let other = Guard::new(evaluator, "b", Mode::Enforce);
        assert!(matches!(
            admin.decide("t", &json!({}), None, None, &cache).await,
            Verdict::Dispatch { .. }
        ));
        assert!(matches!(
            other.decide("t", &json!({}), None, None, &cache).await,
            Verdict::Refuse { .. }
        ));
    }

    #[tokio::test]
    async fn monitor_dispatches_what_enforce_refuses() {
        let g = guard(POLICY, Mode::Monitor);
        let v = g.decide("nobody_knows", &json!({}), None, None, &ToolCache::default()).await;
        let Verdict::Dispatch { record, .. } = v else { panic!("expected dispatch") };
        assert_eq!(record.decision, "deny");
        assert!(record.monitor);
    }
}
