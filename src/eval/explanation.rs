//! The report of [`Evaluator::explain`](crate::Evaluator::explain): its types, their JSON
//! (serde, stable snake_case names) and their display for people.

use std::fmt;

use serde::{Serialize, Serializer};

use super::condition::Truth;
use super::decision::DecisionKind;
use super::messages;

/// A step of the [evaluation order], as [`Explanation`] lists them.
///
/// [evaluation order]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/policy.md#evaluation-order
///
/// Serialises as its snake_case name: `"call"`, `"hide"`, `"rule"`, `"arguments"`, `"require"`,
/// `"deny_if"`, `"approve_if"`, `"limits"`, `"allow"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Step {
    /// Before step 1: `arguments` and `context` must be JSON objects.
    Call,
    /// 1. `hide`.
    Hide,
    /// 2. The rule of the tool, or the default.
    Rule,
    /// 3. The `arguments` schemas.
    Arguments,
    /// 4. `require`.
    Require,
    /// 5. `deny_if`.
    DenyIf,
    /// 6. `approve_if`.
    ApproveIf,
    /// 7. `limits`.
    Limits,
    /// 8. Allow.
    Allow,
}

impl Step {
    /// Every step, in the evaluation order.
    pub const ALL: [Step; 9] = [
        Step::Call,
        Step::Hide,
        Step::Rule,
        Step::Arguments,
        Step::Require,
        Step::DenyIf,
        Step::ApproveIf,
        Step::Limits,
        Step::Allow,
    ];

    /// The step's name, as it is serialised: `"deny_if"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Call => "call",
            Step::Hide => "hide",
            Step::Rule => "rule",
            Step::Arguments => "arguments",
            Step::Require => "require",
            Step::DenyIf => "deny_if",
            Step::ApproveIf => "approve_if",
            Step::Limits => "limits",
            Step::Allow => "allow",
        }
    }

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// What a step did for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepOutcome {
    /// The step was passed: it did not decide.
    Passed,
    /// The step decided the call.
    Decided,
    /// An earlier step decided; this one was not reached. Its checks and counters are still
    /// shown, as they read now.
    NotReached,
}

/// A truth value of three-valued logic: `"true"`, `"false"` or `"unknown"` (the value read has
/// a type the condition's `op` does not take, so that it can never let a call through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TruthValue {
    /// True.
    True,
    /// False.
    False,
    /// Unknown.
    Unknown,
}

impl From<Truth> for TruthValue {
    fn from(t: Truth) -> Self {
        match t {
            Truth::True => TruthValue::True,
            Truth::False => TruthValue::False,
            Truth::Unknown => TruthValue::Unknown,
        }
    }
}

impl TruthValue {
    /// `"true"`, `"false"` or `"unknown"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TruthValue::True => "true",
            TruthValue::False => "false",
            TruthValue::Unknown => "unknown",
        }
    }
}

/// The JSON type of the value a condition read (never the value itself): `"absent"` when the
/// path does not exist in the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// The path does not exist.
    Absent,
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number.
    Number,
    /// A string (the tool name, the grant and the session are strings).
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl ValueType {
    /// The type's name, as it is serialised: `"string"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Absent => "absent",
            ValueType::Null => "null",
            ValueType::Boolean => "boolean",
            ValueType::Number => "number",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::Object => "object",
        }
    }
}

/// What a limit would do with the call, as [`CounterExplanation::would`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitVerdict {
    /// The counter has room for the call's units.
    Admit,
    /// The counter is exhausted: the call would be limited (retry later).
    Limit,
    /// The call's units are more than the limit's `max`: it can never be admitted (deny).
    NeverAdmit,
    /// The units cannot be taken from the call (`increment_from` absent, negative or not a
    /// number): deny.
    Deny,
    /// The store could not tell the count (an error, or a store that cannot report counts).
    Unknown,
}

/// How a call would be decided, and why, step by step: see [`Evaluator::explain`](crate::Evaluator::explain).
///
/// Serialises (serde) with stable snake_case field names; `Display` writes the same for a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The tool.
    pub tool: String,
    /// What [`Evaluator::evaluate`](crate::Evaluator::evaluate) would decide now.
    #[serde(serialize_with = "kind_name")]
    pub decision: DecisionKind,
    /// The JSON Pointer of the rule that decided.
    pub rule: String,
    /// The decision's message.
    pub message: String,
    /// On `limit`: seconds until the call would be admitted.
    pub retry_after: Option<f64>,
    /// Whether the evaluator is in monitor mode (the call would be dispatched whatever the
    /// decision).
    pub monitor: bool,
    /// The step that decided.
    pub decided_by: Step,
    /// Every step of the evaluation order, in order.
    pub steps: Vec<StepExplanation>,
}

/// One step of an [`Explanation`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StepExplanation {
    /// Which step.
    pub step: Step,
    /// Passed, decided or not reached.
    pub outcome: StepOutcome,
    /// The pointer of the rule that decided (on the deciding step), or of the rule found (on
    /// [`Step::Rule`]); `None` otherwise.
    pub rule: Option<String>,
    /// The step's checks ([`Step::Arguments`]: each schema; [`Step::Require`],
    /// [`Step::DenyIf`], [`Step::ApproveIf`]: each check), the tool's then `all_tools`'.
    pub checks: Vec<CheckExplanation>,
    /// The step's counters ([`Step::Limits`] only), in the order they are charged.
    pub counters: Vec<CounterExplanation>,
}

