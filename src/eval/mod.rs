//! Evaluation: the call, the decision procedure, conditions, approvals and decisions.
//!
//! [`Evaluator::evaluate`] follows the evaluation order of the policy language step by step:
//! hide, the rule (or the default), `arguments`, `require`, `deny_if`, `approve_if` (which asks
//! only when the limits have room, checked without charging), then every limit charged as one
//! atomic step, and allow. The first step that decides ends evaluation.

pub(crate) mod approval;
mod call;
mod charge;
pub(crate) mod condition;
mod decision;
mod evaluator;
mod explain;
mod explanation;
mod messages;
mod mode;
mod receipt;
mod steps;
mod text;

pub use approval::{
    MAX_ARGUMENT_BYTES, MAX_ARGUMENT_BYTES_PER_GRANT, MAX_PENDING, MAX_PENDING_PER_GRANT,
    PendingApproval, ResolveApprovalError,
};
pub use call::ToolCall;
pub use decision::{ChargeReceipt, Decision, DecisionKind};
pub use evaluator::{Evaluator, RollbackError};
pub use explanation::{
    CheckExplanation, ConditionExplanation, CounterExplanation, Explanation, LimitVerdict, Step,
    StepExplanation, StepOutcome, TruthValue, ValueType,
};
pub use mode::Mode;
