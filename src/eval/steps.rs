//! The steps of the evaluation order, one function each, and `prepare`, which runs them in order.
//!
//! [`Evaluator::evaluate`](super::Evaluator::evaluate) and
//! [`Evaluator::explain`](super::Evaluator::explain) both run [`Evaluator::prepare`]: evaluate
//! with the no-op tracer `()`, explain with a tracer that records the steps passed and reads
//! approvals without using them. A tracer is a type parameter, so the hot path pays nothing for
//! it (no boxing, no dynamic call per step).

use std::sync::Arc;

use smallvec::SmallVec;

use super::approval::{Approvals, Ask, Binding, Earlier, Entry, KeyUse};
use super::call::ToolCall;
use super::charge::{Refusal, scope_key, units_of};
use super::condition::Truth;
use super::decision::{Decision, DecisionKind, Extra, Human, RuleRef, Text};
use super::evaluator::{Evaluator, Installed};
use super::explanation::Step;
use super::messages;
use super::mode::Mode;
use super::text;
use crate::counter::{ChargeOutcome, ChargeRequest, CounterKey, StoreError, Timestamp, WindowSpec};
use crate::policy::compiled::{Compiled, CompiledCheck, CompiledLimit, CompiledRule, RuleName};
use crate::policy::model::DefaultDecision;

/// What `prepare` tells the one who runs it. `()` is the tracer of
/// [`evaluate`](super::Evaluator::evaluate): it records nothing and uses approvals up.
pub(super) trait Trace {
    /// With `true`, step 6 only reads the pending approvals (it takes no entry out, removes
    /// none, issues none): [`explain`](super::Evaluator::explain) changes nothing.
    const READ_ONLY: bool = false;

    /// `step` was passed without deciding.
    #[inline(always)]
    fn passed(&mut self, step: Step) {
        let _ = step;
    }
}

impl Trace for () {}

/// How many limits a call charges without the plan allocating.
pub(super) const INLINE_LIMITS: usize = 4;

/// What step 7 charges: filled by `prepare`, read by `finish`.
pub(super) struct Plan<'p, 'a> {
    pub(super) policy: Option<&'p Compiled>,
    pub(super) generation: u64,
    pub(super) now: Timestamp,
    pub(super) requests: SmallVec<[ChargeRequest<'p>; INLINE_LIMITS]>,
    /// The limit of each request, by index in the policy.
    pub(super) ids: SmallVec<[u32; INLINE_LIMITS]>,
    /// The rule an allow decision names.
    pub(super) rule: Option<RuleRef<'a>>,
    /// An approval taken at step 6, to put back if the call is refused.
    pub(super) approval: Option<Box<Entry>>,
    /// Step 6 asks for approval, once the store has checked the limits.
    pub(super) ask: Option<Asking>,
}

/// An `approve_if` check that fired for a call without its approval.
pub(super) struct Asking {
    pub(super) pointer: Arc<str>,
    pub(super) message: Arc<str>,
    pub(super) binding: Binding,
}

impl Plan<'_, '_> {
    pub(super) fn new() -> Self {
        Plan {
            policy: None,
            generation: 0,
            now: Timestamp::EPOCH,
            requests: SmallVec::new(),
            ids: SmallVec::new(),
            rule: None,
            approval: None,
            ask: None,
        }
    }
}

impl<S> Evaluator<S> {
    /// Steps 1 to 7 of the evaluation order, up to (not including) the counter store.
    ///
    /// Returns the decision when one of them decides; otherwise fills `plan` with the counters
    /// to charge and returns `None`. The plan lives in the caller's frame, so that nothing
    /// large is moved on the hot path.
    pub(super) fn prepare<'p, 'a: 'p, T: Trace>(
        &self,
        installed: &'p Installed,
        call: &ToolCall<'a>,
        plan: &mut Plan<'p, 'a>,
        trace: &mut T,
    ) -> Option<Decision<'a>> {
        let policy = installed.policy.compiled();
        let tool = call.tool();

