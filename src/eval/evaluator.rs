//! The evaluator: the policy in force, the counter store, the clock, and the decision procedure.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;
use smallvec::SmallVec;

use super::approval::{
    self, Approvals, Ask, Binding, Earlier, Entry, KeyUse, PendingApproval, ResolveApprovalError,
};
use super::call::ToolCall;
use super::condition::{Found, Truth, resolve};
use super::decision::{Charge, ChargeReceipt, Decision, DecisionKind, Extra, RuleRef, Text};
use super::mode::Mode;
use super::text;
use crate::counter::{
    AsyncCounterStore, ChargeOutcome, ChargeRequest, Clock, CounterKey, CounterStore, FastClock,
    MemoryStore, ScopeKey, StoreError, Timestamp, WindowSpec,
};
use crate::policy::compiled::{
    Compiled, CompiledCheck, CompiledLimit, CompiledRule, RuleName, Units,
};
use crate::policy::model::{DefaultDecision, MAX_LIMIT, Scope};
use crate::policy::{Policy, PolicyError};

/// Decides tool calls against the policy in force.
///
/// An `Evaluator` is shared by every thread of a server (`&self` everywhere; put it in an `Arc`).
/// It holds the policy, which [`reload`](Evaluator::reload) swaps while evaluations go on, the
/// counter store ([`MemoryStore`] by default), and the clock.
///
/// ```
/// use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
/// use serde_json::json;
///
/// let policy: Policy = r#"{
///   "version": "1",
///   "default": "deny",
///   "tools": {
///     "cancel_run": {
///       "limits": [{ "counter": "cancel_run_rate", "window": "minute", "max": 10 }]
///     }
///   }
/// }"#.parse()?;
/// let evaluator = Evaluator::new(policy);
///
/// let args = json!({ "run_id": 7 });
/// let call = ToolCall::new("cancel_run").with_arguments(&args).with_grant("alice");
/// let decision = evaluator.evaluate(&call);
/// assert_eq!(decision.kind(), DecisionKind::Allow);
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
pub struct Evaluator<S = MemoryStore> {
    current: ArcSwap<Installed>,
    store: S,
    clock: Arc<dyn Clock>,
    fail_open: bool,
    mode: Mode,
    approvals: Approvals,
    generations: AtomicU64,
}

/// The message of a call that no rule allows under `default: deny`, and of a hidden tool: a
/// hidden tool answers exactly as a tool nobody has heard of, so that the hide list stays
/// secret (the rule pointer, `/hide/N`, still tells the operator).
const UNKNOWN_TOOL: &str = "no rule allows this tool and the default is deny";

struct Installed {
    policy: Policy,
    generation: u64,
}

impl<S> std::fmt::Debug for Evaluator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("policy", &self.current.load().policy)
            .field("fail_open", &self.fail_open)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Why [`Evaluator::rollback`] could not return a call's units.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// The policy was reloaded since the call was charged; its units stay charged (refusing
    /// early is the safe side).
    #[error("the policy was reloaded since the call was charged; its units stay charged")]
    PolicyReloaded,
    /// The counter store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Evaluator<MemoryStore> {
    /// An evaluator with an in-memory counter store and the wall clock ([`FastClock`]).
    pub fn new(policy: Policy) -> Self {
        Evaluator::with_store(policy, MemoryStore::new())
    }
}

