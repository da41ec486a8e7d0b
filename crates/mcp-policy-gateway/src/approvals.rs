//! Approvals out of band: for clients that cannot ask a human (no form elicitation), an
//! `approve` decision waits here for an administrator, who lists and resolves it through the
//! admin API (`GET /approvals`, `POST /approvals/{id}`, see [`crate::admin`]).
//!
//! An entry is bound to the exact call: the tool, the arguments (canonical JSON), the grant, the
//! session and the digest of the policy in force. An identical call already pending reuses its
//! entry. Once an administrator approves it, the agent's next identical call passes the
//! approval step once (it is decided again with the core's approval key, so limits still apply,
//! and a call limited after its approval keeps the approval); once refused, the next identical
//! call is refused once, saying a human refused it, and the entry is gone. Entries expire after
//! [`DEFAULT_TTL`] (the core's approval-key lifetime).
//!
//! The admin API is written against the [`ApprovalAdmin`] trait, so that it can serve the
//! core's own pending-approvals API (`Evaluator::pending_approvals`, `resolve_approval`) once
//! that is available; [`OutOfBand`] implements it with the core's approval keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// How long an entry waits for an administrator (the core's default approval-key lifetime).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// The most entries pending at once; past this the oldest is forgotten.
pub const MAX_PENDING: usize = 10_000;

/// What the admin API needs: list what waits, resolve one.
pub trait ApprovalAdmin: Send + Sync {
    /// The pending entries, oldest first, as JSON objects with `id`, `tool`, `arguments`,
    /// `grant`, `session`, `rule`, `reason`, `issued_at`, `expires_at` (RFC 3339) and `status`
    /// (`pending`, or `approved` / `refused` until the agent retries).
    fn pending(&self) -> Vec<Value>;

    /// Approves (`true`) or refuses (`false`) the entry `id`.
    fn resolve(&self, id: &str, approve: bool) -> Result<(), ResolveError>;
}

/// Why an entry could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// No such entry (never issued, already spent, or expired).
    Unknown,
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Unknown => {
                f.write_str("unknown approval id: it was never issued, is spent, or has expired")
            }
        }
    }
}

impl std::error::Error for ResolveError {}

/// What an administrator decided of an entry, as the guard sees it on the agent's retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Approved: decide the call again with this approval key.
    Approved(String),
    /// Refused: refuse the call once.
    Refused,
}

/// A call submitted for approval (borrowed from the guard).
#[derive(Debug)]
pub struct Submitted<'a> {
    /// The tool.
    pub tool: &'a str,
    /// The arguments.
    pub arguments: &'a Value,
    /// The grant.
    pub grant: &'a str,
    /// The session.
    pub session: Option<&'a str>,
    /// The JSON Pointer of the rule that asks for approval.
    pub rule: &'a str,
    /// The rule's reason.
    pub reason: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Approved,
    Refused,
}

#[derive(Debug)]
struct Entry {
    id: String,
    key: String,
    status: Status,
    view: Value,
    issued: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    /// binding → entry
    entries: HashMap<String, Entry>,
    /// id → binding
    ids: HashMap<String, String>,
}

/// The gateway's queue of calls waiting for an administrator.
#[derive(Debug)]
pub struct OutOfBand {
    inner: Mutex<Inner>,
    ttl: Duration,
}

impl Default for OutOfBand {
    fn default() -> Self {
        OutOfBand::new(DEFAULT_TTL)
    }
}

