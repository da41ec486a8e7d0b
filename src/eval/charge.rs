//! Step 7's charge: the units a limit charges, the store's answer turned into a decision, and the
//! refund plan of a rollback.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::Value;
use smallvec::SmallVec;

use super::approval::{Approvals, Entry};
use super::call::ToolCall;
use super::condition::{Found, resolve};
use super::decision::{Charge, Decision, DecisionKind, Extra, Human, RuleRef, Text};
use super::evaluator::{Evaluator, Installed, RollbackError};
use super::messages;
use super::mode::Mode;
use super::steps::Plan;
use super::text;
use crate::counter::{
    ChargeOutcome, ChargeRequest, CounterKey, ScopeKey, StoreError, Timestamp, WindowSpec,
};
use crate::policy::compiled::{CompiledLimit, Units};
use crate::policy::model::{MAX_LIMIT, Scope};

/// A call refused at or after the limits step, which must give back an approval it took.
pub(super) enum Refusal<'a> {
    Deny(RuleRef<'a>, Text),
    Limit(RuleRef<'a>, Text, Duration),
}

impl<'a> Refusal<'a> {
    pub(super) fn into_decision(
        self,
        tool: &'a str,
        approval: Option<Box<Entry>>,
        approvals: &Approvals,
    ) -> Decision<'a> {
        if let Some(entry) = approval {
            approvals.restore(entry);
        }
        match self {
            Refusal::Deny(rule, message) => Decision::new(DecisionKind::Deny, tool, rule, message),
            Refusal::Limit(rule, message, retry_after) => {
                let mut d = Decision::new(DecisionKind::Limit, tool, rule, message);
                d.extra = Extra::RetryAfter(retry_after);
                d
            }
        }
    }
}

impl<S> Evaluator<S> {
    /// Turns the store's answer into the decision, marked as the evaluator's mode says.
    pub(super) fn finish<'a>(
        &self,
        plan: &mut Plan<'_, 'a>,
        outcome: Result<ChargeOutcome, StoreError>,
        call: &ToolCall<'a>,
    ) -> Decision<'a> {
        let tool = call.tool();
        let limit_at = |i: usize| {
            let id = plan.ids.get(i)?;
            plan.policy?.limits.get(*id as usize)
        };
        let refusal = match outcome {
            Ok(ChargeOutcome::Admitted { at }) => {
                // Pushed one by one: cheaper than a collect, which reserves first.
                let mut entries = SmallVec::new();
                for (id, r) in plan.ids.iter().zip(plan.requests.iter()) {
                    entries.push((*id, r.units));
                }
                // Built whole, in the caller's slot.
                return Decision {
                    kind: DecisionKind::Allow,
                    tool: Cow::Borrowed(tool),
                    rule: plan.rule.take().unwrap_or(RuleRef::Static("")),
                    message: Text::Static("allowed"),
                    extra: Extra::Charge(Charge {
                        generation: plan.generation,
                        at,
                        grant: Cow::Borrowed(call.grant()),
                        session: call.session().map(Cow::Borrowed),
                        entries,
                    }),
                    monitored: self.mode == Mode::Monitor,
                    human: if plan.approval.is_some() { Human::Approved } else { Human::Nobody },
                };
            }
            Ok(ChargeOutcome::Refused { index, retry_after }) => match limit_at(index) {
                Some(limit) => limit_refusal(limit, retry_after),
                None => Refusal::Deny(
                    RuleRef::Static(""),
                    Text::Static("the counter store refused a limit this call does not have"),
                ),
            },
            Err(e) => {
                let rule =
                    limit_at(0).map_or(RuleRef::Static(""), |l| RuleRef::Shared(l.pointer.clone()));
                if self.fail_open {
                    let message = Text::Owned(format!("allowed uncounted: {e} (fail-open)"));
                    let mut d = Decision::new(DecisionKind::Allow, tool, rule, message);
                    self.mark(&mut d);
                    return d;
                }
                Refusal::Deny(rule, Text::Owned(format!("{e}; the call is denied (fail-closed)")))
            }
        };
        let mut d = refusal.into_decision(tool, plan.approval.take(), &self.approvals);
        self.mark(&mut d);
        d
    }

    /// An allowed decision that charged nothing, marked.
    #[inline]
    pub(super) fn allowed<'a>(&self, tool: &'a str, rule: RuleRef<'a>) -> Decision<'a> {
        let mut d = Decision::new(DecisionKind::Allow, tool, rule, Text::Static("allowed"));
        self.mark(&mut d);
        d
    }

    /// [`finish`](Evaluator::finish) for a call that charged one limit (`request`, of the
    /// limit at index `id`) and nothing else: the shortcut of a rule without checks.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn finish_one<'p, 'a: 'p>(
        &self,
        installed: &'p Installed,
        id: u32,
        request: &ChargeRequest<'p>,
        rule: RuleRef<'a>,
        now: Timestamp,
        outcome: Result<ChargeOutcome, StoreError>,
        call: &ToolCall<'a>,
    ) -> Decision<'a> {
        if let Ok(ChargeOutcome::Admitted { at }) = outcome {
            let mut entries = SmallVec::new();
            entries.push((id, request.units));
            // Built whole, in the caller's slot, as `finish` does.
            return Decision {
                kind: DecisionKind::Allow,
                tool: Cow::Borrowed(call.tool()),
                rule,
                message: Text::Static("allowed"),
                extra: Extra::Charge(Charge {
                    generation: installed.generation,
                    at,
                    grant: Cow::Borrowed(call.grant()),
                    session: call.session().map(Cow::Borrowed),
                    entries,
                }),
                monitored: self.mode == Mode::Monitor,
                human: Human::Nobody,
            };
        }
        self.refuse_one(installed, id, request, rule, now, outcome, call)
    }

    /// A refusal (or a store error) of [`finish_one`](Evaluator::finish_one): the plan that
    /// `prepare` would have made, finished by [`finish`](Evaluator::finish).
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn refuse_one<'p, 'a: 'p>(
        &self,
        installed: &'p Installed,
        id: u32,
        request: &ChargeRequest<'p>,
        rule: RuleRef<'a>,
        now: Timestamp,
        outcome: Result<ChargeOutcome, StoreError>,
        call: &ToolCall<'a>,
    ) -> Decision<'a> {
        let policy = installed.policy.compiled();
        if let (Ok(ChargeOutcome::Refused { index: 0, retry_after }), Some(limit)) =
            (&outcome, policy.limits.get(id as usize))
        {
            let refusal = limit_refusal(limit, *retry_after);
            let mut d = refusal.into_decision(call.tool(), None, &self.approvals);
            self.mark(&mut d);
            return d;
        }
        let mut plan = Plan::new();
        plan.policy = Some(policy);
        plan.generation = installed.generation;
        plan.now = now;
        plan.requests.push(*request);
        plan.ids.push(id);
        plan.rule = Some(rule);
        self.finish(&mut plan, outcome, call)
    }

    /// The charge requests of an allowed decision, rebuilt for a rollback.
    pub(super) fn refund_plan<'p>(
        &self,
        installed: &'p Installed,
        charge: &'p Charge<'_>,
    ) -> Result<SmallVec<[ChargeRequest<'p>; 4]>, RollbackError> {
        if installed.generation != charge.generation {
            return Err(RollbackError::PolicyReloaded);
        }
        let policy = installed.policy.compiled();
        Ok(charge
            .entries
            .iter()
            .filter_map(|(id, units)| {
                let limit = policy.limits.get(*id as usize)?;
                Some(ChargeRequest {
                    key: CounterKey {
                        counter: &limit.counter,
                        scope: scope_key(limit.scope, &charge.grant, charge.session.as_deref()),
                    },
                    window: WindowSpec { seconds: limit.window_seconds, sliding: limit.sliding },
                    max: limit.max,
                    units: *units,
                })
            })
            .collect())
    }
}

