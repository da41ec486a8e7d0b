//! Replaying calls against a policy under a manual clock, shared by `check` and `test`.

use std::sync::Arc;

use mcp_policy::{Decision, DecisionKind, Evaluator, ManualClock, Policy, Timestamp, ToolCall};

/// An evaluator whose clock only moves forward, as the calls say.
pub(crate) struct Replay {
    evaluator: Evaluator,
    clock: Arc<ManualClock>,
    last: Option<Timestamp>,
    /// The time of a first call without `at`.
    start: Timestamp,
}

impl Replay {
    /// A replay of `policy` whose first call without `at` happens at `start`.
    pub(crate) fn new(policy: Policy, start: Timestamp) -> Self {
        let clock = Arc::new(ManualClock::new(start));
        let evaluator = Evaluator::new(policy).with_clock(clock.clone());
        Replay { evaluator, clock, last: None, start }
    }

    /// Decides `call` at `at` (the previous call's time when absent; never earlier than it) and
    /// hands the decision to `then`. With `approved`, a call that needs approval is approved by
    /// a human and decided again.
    pub(crate) fn decide<R>(
        &mut self,
        call: &ToolCall<'_>,
        at: Option<Timestamp>,
        approved: bool,
        then: impl FnOnce(&Decision<'_>) -> R,
    ) -> R {
        let previous = self.last.unwrap_or(self.start);
        let now = match (at, self.last) {
            (Some(t), Some(last)) => t.max(last),
            (Some(t), None) => t,
            (None, _) => previous,
        };
        self.last = Some(now);
        self.clock.set(now);
        let decision = self.evaluator.evaluate(call);
        if approved
            && decision.kind() == DecisionKind::Approve
            && let Some(key) = decision.approval_key()
        {
            let with_key = call.with_approval_key(key);
            return then(&self.evaluator.evaluate(&with_key));
        }
        then(&decision)
    }
}
