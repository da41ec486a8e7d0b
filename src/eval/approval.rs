//! Approval keys.
//!
//! An `approve` decision carries a key. The key is the SHA-256 of the call's *binding* (the
//! tool, the arguments in canonical JSON, the grant, the session and the policy's digest) and of
//! a secret random nonce, so it cannot be guessed or computed from the call. The evaluator keeps
//! the pending keys (with their binding) for a limited time. A call that carries a key passes the
//! `approve_if` step only when the key is pending **and** its binding is the binding of this call;
//! the key is then taken out, so it is accepted once only. A call refused later (by a limit or a
//! store error) puts its key back.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::call::ToolCall;
use crate::counter::Timestamp;
use crate::policy::canonical;

/// The default time a human has to approve a call.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The most approvals pending at once; past this the oldest are forgotten.
pub(crate) const MAX_PENDING: usize = 100_000;

pub(crate) struct Approvals {
    pending: Mutex<HashMap<String, Pending>>,
    ttl: Duration,
    max_pending: usize,
    secret: [u64; 2],
    counter: AtomicU64,
}

#[derive(Clone)]
pub(crate) struct Pending {
    binding: [u8; 32],
    issued: Timestamp,
}

impl Approvals {
    pub(crate) fn new(ttl: Duration) -> Self {
        // Two independently seeded std hashers give 128 unpredictable bits per process.
        let a = std::collections::hash_map::RandomState::new();
        let b = std::collections::hash_map::RandomState::new();
        Approvals {
            pending: Mutex::new(HashMap::new()),
            ttl,
            max_pending: MAX_PENDING,
            secret: [a.build_hasher().finish(), b.hash_one(0x5eed_u64)],
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    /// Issues a key for `call` under the policy with digest `policy_digest`.
    pub(crate) fn issue(&self, call: &ToolCall<'_>, policy_digest: &str, now: Timestamp) -> String {
        let binding = binding(call, policy_digest);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(binding);
        h.update(self.secret[0].to_le_bytes());
        h.update(self.secret[1].to_le_bytes());
        h.update(n.to_le_bytes());
        h.update(now.as_unix_nanos().to_le_bytes());
        let key = canonical::hex(&h.finalize());
        let mut pending = self.pending.lock();
        if pending.len() >= self.max_pending {
            let ttl = self.ttl;
            pending.retain(|_, p| now.saturating_duration_since(p.issued) < ttl);
            if pending.len() >= self.max_pending {
                if let Some(oldest) =
                    pending.iter().min_by_key(|(_, p)| p.issued).map(|(k, _)| k.clone())
                {
                    pending.remove(&oldest);
                }
            }
        }
        pending.insert(key.clone(), Pending { binding, issued: now });
        key
    }

    /// Takes `key` out when it is pending, unexpired and bound to exactly this call.
    pub(crate) fn take(
        &self,
        key: &str,
        call: &ToolCall<'_>,
        policy_digest: &str,
        now: Timestamp,
    ) -> Option<Pending> {
        let binding = binding(call, policy_digest);
        let mut pending = self.pending.lock();
        let p = pending.get(key)?;
        if p.binding != binding {
            return None;
        }
        let expired = now.saturating_duration_since(p.issued) >= self.ttl;
        let p = pending.remove(key)?;
        (!expired).then_some(p)
    }

    /// Puts back a key taken for a call that was then refused.
    pub(crate) fn restore(&self, key: &str, p: Pending) {
        self.pending.lock().insert(key.to_owned(), p);
    }
}

/// SHA-256 of the canonical JSON of `{"args", "grant", "policy", "session", "tool"}`, written
/// directly (keys already in canonical order), without copying the arguments.
fn binding(call: &ToolCall<'_>, policy_digest: &str) -> [u8; 32] {
    let mut s = String::new();
    s.push_str("{\"args\":");
    canonical::write(call.arguments_value(), &mut s);
    s.push_str(",\"grant\":");
    canonical::write_string(call.grant(), &mut s);
    s.push_str(",\"policy\":");
    canonical::write_string(policy_digest, &mut s);
    s.push_str(",\"session\":");
    match call.session() {
        Some(sess) => canonical::write_string(sess, &mut s),
        None => canonical::write(&Value::Null, &mut s),
    }
    s.push_str(",\"tool\":");
    canonical::write_string(call.tool(), &mut s);
    s.push('}');
    Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binding_is_canonical() {
        let a = json!({"x": 1.0, "y": [1, 2]});
        let b = json!({"y": [1, 2.0], "x": 1});
        let ca = ToolCall::new("t").with_arguments(&a).with_grant("g");
        let cb = ToolCall::new("t").with_arguments(&b).with_grant("g");
        assert_eq!(binding(&ca, "d"), binding(&cb, "d"));
        assert_ne!(binding(&ca, "d"), binding(&ca, "e"));
        assert_ne!(binding(&ca, "d"), binding(&ca.with_session("s"), "d"));
    }

    #[test]
    fn pending_keys_are_bounded_and_the_oldest_go_first() {
        let mut approvals = Approvals::new(Duration::from_secs(3600));
        approvals.max_pending = 3;
        let call = ToolCall::new("t");
        let keys: Vec<String> = (0..5u64)
            .map(|i| approvals.issue(&call, "d", Timestamp::from_unix_seconds(100.0 + i as f64)))
            .collect();
        assert_eq!(approvals.pending.lock().len(), 3);
        let now = Timestamp::from_unix_seconds(200.0);
        assert!(approvals.take(&keys[0], &call, "d", now).is_none(), "the oldest was forgotten");
        assert!(approvals.take(&keys[1], &call, "d", now).is_none());
        assert!(approvals.take(&keys[4], &call, "d", now).is_some());
        // Expired keys are swept before the oldest live one is dropped.
        let mut approvals = Approvals::new(Duration::from_secs(10));
        approvals.max_pending = 2;
        let old = approvals.issue(&call, "d", Timestamp::from_unix_seconds(0.0));
        let live = approvals.issue(&call, "d", Timestamp::from_unix_seconds(95.0));
        let _new = approvals.issue(&call, "d", Timestamp::from_unix_seconds(100.0));
        assert!(approvals.take(&live, &call, "d", Timestamp::from_unix_seconds(100.0)).is_some());
        assert!(approvals.take(&old, &call, "d", Timestamp::from_unix_seconds(100.0)).is_none());
    }

    #[test]
    fn keys_are_single_use_and_expire() {
        let approvals = Approvals::new(Duration::from_secs(10));
        let call = ToolCall::new("t");
        let t0 = Timestamp::from_unix_seconds(100.0);
        let k = approvals.issue(&call, "d", t0);
        assert!(approvals.take(&k, &call, "e", t0).is_none(), "another policy");
        assert!(approvals.take(&k, &call, "d", t0).is_some());
        assert!(approvals.take(&k, &call, "d", t0).is_none(), "second use");
        let k = approvals.issue(&call, "d", t0);
        assert!(approvals.take(&k, &call, "d", Timestamp::from_unix_seconds(111.0)).is_none());
    }
}
