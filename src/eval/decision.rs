//! Decisions: allow, deny, limit or approve, with the rule that decided and why.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::ser::{Serialize, SerializeMap, Serializer};

pub(crate) use super::receipt::Charge;
pub use super::receipt::ChargeReceipt;
use crate::json::pointer::join;

/// The four outcomes of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// Dispatch the call.
    Allow,
    /// Do not dispatch the call.
    Deny,
    /// A rate or quota limit is exhausted: do not dispatch now, the caller may retry later.
    Limit,
    /// A human must approve the call first.
    Approve,
}

impl DecisionKind {
    /// The kind as written in decision JSON: `"allow"`, `"deny"`, `"limit"` or `"approve"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Deny => "deny",
            DecisionKind::Limit => "limit",
            DecisionKind::Approve => "approve",
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which rule decided: rendered as a JSON Pointer into the policy only when asked for, so that
/// deciding never formats a string.
#[derive(Debug, Clone)]
pub(crate) enum RuleRef<'a> {
    /// The exact `tools` key equal to the tool's name.
    Tool(&'a str),
    /// `/hide/N`.
    Hide(usize),
    /// A pointer of the policy.
    Shared(Arc<str>),
    /// A fixed pointer (`/default`, or `""` for a malformed call).
    Static(&'static str),
}

impl RuleRef<'_> {
    pub(crate) fn render(&self) -> Cow<'_, str> {
        match self {
            RuleRef::Tool(t) => Cow::Owned(join("/tools", t)),
            RuleRef::Hide(i) => Cow::Owned(format!("/hide/{i}")),
            RuleRef::Shared(s) => Cow::Borrowed(s),
            RuleRef::Static(s) => Cow::Borrowed(s),
        }
    }
}

/// A message: fixed text, text of the policy, or text made for this decision.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl Text {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Text::Static(s) => s,
            Text::Shared(s) => s,
            Text::Owned(s) => s,
        }
    }
}

/// The outcome of evaluating one call, borrowing the call's tool name (and, for rollback, its
/// grant and session).
///
/// Serialises to the decision JSON of the policy language:
///
/// ```
/// use mcp_policy::{Evaluator, Policy, ToolCall};
///
/// let policy: Policy = r#"{"version": "1", "default": "deny"}"#.parse()?;
/// let evaluator = Evaluator::new(policy);
/// let decision = evaluator.evaluate(&ToolCall::new("drop_database"));
/// assert_eq!(
///     serde_json::to_value(&decision)?,
///     serde_json::json!({
///         "decision": "deny",
///         "tool": "drop_database",
///         "rule": "/default",
///         "message": "no rule allows this tool and the default is deny"
///     })
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A decision is not `Clone`: an allowed decision carries its charge, which must be returned
/// once at most.
///
/// ```compile_fail
/// # use mcp_policy::{Evaluator, Policy, ToolCall};
/// # let policy: Policy = r#"{"version": "1", "default": "allow"}"#.parse().unwrap();
/// # let evaluator = Evaluator::new(policy);
/// let decision = evaluator.evaluate(&ToolCall::new("t"));
/// let copy = decision.clone(); // error: `Decision` is not `Clone`
/// ```
#[derive(Debug)]
#[must_use = "a decision says whether to dispatch the call; check it"]
pub struct Decision<'a> {
    pub(crate) kind: DecisionKind,
    pub(crate) tool: Cow<'a, str>,
    pub(crate) rule: RuleRef<'a>,
    pub(crate) message: Text,
    pub(crate) extra: Extra<'a>,
    pub(crate) monitored: bool,
    pub(crate) human: Human,
}

/// What a human said about this exact call, when its `approve_if` check fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Human {
    /// No human was involved (no `approve_if` fired, or it is still waiting).
    #[default]
    Nobody,
    /// A human approved it (an approval key, or an approval resolved out of band).
    Approved,
    /// A human refused it.
    Refused,
}

/// What only some kinds of decision carry.
#[derive(Debug, Default)]
pub(crate) enum Extra<'a> {
    #[default]
    None,
    /// On `limit`.
    RetryAfter(Duration),
    /// On `approve` (in enforce mode): the secret key and the public id of the pending entry.
    Approval { key: String, id: String },
    /// On `allow`, when counters were charged.
    Charge(Charge<'a>),
}