/// A check (or an `arguments` schema) and its truth value for the call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CheckExplanation {
    /// The check's JSON Pointer (`/tools/t/deny_if/0`, `/tools/t/arguments`).
    pub rule: String,
    /// The check's conditions ANDed (for a schema: whether the arguments match it).
    pub truth: TruthValue,
    /// Whether the check decides the call in its step: a `require` that is not true, a
    /// `deny_if` or `approve_if` that is true or unknown, a schema the arguments do not match.
    pub fires: bool,
    /// Each condition (none for a schema).
    pub conditions: Vec<ConditionExplanation>,
}

/// A condition, its truth value, and the type of the value it read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ConditionExplanation {
    /// The condition's JSON Pointer (`/tools/t/deny_if/0/conditions/1`).
    pub rule: String,
    /// The path it reads, as the policy writes it (`args.statement`).
    pub path: String,
    /// Its `op` (`regex`).
    pub op: String,
    /// Its truth value.
    pub truth: TruthValue,
    /// The JSON type of the value read, never the value.
    pub found: ValueType,
}

/// A counter of a limit that applies to the call, as the store reads it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct CounterExplanation {
    /// The limit's JSON Pointer (`/tools/t/limits/0`).
    pub rule: String,
    /// The counter's name.
    pub counter: String,
    /// Whose count: `"grant"`, `"session"` or `"global"`.
    pub scope: String,
    /// The window's length in seconds.
    pub window_seconds: u64,
    /// Whether the window slides.
    pub sliding: bool,
    /// The most units per window.
    pub max: u64,
    /// The units the call would charge, when fixed by the policy; `None` when they come from
    /// the call (`increment_from`: a value of the call, never shown).
    pub units: Option<u64>,
    /// Whether the units come from the call (`increment_from`).
    pub units_from_call: bool,
    /// The units counted in the current window, when the store can tell.
    pub count: Option<u64>,
    /// `max` minus `count`, when the count is known.
    pub remaining: Option<u64>,
    /// What this limit would do with the call (counting what earlier limits of the call put on
    /// the same counter).
    pub would: LimitVerdict,
    /// Why the verdict is `deny` or `unknown`.
    pub note: Option<String>,
}

fn kind_name<S: Serializer>(kind: &DecisionKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.as_str())
}

impl Explanation {
    /// What [`Evaluator::evaluate`](crate::Evaluator::evaluate) would decide: allow, deny, limit
    /// or approve.
    pub fn decision_kind(&self) -> DecisionKind {
        self.decision
    }

    /// The explanation of `step`.
    pub fn step(&self, step: Step) -> Option<&StepExplanation> {
        self.steps.iter().find(|s| s.step == step)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` by {}: {}", self.decision.as_str(), self.tool, self.rule, self.message)?;
        if let Some(r) = self.retry_after {
            write!(f, " (retry after {r}s)")?;
        }
        if self.monitor {
            f.write_str(" [monitor mode: dispatched anyway]")?;
        }
        writeln!(f)?;
        for (n, s) in self.steps.iter().enumerate() {
            let outcome = match s.outcome {
                StepOutcome::Passed => "passed",
                StepOutcome::Decided => "decided",
                StepOutcome::NotReached => "not reached",
            };
            write!(f, "{:>2}. {:<11} {outcome}", n, s.step.as_str())?;
            if let Some(rule) = &s.rule {
                write!(f, " ({rule})")?;
            }
            writeln!(f)?;
            for c in &s.checks {
                let truth = match (s.step, c.truth) {
                    (Step::Arguments, TruthValue::True) => "the arguments match",
                    (Step::Arguments, TruthValue::False) => "the arguments do not match",
                    (Step::Arguments, TruthValue::Unknown) => "not checked (nested too deep)",
                    (_, t) => t.as_str(),
                };
                write!(f, "      {}: {truth}", c.rule)?;
                writeln!(f, "{}", if c.fires { ", fires" } else { "" })?;
                for k in &c.conditions {
                    writeln!(
                        f,
                        "        {} {}: {} (read {})",
                        k.path,
                        k.op,
                        k.truth.as_str(),
                        k.found.as_str()
                    )?;
                }
            }
            for c in &s.counters {
                write!(
                    f,
                    "      counter `{}` {}, {} window{}: ",
                    c.counter,
                    match c.scope.as_str() {
                        "session" => "per session",
                        "global" => "for all callers",
                        _ => "per grant",
                    },
                    messages::window_words(c.window_seconds),
                    if c.sliding { " (sliding)" } else { "" },
                )?;
                match (c.count, c.remaining) {
                    (Some(n), Some(r)) => write!(f, "{n} of {} used, {r} remaining", c.max)?,
                    _ => write!(f, "count unknown, max {}", c.max)?,
                }
                match c.units {
                    Some(u) => write!(f, "; this call charges {u}")?,
                    None => f.write_str("; this call charges units taken from the call")?,
                }
                let would = match c.would {
                    LimitVerdict::Admit => "admit",
                    LimitVerdict::Limit => "limit",
                    LimitVerdict::NeverAdmit => "never admit (deny)",
                    LimitVerdict::Deny => "deny",
                    LimitVerdict::Unknown => "unknown",
                };
                write!(f, ": would {would}")?;
                if let Some(note) = &c.note {
                    write!(f, " ({note})")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}