impl<S> Evaluator<S> {
    /// An evaluator with the given counter store and the wall clock ([`FastClock`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mcp_policy::{Evaluator, MemoryStore, Policy};
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// let store = Arc::new(MemoryStore::with_shards(256));
    /// let evaluator = Evaluator::with_store(policy, store);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn with_store(policy: Policy, store: S) -> Self {
        Evaluator {
            current: ArcSwap::from_pointee(Installed { policy, generation: 0 }),
            store,
            clock: Arc::new(FastClock::new()),
            fail_open: false,
            mode: Mode::Enforce,
            approvals: Approvals::new(approval::DEFAULT_TTL),
            generations: AtomicU64::new(0),
        }
    }

    /// Uses `clock` for windows and approvals (a [`ManualClock`](crate::ManualClock) in tests and
    /// replays).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mcp_policy::{Evaluator, ManualClock, Policy, Timestamp};
    ///
    /// let clock = Arc::new(ManualClock::new(Timestamp::from_unix_seconds(0.0)));
    /// let policy: Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// let evaluator = Evaluator::new(policy).with_clock(clock.clone());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// With `true`, a counter-store error lets the call through uncounted instead of denying it.
    /// The default, `false`, fails closed.
    ///
    /// ```
    /// # let policy: mcp_policy::Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// let evaluator = mcp_policy::Evaluator::new(policy).fail_open_on_store_error(true);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn fail_open_on_store_error(mut self, fail_open: bool) -> Self {
        self.fail_open = fail_open;
        self
    }

    /// Enforce the policy ([`Mode::Enforce`], the default) or only report what it would do
    /// ([`Mode::Monitor`]).
    ///
    /// ```
    /// use mcp_policy::{Evaluator, Mode, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny"}"#.parse()?;
    /// let evaluator = Evaluator::new(policy).with_mode(Mode::Monitor);
    /// let decision = evaluator.evaluate(&ToolCall::new("drop_database"));
    /// assert!(!decision.is_allowed() && decision.should_dispatch());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The mode: enforce or monitor.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How long an approval key stays valid (default one hour).
    ///
    /// ```
    /// # let policy: mcp_policy::Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// let evaluator = mcp_policy::Evaluator::new(policy)
    ///     .with_approval_ttl(std::time::Duration::from_secs(600));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn with_approval_ttl(mut self, ttl: Duration) -> Self {
        self.approvals.set_ttl(ttl);
        self
    }

    /// The policy in force.
    ///
    /// ```
    /// # let policy: mcp_policy::Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// let evaluator = mcp_policy::Evaluator::new(policy.clone());
    /// assert_eq!(evaluator.policy().digest(), policy.digest());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn policy(&self) -> Policy {
        self.current.load().policy.clone()
    }

    /// The counter store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Puts `policy` in force, while other threads go on evaluating. Counters are kept by name:
    /// a counter that the new policy still uses (with the same window) keeps its count.
    ///
    /// ```
    /// # use mcp_policy::{Evaluator, Policy, ToolCall};
    /// let evaluator = Evaluator::new(r#"{"version": "1", "default": "deny"}"#.parse()?);
    /// assert!(!evaluator.evaluate(&ToolCall::new("t")).is_allowed());
    /// evaluator.reload(r#"{"version": "1", "default": "allow"}"#.parse()?);
    /// assert!(evaluator.evaluate(&ToolCall::new("t")).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    ///
    /// Pending approvals issued under another policy (another digest) are dropped: a human's
    /// approval holds for the policy it was asked under.
    pub fn reload(&self, policy: Policy) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let digest = policy.digest().to_owned();
        self.current.store(Arc::new(Installed { policy, generation }));
        self.approvals.retain_policy(&digest);
    }

    /// The calls waiting for a human's approval under the policy in force, oldest first: for an
    /// approver who is not in the conversation (an admin UI). Each has a public `id` to pass to
    /// [`resolve_approval`](Evaluator::resolve_approval). Identical calls pending at once share
    /// one entry.
    ///
    /// ```
    /// use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"refund": {
    ///   "approve_if": [{"conditions": [], "reason": "refunds need a human"}]}}}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let args = serde_json::json!({"order": 7});
    /// let call = ToolCall::new("refund").with_arguments(&args).with_grant("agent-7");
    /// assert_eq!(evaluator.evaluate(&call).kind(), DecisionKind::Approve);
    ///
    /// let pending = evaluator.pending_approvals();
    /// assert_eq!(pending.len(), 1);
    /// assert_eq!((pending[0].tool.as_str(), pending[0].grant.as_str()), ("refund", "agent-7"));
    /// assert_eq!(pending[0].reason, "refunds need a human");
    ///
    /// evaluator.resolve_approval(&pending[0].id, true).unwrap();
    /// assert_eq!(evaluator.evaluate(&call).kind(), DecisionKind::Allow); // the retry passes once
    /// assert_eq!(evaluator.evaluate(&call).kind(), DecisionKind::Approve); // then asks again
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        let installed = self.current.load();
        self.approvals.list(installed.policy.digest(), self.clock.now())
    }

    /// Records a human's answer to the pending approval `id`. Approved: the next evaluation of
    /// the identical call (same tool, arguments, grant, session and policy), with or without
    /// the key, passes the `approve_if` step once; the limits still apply, and a call they
    /// refuse keeps the approval. Denied: the next identical call is denied once, with a
    /// message that a human refused it, and the entry is gone.
    ///
    /// An id that is unknown (never issued, used, evicted, or issued under another policy),
    /// expired, or resolved already is an error, and changes nothing.
    pub fn resolve_approval(&self, id: &str, approve: bool) -> Result<(), ResolveApprovalError> {
        let installed = self.current.load();
        self.approvals.resolve(id, approve, installed.policy.digest(), self.clock.now())
    }

    /// A decision as this evaluator's mode marks it.
    fn mark<'a>(&self, mut d: Decision<'a>) -> Decision<'a> {
        d.monitored = self.mode == Mode::Monitor;
        d
    }

    /// The `approve` decision of step 6, with its pending entry (none in monitor mode).
    fn approve<'a>(
        &self,
        installed: &Installed,
        ask: &Asking,
        call: &ToolCall<'a>,
        now: Timestamp,
    ) -> Decision<'a> {
        let mut d = Decision::new(
            DecisionKind::Approve,
            call.tool(),
            RuleRef::Shared(ask.pointer.clone()),
            Text::Shared(ask.message.clone()),
        );
        if self.mode == Mode::Enforce {
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
    /// of step 7 (which charged nothing).
    fn ask<'a>(
        &self,
        installed: &Installed,
        plan: &mut Plan<'_, 'a>,
        outcome: Result<ChargeOutcome, StoreError>,
        call: &ToolCall<'a>,
    ) -> Decision<'a> {
        let Some(ask) = plan.ask.take() else {
            return self.finish(plan, outcome, call);
        };
        match outcome {
            Ok(ChargeOutcome::Admitted { .. }) => self.approve(installed, &ask, call, plan.now),
            // Fail-open lets an unchecked call be asked about; charging it still counts.
            Err(_) if self.fail_open => self.approve(installed, &ask, call, plan.now),
            refused => self.finish(plan, refused, call),
        }
    }

    /// Loads `text` and puts it in force; a text that fails to load leaves the policy in force
    /// untouched and returns every problem.
    ///
    /// ```
    /// # use mcp_policy::{Evaluator, ToolCall};
    /// let evaluator = Evaluator::new(r#"{"version": "1", "default": "allow"}"#.parse()?);
    /// assert!(evaluator.reload_from_str(r#"{"version": "2"}"#).is_err());
    /// assert!(evaluator.evaluate(&ToolCall::new("t")).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn reload_from_str(&self, text: &str) -> Result<(), PolicyError> {
        let policy = Policy::from_json_str(text)?;
        self.reload(policy);
        Ok(())
    }

    /// Reads the policy file at `path` and puts it in force; a file that cannot be read or fails
    /// to load leaves the policy in force untouched and returns why (every problem, with line,
    /// column and pointer). Counters are kept as with [`reload`](Evaluator::reload).
    ///
    /// ```
    /// # use mcp_policy::{Evaluator, ToolCall};
    /// let dir = std::env::temp_dir().join(format!("mcp-policy-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("policy.json");
    /// let evaluator = Evaluator::new(r#"{"version": "1", "default": "deny"}"#.parse()?);
    ///
    /// std::fs::write(&path, r#"{"version": "1", "default": "allow"}"#)?;
    /// evaluator.reload_from_path(&path)?;
    /// assert!(evaluator.evaluate(&ToolCall::new("t")).is_allowed());
    ///
    /// // A broken file, or none at all, leaves the policy in force.
    /// std::fs::write(&path, r#"{"version": "1", "default": "alow"}"#)?;
    /// assert!(evaluator.reload_from_path(&path).is_err());
    /// assert!(evaluator.reload_from_path(dir.join("missing.json")).is_err());
    /// assert!(evaluator.evaluate(&ToolCall::new("t")).is_allowed());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload_from_path(&self, path: impl AsRef<std::path::Path>) -> Result<(), PolicyError> {
        let policy = Policy::from_path(path)?;
        self.reload(policy);
        Ok(())
    }

    /// Steps 1 to 7 of the evaluation order, up to (not including) the counter store.
    ///
    /// Returns the decision when one of them decides; otherwise fills `plan` with the counters
    /// to charge and returns `None`. The plan lives in the caller's frame, so that nothing
    /// large is moved on the hot path.
    fn prepare<'p, 'a: 'p>(
        &self,
        installed: &'p Installed,
        call: &ToolCall<'a>,
        plan: &mut Plan<'p, 'a>,
    ) -> Option<Decision<'a>> {
        let policy = installed.policy.compiled();
        let tool = call.tool();

        // A malformed call is denied before anything else.
        if let Some(d) = malformed(call) {
            return Some(d);
        }
        // 1. hide: answered as an unknown tool is, the rule pointer aside.
        if let Some(i) = policy.hidden_by(tool) {
            return Some(Decision::new(
                DecisionKind::Deny,
                tool,
                RuleRef::Hide(i),
                Text::Static(UNKNOWN_TOOL),
            ));
        }
        // 2. the rule
        let (rule, rule_ref) = match policy.rule_for(tool) {
            Some(rule) => (rule, rule_ref(rule, tool)),
            None if policy.default == DefaultDecision::Allow => {
                (&policy.default_rule, RuleRef::Static("/default"))
            }
            None => {
                return Some(Decision::new(
                    DecisionKind::Deny,
                    tool,
                    RuleRef::Static("/default"),
                    Text::Static(UNKNOWN_TOOL),
                ));
            }
        };
        let rules = [Some(rule), policy.all_tools.as_ref()];
        let rules = rules.iter().flatten();

        // 3. arguments
        let too_deep = || {
            Decision::new(
                DecisionKind::Deny,
                tool,
                RuleRef::Static(""),
                Text::Static("malformed call: the arguments are nested more than 128 levels deep"),
            )
        };
        for r in rules.clone() {
            if let Some(args) = &r.arguments {
                if call.arguments_too_deep() {
                    return Some(too_deep());
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
        // 4. require: holds only when true.
        for r in rules.clone() {
            if let Some(c) = r.require.iter().find(|c| truth(c, call) != Truth::True) {
                return Some(deny_by(tool, c));
            }
        }
        // 5. deny_if: fires on true or unknown.
        for r in rules.clone() {
            if let Some(c) = r.deny_if.iter().find(|c| truth(c, call) != Truth::False) {
                return Some(deny_by(tool, c));
            }
        }
        // 6. approve_if: fires on true or unknown, unless the call carries its approval (a key,
        // or an identical call approved out of band). Before asking, the limits are checked
        // (charging nothing): a call that step 7 would refuse gets that decision instead.
        let mut now: Option<Timestamp> = None;
        let firing = rules
            .clone()
            .find_map(|r| r.approve_if.iter().find(|c| truth(c, call) != Truth::False));
        if let Some(check) = firing {
            // The approval key hashes the arguments' canonical form, a recursive walk.
            if call.arguments_too_deep() {
                return Some(too_deep());
            }
            let Some(t) = self.now() else { return Some(clock_out_of_range(tool)) };
            now = Some(t);
            let binding = Approvals::binding(call, installed.policy.digest());
            let refused_by_human = || {
                Decision::new(
                    DecisionKind::Deny,
                    tool,
                    RuleRef::Shared(check.pointer.clone()),
                    Text::Static("a human refused to approve this exact call"),
                )
            };
            match call.approval_key() {
                Some(key) => match self.approvals.take(key, &binding, t) {
                    KeyUse::Valid(e) => plan.approval = Some(e),
                    KeyUse::Denied => return Some(refused_by_human()),
                    KeyUse::Invalid => {
                        return Some(Decision::new(
                            DecisionKind::Deny,
                            tool,
                            RuleRef::Shared(check.pointer.clone()),
                            Text::Static(
                                "the approval key is not valid for this call: it was used \
                                 already, has expired, or was issued for another call, grant, \
                                 session or policy",
                            ),
                        ));
                    }
                },
                None => match self.approvals.earlier(&binding, t) {
                    Earlier::Approved(e) => plan.approval = Some(e),
                    Earlier::Denied => return Some(refused_by_human()),
                    Earlier::None => {
                        plan.ask = Some(Asking {
                            pointer: check.pointer.clone(),
                            message: check.message.clone(),
                            binding,
                        });
                    }
                },
            }
        }

        // 7. limits: the units of every limit first, then one atomic charge.
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
                // Units taken from the call are a value of the call: not quoted.
                let needs = match limit.units {
                    Units::Fixed(_) => format!("{units} units"),
                    Units::From { .. } => "more units (taken from the call)".to_owned(),
                };
                let message = text::bounded_message(format!(
                    "this call needs {needs} of counter `{}`{} but the limit admits at most \
                     {} per window: it can never be admitted",
                    text::bounded(&limit.counter, 256),
                    if earlier > 0 {
                        format!(" after {earlier} charged by earlier limits")
                    } else {
                        String::new()
                    },
                    limit.max
                ));
                let d = Refusal::Deny(RuleRef::Shared(limit.pointer.clone()), Text::Owned(message));
                return Some(d.into_decision(tool, plan.approval.take(), &self.approvals));
            }
            plan.requests.push(ChargeRequest {
                key: CounterKey {
                    counter: &limit.counter,
                    scope: scope_key(limit.scope, call.grant(), call.session()),
                },
                window: WindowSpec { seconds: limit.window_seconds, sliding: limit.sliding },
                max: limit.max,
                units,
            });
            plan.ids.push(id);
        }
        if plan.requests.is_empty() {
            if let Some(ask) = plan.ask.take() {
                let t = now.unwrap_or_else(|| self.clock.now());
                return Some(self.approve(installed, &ask, call, t));
            }
            return Some(Decision::new(
                DecisionKind::Allow,
                tool,
                rule_ref,
                Text::Static("allowed"),
            ));
        }
        plan.policy = Some(policy);
        plan.generation = installed.generation;
        plan.now = match now {
            Some(t) => t,
            None => match self.now() {
                Some(t) => t,
                None => return Some(clock_out_of_range(tool)),
            },
        };
        plan.rule = Some(rule_ref);
        None
    }

    /// Reads the clock: `None` for a time outside the supported range (see [`Timestamp`]), which
    /// the caller turns into [`clock_out_of_range`], so that a saturated or broken clock can
    /// never stop windows from counting.
    fn now(&self) -> Option<Timestamp> {
        Some(self.clock.now()).filter(|t| t.is_supported())
    }

    /// Turns the store's answer into the decision.
    fn finish<'a>(
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
                let rule = plan.rule.take().unwrap_or(RuleRef::Static(""));
                let mut allow =
                    Decision::new(DecisionKind::Allow, tool, rule, Text::Static("allowed"));
                allow.extra = Extra::Charge(Charge {
                    generation: plan.generation,
                    at,
                    grant: Cow::Borrowed(call.grant()),
                    session: call.session().map(Cow::Borrowed),
                    entries: plan
                        .ids
                        .iter()
                        .copied()
                        .zip(plan.requests.iter().map(|r| r.units))
                        .collect(),
                });
                return allow;
            }
            Ok(ChargeOutcome::Refused { index, retry_after }) => match limit_at(index) {
                Some(limit) => {
                    let message = format!(
                        "limit reached: counter `{}` admits {} per {} {}",
                        limit.counter,
                        limit.max,
                        window_words(limit.window_seconds),
                        scope_words(limit.scope)
                    );
                    let rule = RuleRef::Shared(limit.pointer.clone());
                    match retry_after {
                        Some(wait) => Refusal::Limit(rule, message, wait),
                        // No wait would help: deny rather than ask to retry.
                        None => Refusal::Deny(
                            rule,
                            Text::Owned(format!("{message}: this call can never be admitted")),
                        ),
                    }
                }
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
                    return Decision::new(DecisionKind::Allow, tool, rule, message);
                }
                Refusal::Deny(rule, Text::Owned(format!("{e}; the call is denied (fail-closed)")))
            }
        };
        refusal.into_decision(tool, plan.approval.take(), &self.approvals)
    }

    /// The charge requests of an allowed decision, rebuilt for a rollback.
    fn refund_plan<'p>(
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

