//! Pending approvals.
//!
//! An `approve` decision creates a *pending entry*, bound to the call's *binding*: the SHA-256 of
//! the tool, the arguments in canonical JSON, the grant, the session and the policy's digest. The
//! entry has two names:
//!
//! - a **key**, the SHA-256 of the binding and of a secret random nonce, which cannot be guessed
//!   or computed from the call. It is the in-band approval: the embedder passes it back once a
//!   human approved, and it must never reach the client;
//! - an **id**, public and not secret (derived from the key by a one-way hash), which names the
//!   entry for an out-of-band approver (an admin UI): [`Evaluator::pending_approvals`] lists the
//!   entries, [`Evaluator::resolve_approval`] approves or denies one.
//!
//! A call that carries a key passes the `approve_if` step only when the key is pending **and**
//! its binding is the binding of this call; the entry is then taken out, so it is accepted once
//! only. A call without a key whose binding has an entry approved out of band passes once too; an
//! entry denied out of band denies the next identical call once. A call refused later (by a limit
//! or a store error) puts its entry back.
//!
//! An identical call that is already pending reuses its entry (same key, same id), so repeating a
//! call never piles up prompts. The entries are bounded without ever scanning them all: at most
//! [`MAX_PENDING_PER_GRANT`] entries and [`MAX_ARGUMENT_BYTES_PER_GRANT`] bytes of arguments per
//! grant (past either, that grant's oldest entry goes), at most [`MAX_PENDING`] entries and
//! [`MAX_ARGUMENT_BYTES`] bytes in all (past either, the oldest entry of any grant goes). The
//! oldest entry is found through an ordered index by issue order, so issuing at the cap costs a
//! few map operations, not a scan.
//!
//! [`Evaluator::pending_approvals`]: crate::Evaluator::pending_approvals
//! [`Evaluator::resolve_approval`]: crate::Evaluator::resolve_approval

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::call::ToolCall;
use crate::counter::Timestamp;
use crate::json::canonical;

/// The default time a human has to approve a call.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The most approvals pending at once, all grants together; past this the oldest go.
pub const MAX_PENDING: usize = 100_000;
/// The most approvals pending at once for one grant; past this that grant's oldest go, so that
/// one grant cannot push out another grant's approvals.
pub const MAX_PENDING_PER_GRANT: usize = 1_000;
/// The most bytes of arguments (canonical JSON) that one grant's pending approvals hold; past
/// this that grant's oldest go (a single larger call is kept alone).
pub const MAX_ARGUMENT_BYTES_PER_GRANT: usize = 8 << 20;
/// The most bytes of arguments that all pending approvals hold together.
pub const MAX_ARGUMENT_BYTES: usize = 256 << 20;

/// Why [`Evaluator::resolve_approval`](crate::Evaluator::resolve_approval) did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveApprovalError {
    /// No approval with this id is pending (never issued, already used, evicted, or issued
    /// under another policy).
    #[error("no pending approval has the id `{0}`")]
    Unknown(String),
    /// The approval expired before it was resolved.
    #[error("the approval `{0}` has expired")]
    Expired(String),
    /// The approval was approved or denied already.
    #[error("the approval `{0}` was resolved already")]
    AlreadyResolved(String),
}

/// A call waiting for a human, as [`Evaluator::pending_approvals`] lists it.
///
/// `arguments` are the call's arguments as the agent sent them: show them to the approver, who
/// is trusted to see them, and keep them out of logs.
///
/// [`Evaluator::pending_approvals`]: crate::Evaluator::pending_approvals
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PendingApproval {
    /// The public id, for [`Evaluator::resolve_approval`](crate::Evaluator::resolve_approval).
    pub id: String,
    /// The tool.
    pub tool: String,
    /// The call's arguments (`{}` when it had none).
    pub arguments: Value,
    /// The caller's grant.
    pub grant: String,
    /// The caller's session, if any.
    pub session: Option<String>,
    /// The JSON Pointer of the `approve_if` check that asked for approval.
    pub rule: String,
    /// The check's `reason`.
    pub reason: String,
    /// When the approval was asked for.
    pub issued_at: Timestamp,
    /// When it stops being valid, approved or not.
    pub expires_at: Timestamp,
}

