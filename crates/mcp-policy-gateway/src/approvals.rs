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
//!
//! A client that can elicit is asked in band too, and its entry is listed all the same:
//! whichever answer comes first decides. Each answer the admin API records is announced on
//! [`Resolutions`], so that a relay still asking its client about that entry decides the call
//! at once, as the administrator said, and withdraws its question (see `crate::relay`).

use std::time::{Duration, UNIX_EPOCH};

use mcp_policy::{Evaluator, PendingApproval, ResolveApprovalError, Timestamp};
use serde_json::{Value, json};

/// How many announced answers a relay may not have taken yet before it misses some (it then
/// decides again every call it asks its client about, see [`Resolutions`]).
pub const RESOLUTIONS_BACKLOG: usize = 1024;

/// The ids of the approvals the admin API resolved, announced to every relay that subscribed.
///
/// An id is announced once the core recorded the answer, so a relay that hears it may decide
/// the waiting call again without its approval key: the core then applies that answer (an
/// approval passes once, a refusal refuses once), and an entry still waiting is asked about
/// again, approving nothing.
#[derive(Debug, Clone)]
pub struct Resolutions(tokio::sync::broadcast::Sender<String>);

impl Default for Resolutions {
    fn default() -> Self {
        Resolutions(tokio::sync::broadcast::channel(RESOLUTIONS_BACKLOG).0)
    }
}

impl Resolutions {
    /// Announces that the approval `id` was resolved (nobody listening is not an error).
    pub fn announce(&self, id: &str) {
        let _ = self.0.send(id.to_owned());
    }

    /// The ids announced from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.0.subscribe()
    }

    /// How many announcements some subscriber has not taken yet.
    #[cfg(test)]
    pub(crate) fn untaken(&self) -> usize {
        self.0.len()
    }
}

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
    fn resolutions_reach_every_subscriber_from_then_on() {
        let r = Resolutions::default();
        r.announce("before");
        let (mut a, mut b) = (r.subscribe(), r.clone().subscribe());
        r.announce("x");
        assert_eq!(a.try_recv().unwrap(), "x");
        assert_eq!(b.try_recv().unwrap(), "x");
        assert!(a.try_recv().is_err());
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        assert_eq!(rfc3339(Timestamp::from_unix_seconds(1.5)), "1970-01-01T00:00:01.500Z");
    }
}