impl<S: CounterStore> Evaluator<S> {
    /// Decides `call`: allow, deny, limit or approve. Never panics, never fails: anything that
    /// goes wrong while deciding denies, and the decision says why.
    ///
    /// ```
    /// use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
    /// use serde_json::json;
    ///
    /// let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"execute_sql": {
    ///   "deny_if": [{"conditions": [{"path": "args.statement", "op": "regex",
    ///                                "value": "(?i)\\bdrop\\b"}],
    ///                "on_deny": "DROP is not allowed"}]}}}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let args = json!({"statement": "DROP TABLE users"});
    /// let decision = evaluator.evaluate(&ToolCall::new("execute_sql").with_arguments(&args));
    /// assert_eq!(decision.kind(), DecisionKind::Deny);
    /// assert_eq!(decision.rule(), "/tools/execute_sql/deny_if/0");
    /// assert_eq!(decision.message(), "DROP is not allowed");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    #[must_use = "the decision says whether to dispatch the call"]
    pub fn evaluate<'a>(&self, call: &ToolCall<'a>) -> Decision<'a> {
        let installed = self.current.load();
        let mut plan = Plan::new();
        if let Some(d) = self.prepare(&installed, call, &mut plan) {
            return self.mark(d);
        }
        let d = if plan.ask.is_some() {
            let outcome = self.store.check(plan.now, &plan.requests);
            self.ask(&installed, &mut plan, outcome, call)
        } else {
            let outcome = self.store.charge(plan.now, &plan.requests);
            self.finish(&mut plan, outcome, call)
        };
        self.mark(d)
    }

    /// Returns the units an allowed decision charged, for a call whose upstream tool call never
    /// happened. The units come back where they still count (the same fixed window; a sliding
    /// window while they are inside it). A second rollback of the same decision does nothing.
    ///
    /// ```
    /// # use mcp_policy::{Evaluator, Policy, ToolCall};
    /// let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"t": {
    ///     "limits": [{"counter": "c", "window": "hour", "max": 1}]}}}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let call = ToolCall::new("t");
    /// let mut first = evaluator.evaluate(&call);
    /// assert!(first.is_allowed());
    /// evaluator.rollback(&mut first).unwrap(); // the upstream call failed
    /// assert!(evaluator.evaluate(&call).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn rollback(&self, decision: &mut Decision<'_>) -> Result<(), RollbackError> {
        let Extra::Charge(charge) = std::mem::take(&mut decision.extra) else { return Ok(()) };
        let installed = self.current.load();
        let requests = self.refund_plan(&installed, &charge)?;
        self.store.refund(self.clock.now(), charge.at, &requests)?;
        Ok(())
    }

    /// [`rollback`](Evaluator::rollback) from a receipt taken with
    /// [`Decision::take_receipt`], for embedders that must let the decision go before the
    /// upstream call ends.
    ///
    /// ```
    /// # use mcp_policy::{Evaluator, Policy, ToolCall};
    /// # let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {"t": {
    /// #     "limits": [{"counter": "c", "window": "hour", "max": 1}]}}}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let receipt = evaluator.evaluate(&ToolCall::new("t")).take_receipt().unwrap();
    /// evaluator.rollback_receipt(receipt).unwrap(); // consumed: it cannot be used twice
    /// assert!(evaluator.evaluate(&ToolCall::new("t")).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn rollback_receipt(&self, receipt: ChargeReceipt) -> Result<(), RollbackError> {
        let installed = self.current.load();
        let charge = receipt.as_charge();
        let requests = self.refund_plan(&installed, &charge)?;
        self.store.refund(self.clock.now(), charge.at, &requests)?;
        Ok(())
    }
}