        // A malformed call is denied before anything else.
        if let Some(d) = malformed(call) {
            return Some(d);
        }
        trace.passed(Step::Call);
        if let Some(d) = hidden(policy, tool) {
            return Some(d);
        }
        trace.passed(Step::Hide);
        let (rule, rule_ref) = match find_rule(policy, tool) {
            Ok(found) => found,
            Err(d) => return Some(d),
        };
        trace.passed(Step::Rule);
        self.prepare_rule(installed, rule, rule_ref, call, plan, trace)
    }

    /// Steps 3 to 7 of [`prepare`](Evaluator::prepare), for the call's `rule` (found at step 2).
    #[inline]
    pub(super) fn prepare_rule<'p, 'a: 'p, T: Trace>(
        &self,
        installed: &'p Installed,
        rule: &'p CompiledRule,
        rule_ref: RuleRef<'a>,
        call: &ToolCall<'a>,
        plan: &mut Plan<'p, 'a>,
        trace: &mut T,
    ) -> Option<Decision<'a>> {
        let policy = installed.policy.compiled();
        let tool = call.tool();
        // The tool's rule, then `all_tools`': a slice, cheaper to walk five times than a chain.
        let both;
        let rules: &[&CompiledRule] = match &policy.all_tools {
            Some(all) => {
                both = [rule, all];
                &both
            }
            None => std::slice::from_ref(&rule),
        };
        let rules = rules.iter();
        if let Some(d) = arguments(rules.clone(), call) {
            return Some(d);
        }
        trace.passed(Step::Arguments);
        if let Some(d) = require(rules.clone(), call) {
            return Some(d);
        }
        trace.passed(Step::Require);
        if let Some(d) = deny_if(rules.clone(), call) {
            return Some(d);
        }
        trace.passed(Step::DenyIf);
        let now = match self.approve_if::<T>(installed, rules.clone(), call, plan) {
            Ok(now) => now,
            Err(d) => return Some(d),
        };
        trace.passed(Step::ApproveIf);
        if let Some(d) = self.limits(policy, rules, call, plan) {
            return Some(d);
        }
        if plan.requests.is_empty() {
            if let Some(ask) = plan.ask.take() {
                let t = now.unwrap_or_else(|| self.clock.now());
                return Some(self.approve(installed, &ask, call, t, !T::READ_ONLY));
            }
            let mut allow =
                Decision::new(DecisionKind::Allow, tool, rule_ref, Text::Static("allowed"));
            if plan.approval.is_some() {
                allow.human = Human::Approved;
            }
            return Some(allow);
        }
        plan.policy = Some(policy);
        plan.generation = installed.generation;
        plan.now = match now {
            Some(t) => t,
            None => match self.now() {
                Some(t) => t,
                None => return Some(messages::clock_out_of_range(tool)),
            },
        };
        plan.rule = Some(rule_ref);
        None
    }

    /// Step 6, approve_if: fires on true or unknown, unless the call carries its approval (a key,
    /// or an identical call approved out of band). Before asking, the limits are checked
    /// (charging nothing): a call that step 7 would refuse gets that decision instead, so this
    /// step only records in `plan` that it asks. Returns the time it read the clock at, if it
    /// did.
    // The decision is returned in place, as `prepare`'s `Option<Decision>` is; boxing it
    // would allocate on every deny.
    #[allow(clippy::result_large_err)]
    #[inline(always)]
    fn approve_if<'r, 'p: 'r, 'a: 'p, T: Trace>(
        &self,
        installed: &'p Installed,
        rules: impl Iterator<Item = &'r &'p CompiledRule>,
        call: &ToolCall<'a>,
        plan: &mut Plan<'p, 'a>,
    ) -> Result<Option<Timestamp>, Decision<'a>> {
        let tool = call.tool();
        let mut firing = None;
        for r in rules {
            firing = r.approve_if.iter().find(|c| truth(c, call) != Truth::False);
            if firing.is_some() {
                break;
            }
        }
        let Some(check) = firing else { return Ok(None) };
        // The approval key hashes the arguments' canonical form, a recursive walk.
        if call.arguments_too_deep() {
            return Err(messages::too_deep(tool));
        }
        let Some(t) = self.now() else { return Err(messages::clock_out_of_range(tool)) };
        let binding = Approvals::binding(call, installed.policy.digest());
        let pointer = || RuleRef::Shared(check.pointer.clone());
        match call.approval_key() {
            Some(key) => match self.approvals.take(key, &binding, t, T::READ_ONLY) {
                KeyUse::Valid(e) => plan.approval = e,
                KeyUse::Denied => return Err(messages::refused_by_human(tool, pointer())),
                KeyUse::Invalid => return Err(messages::invalid_key(tool, pointer())),
            },
            None => match self.approvals.earlier(&binding, t, T::READ_ONLY) {
                Earlier::Approved(e) => plan.approval = e,
                Earlier::Denied => return Err(messages::refused_by_human(tool, pointer())),
                Earlier::None => {
                    plan.ask = Some(Asking {
                        pointer: check.pointer.clone(),
                        message: check.message.clone(),
                        binding,
                    });
                }
            },
        }
        Ok(Some(t))
    }

    /// The `approve` decision of step 6, with its pending entry when `issue` is set and the
    /// evaluator enforces (none in monitor mode, none for `explain`).
    pub(super) fn approve<'a>(
        &self,
        installed: &Installed,
        ask: &Asking,
        call: &ToolCall<'a>,
        now: Timestamp,
        issue: bool,
    ) -> Decision<'a> {
        let mut d = Decision::new(
            DecisionKind::Approve,
            call.tool(),
            RuleRef::Shared(ask.pointer.clone()),
            Text::Shared(ask.message.clone()),
        );
        if issue && self.mode == Mode::Enforce {
            let (key, id) = self.approvals.issue(
                call,
                &ask.binding,
                installed.policy.digest(),
                Ask { rule: &ask.pointer, reason: &ask.message },
                now,
            );
            d.extra = Extra::Approval { key, id };
        }
        d
    }

    /// Step 6 once the store has checked the limits: ask when they have room, else the decision
    /// of step 7 (which charged nothing). `issue` as for [`approve`](Evaluator::approve).
    pub(super) fn ask<'a>(
        &self,
        installed: &Installed,
        plan: &mut Plan<'_, 'a>,
        outcome: Result<ChargeOutcome, StoreError>,
        call: &ToolCall<'a>,
        issue: bool,
    ) -> Decision<'a> {
        let Some(ask) = plan.ask.take() else {
            return self.finish(plan, outcome, call);
        };
        match outcome {
            Ok(ChargeOutcome::Admitted { .. }) => {
                self.approve(installed, &ask, call, plan.now, issue)
            }
            // Fail-open lets an unchecked call be asked about; charging it still counts.
            Err(_) if self.fail_open => self.approve(installed, &ask, call, plan.now, issue),
            refused => self.finish(plan, refused, call),
        }
    }

    /// Step 7, limits, first part: the units of every limit, and the batch to charge (the store
    /// checks and charges it as one atomic step afterwards, see `charge.rs`).
    #[inline(always)]
    fn limits<'r, 'p: 'r, 'a: 'p>(
        &self,
        policy: &'p Compiled,
        rules: impl Iterator<Item = &'r &'p CompiledRule>,
        call: &ToolCall<'a>,
        plan: &mut Plan<'p, 'a>,
    ) -> Option<Decision<'a>> {
        let tool = call.tool();
        let limit_ids = rules.flat_map(|r| r.limits.iter().copied());
        for id in limit_ids {
            let Some(limit) = policy.limits.get(id as usize) else { continue };
            let units = match units_of(limit, call) {
                Ok(u) => u,
                Err(d) => {
                    return Some(d.into_decision(tool, plan.approval.take(), &self.approvals));
                }
            };
            let earlier: u64 = plan
                .requests
                .iter()
                .filter(|r| r.key.counter == &*limit.counter)
                .map(|r| r.units)
                .fold(0, u64::saturating_add);
            if units.saturating_add(earlier) > limit.max {
                let message = messages::never_admitted(limit, units, earlier);
                let d = Refusal::Deny(RuleRef::Shared(limit.pointer.clone()), Text::Owned(message));
                return Some(d.into_decision(tool, plan.approval.take(), &self.approvals));
            }
            plan.requests.push(one_request(limit, units, call));
            plan.ids.push(id);
        }
        None
    }

    /// Reads the clock: `None` for a time outside the supported range (see [`Timestamp`]), which
    /// the caller turns into [`messages::clock_out_of_range`], so that a saturated or broken
    /// clock can never stop windows from counting.
    pub(super) fn now(&self) -> Option<Timestamp> {
        Some(self.clock.now()).filter(|t| t.is_supported())
    }
}