/// The bounds of the pending entries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caps {
    pub(crate) global: usize,
    pub(crate) per_grant: usize,
    pub(crate) bytes: usize,
    pub(crate) bytes_per_grant: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            global: MAX_PENDING,
            per_grant: MAX_PENDING_PER_GRANT,
            bytes: MAX_ARGUMENT_BYTES,
            bytes_per_grant: MAX_ARGUMENT_BYTES_PER_GRANT,
        }
    }
}

pub(crate) struct Approvals {
    inner: Mutex<Inner>,
    ttl: Duration,
    pub(crate) caps: Caps,
    secret: [u64; 2],
    counter: AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    by_key: HashMap<[u8; 32], u64>,
    by_id: HashMap<[u8; 16], u64>,
    by_binding: HashMap<[u8; 32], u64>,
    /// Every entry by issue order: the first is the oldest.
    order: BTreeSet<u64>,
    grants: HashMap<String, GrantEntries>,
    bytes: usize,
    next: u64,
}

#[derive(Default)]
struct GrantEntries {
    order: BTreeSet<u64>,
    bytes: usize,
}

/// What a human said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Approved,
    Denied,
}

/// A pending entry. Taken out of the map while a call uses it, and put back (with its place in
/// the order) when that call is refused later.
pub(crate) struct Entry {
    seq: u64,
    key: [u8; 32],
    id: [u8; 16],
    binding: [u8; 32],
    policy: String,
    tool: String,
    arguments: Value,
    grant: String,
    session: Option<String>,
    rule: String,
    reason: String,
    issued: Timestamp,
    bytes: usize,
    state: State,
}

/// A call's binding, computed once per evaluation.
pub(crate) struct Binding {
    digest: [u8; 32],
    /// The length of the arguments' canonical JSON.
    bytes: usize,
}

/// The state of an identical call's entry, seen by a call without a key.
pub(crate) enum Earlier {
    /// No entry, or one still waiting for a human.
    None,
    /// Approved out of band: taken out, to put back if the call is refused later.
    Approved(Box<Entry>),
    /// Denied out of band: removed.
    Denied,
}

/// What a key is worth for a call.
pub(crate) enum KeyUse {
    /// Valid: the entry, taken out.
    Valid(Box<Entry>),
    /// The entry was denied out of band: removed.
    Denied,
    /// Unknown, used, expired or bound to another call.
    Invalid,
}

/// What an approver is told about the call: its rule and reason.
pub(crate) struct Ask<'s> {
    pub(crate) rule: &'s str,
    pub(crate) reason: &'s str,
}