impl<S: AsyncCounterStore> Evaluator<S> {
    /// [`evaluate`](Evaluator::evaluate) for stores that do I/O: the store is awaited, never
    /// blocked on. With a [`CounterStore`] such as [`MemoryStore`] the future is ready at once.
    ///
    /// ```
    /// # use mcp_policy::{Evaluator, Policy, ToolCall};
    /// # let policy: Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// let evaluator = Evaluator::new(policy);
    /// let call = ToolCall::new("t");
    /// let future = evaluator.evaluate_async(&call);
    /// # let _ = future;
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    #[must_use = "the decision says whether to dispatch the call"]
    pub async fn evaluate_async<'a>(&self, call: &ToolCall<'a>) -> Decision<'a> {
        let installed = self.current.load_full();
        let mut plan = Plan::new();
        if let Some(d) = self.prepare(&installed, call, &mut plan) {
            return self.mark(d);
        }
        let d = if plan.ask.is_some() {
            let outcome = self.store.check_async(plan.now, &plan.requests).await;
            self.ask(&installed, &mut plan, outcome, call)
        } else {
            let outcome = self.store.charge_async(plan.now, &plan.requests).await;
            self.finish(&mut plan, outcome, call)
        };
        self.mark(d)
    }

    /// [`rollback`](Evaluator::rollback) for stores that do I/O.
    pub async fn rollback_async(&self, decision: &mut Decision<'_>) -> Result<(), RollbackError> {
        let Extra::Charge(charge) = std::mem::take(&mut decision.extra) else { return Ok(()) };
        let installed = self.current.load_full();
        let requests = self.refund_plan(&installed, &charge)?;
        self.store.refund_async(self.clock.now(), charge.at, &requests).await?;
        Ok(())
    }

    /// [`rollback_receipt`](Evaluator::rollback_receipt) for stores that do I/O.
    pub async fn rollback_receipt_async(
        &self,
        receipt: ChargeReceipt,
    ) -> Result<(), RollbackError> {
        let installed = self.current.load_full();
        let charge = receipt.as_charge();
        let requests = self.refund_plan(&installed, &charge)?;
        self.store.refund_async(self.clock.now(), charge.at, &requests).await?;
        Ok(())
    }
}