/// The binding of a call: what an approval is for. Two calls have the same binding exactly when
/// they have the same tool, arguments (compared as canonical JSON: object keys sorted), grant,
/// session and policy.
pub fn binding(
    tool: &str,
    arguments: &Value,
    grant: &str,
    session: Option<&str>,
    policy_digest: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [tool, grant, session.unwrap_or("\u{0}none"), policy_digest] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    // serde_json's map is ordered by key (no `preserve_order`): `to_string` is canonical.
    h.update(arguments.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, d.subsec_nanos())
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl OutOfBand {
    /// A queue whose entries expire after `ttl`.
    pub fn new(ttl: Duration) -> Self {
        OutOfBand { inner: Mutex::new(Inner::default()), ttl }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the queue; keep serving.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn expire(&self, inner: &mut Inner, now: SystemTime) {
        let ttl = self.ttl;
        let expired: Vec<String> = inner
            .entries
            .iter()
            .filter(|(_, e)| now.duration_since(e.issued).unwrap_or_default() >= ttl)
            .map(|(b, _)| b.clone())
            .collect();
        for b in expired {
            if let Some(e) = inner.entries.remove(&b) {
                inner.ids.remove(&e.id);
            }
        }
    }

    /// Puts the call with `binding` in the queue (or finds it there) and returns its id. `key`
    /// is the approval key of the decision, used when the call comes back approved.
    pub fn submit(&self, binding: &str, call: Submitted<'_>, key: String) -> String {
        let now = SystemTime::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        if let Some(e) = inner.entries.get(binding) {
            return e.id.clone();
        }
        if inner.entries.len() >= MAX_PENDING
            && let Some(oldest) =
                inner.entries.iter().min_by_key(|(_, e)| e.issued).map(|(b, _)| b.clone())
            && let Some(e) = inner.entries.remove(&oldest)
        {
            inner.ids.remove(&e.id);
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let view = json!({
            "id": id,
            "tool": call.tool,
            "arguments": call.arguments,
            "grant": call.grant,
            "session": call.session,
            "rule": call.rule,
            "reason": call.reason,
            "issued_at": rfc3339(now),
            "expires_at": rfc3339(now + self.ttl),
        });
        inner.ids.insert(id.clone(), binding.to_owned());
        inner.entries.insert(
            binding.to_owned(),
            Entry { id: id.clone(), key, status: Status::Pending, view, issued: now },
        );
        id
    }

    /// What an administrator decided of the call with `binding`, if anything.
    pub fn lookup(&self, binding: &str) -> Option<Resolution> {
        let mut inner = self.lock();
        self.expire(&mut inner, SystemTime::now());
        let e = inner.entries.get(binding)?;
        match e.status {
            Status::Pending => None,
            Status::Approved => Some(Resolution::Approved(e.key.clone())),
            Status::Refused => Some(Resolution::Refused),
        }
    }

    /// The resolution of `binding` was used: the entry is gone.
    pub fn consume(&self, binding: &str) {
        let mut inner = self.lock();
        if let Some(e) = inner.entries.remove(binding) {
            inner.ids.remove(&e.id);
        }
    }

    /// How many entries the queue holds (pending or resolved, not yet used).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ApprovalAdmin for OutOfBand {
    fn pending(&self) -> Vec<Value> {
        let mut inner = self.lock();
        self.expire(&mut inner, SystemTime::now());
        let mut entries: Vec<&Entry> = inner.entries.values().collect();
        entries.sort_by_key(|e| e.issued);
        entries
            .into_iter()
            .map(|e| {
                let mut v = e.view.clone();
                if let Some(o) = v.as_object_mut() {
                    let status = match e.status {
                        Status::Pending => "pending",
                        Status::Approved => "approved",
                        Status::Refused => "refused",
                    };
                    o.insert("status".into(), status.into());
                }
                v
            })
            .collect()
    }

    fn resolve(&self, id: &str, approve: bool) -> Result<(), ResolveError> {
        let mut inner = self.lock();
        self.expire(&mut inner, SystemTime::now());
        let binding = inner.ids.get(id).cloned().ok_or(ResolveError::Unknown)?;
        let e = inner.entries.get_mut(&binding).ok_or(ResolveError::Unknown)?;
        e.status = if approve { Status::Approved } else { Status::Refused };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted<'a>(args: &'a Value) -> Submitted<'a> {
        Submitted {
            tool: "t",
            arguments: args,
            grant: "g",
            session: Some("s"),
            rule: "/tools/t/approve_if/0",
            reason: "r",
        }
    }

    #[test]
    fn bindings_ignore_key_order_and_separate_fields() {
        let a = binding("t", &json!({"a": 1, "b": 2}), "g", Some("s"), "d");
        let b = binding(
            "t",
            &serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap(),
            "g",
            Some("s"),
            "d",
        );
        assert_eq!(a, b);
        assert_ne!(a, binding("t", &json!({"a": 1, "b": 2}), "g", None, "d"));
        assert_ne!(
            binding("ab", &json!({}), "c", None, "d"),
            binding("a", &json!({}), "bc", None, "d")
        );
    }

    #[test]
    fn approve_once_refuse_once_unknown_ids() {
        let q = OutOfBand::default();
        let args = json!({"x": 1});
        let id = q.submit("b1", submitted(&args), "k1".into());
        assert_eq!(
            q.submit("b1", submitted(&args), "k2".into()),
            id,
            "identical calls share one entry"
        );
        assert_eq!(q.lookup("b1"), None);
        let listed = q.pending();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], id.as_str());
        assert_eq!(listed[0]["arguments"], args);
        assert_eq!(listed[0]["status"], "pending");
        q.resolve(&id, true).unwrap();
        assert_eq!(q.lookup("b1"), Some(Resolution::Approved("k1".into())));
        q.consume("b1");
        assert_eq!(q.lookup("b1"), None);
        assert_eq!(q.resolve(&id, true), Err(ResolveError::Unknown));
        let id2 = q.submit("b2", submitted(&args), "k".into());
        q.resolve(&id2, false).unwrap();
        assert_eq!(q.lookup("b2"), Some(Resolution::Refused));
        assert_eq!(q.resolve("nope", true), Err(ResolveError::Unknown));
    }

    #[test]
    fn entries_expire() {
        let q = OutOfBand::new(Duration::ZERO);
        let args = json!({});
        let id = q.submit("b", submitted(&args), "k".into());
        assert_eq!(q.resolve(&id, true), Err(ResolveError::Unknown));
        assert!(q.pending().is_empty());
    }
}
