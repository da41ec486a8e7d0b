//! Approvals out of band, served from the core's own queue.
//!
//! For clients that cannot ask a human (no form elicitation), an `approve` decision waits in the
//! evaluator's pending approvals ([`Evaluator::pending_approvals`]) for an administrator, who
//! lists and resolves it through the admin API (`GET /approvals`, `POST /approvals/{id}`, see
//! [`crate::admin`]) with [`Evaluator::resolve_approval`]. The gateway keeps no queue of its
//! own: an entry is the core's, bound to the tool, the arguments, the grant, the session and the
//! policy in force, bounded per grant and in all, and single-use. Once an administrator approves
//! it, the agent's next identical call passes the approval step once (limits still apply, and a
//! call limited after its approval keeps the approval); once refused, the next identical call
//! is refused once, and the entry is gone.
//!
//! The admin API is written against the [`ApprovalAdmin`] trait, which every
//! [`Evaluator`] implements.

use std::time::{Duration, UNIX_EPOCH};

use mcp_policy::{Evaluator, PendingApproval, ResolveApprovalError, Timestamp};
use serde_json::{Value, json};

/// What the admin API needs: list what waits, resolve one.
pub trait ApprovalAdmin: Send + Sync {
    /// The calls waiting for a human, oldest first, as JSON objects (see [`view`]).
    fn pending(&self) -> Vec<Value>;

    /// Approves (`true`) or refuses (`false`) the pending approval `id`.
    fn resolve(&self, id: &str, approve: bool) -> Result<(), ResolveApprovalError>;
}

impl<S: Send + Sync> ApprovalAdmin for Evaluator<S> {
    fn pending(&self) -> Vec<Value> {
        self.pending_approvals().iter().map(view).collect()
    }

    fn resolve(&self, id: &str, approve: bool) -> Result<(), ResolveApprovalError> {
        self.resolve_approval(id, approve)
    }
}

/// A pending approval as the admin API lists it: `id`, `tool`, `arguments`, `grant`,
/// `session`, `rule`, `reason`, `issued_at` and `expires_at` (RFC 3339, UTC).
pub fn view(p: &PendingApproval) -> Value {
    json!({
        "id": p.id,
        "tool": p.tool,
        "arguments": p.arguments,
        "grant": p.grant,
        "session": p.session,
        "rule": p.rule,
        "reason": p.reason,
        "issued_at": rfc3339(p.issued_at),
        "expires_at": rfc3339(p.expires_at),
    })
}

fn rfc3339(t: Timestamp) -> String {
    let at = UNIX_EPOCH + Duration::from_nanos(t.as_unix_nanos());
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_policy::{DecisionKind, ToolCall};

    const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {"t": {
        "approve_if": [{"conditions": [], "reason": "needs a human"}]}}}"#;

    #[test]
    fn the_core_queue_through_the_trait() {
        let evaluator = Evaluator::new(POLICY.parse().unwrap());
        let admin: &dyn ApprovalAdmin = &evaluator;
        let args = json!({"x": 1});
        let call = ToolCall::new("t").with_arguments(&args).with_grant("g").with_session("s");
        let d = evaluator.evaluate(&call);
        assert_eq!(d.kind(), DecisionKind::Approve);
        let listed = admin.pending();
        assert_eq!(listed.len(), 1);
        let e = &listed[0];
        assert_eq!(e["id"], d.approval_id().unwrap());
        assert_eq!((e["tool"].as_str(), e["grant"].as_str()), (Some("t"), Some("g")));
        assert_eq!(
            (e["session"].as_str(), e["reason"].as_str()),
            (Some("s"), Some("needs a human"))
        );
        assert_eq!(e["arguments"], args);
        assert_eq!(e["rule"], "/tools/t/approve_if/0");
        assert!(e["issued_at"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(e["expires_at"].as_str().unwrap() > e["issued_at"].as_str().unwrap());
        assert!(!e.to_string().contains(d.approval_key().unwrap()), "the key is never listed");

        let id = d.approval_id().unwrap().to_owned();
        admin.resolve(&id, true).unwrap();
        assert!(matches!(admin.resolve(&id, false), Err(ResolveApprovalError::AlreadyResolved(_))));
        assert!(admin.pending().is_empty(), "only calls still waiting are listed");
        assert_eq!(evaluator.evaluate(&call).kind(), DecisionKind::Allow, "approved once");
        assert_eq!(evaluator.evaluate(&call).kind(), DecisionKind::Approve);
        assert!(matches!(admin.resolve(&id, true), Err(ResolveApprovalError::Unknown(_))));
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        assert_eq!(rfc3339(Timestamp::from_unix_seconds(1.5)), "1970-01-01T00:00:01.500Z");
    }
}