/// What step 7 charges: filled by `prepare`, read by `finish`.
struct Plan<'p, 'a> {
    policy: Option<&'p Compiled>,
    generation: u64,
    now: Timestamp,
    requests: SmallVec<[ChargeRequest<'p>; 4]>,
    /// The limit of each request, by index in the policy.
    ids: SmallVec<[u32; 4]>,
    /// The rule an allow decision names.
    rule: Option<RuleRef<'a>>,
    /// An approval taken at step 6, to put back if the call is refused.
    approval: Option<Box<Entry>>,
    /// Step 6 asks for approval, once the store has checked the limits.
    ask: Option<Asking>,
}

/// An `approve_if` check that fired for a call without its approval.
struct Asking {
    pointer: Arc<str>,
    message: Arc<str>,
    binding: Binding,
}

impl Plan<'_, '_> {
    fn new() -> Self {
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

/// A call refused at or after the limits step, which must give back an approval it took.
enum Refusal<'a> {
    Deny(RuleRef<'a>, Text),
    Limit(RuleRef<'a>, String, Duration),
}

impl<'a> Refusal<'a> {
    fn into_decision(
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
                let mut d = Decision::new(DecisionKind::Limit, tool, rule, Text::Owned(message));
                d.extra = Extra::RetryAfter(retry_after);
                d
            }
        }
    }
}

fn rule_ref<'a>(rule: &CompiledRule, tool: &'a str) -> RuleRef<'a> {
    match &rule.name {
        RuleName::ExactTool => RuleRef::Tool(tool),
        RuleName::Pointer(p) => RuleRef::Shared(p.clone()),
    }
}

