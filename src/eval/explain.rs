//! Explaining a decision: every step of the evaluation order with its outcome, every condition
//! with its truth value and the JSON type of the value it read, and every counter with its
//! count, charging nothing.
//!
//! [`Evaluator::explain`] runs the same step functions as [`Evaluator::evaluate`] (`steps.rs`),
//! with a tracer that records the steps passed and reads pending approvals without using them,
//! then asks the store to check (never to charge). The details (each check, each condition,
//! each counter) are read afterwards from the policy and the call, and never quote a value of
//! the call: a condition shows the *type* of what it read, a limit whose units come from the
//! call does not show them.

use std::fmt;

use serde::{Serialize, Serializer};

use super::call::ToolCall;
use super::charge::{Refusal, scope_key, units_of};
use super::condition::{Truth, resolve};
use super::decision::DecisionKind;
use super::evaluator::Evaluator;
use super::messages;
use super::steps::{Plan, Trace, find_rule, truth};
use crate::counter::{ChargeRequest, CounterKey, CounterStore, WindowSpec};
use crate::policy::compiled::{Compiled, CompiledCheck, CompiledRule, Units};
use crate::policy::condition::{Comparison, Test};
use crate::policy::model::Scope;

/// A step of the evaluation order (`docs/policy.md`), as [`Explanation`] lists them.
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

    fn bit(self) -> u16 {
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

/// How a call would be decided, and why, step by step: see [`Evaluator::explain`].
///
/// Serialises (serde) with stable snake_case field names; `Display` writes the same for a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// The tool.
    pub tool: String,
    /// What [`Evaluator::evaluate`] would decide now.
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

/// The tracer of `explain`: the steps passed, and approvals only read.
#[derive(Default)]
struct Passed(u16);

impl Trace for Passed {
    const READ_ONLY: bool = true;

    fn passed(&mut self, step: Step) {
        self.0 |= step.bit();
    }
}

impl<S: CounterStore> Evaluator<S> {
    /// How [`evaluate`](Evaluator::evaluate) would decide `call` now, and why, step by step:
    /// each step of the evaluation order with its outcome, each check and condition with its
    /// truth value (true, false or unknown) and the JSON type of the value it read (never the
    /// value), the rule that decided, and each counter's count, window, remaining units and
    /// what its limit would do.
    ///
    /// Explaining changes nothing: no counter is charged (the store is asked to
    /// [`check`](CounterStore::check) and [`count`](CounterStore::count)), no pending approval
    /// is created, used or removed. It runs the same step functions as `evaluate`, so the two
    /// cannot disagree; a store whose `check` is the default (admit without looking) may show
    /// `allow` where charging would limit.
    ///
    /// ```
    /// use mcp_policy::{DecisionKind, Evaluator, Policy, Step, ToolCall};
    /// use serde_json::json;
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"execute_sql": {
    ///   "deny_if": [{"conditions": [{"path": "args.statement", "op": "regex",
    ///                                "value": "(?i)\\bdrop\\b"}],
    ///                "on_deny": "DROP is not allowed"}],
    ///   "limits": [{"counter": "sql", "window": "minute", "max": 10}]}}}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let args = json!({"statement": "SELECT 1"});
    /// let call = ToolCall::new("execute_sql").with_arguments(&args).with_grant("alice");
    ///
    /// let explanation = evaluator.explain(&call);
    /// assert_eq!(explanation.decision_kind(), DecisionKind::Allow);
    /// let deny_if = explanation.step(Step::DenyIf).unwrap();
    /// assert_eq!(deny_if.checks[0].conditions[0].truth.as_str(), "false");
    /// assert_eq!(deny_if.checks[0].conditions[0].found.as_str(), "string");
    /// let limits = explanation.step(Step::Limits).unwrap();
    /// assert_eq!((limits.counters[0].count, limits.counters[0].remaining), (Some(0), Some(10)));
    ///
    /// // Nothing was charged: the counter is still at zero.
    /// assert!(evaluator.evaluate(&call).is_allowed());
    /// assert_eq!(evaluator.explain(&call).steps[7].counters[0].count, Some(1));
    /// println!("{explanation}"); // the same, for a person
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    #[must_use = "an explanation changes nothing; read it"]
    pub fn explain(&self, call: &ToolCall<'_>) -> Explanation {
        let installed = self.current.load();
        let mut plan = Plan::new();
        let mut passed = Passed::default();
        let decision = match self.prepare(&installed, call, &mut plan, &mut passed) {
            Some(d) => d,
            None => {
                let outcome = self.store.check(plan.now, &plan.requests);
                if plan.ask.is_some() {
                    self.ask(&installed, &mut plan, outcome, call, false)
                } else {
                    self.finish(&mut plan, outcome, call)
                }
            }
        };
        let decided_by = match decision.kind() {
            DecisionKind::Allow => Step::Allow,
            DecisionKind::Approve => Step::ApproveIf,
            DecisionKind::Deny | DecisionKind::Limit => {
                Step::ALL.into_iter().find(|s| passed.0 & s.bit() == 0).unwrap_or(Step::Limits)
            }
        };
        let policy = installed.policy.compiled();
        let found = find_rule(policy, call.tool()).ok();
        let mut rules: Vec<&CompiledRule> = Vec::with_capacity(2);
        if let Some((rule, _)) = &found {
            rules.push(rule);
            rules.extend(policy.all_tools.as_ref());
        }
        let decision_rule = decision.rule().into_owned();
        let mut reached = true;
        let steps = Step::ALL
            .into_iter()
            .map(|step| {
                let outcome = if !reached {
                    StepOutcome::NotReached
                } else if step == decided_by {
                    reached = false;
                    StepOutcome::Decided
                } else {
                    StepOutcome::Passed
                };
                let rule = if outcome == StepOutcome::Decided {
                    Some(decision_rule.clone())
                } else if step == Step::Rule {
                    found.as_ref().map(|(_, r)| r.render().into_owned())
                } else {
                    None
                };
                let checks = match step {
                    Step::Arguments => schemas(&rules, call),
                    Step::Require => checks(&rules, call, |r| &r.require, |t| t != Truth::True),
                    Step::DenyIf => checks(&rules, call, |r| &r.deny_if, |t| t != Truth::False),
                    Step::ApproveIf => {
                        checks(&rules, call, |r| &r.approve_if, |t| t != Truth::False)
                    }
                    _ => Vec::new(),
                };
                let counters = if step == Step::Limits {
                    self.counters(policy, &rules, call)
                } else {
                    Vec::new()
                };
                StepExplanation { step, outcome, rule, checks, counters }
            })
            .collect();
        Explanation {
            tool: call.tool().to_owned(),
            decision: decision.kind(),
            rule: decision_rule,
            message: decision.message().to_owned(),
            retry_after: decision.retry_after_seconds(),
            monitor: self.mode == super::Mode::Monitor,
            decided_by,
            steps,
        }
    }

    /// Each counter of the limits that apply to `call`, read from the store.
    fn counters(
        &self,
        policy: &Compiled,
        rules: &[&CompiledRule],
        call: &ToolCall<'_>,
    ) -> Vec<CounterExplanation> {
        let now = self.now();
        let mut charged: Vec<(&str, u64)> = Vec::new();
        let mut out = Vec::new();
        for id in rules.iter().flat_map(|r| r.limits.iter().copied()) {
            let Some(limit) = policy.limits.get(id as usize) else { continue };
            let units = units_of(limit, call);
            let request = ChargeRequest {
                key: CounterKey {
                    counter: &limit.counter,
                    scope: scope_key(limit.scope, call.grant(), call.session()),
                },
                window: WindowSpec { seconds: limit.window_seconds, sliding: limit.sliding },
                max: limit.max,
                units: *units.as_ref().unwrap_or(&0),
            };
            let count = match now {
                Some(t) => self.store.count(t, &request).map_err(|e| e.to_string()),
                None => Err(messages::clock_out_of_range("").message().to_owned()),
            };
            let earlier: u64 = charged
                .iter()
                .filter(|(c, _)| *c == &*limit.counter)
                .map(|(_, u)| *u)
                .fold(0, u64::saturating_add);
            let (would, note) = match (&units, &count) {
                (Err(Refusal::Deny(_, why)), _) => {
                    (LimitVerdict::Deny, Some(why.as_str().to_owned()))
                }
                (Err(Refusal::Limit(..)), _) => (LimitVerdict::Deny, None),
                (Ok(u), _) if u.saturating_add(earlier) > limit.max => {
                    (LimitVerdict::NeverAdmit, None)
                }
                (Ok(_), Err(e)) => (LimitVerdict::Unknown, Some(e.clone())),
                (Ok(u), Ok(n)) if n.saturating_add(earlier).saturating_add(*u) <= limit.max => {
                    (LimitVerdict::Admit, None)
                }
                (Ok(_), Ok(_)) => (LimitVerdict::Limit, None),
            };
            if let Ok(u) = units {
                charged.push((&limit.counter, u));
            }
            let count = count.ok();
            let fixed = match limit.units {
                Units::Fixed(n) => Some(n),
                Units::From { .. } => None,
            };
            out.push(CounterExplanation {
                rule: limit.pointer.to_string(),
                counter: limit.counter.to_string(),
                scope: scope_name(limit.scope).to_owned(),
                window_seconds: limit.window_seconds,
                sliding: limit.sliding,
                max: limit.max,
                units: fixed,
                units_from_call: fixed.is_none(),
                count,
                remaining: count.map(|n| limit.max.saturating_sub(n)),
                would,
                note,
            });
        }
        out
    }
}

/// Step 3's schemas: whether the arguments match each.
fn schemas(rules: &[&CompiledRule], call: &ToolCall<'_>) -> Vec<CheckExplanation> {
    rules
        .iter()
        .filter_map(|r| r.arguments.as_ref())
        .map(|args| {
            // A schema walks the arguments recursively: too deep is not checked (step 3 denies).
            let truth = if call.arguments_too_deep() {
                TruthValue::Unknown
            } else if args.validator.is_valid(call.arguments_value()) {
                TruthValue::True
            } else {
                TruthValue::False
            };
            CheckExplanation {
                rule: args.pointer.to_string(),
                truth,
                fires: truth != TruthValue::True,
                conditions: Vec::new(),
            }
        })
        .collect()
}

/// The checks of one step, with each condition.
fn checks(
    rules: &[&CompiledRule],
    call: &ToolCall<'_>,
    of: impl Fn(&CompiledRule) -> &[CompiledCheck],
    fires: impl Fn(Truth) -> bool,
) -> Vec<CheckExplanation> {
    rules
        .iter()
        .flat_map(|r| of(r).iter())
        .map(|check| {
            let t = truth(check, call);
            let conditions = check
                .conditions
                .iter()
                .enumerate()
                .map(|(i, c)| ConditionExplanation {
                    rule: format!("{}/conditions/{i}", check.pointer),
                    path: c.path.to_string(),
                    op: op_name(&c.test).to_owned(),
                    truth: c.eval(call).into(),
                    found: value_type(resolve(&c.path, call)),
                })
                .collect();
            CheckExplanation {
                rule: check.pointer.to_string(),
                truth: t.into(),
                fires: fires(t),
                conditions,
            }
        })
        .collect()
}

fn value_type(found: super::condition::Found<'_>) -> ValueType {
    use super::condition::Found;
    use serde_json::Value;
    match found {
        Found::Absent => ValueType::Absent,
        Found::Str(_) => ValueType::String,
        Found::Json(Value::Null) => ValueType::Null,
        Found::Json(Value::Bool(_)) => ValueType::Boolean,
        Found::Json(Value::Number(_)) => ValueType::Number,
        Found::Json(Value::String(_)) => ValueType::String,
        Found::Json(Value::Array(_)) => ValueType::Array,
        Found::Json(Value::Object(_)) => ValueType::Object,
    }
}

fn op_name(test: &Test) -> &'static str {
    match test {
        Test::Eq(_) => "eq",
        Test::Neq(_) => "neq",
        Test::In(_) => "in",
        Test::NotIn(_) => "not_in",
        Test::Compare(Comparison::Lt, _) => "lt",
        Test::Compare(Comparison::Lte, _) => "lte",
        Test::Compare(Comparison::Gt, _) => "gt",
        Test::Compare(Comparison::Gte, _) => "gte",
        Test::Contains(_) => "contains",
        Test::StartsWith(_) => "starts_with",
        Test::EndsWith(_) => "ends_with",
        Test::Regex(_) => "regex",
        Test::Exists(_) => "exists",
        Test::Within(_) => "within",
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Grant => "grant",
        Scope::Session => "session",
        Scope::Global => "global",
    }
}

impl Explanation {
    /// What [`Evaluator::evaluate`] would decide: allow, deny, limit or approve.
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
