//! # mcp-policy
//!
//! An embeddable policy engine for MCP (Model Context Protocol) tool calls. A server calls
//! [`Evaluator::evaluate`] before it dispatches each `tools/call` and gets one of four
//! decisions:
//!
//! - **allow**: dispatch the call;
//! - **deny**: do not, and tell the model why;
//! - **limit**: a rate or quota is exhausted, retry after the time given;
//! - **approve**: a human must approve this exact call first.
//!
//! The rules live in a JSON [`Policy`] document (see [`docs/policy.md`]), which is strictly
//! validated (every problem reported at once with line, column and JSON Pointer) and compiled
//! once. Counters live in a [`CounterStore`]: [`MemoryStore`] in process by default, or any other
//! store (Redis, for replicas) behind the same contract. The core does no networking and needs
//! no async runtime.
//!
//! ```
//! use mcp_policy::{DecisionKind, Evaluator, Policy, ToolCall};
//! use serde_json::json;
//!
//! let policy: Policy = r#"{
//!   "version": "1",
//!   "default": "deny",
//!   "tools": {
//!     "list_clusters": {},
//!     "cancel_run": {
//!       "limits": [{ "counter": "cancel_run_rate", "window": "minute", "max": 10 }]
//!     }
//!   }
//! }"#.parse()?;
//! let evaluator = Evaluator::new(policy);
//!
//! let args = json!({ "run_id": 42 });
//! let call = ToolCall::new("cancel_run").with_arguments(&args).with_grant("agent-7");
//! match evaluator.evaluate(&call).kind() {
//!     DecisionKind::Allow => { /* dispatch */ }
//!     _ => { /* answer with decision.client_text() as an isError result */ }
//! }
//! assert!(!evaluator.evaluate(&ToolCall::new("delete_job")).is_allowed());
//! # Ok::<(), mcp_policy::PolicyError>(())
//! ```
//!
//! [`docs/policy.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/policy.md
#![forbid(unsafe_code)]

// The layers (imports flow one way; `tests/layers.rs` checks it, `docs/architecture.md` explains):
// `json` and `counter` are leaves, `policy` imports `json`, `eval` imports the three. The modules
// are private: every public item has exactly one path, re-exported here.
mod counter;
mod eval;
mod fasthash;
mod json;
mod policy;

pub use counter::{
    AsyncCounterStore, ChargeOutcome, ChargeRequest, Clock, CounterKey, CounterStore, FastClock,
    ManualClock, MemoryStore, SLIDING_BUCKETS, ScopeKey, StoreError, StoreErrorKind, SystemClock,
    Timestamp, WindowSpec,
};
pub use eval::{
    ChargeReceipt, CheckExplanation, ConditionExplanation, CounterExplanation, Decision,
    DecisionKind, Evaluator, Explanation, LimitVerdict, MAX_ARGUMENT_BYTES,
    MAX_ARGUMENT_BYTES_PER_GRANT, MAX_PENDING, MAX_PENDING_PER_GRANT, Mode, PendingApproval,
    ResolveApprovalError, RollbackError, Step, StepExplanation, StepOutcome, ToolCall, TruthValue,
    ValueType,
};
pub use policy::lint::{ToolInfo, lint};
pub use policy::{
    Diagnostic, DiagnosticKind, InvalidPolicy, Policy, PolicyError, ReadError, Severity,
    did_you_mean, locate, pattern_matches,
};

// The document's types stay one public module, `mcp_policy::model`: they are many small types
// (`Rule`, `Limit`, `Check`, `Condition`) whose names read best qualified.
pub use policy::model;