fn truth(check: &CompiledCheck, call: &ToolCall<'_>) -> Truth {
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

/// The decision when the clock reads a time outside the supported range.
fn clock_out_of_range(tool: &str) -> Decision<'_> {
    Decision::new(
        DecisionKind::Deny,
        tool,
        RuleRef::Static(""),
        Text::Static(
            "the clock is out of range: it reads a time outside 1970 to the end of 2500, so no \
             limit or approval can be decided; the call is denied (fail-closed)",
        ),
    )
}

fn deny_by<'a>(tool: &'a str, check: &CompiledCheck) -> Decision<'a> {
    Decision::new(
        DecisionKind::Deny,
        tool,
        RuleRef::Shared(check.pointer.clone()),
        Text::Shared(check.message.clone()),
    )
}

fn malformed<'a>(call: &ToolCall<'a>) -> Option<Decision<'a>> {
    let bad = |what: &str, v: &Value| {
        Decision::new(
            DecisionKind::Deny,
            call.tool(),
            RuleRef::Static(""),
            Text::Owned(format!(
                "malformed call: `{what}` must be a JSON object, found {}",
                kind_of(v)
            )),
        )
    };
    if let Some(v) = call.arguments().filter(|v| !v.is_object()) {
        return Some(bad("arguments", v));
    }
    if let Some(v) = call.context().filter(|v| !v.is_object()) {
        return Some(bad("context", v));
    }
    None
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The units a limit charges for `call`.
fn units_of<'a>(limit: &CompiledLimit, call: &ToolCall<'a>) -> Result<u64, Refusal<'a>> {
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
        Found::Json(v) => Err(refuse(&format!("found {}", kind_of(v)))),
        Found::Str(_) => Err(refuse("found a string")),
    }
}

fn scope_key<'a>(scope: Scope, grant: &'a str, session: Option<&'a str>) -> ScopeKey<'a> {
    match scope {
        Scope::Global => ScopeKey::Global,
        Scope::Grant => ScopeKey::Grant(grant),
        Scope::Session => ScopeKey::Session { grant, session },
    }
}

fn window_words(seconds: u64) -> String {
    match seconds {
        1 => "second".to_owned(),
        60 => "minute".to_owned(),
        3600 => "hour".to_owned(),
        86_400 => "day".to_owned(),
        s => format!("{s} seconds"),
    }
}

fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Grant => "per grant",
        Scope::Session => "per session",
        Scope::Global => "for all callers",
    }
}
