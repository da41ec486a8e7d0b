//! Evaluation: the call, the decision procedure, conditions, approvals and decisions.
//!
//! [`Evaluator::evaluate`] follows the evaluation order of the policy language step by step:
//! hide, the rule (or the default), `arguments`, `require`, `deny_if`, `approve_if`, then every
//! limit charged as one atomic step, and allow. The first step that decides ends evaluation.

pub(crate) mod approval;
mod call;
pub(crate) mod condition;
mod decision;
mod evaluator;
mod text;

pub use call::ToolCall;
pub use decision::{ChargeReceipt, Decision, DecisionKind};
pub use evaluator::{Evaluator, RollbackError};