/// Steps 0 to 2: a malformed call, a hidden tool, and the call's rule (or the decision of one
/// of them).
// The decision is returned in place, as `prepare`'s `Option<Decision>` is.
#[allow(clippy::result_large_err)]
#[inline]
pub(super) fn front<'p, 'a>(
    policy: &'p Compiled,
    call: &ToolCall<'a>,
) -> Result<(&'p CompiledRule, RuleRef<'a>), Decision<'a>> {
    if let Some(d) = malformed(call) {
        return Err(d);
    }
    if let Some(d) = hidden(policy, call.tool()) {
        return Err(d);
    }
    find_rule(policy, call.tool())
}

/// The request of a call under a rule with one limit (see [`Fast`]).
#[inline]
pub(super) fn one_request<'p>(
    limit: &'p CompiledLimit,
    units: u64,
    call: &ToolCall<'p>,
) -> ChargeRequest<'p> {
    ChargeRequest {
        key: CounterKey {
            counter: &limit.counter,
            scope: scope_key(limit.scope, call.grant(), call.session()),
        },
        window: WindowSpec { seconds: limit.window_seconds, sliding: limit.sliding },
        max: limit.max,
        units,
    }
}

/// Before step 1: a call whose `arguments` or `context` is not an object is denied.
#[inline]
pub(super) fn malformed<'a>(call: &ToolCall<'a>) -> Option<Decision<'a>> {
    if let Some(v) = call.arguments().filter(|v| !v.is_object()) {
        return Some(messages::not_an_object(call.tool(), "arguments", v));
    }
    if let Some(v) = call.context().filter(|v| !v.is_object()) {
        return Some(messages::not_an_object(call.tool(), "context", v));
    }
    None
}