impl Approvals {
    pub(crate) fn new(ttl: Duration) -> Self {
        // Two independently seeded std hashers give 128 unpredictable bits per process.
        let a = std::collections::hash_map::RandomState::new();
        let b = std::collections::hash_map::RandomState::new();
        Approvals {
            inner: Mutex::new(Inner::default()),
            ttl,
            caps: Caps::default(),
            secret: [a.build_hasher().finish(), b.hash_one(0x5eed_u64)],
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    fn expired(&self, issued: Timestamp, now: Timestamp) -> bool {
        now.saturating_duration_since(issued) >= self.ttl
    }

    /// The binding of `call` under the policy with digest `policy_digest`.
    pub(crate) fn binding(call: &ToolCall<'_>, policy_digest: &str) -> Binding {
        binding(call, policy_digest)
    }

    /// Asks for approval of `call`: the key and id of the entry of an identical call that is
    /// already pending, or of a new one.
    pub(crate) fn issue(
        &self,
        call: &ToolCall<'_>,
        b: &Binding,
        policy_digest: &str,
        ask: Ask<'_>,
        now: Timestamp,
    ) -> (String, String) {
        let mut inner = self.inner.lock();
        if let Some(seq) = inner.by_binding.get(&b.digest).copied() {
            match inner.entries.get(&seq) {
                Some(e) if !self.expired(e.issued, now) => return (hex(&e.key), hex(&e.id)),
                _ => inner.remove(seq),
            }
        }
        // Expired entries at the front go first; a few per call keeps the cost bounded.
        for _ in 0..8 {
            let Some(first) = inner.order.first().copied() else { break };
            match inner.entries.get(&first) {
                Some(e) if !self.expired(e.issued, now) => break,
                _ => inner.remove(first),
            }
        }
        // This grant's oldest go first, so that its calls never push out another grant's.
        while let Some(g) = inner.grants.get(call.grant()) {
            let over = g.order.len() >= self.caps.per_grant
                || g.bytes.saturating_add(b.bytes) > self.caps.bytes_per_grant;
            match g.order.first().copied() {
                Some(oldest) if over => inner.remove(oldest),
                _ => break,
            }
        }
        while inner.entries.len() >= self.caps.global
            || inner.bytes.saturating_add(b.bytes) > self.caps.bytes
        {
            match inner.order.first().copied() {
                Some(oldest) => inner.remove(oldest),
                None => break,
            }
        }

        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(b.digest);
        h.update(self.secret[0].to_le_bytes());
        h.update(self.secret[1].to_le_bytes());
        h.update(n.to_le_bytes());
        h.update(now.as_unix_nanos().to_le_bytes());
        let key: [u8; 32] = h.finalize().into();
        let id = id_of(&key);
        let seq = inner.next;
        inner.next = inner.next.wrapping_add(1);
        let entry = Entry {
            seq,
            key,
            id,
            binding: b.digest,
            policy: policy_digest.to_owned(),
            tool: call.tool().to_owned(),
            arguments: call.arguments_value().clone(),
            grant: call.grant().to_owned(),
            session: call.session().map(str::to_owned),
            rule: ask.rule.to_owned(),
            reason: ask.reason.to_owned(),
            issued: now,
            bytes: b.bytes,
            state: State::Pending,
        };
        inner.insert(entry);
        (hex(&key), hex(&id))
    }

    /// For a call without a key: takes out an identical call's entry when a human resolved it.
    pub(crate) fn earlier(&self, b: &Binding, now: Timestamp) -> Earlier {
        let mut inner = self.inner.lock();
        let Some(seq) = inner.by_binding.get(&b.digest).copied() else { return Earlier::None };
        let Some(e) = inner.entries.get(&seq) else { return Earlier::None };
        if self.expired(e.issued, now) {
            inner.remove(seq);
            return Earlier::None;
        }
        match e.state {
            State::Pending => Earlier::None,
            State::Approved => {
                inner.take(seq).map_or(Earlier::None, |e| Earlier::Approved(Box::new(e)))
            }
            State::Denied => {
                inner.remove(seq);
                Earlier::Denied
            }
        }
    }

    /// Takes `key` out when it is pending, unexpired and bound to exactly this call.
    pub(crate) fn take(&self, key: &str, b: &Binding, now: Timestamp) -> KeyUse {
        let Some(key) = unhex::<32>(key) else { return KeyUse::Invalid };
        let mut inner = self.inner.lock();
        let Some(seq) = inner.by_key.get(&key).copied() else { return KeyUse::Invalid };
        let Some(e) = inner.entries.get(&seq) else { return KeyUse::Invalid };
        if e.binding != b.digest {
            return KeyUse::Invalid;
        }
        let (expired, state) = (self.expired(e.issued, now), e.state);
        if expired {
            inner.remove(seq);
            return KeyUse::Invalid;
        }
        if state == State::Denied {
            inner.remove(seq);
            return KeyUse::Denied;
        }
        inner.take(seq).map_or(KeyUse::Invalid, |e| KeyUse::Valid(Box::new(e)))
    }

    /// Puts back an entry taken for a call that was then refused.
    pub(crate) fn restore(&self, e: Box<Entry>) {
        self.inner.lock().insert(*e);
    }

    /// The entries waiting for a human under the policy with digest `policy_digest`, oldest
    /// first.
    pub(crate) fn list(&self, policy_digest: &str, now: Timestamp) -> Vec<PendingApproval> {
        let inner = self.inner.lock();
        inner
            .order
            .iter()
            .filter_map(|seq| inner.entries.get(seq))
            .filter(|e| {
                e.state == State::Pending
                    && e.policy == policy_digest
                    && !self.expired(e.issued, now)
            })
            .map(|e| PendingApproval {
                id: hex(&e.id),
                tool: e.tool.clone(),
                arguments: e.arguments.clone(),
                grant: e.grant.clone(),
                session: e.session.clone(),
                rule: e.rule.clone(),
                reason: e.reason.clone(),
                issued_at: e.issued,
                expires_at: e.issued.saturating_add(self.ttl),
            })
            .collect()
    }

    /// Records a human's answer for the entry `id`.
    pub(crate) fn resolve(
        &self,
        id: &str,
        approve: bool,
        policy_digest: &str,
        now: Timestamp,
    ) -> Result<(), ResolveApprovalError> {
        let unknown = || ResolveApprovalError::Unknown(id.to_owned());
        let raw = unhex::<16>(id).ok_or_else(unknown)?;
        let mut inner = self.inner.lock();
        let seq = inner.by_id.get(&raw).copied().ok_or_else(unknown)?;
        let expired = {
            let e = inner.entries.get(&seq).ok_or_else(unknown)?;
            if e.policy != policy_digest {
                return Err(unknown());
            }
            if e.state != State::Pending {
                return Err(ResolveApprovalError::AlreadyResolved(id.to_owned()));
            }
            self.expired(e.issued, now)
        };
        if expired {
            inner.remove(seq);
            return Err(ResolveApprovalError::Expired(id.to_owned()));
        }
        let e = inner.entries.get_mut(&seq).ok_or_else(unknown)?;
        e.state = if approve { State::Approved } else { State::Denied };
        Ok(())
    }

    /// Forgets every entry issued under another policy than `policy_digest`.
    pub(crate) fn retain_policy(&self, policy_digest: &str) {
        let mut inner = self.inner.lock();
        let stale: Vec<u64> =
            inner.entries.values().filter(|e| e.policy != policy_digest).map(|e| e.seq).collect();
        for seq in stale {
            inner.remove(seq);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

impl Inner {
    fn insert(&mut self, e: Entry) {
        let seq = e.seq;
        self.by_key.insert(e.key, seq);
        self.by_id.insert(e.id, seq);
        // The binding names one entry: a resolved one (put back after a refusal) before one
        // still waiting, so that an approval is not hidden by a prompt issued meanwhile.
        let waiting = |s: &u64| self.entries.get(s).is_some_and(|o| o.state == State::Pending);
        match self.by_binding.get(&e.binding) {
            Some(old) if !(waiting(old) && e.state != State::Pending) => {}
            _ => {
                self.by_binding.insert(e.binding, seq);
            }
        }
        self.order.insert(seq);
        let g = self.grants.entry(e.grant.clone()).or_default();
        g.order.insert(seq);
        g.bytes = g.bytes.saturating_add(e.bytes);
        self.bytes = self.bytes.saturating_add(e.bytes);
        self.entries.insert(seq, e);
    }

    /// Takes entry `seq` out of every index.
    fn take(&mut self, seq: u64) -> Option<Entry> {
        let e = self.entries.remove(&seq)?;
        self.by_key.remove(&e.key);
        self.by_id.remove(&e.id);
        if self.by_binding.get(&e.binding) == Some(&seq) {
            self.by_binding.remove(&e.binding);
        }
        self.order.remove(&seq);
        if let Some(g) = self.grants.get_mut(&e.grant) {
            g.order.remove(&seq);
            g.bytes = g.bytes.saturating_sub(e.bytes);
            if g.order.is_empty() {
                self.grants.remove(&e.grant);
            }
        }
        self.bytes = self.bytes.saturating_sub(e.bytes);
        Some(e)
    }

    fn remove(&mut self, seq: u64) {
        if self.take(seq).is_none() {
            // An index pointed at nothing: drop it from the orders so eviction moves on.
            self.order.remove(&seq);
            for g in self.grants.values_mut() {
                g.order.remove(&seq);
            }
            self.grants.retain(|_, g| !g.order.is_empty());
        }
    }
}

/// The public id of the entry with `key`: a one-way hash, so it does not reveal the key.
fn id_of(key: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"mcp-policy approval id\0");
    h.update(key);
    let d: [u8; 32] = h.finalize().into();
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().zip(d) {
        *i = b;
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0xf] {
            s.push(char::from(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0')));
        }
    }
    s
}

/// The bytes of exactly `2 * N` lowercase hexadecimal digits.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (value(*hi)? << 4) | value(*lo)?;
    }
    Some(out)
}

/// SHA-256 of the canonical JSON of `{"args", "grant", "policy", "session", "tool"}`, written
/// directly (keys already in canonical order), without copying the arguments.
fn binding(call: &ToolCall<'_>, policy_digest: &str) -> Binding {
    let mut s = String::new();
    s.push_str("{\"args\":");
    canonical::write(call.arguments_value(), &mut s);
    let bytes = s.len() - 8;
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
    Binding { digest: Sha256::digest(s.as_bytes()).into(), bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ASK: Ask<'static> = Ask { rule: "/tools/t/approve_if/0", reason: "why" };

    fn issue(a: &Approvals, call: &ToolCall<'_>, digest: &str, now: Timestamp) -> String {
        a.issue(call, &binding(call, digest), digest, ASK, now).0
    }

    fn valid(a: &Approvals, key: &str, call: &ToolCall<'_>, digest: &str, now: Timestamp) -> bool {
        matches!(a.take(key, &binding(call, digest), now), KeyUse::Valid(_))
    }

    #[test]
    fn binding_is_canonical() {
        let a = json!({"x": 1.0, "y": [1, 2]});
        let b = json!({"y": [1, 2.0], "x": 1});
        let ca = ToolCall::new("t").with_arguments(&a).with_grant("g");
        let cb = ToolCall::new("t").with_arguments(&b).with_grant("g");
        assert_eq!(binding(&ca, "d").digest, binding(&cb, "d").digest);
        assert_ne!(binding(&ca, "d").digest, binding(&ca, "e").digest);
        assert_ne!(binding(&ca, "d").digest, binding(&ca.with_session("s"), "d").digest);
        assert_eq!(binding(&ca, "d").bytes, r#"{"x":1,"y":[1,2]}"#.len());
    }

    #[test]
    fn pending_keys_are_bounded_and_the_oldest_go_first() {
        let mut approvals = Approvals::new(Duration::from_secs(3600));
        approvals.caps.global = 3;
        let args: Vec<Value> = (0..5).map(|i| json!({ "i": i })).collect();
        let calls: Vec<ToolCall<'_>> =
            args.iter().map(|a| ToolCall::new("t").with_arguments(a)).collect();
        let keys: Vec<String> = (0..5)
            .map(|i| {
                issue(&approvals, &calls[i], "d", Timestamp::from_unix_seconds(100.0 + i as f64))
            })
            .collect();
        assert_eq!(approvals.len(), 3);
        let now = Timestamp::from_unix_seconds(200.0);
        assert!(!valid(&approvals, &keys[0], &calls[0], "d", now), "the oldest was forgotten");
        assert!(!valid(&approvals, &keys[1], &calls[1], "d", now));
        assert!(valid(&approvals, &keys[4], &calls[4], "d", now));
        // Expired keys are swept before the oldest live one is dropped.
        let mut approvals = Approvals::new(Duration::from_secs(10));
        approvals.caps.global = 2;
        let old = issue(&approvals, &calls[0], "d", Timestamp::from_unix_seconds(0.0));
        let live = issue(&approvals, &calls[1], "d", Timestamp::from_unix_seconds(95.0));
        let _new = issue(&approvals, &calls[2], "d", Timestamp::from_unix_seconds(100.0));
        let at = Timestamp::from_unix_seconds(100.0);
        assert!(valid(&approvals, &live, &calls[1], "d", at));
        assert!(!valid(&approvals, &old, &calls[0], "d", at));
    }

    #[test]
    fn an_identical_pending_call_reuses_its_entry() {
        let approvals = Approvals::new(Duration::from_secs(10));
        let call = ToolCall::new("t").with_grant("g");
        let t0 = Timestamp::from_unix_seconds(100.0);
        let b = binding(&call, "d");
        let first = approvals.issue(&call, &b, "d", ASK, t0);
        let again = approvals.issue(&call, &b, "d", ASK, t0);
        assert_eq!(first, again);
        assert_eq!(approvals.len(), 1);
        // Once it expired, a new entry with a new key.
        let later = approvals.issue(&call, &b, "d", ASK, Timestamp::from_unix_seconds(111.0));
        assert_ne!(first.0, later.0);
        assert_ne!(first.1, later.1);
        assert_eq!(approvals.len(), 1);
    }

    #[test]
    fn the_id_does_not_reveal_the_key() {
        let approvals = Approvals::new(Duration::from_secs(10));
        let call = ToolCall::new("t");
        let (key, id) = approvals.issue(
            &call,
            &binding(&call, "d"),
            "d",
            ASK,
            Timestamp::from_unix_seconds(1.0),
        );
        assert_eq!((key.len(), id.len()), (64, 32));
        assert!(!key.contains(&id));
        assert_eq!(unhex::<32>(&key).map(|k| hex(&k)), Some(key.clone()));
        assert!(unhex::<32>(&key.to_uppercase()).is_none() || key.to_uppercase() == key);
        assert!(unhex::<16>("0g000000000000000000000000000000").is_none());
        let b = binding(&call, "d");
        assert!(matches!(
            approvals.take(&id, &b, Timestamp::from_unix_seconds(1.0)),
            KeyUse::Invalid
        ));
    }

    #[test]
    fn a_grant_over_its_byte_budget_loses_its_own_oldest() {
        let mut approvals = Approvals::new(Duration::from_secs(3600));
        approvals.caps.bytes_per_grant = 40;
        let a = json!({"s": "0123456789"}); // 16 bytes
        let b = json!({"s": "abcdefghij"});
        let c = json!({"s": "ABCDEFGHIJ"});
        let t = Timestamp::from_unix_seconds(1.0);
        let other =
            issue(&approvals, &ToolCall::new("t").with_arguments(&a).with_grant("h"), "d", t);
        let ka = issue(&approvals, &ToolCall::new("t").with_arguments(&a).with_grant("g"), "d", t);
        let kb = issue(&approvals, &ToolCall::new("t").with_arguments(&b).with_grant("g"), "d", t);
        let kc = issue(&approvals, &ToolCall::new("t").with_arguments(&c).with_grant("g"), "d", t);
        let g = |v| ToolCall::new("t").with_arguments(v).with_grant("g");
        assert!(!valid(&approvals, &ka, &g(&a), "d", t), "g's oldest went");
        assert!(valid(&approvals, &kb, &g(&b), "d", t));
        assert!(valid(&approvals, &kc, &g(&c), "d", t));
        let h = ToolCall::new("t").with_arguments(&a).with_grant("h");
        assert!(valid(&approvals, &other, &h, "d", t), "another grant's entry stays");
    }

    #[test]
    fn a_restored_approval_is_found_before_a_prompt_issued_meanwhile() {
        let approvals = Approvals::new(Duration::from_secs(3600));
        let call = ToolCall::new("t");
        let b = binding(&call, "d");
        let t = Timestamp::from_unix_seconds(1.0);
        let (_, id) = approvals.issue(&call, &b, "d", ASK, t);
        approvals.resolve(&id, true, "d", t).unwrap();
        let Earlier::Approved(e) = approvals.earlier(&b, t) else { panic!("approved") };
        // Meanwhile an identical call asks again; then the approved call is refused by a limit.
        let (_, again) = approvals.issue(&call, &b, "d", ASK, t);
        assert_ne!(id, again);
        approvals.restore(e);
        assert!(matches!(approvals.earlier(&b, t), Earlier::Approved(_)));
        assert_eq!(approvals.len(), 1, "the prompt issued meanwhile stays listed");
        assert_eq!(approvals.list("d", t)[0].id, again);
    }

    #[test]
    fn keys_are_single_use_and_expire() {
        let approvals = Approvals::new(Duration::from_secs(10));
        let call = ToolCall::new("t");
        let t0 = Timestamp::from_unix_seconds(100.0);
        let k = issue(&approvals, &call, "d", t0);
        assert!(!valid(&approvals, &k, &call, "e", t0), "another policy");
        assert!(valid(&approvals, &k, &call, "d", t0));
        assert!(!valid(&approvals, &k, &call, "d", t0), "second use");
        let k = issue(&approvals, &call, "d", t0);
        assert!(!valid(&approvals, &k, &call, "d", Timestamp::from_unix_seconds(111.0)));
        assert_eq!(approvals.len(), 0, "an expired entry is dropped when met");
    }
}