/// The refusal of a call that `limit` refused: `limit` when waiting `retry_after` helps, else
/// `deny`. The message is made once per limit and shared (no allocation per refused call).
pub(super) fn limit_refusal<'a>(
    limit: &CompiledLimit,
    retry_after: Option<Duration>,
) -> Refusal<'a> {
    let message = limit.reached.get_or_init(|| messages::limit_reached(limit).into());
    let rule = RuleRef::Shared(limit.pointer.clone());
    match retry_after {
        Some(wait) => Refusal::Limit(rule, Text::Shared(message.clone()), wait),
        // No wait would help: deny rather than ask to retry.
        None => {
            Refusal::Deny(rule, Text::Owned(format!("{message}: this call can never be admitted")))
        }
    }
}

/// The units a limit charges for `call`.
pub(super) fn units_of<'a>(limit: &CompiledLimit, call: &ToolCall<'a>) -> Result<u64, Refusal<'a>> {
    let (path, pointer) = match &limit.units {
        Units::Fixed(n) => return Ok(*n),
        Units::From { path, pointer } => (path, pointer),
    };
    // The type or sign of the value, never the value (see `text`).
    let refuse = |why: &str| {
        Refusal::Deny(
            RuleRef::Shared(pointer.clone()),
            Text::Owned(text::units_refused(&path.to_string(), &limit.counter, why)),
        )
    };
    match resolve(path, call) {
        Found::Json(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Ok(u)
            } else if let Some(f) = n.as_f64().filter(|f| *f >= 0.0) {
                let up = f.ceil();
                // Compared as floats first, so the conversion below cannot saturate wrongly.
                #[allow(clippy::cast_precision_loss)]
                let max = MAX_LIMIT as f64;
                if up > max {
                    Ok(MAX_LIMIT.saturating_add(1))
                } else {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let u = up as u64;
                    Ok(u)
                }
            } else {
                Err(refuse("found a negative number"))
            }
        }
        Found::Absent => Err(refuse("it is absent")),
        Found::Json(v) => Err(refuse(&format!("found {}", messages::kind_of(v)))),
        Found::Str(_) => Err(refuse("found a string")),
    }
}

/// Whose count a limit of `scope` keeps for a call of `grant` and `session`.
pub(super) fn scope_key<'a>(
    scope: Scope,
    grant: &'a str,
    session: Option<&'a str>,
) -> ScopeKey<'a> {
    match scope {
        Scope::Global => ScopeKey::Global,
        Scope::Grant => ScopeKey::Grant(grant),
        Scope::Session => ScopeKey::Session { grant, session },
    }
}