/// Step 1, hide: answered as an unknown tool is, the rule pointer aside.
#[inline]
pub(super) fn hidden<'a>(policy: &Compiled, tool: &'a str) -> Option<Decision<'a>> {
    let i = policy.hidden_by(tool)?;
    Some(Decision::new(
        DecisionKind::Deny,
        tool,
        RuleRef::Hide(i),
        Text::Static(messages::UNKNOWN_TOOL),
    ))
}

/// Step 2, the rule: the tool's, or the default's (an empty rule under `default: allow`).
// The decision is returned in place, as `prepare`'s `Option<Decision>` is.
#[allow(clippy::result_large_err)]
#[inline]
pub(super) fn find_rule<'p, 'a>(
    policy: &'p Compiled,
    tool: &'a str,
) -> Result<(&'p CompiledRule, RuleRef<'a>), Decision<'a>> {
    match policy.rule_for(tool) {
        Some(rule) => Ok((rule, rule_ref(rule, tool))),
        None if policy.default == DefaultDecision::Allow => {
            Ok((&policy.default_rule, RuleRef::Static("/default")))
        }
        None => Err(Decision::new(
            DecisionKind::Deny,
            tool,
            RuleRef::Static("/default"),
            Text::Static(messages::UNKNOWN_TOOL),
        )),
    }
}

/// Step 3, arguments: each rule's schema, the tool's then `all_tools`'.
#[inline]
fn arguments<'r, 'p: 'r, 'a>(
    rules: impl Iterator<Item = &'r &'p CompiledRule>,
    call: &ToolCall<'a>,
) -> Option<Decision<'a>> {
    let tool = call.tool();
    for r in rules {
        if let Some(args) = &r.arguments {
            if call.arguments_too_deep() {
                return Some(messages::too_deep(tool));
            }
            let value = call.arguments_value();
            if !args.validator.is_valid(value) {
                // The pointer and the rule broken, never the value (see `text`).
                let message = match args.validator.iter_errors(value).next() {
                    Some(e) => text::schema_failure(&e),
                    None => "the arguments do not match the tool's schema".to_owned(),
                };
                return Some(Decision::new(
                    DecisionKind::Deny,
                    tool,
                    RuleRef::Shared(args.pointer.clone()),
                    Text::Owned(message),
                ));
            }
        }
    }
    None
}

/// Step 4, require: holds only when true.
#[inline]
fn require<'r, 'p: 'r, 'a>(
    rules: impl Iterator<Item = &'r &'p CompiledRule>,
    call: &ToolCall<'a>,
) -> Option<Decision<'a>> {
    for r in rules {
        if let Some(c) = r.require.iter().find(|c| truth(c, call) != Truth::True) {
            return Some(deny_by(call.tool(), c));
        }
    }
    None
}

/// Step 5, deny_if: fires on true or unknown.
#[inline]
fn deny_if<'r, 'p: 'r, 'a>(
    rules: impl Iterator<Item = &'r &'p CompiledRule>,
    call: &ToolCall<'a>,
) -> Option<Decision<'a>> {
    for r in rules {
        if let Some(c) = r.deny_if.iter().find(|c| truth(c, call) != Truth::False) {
            return Some(deny_by(call.tool(), c));
        }
    }
    None
}

#[inline]
pub(super) fn rule_ref<'a>(rule: &CompiledRule, tool: &'a str) -> RuleRef<'a> {
    match &rule.name {
        RuleName::ExactTool => RuleRef::Tool(tool),
        RuleName::Pointer(p) => RuleRef::Shared(p.clone()),
    }
}

/// A check's conditions ANDed, three-valued.
#[inline]
pub(super) fn truth(check: &CompiledCheck, call: &ToolCall<'_>) -> Truth {
    let mut result = Truth::True;
    for c in &check.conditions {
        match c.eval(call) {
            Truth::False => return Truth::False,
            Truth::Unknown => result = Truth::Unknown,
            Truth::True => {}
        }
    }
    result
}

#[inline]
fn deny_by<'a>(tool: &'a str, check: &CompiledCheck) -> Decision<'a> {
    Decision::new(
        DecisionKind::Deny,
        tool,
        RuleRef::Shared(check.pointer.clone()),
        Text::Shared(check.message.clone()),
    )
}
