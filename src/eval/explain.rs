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

use super::call::ToolCall;
use super::charge::{Refusal, scope_key, units_of};
use super::condition::{Truth, resolve};
use super::decision::DecisionKind;
use super::evaluator::Evaluator;
use super::explanation::{
    CheckExplanation, ConditionExplanation, CounterExplanation, Explanation, LimitVerdict, Step,
    StepExplanation, StepOutcome, TruthValue, ValueType,
};
use super::messages;
use super::steps::{Plan, Trace, find_rule, truth};
use crate::counter::{ChargeRequest, CounterKey, CounterStore, WindowSpec};
use crate::policy::compiled::{Compiled, CompiledCheck, CompiledRule, Units};
use crate::policy::condition::{Comparison, Test};
use crate::policy::model::Scope;

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