impl<'a> Decision<'a> {
    pub(crate) fn new(kind: DecisionKind, tool: &'a str, rule: RuleRef<'a>, message: Text) -> Self {
        Decision {
            kind,
            tool: Cow::Borrowed(tool),
            rule,
            message,
            extra: Extra::None,
            monitored: false,
            human: Human::Nobody,
        }
    }

    /// The same decision, owning everything it borrowed from the call (the tool name, and the
    /// grant and session of its charge), for an embedder that keeps a decision past the call:
    /// a queue of decisions to audit, a rollback after the call's arguments are gone.
    ///
    /// ```
    /// use mcp_policy::{Decision, Evaluator, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"t": {
    ///   "limits": [{"counter": "c", "window": "minute", "max": 1}]}}}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let mut kept: Decision<'static> = {
    ///     let name = String::from("t");
    ///     evaluator.evaluate(&ToolCall::new(&name).with_grant("g")).into_owned()
    /// }; // `name` is gone; the decision stays
    /// assert!(kept.is_allowed());
    /// assert_eq!(kept.tool(), "t");
    /// evaluator.rollback(&mut kept)?; // its charge still rolls back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_owned(self) -> Decision<'static> {
        let rule = match self.rule {
            RuleRef::Tool(_) => RuleRef::Shared(Arc::from(self.rule.render().as_ref())),
            RuleRef::Hide(i) => RuleRef::Hide(i),
            RuleRef::Shared(s) => RuleRef::Shared(s),
            RuleRef::Static(s) => RuleRef::Static(s),
        };
        let extra = match self.extra {
            Extra::None => Extra::None,
            Extra::RetryAfter(d) => Extra::RetryAfter(d),
            Extra::Approval { key, id } => Extra::Approval { key, id },
            Extra::Charge(c) => Extra::Charge(Charge {
                generation: c.generation,
                at: c.at,
                grant: Cow::Owned(c.grant.into_owned()),
                session: c.session.map(|s| Cow::Owned(s.into_owned())),
                entries: c.entries,
            }),
        };
        Decision {
            kind: self.kind,
            tool: Cow::Owned(self.tool.into_owned()),
            rule,
            message: self.message,
            extra,
            monitored: self.monitored,
            human: self.human,
        }
    }

    /// Allow, deny, limit or approve.
    pub fn kind(&self) -> DecisionKind {
        self.kind
    }

    /// Whether the policy allows the call. In [monitor mode](crate::Mode::Monitor) this is what
    /// enforcing would do; gate the dispatch on [`should_dispatch`](Decision::should_dispatch).
    pub fn is_allowed(&self) -> bool {
        self.kind == DecisionKind::Allow
    }

    /// Whether the decision was made in [monitor mode](crate::Mode::Monitor): the embedder
    /// dispatches the call whatever its kind, and logs what the policy would have done.
    pub fn is_monitored(&self) -> bool {
        self.monitored
    }

    /// Whether a human approved this exact call: its `approve_if` check fired and the call
    /// carried a valid approval key, or an approval resolved out of band
    /// ([`Evaluator::resolve_approval`](crate::Evaluator::resolve_approval)) let it through.
    /// Such a decision is an `allow` (or a `limit`/`deny` of a later step, which gives the
    /// approval back).
    ///
    /// ```
    /// use mcp_policy::{Evaluator, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"drop_table": {
    ///   "approve_if": [{"conditions": []}]}}}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let call = ToolCall::new("drop_table").with_grant("ops");
    /// let asked = evaluator.evaluate(&call);
    /// let id = asked.approval_id().unwrap().to_owned();
    /// evaluator.resolve_approval(&id, true)?; // an administrator approves it out of band
    /// let retried = evaluator.evaluate(&call);
    /// assert!(retried.is_allowed() && retried.approved_by_human());
    /// assert!(!evaluator.evaluate(&call).approved_by_human()); // once
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn approved_by_human(&self) -> bool {
        self.human == Human::Approved && self.kind == DecisionKind::Allow
    }

    /// Whether the call was denied because a human refused to approve this exact call (in
    /// band, through its approval key, or out of band).
    pub fn refused_by_human(&self) -> bool {
        self.human == Human::Refused
    }

    /// Whether the embedder should dispatch the call: allowed, or decided in monitor mode.
    /// Embedders gate on this rather than on [`is_allowed`](Decision::is_allowed).
    ///
    /// ```
    /// use mcp_policy::{DecisionKind, Evaluator, Mode, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny"}"#.parse()?;
    /// let monitor = Evaluator::new(policy).with_mode(Mode::Monitor);
    /// let decision = monitor.evaluate(&ToolCall::new("drop_database"));
    /// assert_eq!(decision.kind(), DecisionKind::Deny); // what enforcing would do
    /// assert!(decision.is_monitored() && decision.should_dispatch());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn should_dispatch(&self) -> bool {
        self.is_allowed() || self.monitored
    }

    /// The tool the decision is about.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// The JSON Pointer of the rule that decided (`/tools/cancel_run/limits/0`, `/default`,
    /// `/hide/2`); `""` (the whole policy) for a malformed call.
    pub fn rule(&self) -> Cow<'_, str> {
        self.rule.render()
    }

    /// Why, in words for a person.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// On `limit`: how long until the call would be admitted.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.extra {
            Extra::RetryAfter(d) => Some(d),
            _ => None,
        }
    }

    /// On `approve`: the key to pass back (with [`ToolCall::with_approval_key`]) once a human has
    /// approved this exact call. The key is a secret: whoever holds it approves the call, so it
    /// must never reach the client (the agent). `None` in monitor mode, which creates no
    /// pending approval.
    ///
    /// [`ToolCall::with_approval_key`]: crate::ToolCall::with_approval_key
    pub fn approval_key(&self) -> Option<&str> {
        match &self.extra {
            Extra::Approval { key, .. } => Some(key),
            _ => None,
        }
    }

    /// On `approve`: the public id of the pending approval, which names it (not secret) for an
    /// out-of-band approver: see [`Evaluator::pending_approvals`] and
    /// [`Evaluator::resolve_approval`]. An identical call already pending has the same id.
    ///
    /// [`Evaluator::pending_approvals`]: crate::Evaluator::pending_approvals
    /// [`Evaluator::resolve_approval`]: crate::Evaluator::resolve_approval
    pub fn approval_id(&self) -> Option<&str> {
        match &self.extra {
            Extra::Approval { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether this allowed decision charged counters that [`rollback`] can return.
    ///
    /// [`rollback`]: crate::Evaluator::rollback
    pub fn has_charge(&self) -> bool {
        matches!(self.extra, Extra::Charge(_))
    }

    /// Takes out what this allowed decision charged, as an owned receipt for
    /// [`Evaluator::rollback_receipt`](crate::Evaluator::rollback_receipt); `None` when it
    /// charged nothing (or the receipt was taken already).
    pub fn take_receipt(&mut self) -> Option<ChargeReceipt> {
        match std::mem::take(&mut self.extra) {
            Extra::Charge(c) => Some(ChargeReceipt::from_charge(c)),
            other => {
                self.extra = other;
                None
            }
        }
    }

    /// The text an MCP client should see in the `isError` tool result of a call that was not
    /// allowed: what happened, why, and what the model can do about it. `None` for `allow`.
    ///
    /// ```
    /// # use mcp_policy::{Evaluator, Policy, ToolCall};
    /// # let policy: Policy = r#"{"version": "1", "default": "deny"}"#.parse().unwrap();
    /// # let evaluator = Evaluator::new(policy);
    /// let decision = evaluator.evaluate(&ToolCall::new("drop_database"));
    /// assert_eq!(
    ///     decision.client_text().unwrap(),
    ///     "Denied by policy: no rule allows this tool and the default is deny. \
    ///      Do not retry this call; choose another way to reach the goal."
    /// );
    /// ```
    pub fn client_text(&self) -> Option<String> {
        let message = self.message();
        match self.kind {
            DecisionKind::Allow => None,
            DecisionKind::Deny => Some(format!(
                "Denied by policy: {message}. Do not retry this call; choose another way to reach \
                 the goal."
            )),
            DecisionKind::Limit => {
                let secs = self.retry_after().map_or(0.0, |d| d.as_secs_f64());
                Some(format!(
                    "Rate limited by policy: {message}. Retry after {} seconds.",
                    format_seconds(secs)
                ))
            }
            DecisionKind::Approve => Some(format!(
                "Approval required by policy: {message}. A human must approve this exact call \
                 before it can run."
            )),
        }
    }

    /// The decision JSON: `{"decision", "tool", "rule", "message"}`, with `retry_after` (seconds)
    /// on `limit`, `approval_key` on `approve`, and `"monitor": true` on a monitored decision.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("decision".into(), self.kind.as_str().into());
        map.insert("tool".into(), self.tool().into());
        map.insert("rule".into(), self.rule().into_owned().into());
        map.insert("message".into(), self.message().into());
        if let Some(r) = self.retry_after_seconds() {
            map.insert("retry_after".into(), r.into());
        }
        if let Some(k) = self.approval_key() {
            map.insert("approval_key".into(), k.into());
        }
        if self.monitored {
            map.insert("monitor".into(), true.into());
        }
        serde_json::Value::Object(map)
    }

    /// The decision JSON a client (the agent) may see, for the `structuredContent` of a refusal:
    /// [`to_json`](Decision::to_json) without the secret `approval_key` (a client holding it could
    /// approve its own call), and with the rule of a hidden tool shown as `/default`, so that a
    /// refusal of a hidden tool is the refusal of a tool nobody has heard of and does not reveal
    /// the hide list. The operator keeps the real pointer in [`rule`](Decision::rule) and
    /// [`to_json`](Decision::to_json).
    ///
    /// ```
    /// use mcp_policy::{Evaluator, Policy, ToolCall};
    ///
    /// let policy: Policy =
    ///     r#"{"version": "1", "default": "deny", "hide": ["delete_*"]}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let hidden = evaluator.evaluate(&ToolCall::new("delete_job"));
    /// let unknown = evaluator.evaluate(&ToolCall::new("frobnicate"));
    /// assert_eq!(hidden.rule(), "/hide/0");
    /// assert_eq!(hidden.client_json()["rule"], unknown.client_json()["rule"]);
    /// assert_eq!(hidden.client_json()["message"], unknown.client_json()["message"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn client_json(&self) -> serde_json::Value {
        let mut json = self.to_json();
        if let serde_json::Value::Object(map) = &mut json {
            map.remove("approval_key");
            if matches!(self.rule, RuleRef::Hide(_)) {
                map.insert("rule".into(), "/default".into());
            }
        }
        json
    }

    pub(crate) fn retry_after_seconds(&self) -> Option<f64> {
        self.retry_after().map(|d| {
            // Millisecond precision keeps the JSON readable and exact enough to act on.
            (d.as_secs_f64() * 1000.0).ceil() / 1000.0
        })
    }
}

fn format_seconds(s: f64) -> String {
    let rounded = (s * 1000.0).ceil() / 1000.0;
    let text = format!("{rounded:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

impl Serialize for Decision<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let retry = self.retry_after_seconds();
        let n = 4
            + usize::from(retry.is_some())
            + usize::from(self.approval_key().is_some())
            + usize::from(self.monitored);
        let mut map = serializer.serialize_map(Some(n))?;
        map.serialize_entry("decision", self.kind.as_str())?;
        map.serialize_entry("tool", self.tool())?;
        map.serialize_entry("rule", &self.rule())?;
        map.serialize_entry("message", self.message())?;
        if let Some(r) = retry {
            map.serialize_entry("retry_after", &r)?;
        }
        if let Some(k) = self.approval_key() {
            map.serialize_entry("approval_key", k)?;
        }
        if self.monitored {
            map.serialize_entry("monitor", &true)?;
        }
        map.end()
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` by {}: {}", self.kind, self.tool, self.rule(), self.message())?;
        if let Some(r) = self.retry_after_seconds() {
            write!(f, " (retry after {}s)", format_seconds(r))?;
        }
        Ok(())
    }
}
