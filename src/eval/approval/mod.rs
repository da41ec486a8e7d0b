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

mod key;

pub(crate) use key::Binding;
use key::{binding, hex, id_of, unhex};

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

/// The state of an identical call's entry, seen by a call without a key.
pub(crate) enum Earlier {
    /// No entry, or one still waiting for a human.
    None,
    /// Approved out of band: taken out, to put back if the call is refused later (`None` when
    /// only read).
    Approved(Option<Box<Entry>>),
    /// Denied out of band: removed.
    Denied,
}

/// What a key is worth for a call.
pub(crate) enum KeyUse {
    /// Valid: the entry, taken out (`None` when only read).
    Valid(Option<Box<Entry>>),
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
    /// With `read_only`, answers the same and changes nothing (for `explain`).
    pub(crate) fn earlier(&self, b: &Binding, now: Timestamp, read_only: bool) -> Earlier {
        let mut inner = self.inner.lock();
        let Some(seq) = inner.by_binding.get(&b.digest).copied() else { return Earlier::None };
        let Some(e) = inner.entries.get(&seq) else { return Earlier::None };
        if self.expired(e.issued, now) {
            if !read_only {
                inner.remove(seq);
            }
            return Earlier::None;
        }
        match e.state {
            State::Pending => Earlier::None,
            State::Approved if read_only => Earlier::Approved(None),
            State::Approved => {
                inner.take(seq).map_or(Earlier::None, |e| Earlier::Approved(Some(Box::new(e))))
            }
            State::Denied => {
                if !read_only {
                    inner.remove(seq);
                }
                Earlier::Denied
            }
        }
    }

    /// Takes `key` out when it is pending, unexpired and bound to exactly this call. With
    /// `read_only`, answers the same and changes nothing (for `explain`).
    pub(crate) fn take(&self, key: &str, b: &Binding, now: Timestamp, read_only: bool) -> KeyUse {
        let Some(key) = unhex::<32>(key) else { return KeyUse::Invalid };
        let mut inner = self.inner.lock();
        let Some(seq) = inner.by_key.get(&key).copied() else { return KeyUse::Invalid };
        let Some(e) = inner.entries.get(&seq) else { return KeyUse::Invalid };
        if e.binding != b.digest {
            return KeyUse::Invalid;
        }
        let (expired, state) = (self.expired(e.issued, now), e.state);
        if expired {
            if !read_only {
                inner.remove(seq);
            }
            return KeyUse::Invalid;
        }
        if state == State::Denied {
            if !read_only {
                inner.remove(seq);
            }
            return KeyUse::Denied;
        }
        if read_only {
            return KeyUse::Valid(None);
        }
        inner.take(seq).map_or(KeyUse::Invalid, |e| KeyUse::Valid(Some(Box::new(e))))
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

#[cfg(test)]
mod tests;
