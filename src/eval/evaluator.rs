//! The evaluator: the policy in force, the counter store, the clock, and the decision procedure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::approval::{self, Approvals, PendingApproval, ResolveApprovalError};
use super::call::ToolCall;
use super::decision::{ChargeReceipt, Decision, Extra};
use super::messages;
use super::mode::Mode;
use super::steps::{Plan, front, one_request};
use crate::counter::{AsyncCounterStore, Clock, CounterStore, FastClock, MemoryStore, StoreError};
use crate::policy::compiled::Fast;
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
    pub(super) current: ArcSwap<Installed>,
    pub(super) store: S,
    pub(super) clock: EvalClock,
    pub(super) fail_open: bool,
    pub(super) mode: Mode,
    pub(super) approvals: Approvals,
    pub(super) generations: AtomicU64,
}

/// The evaluator's clock: the default [`FastClock`] read without a dynamic call (it is inlined
/// into the decision), or the clock given to [`Evaluator::with_clock`].
pub(super) enum EvalClock {
    Fast(FastClock),
    Other(Arc<dyn Clock>),
}

impl EvalClock {
    #[inline]
    pub(super) fn now(&self) -> crate::counter::Timestamp {
        match self {
            EvalClock::Fast(c) => c.now(),
            EvalClock::Other(c) => c.now(),
        }
    }
}

/// The policy in force, with the generation that tells a rollback whether it was reloaded since.
pub(super) struct Installed {
    pub(super) policy: Policy,
    pub(super) generation: u64,
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
            clock: EvalClock::Fast(FastClock::new()),
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
        self.clock = EvalClock::Other(clock);
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
    #[inline]
    pub(super) fn mark(&self, d: &mut Decision<'_>) {
        d.monitored = self.mode == Mode::Monitor;
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
        let policy = installed.policy.compiled();
        // Each decision is marked in place and returned: nothing large is moved on the way out.
        let (rule, rule_ref) = match front(policy, call) {
            Ok(found) => found,
            Err(mut d) => {
                self.mark(&mut d);
                return d;
            }
        };
        // A rule without checks: only its limit, if any, is left to decide.
        match rule.fast {
            Fast::Allow => return self.allowed(call.tool(), rule_ref),
            Fast::OneLimit { id, units } => {
                if let Some(limit) = policy.limits.get(id as usize) {
                    let Some(now) = self.now() else {
                        let mut d = messages::clock_out_of_range(call.tool());
                        self.mark(&mut d);
                        return d;
                    };
                    let request = one_request(limit, units, call);
                    let outcome = self.store.charge(now, std::slice::from_ref(&request));
                    return self.finish_one(&installed, id, &request, rule_ref, now, outcome, call);
                }
            }
            Fast::No => {}
        }
        let mut plan = Plan::new();
        if let Some(mut d) = self.prepare_rule(&installed, rule, rule_ref, call, &mut plan, &mut ())
        {
            self.mark(&mut d);
            return d;
        }
        if plan.ask.is_some() {
            let outcome = self.store.check(plan.now, &plan.requests);
            let mut d = self.ask(&installed, &mut plan, outcome, call, true);
            self.mark(&mut d);
            return d;
        }
        let outcome = self.store.charge(plan.now, &plan.requests);
        // Marked by `finish`, which builds an allow decision in the caller's slot.
        self.finish(&mut plan, outcome, call)
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
        let policy = installed.policy.compiled();
        let (rule, rule_ref) = match front(policy, call) {
            Ok(found) => found,
            Err(mut d) => {
                self.mark(&mut d);
                return d;
            }
        };
        // A rule without checks: only its limit, if any, is left to decide.
        match rule.fast {
            Fast::Allow => return self.allowed(call.tool(), rule_ref),
            Fast::OneLimit { id, units } => {
                if let Some(limit) = policy.limits.get(id as usize) {
                    let Some(now) = self.now() else {
                        let mut d = messages::clock_out_of_range(call.tool());
                        self.mark(&mut d);
                        return d;
                    };
                    let request = one_request(limit, units, call);
                    let outcome =
                        self.store.charge_async(now, std::slice::from_ref(&request)).await;
                    return self.finish_one(&installed, id, &request, rule_ref, now, outcome, call);
                }
            }
            Fast::No => {}
        }
        let mut plan = Plan::new();
        if let Some(mut d) = self.prepare_rule(&installed, rule, rule_ref, call, &mut plan, &mut ())
        {
            self.mark(&mut d);
            return d;
        }
        if plan.ask.is_some() {
            let outcome = self.store.check_async(plan.now, &plan.requests).await;
            let mut d = self.ask(&installed, &mut plan, outcome, call, true);
            self.mark(&mut d);
            return d;
        }
        let outcome = self.store.charge_async(plan.now, &plan.requests).await;
        // Marked by `finish`, which builds an allow decision in the caller's slot.
        self.finish(&mut plan, outcome, call)
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
