//! The `input_required` rounds the gateway keeps between a call and its retry: its own
//! approval rounds ([`ApprovalRounds`]) and the upstream's rounds it lets continue a decided call
//! without a second decision ([`UpstreamRounds`]). Both are bounded stores of single-use
//! entries, each bound to an owner and counted against a quota, forgotten after
//! [`PENDING_ROUND_TTL`].

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How many approval rounds (`input_required` results) one session may have outstanding; past
/// this the session's oldest round is forgotten. The upstream's own rounds that the gateway
/// remembers are bounded alike, apart.
pub const MAX_PENDING_ROUNDS: usize = 1_000;

/// How long the client has to come back with the human's answer to an `input_required` round
/// (the gateway's, or the upstream's own).
pub const PENDING_ROUND_TTL: Duration = Duration::from_secs(3600);

/// How many of the upstream's own `input_required` rounds one decided call may go through:
/// the retries of one call continue it without a new decision at most this many times, and
/// within [`PENDING_ROUND_TTL`] of its decision (not of its last round). Past either, the
/// retry is decided (and charged) as a new call, so that an upstream that asks for input
/// forever cannot turn one charge into unlimited calls.
pub const MAX_CONTINUATION_ROUNDS: u32 = 16;

/// How many rounds of each kind the gateway keeps for clients without a session, every
/// identity together (each identity at most [`MAX_PENDING_ROUNDS`]); past this the oldest is
/// forgotten.
pub const MAX_KEPT_ROUNDS: usize = 100_000;

/// A bounded store of rounds by key: each counted against a quota (a principal), forgotten
/// after [`PENDING_ROUND_TTL`]; a quota keeps at most `per_quota` (its oldest makes room for its
/// newest), the store at most `max` (the oldest of anyone makes room). Every
/// operation takes amortized constant time, whatever the number of rounds kept: a redeemed
/// round leaves its key in the age lists, skipped when it comes first, and the lists are
/// compacted when they hold twice what is kept.
#[derive(Debug)]
struct Kept<K, V> {
    max: usize,
    per_quota: usize,
    book: Mutex<Book<K, V>>,
}

#[derive(Debug)]
struct Book<K, V> {
    entries: HashMap<K, Entry<V>>,
    /// The keys, oldest first, each with the number of the entry it was given to (a key whose
    /// entry has gone, or has been given again, is stale).
    order: VecDeque<(K, u64)>,
    /// Each quota's entries.
    quotas: HashMap<String, Quota<K>>,
    /// The number of the next entry.
    next: u64,
}

#[derive(Debug)]
struct Quota<K> {
    /// How many entries the quota has.
    live: usize,
    /// Its keys, oldest first (stale ones as in [`Book::order`]).
    order: VecDeque<(K, u64)>,
}

#[derive(Debug)]
struct Entry<V> {
    quota: String,
    issued: Instant,
    number: u64,
    value: V,
}

/// How many stale keys an age list may hold beyond twice its live ones before it is compacted.
const STALE_SLACK: usize = 64;

/// Whether `(key, number)` of an age list is the entry kept under `key`.
fn is_live<K: Hash + Eq, V>(entries: &HashMap<K, Entry<V>>, (key, number): &(K, u64)) -> bool {
    entries.get(key).is_some_and(|e| e.number == *number)
}

impl<K: Hash + Eq + Clone, V> Book<K, V> {
    /// Takes `key`'s entry out (its keys in the age lists become stale).
    fn forget<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<Entry<V>>
    where
        K: Borrow<Q>,
    {
        let entry = self.entries.remove(key)?;
        if let Some(q) = self.quotas.get_mut(&entry.quota) {
            q.live = q.live.saturating_sub(1);
            if q.live == 0 {
                self.quotas.remove(&entry.quota);
            }
        }
        Some(entry)
    }

    /// The oldest live key of the store, stale keys before it dropped.
    fn oldest(&mut self) -> Option<(K, u64)> {
        while let Some(front) = self.order.front() {
            if is_live(&self.entries, front) {
                return Some(front.clone());
            }
            self.order.pop_front();
        }
        None
    }

    /// Forgets the oldest live entry of `quota`.
    fn forget_oldest_of(&mut self, quota: &str) {
        let Some(q) = self.quotas.get_mut(quota) else { return };
        while let Some(front) = q.order.pop_front() {
            if is_live(&self.entries, &front) {
                self.forget(&front.0);
                return;
            }
        }
    }

    /// Drops the stale keys of the store's age list and of `quota`'s when they hold more than
    /// twice their live ones. Only the quota being added to is looked at (every quota on every
    /// insert would be a scan of up to [`MAX_KEPT_ROUNDS`] of them): a quota's list grows only
    /// by its own inserts, so it is compacted where it grows.
    fn compact(&mut self, quota: &str) {
        let entries = &self.entries;
        if self.order.len() > 2 * entries.len() + STALE_SLACK {
            self.order.retain(|k| is_live(entries, k));
        }
        if let Some(q) = self.quotas.get_mut(quota)
            && q.order.len() > 2 * q.live + STALE_SLACK
        {
            q.order.retain(|k| is_live(entries, k));
        }
    }
}

impl<K: Hash + Eq + Clone, V> Kept<K, V> {
    /// At most `max` entries, `per_quota` of each quota.
    fn new(max: usize, per_quota: usize) -> Self {
        let book = Book {
            entries: HashMap::new(),
            order: VecDeque::new(),
            quotas: HashMap::new(),
            next: 0,
        };
        Kept { max, per_quota, book: Mutex::new(book) }
    }

    fn book(&self) -> MutexGuard<'_, Book<K, V>> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `value` under `key` (replacing what was kept under it), counted against `quota`.
    /// What has expired is forgotten first; then the oldest entries (of this quota when it has
    /// its `per_quota`, else of anyone) make room.
    fn insert(&self, key: K, quota: &str, value: V) {
        let mut book = self.book();
        book.forget(&key);
        while let Some((oldest, _)) = book.oldest() {
            let expired =
                book.entries.get(&oldest).is_none_or(|e| e.issued.elapsed() >= PENDING_ROUND_TTL);
            if !expired {
                break;
            }
            book.order.pop_front();
            book.forget(&oldest);
        }
        if book.quotas.get(quota).is_some_and(|q| q.live >= self.per_quota) {
            book.forget_oldest_of(quota);
        }
        while book.entries.len() >= self.max {
            let Some((oldest, _)) = book.oldest() else { break };
            book.order.pop_front();
            book.forget(&oldest);
        }
        book.compact(quota);
        let number = book.next;
        book.next = book.next.wrapping_add(1);
        book.order.push_back((key.clone(), number));
        let q = book
            .quotas
            .entry(quota.to_owned())
            .or_insert_with(|| Quota { live: 0, order: VecDeque::new() });
        q.live += 1;
        q.order.push_back((key.clone(), number));
        let entry = Entry { quota: quota.to_owned(), issued: Instant::now(), number, value };
        book.entries.insert(key, entry);
    }

    /// Takes the entry of `key` out when `matches` holds for it (an entry that does not match
    /// stays as it was): its value, and whether it is still within [`PENDING_ROUND_TTL`].
    fn take_if<Q: Hash + Eq + ?Sized>(
        &self,
        key: &Q,
        matches: impl FnOnce(&V) -> bool,
    ) -> Option<(V, bool)>
    where
        K: Borrow<Q>,
    {
        let mut book = self.book();
        if !matches(&book.entries.get(key)?.value) {
            return None;
        }
        let entry = book.forget(key)?;
        Some((entry.value, entry.issued.elapsed() < PENDING_ROUND_TTL))
    }

    /// Forgets the entry of `key`, if any.
    fn remove(&self, key: &K) {
        self.book().forget(key);
    }

    fn len(&self) -> usize {
        self.book().entries.len()
    }
}

/// An approval round handed to the client as an `input_required` result: the secret approval
/// key behind the random token the client echoes in `requestState`, bound to its owner (a
/// session's relay, or an identity without a session) and to the tool.
struct Round {
    owner: String,
    key: String,
    /// The id of the approval the administrator sees for this call (with the admin API).
    pending: Option<String>,
    tool: String,
}

impl std::fmt::Debug for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The approval key is a secret.
        f.debug_struct("Round").field("tool", &self.tool).finish_non_exhaustive()
    }
}

/// The gateway's approval rounds (`input_required` results of its own), by their `requestState`
/// token: each bound to its owner and its tool, redeemed once, within [`PENDING_ROUND_TTL`].
/// A session's relay has its own; the relays of clients without a session share the
/// listener's, each the owner of its identity's rounds, so that a round outlives the relay that
/// issued it (its idle end, its upstream's exit) and is redeemed by the identity's next relay.
#[derive(Debug)]
pub struct ApprovalRounds {
    kept: Kept<String, Round>,
}

impl ApprovalRounds {
    /// Rounds kept up to `max` in all (and [`MAX_PENDING_ROUNDS`] per quota).
    #[must_use]
    pub fn new(max: usize) -> Self {
        ApprovalRounds { kept: Kept::new(max, MAX_PENDING_ROUNDS) }
    }

    /// A new round of `owner` for the approval `key` of `tool`, counted against `quota` (the
    /// owner's principal; empty: the owner): its random token (256 bits). What was redeemed or
    /// has expired is forgotten first; then the oldest rounds (of this quota when it has
    /// [`MAX_PENDING_ROUNDS`], else of anyone) make room.
    /// `pending`: the id of the approval the administrator sees for the same call, if any.
    pub(crate) fn issue(
        &self,
        owner: &str,
        quota: &str,
        key: String,
        pending: Option<String>,
        tool: &str,
    ) -> String {
        let quota = if quota.is_empty() { owner } else { quota };
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let round = Round { owner: owner.to_owned(), key, pending, tool: tool.to_owned() };
        self.kept.insert(token.clone(), quota, round);
        token
    }

    /// The approval key of the round `token` and the id of its pending approval, once, if
    /// `owner` was given it for `tool` and it has not expired. Another owner's or another
    /// tool's use leaves the round as it was.
    pub(crate) fn redeem(
        &self,
        owner: &str,
        token: &str,
        tool: &str,
    ) -> Option<(String, Option<String>)> {
        let (round, fresh) = self.kept.take_if(token, |r| r.owner == owner && r.tool == tool)?;
        fresh.then_some((round.key, round.pending))
    }

    /// How many rounds are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether no round is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A call the upstream answered with an `input_required` result of its own (it wants input
/// from the client): the client's retry that carries the upstream's `requestState` continues
/// that call, and is dispatched without a new decision (no second charge, no second approval),
/// once, if it names the same tool with the same arguments in this relay (its session, or its
/// grant for clients without a session) before [`PENDING_ROUND_TTL`]. Keyed by a digest of the
/// owner and the upstream's `requestState`, which is relayed both ways unchanged.
#[derive(Debug)]
struct Continuation {
    tool: String,
    arguments: [u8; 32],
    chain: Chain,
}

/// The upstream's own `input_required` rounds the gateway remembers (a call it continues), by
/// owner: a session's relay has its own; the relays of clients without a session share the
/// listener's, each the owner of its identity's rounds, so that the retry continues its call
/// after the relay that saw the round ended (its idle end, its upstream's exit: a stateless
/// upstream keeps nothing between requests but the `requestState`). Each owner's rounds count
/// against its quota ([`MAX_PENDING_ROUNDS`]); at most `max` are kept in all, the oldest
/// forgotten first.
#[derive(Debug)]
pub struct UpstreamRounds {
    kept: Kept<[u8; 32], Continuation>,
}

impl UpstreamRounds {
    /// A store of at most `max` rounds.
    #[must_use]
    pub fn new(max: usize) -> Self {
        UpstreamRounds { kept: Kept::new(max, MAX_PENDING_ROUNDS) }
    }

    /// Remembers that the upstream answered `owner`'s call of `tool` with `arguments` (part of
    /// `chain`) with an `input_required` round whose state is `state`, counted against `quota`
    /// (empty: the owner). A chain that may not continue once more is not remembered (and an
    /// older round of the same state is dropped).
    pub(crate) fn remember(
        &self,
        (owner, quota): (&str, &str),
        state: &str,
        tool: &str,
        arguments: &Value,
        chain: Chain,
    ) {
        let quota = if quota.is_empty() { owner } else { quota };
        let key = owned_state_digest(owner, state);
        if !chain.may_continue() {
            // The same state given again (for this call or another) replaces the older round.
            self.kept.remove(&key);
            return;
        }
        let continuation = Continuation {
            tool: tool.to_owned(),
            arguments: arguments_digest(arguments),
            chain: Chain { decided: chain.decided, rounds: chain.rounds.saturating_add(1) },
        };
        self.kept.insert(key, quota, continuation);
    }

    /// Whether `state` is the `requestState` of an `input_required` round the upstream gave
    /// `owner` for the call of `tool` with `arguments`, not yet used and not expired; it is then
    /// spent, and the call it continues is returned. A state given for another tool or other
    /// arguments (or to another owner) is left as it was.
    pub(crate) fn redeem(
        &self,
        owner: &str,
        state: &str,
        tool: &str,
        arguments: &Value,
    ) -> Option<Chain> {
        let key = owned_state_digest(owner, state);
        let digest = arguments_digest(arguments);
        let (c, fresh) = self.kept.take_if(&key, |c| c.tool == tool && c.arguments == digest)?;
        (fresh && c.chain.fresh()).then_some(c.chain)
    }

    /// How many rounds are kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether no round is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decided call and the upstream's `input_required` rounds it went through so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chain {
    /// When the call was decided.
    pub(crate) decided: Instant,
    /// How many of the upstream's rounds it has been continued through.
    pub(crate) rounds: u32,
}

impl Chain {
    /// Whether the call's decision is recent enough to carry it through another round.
    fn fresh(&self) -> bool {
        self.decided.elapsed() < PENDING_ROUND_TTL
    }

    /// Whether one more of the upstream's rounds may continue the call without a decision.
    fn may_continue(&self) -> bool {
        self.rounds < MAX_CONTINUATION_ROUNDS && self.fresh()
    }
}

/// The key of `owner`'s round of the upstream whose `requestState` is `state`.
fn owned_state_digest(owner: &str, state: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(owner.len().to_le_bytes());
    h.update(owner.as_bytes());
    h.update(state.as_bytes());
    h.finalize().into()
}

/// A digest of `arguments` that does not depend on the order of object members.
fn arguments_digest(arguments: &Value) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    fn feed(h: &mut Sha256, v: &Value) {
        match v {
            Value::Null => h.update(b"n"),
            Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
            Value::Number(n) => {
                let s = n.to_string();
                h.update(b"d");
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Value::String(s) => {
                h.update(b"s");
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Value::Array(a) => {
                h.update(b"a");
                h.update((a.len() as u64).to_le_bytes());
                for x in a {
                    feed(h, x);
                }
            }
            Value::Object(o) => {
                let mut members: Vec<(&String, &Value)> = o.iter().collect();
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                h.update(b"o");
                h.update((members.len() as u64).to_le_bytes());
                for (k, x) in members {
                    h.update((k.len() as u64).to_le_bytes());
                    h.update(k.as_bytes());
                    feed(h, x);
                }
            }
        }
    }
    let mut h = Sha256::new();
    feed(&mut h, arguments);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_decided_call_continues_through_a_bounded_number_of_rounds_within_an_hour() {
        let now = Instant::now();
        assert!(Chain { decided: now, rounds: 0 }.may_continue());
        assert!(Chain { decided: now, rounds: MAX_CONTINUATION_ROUNDS - 1 }.may_continue());
        assert!(!Chain { decided: now, rounds: MAX_CONTINUATION_ROUNDS }.may_continue());
        // Decided over an hour ago (skipped on a machine up for less than that).
        if let Some(old) = now.checked_sub(PENDING_ROUND_TTL + Duration::from_secs(1)) {
            let chain = Chain { decided: old, rounds: 1 };
            assert!(!chain.fresh() && !chain.may_continue());
        } else {
            eprintln!("SKIPPED: the clock cannot go back an hour on this machine");
        }
        // The documented bound (docs/gateway.md, docs/security.md).
        assert_eq!(MAX_CONTINUATION_ROUNDS, 16);
    }

    /// A kept round is redeemed once, only by its owner and for its tool (another owner's or
    /// tool's try leaves it as it was); an owner past its quota loses its own oldest round, and
    /// the store as a whole stays within its bound.
    #[test]
    fn kept_rounds_are_single_use_bound_to_owner_and_tool_and_bounded() {
        let rounds = ApprovalRounds::new(MAX_PENDING_ROUNDS + 10);
        let t = rounds.issue("alice", "", "k1".into(), None, "create");
        assert_eq!(rounds.redeem("bob", &t, "create").map(|(k, _)| k), None);
        assert_eq!(rounds.redeem("alice", &t, "delete").map(|(k, _)| k), None);
        assert_eq!(rounds.redeem("alice", &t, "create").map(|(k, _)| k).as_deref(), Some("k1"));
        assert_eq!(rounds.redeem("alice", &t, "create").map(|(k, _)| k), None, "single use");
        let first_of_bob = rounds.issue("bob", "", "b0".into(), None, "create");
        let first_of_alice = rounds.issue("alice", "", "a0".into(), None, "create");
        for i in 1..MAX_PENDING_ROUNDS {
            rounds.issue("alice", "", format!("a{i}"), None, "create");
        }
        // Alice's next round takes the place of her own oldest, not bob's.
        rounds.issue("alice", "", "a-last".into(), None, "create");
        assert_eq!(rounds.redeem("alice", &first_of_alice, "create").map(|(k, _)| k), None);
        assert_eq!(rounds.len(), MAX_PENDING_ROUNDS + 1);
        for i in 0..20 {
            rounds.issue(&format!("o{i}"), "", "k".into(), None, "create");
        }
        assert!(rounds.len() <= MAX_PENDING_ROUNDS + 10, "{}", rounds.len());
        // The oldest made way for the newest, bob's first of them.
        assert_eq!(rounds.redeem("bob", &first_of_bob, "create").map(|(k, _)| k), None);
    }

    /// Redeeming is constant time: the keys of redeemed rounds left in the age lists are
    /// skipped, and dropped once they are twice what is kept, whatever round stays oldest (a
    /// list that grew with every redeemed round would be a memory leak, and a scan of it on
    /// every insert a slowdown anyone with an approval-gated tool could cause).
    #[test]
    fn redeemed_rounds_leave_bounded_age_lists() {
        let rounds = ApprovalRounds::new(MAX_KEPT_ROUNDS);
        let oldest = rounds.issue("alice", "", "k0".into(), None, "create");
        for i in 0..10_000 {
            let t = rounds.issue("bob", "", format!("k{i}"), None, "create");
            assert!(rounds.redeem("bob", &t, "create").map(|(k, _)| k).is_some());
        }
        // The same within one quota that keeps a round all along.
        let alices_first = rounds.issue("alice", "", "a0".into(), None, "create");
        for i in 0..10_000 {
            let t = rounds.issue("alice", "", format!("a{i}"), None, "create");
            assert!(rounds.redeem("alice", &t, "create").map(|(k, _)| k).is_some());
        }
        assert_eq!(
            rounds.redeem("alice", &alices_first, "create").map(|(k, _)| k).as_deref(),
            Some("a0")
        );
        {
            let book = rounds.kept.book();
            let alice = &book.quotas["alice"];
            assert_eq!(alice.live, 1);
            assert!(alice.order.len() <= 2 + STALE_SLACK + 1, "{}", alice.order.len());
            assert_eq!(book.entries.len(), 1);
            assert!(book.order.len() <= 2 + STALE_SLACK + 1, "{}", book.order.len());
            assert!(!book.quotas.contains_key("bob"), "a quota with no round is forgotten");
        }
        // The oldest round is still there, and still the first to go when the store is full.
        let small = ApprovalRounds::new(3);
        let first = small.issue("a", "", "1".into(), None, "t");
        let second = small.issue("b", "", "2".into(), None, "t");
        assert!(small.redeem("b", &second, "t").map(|(k, _)| k).is_some());
        small.issue("c", "", "3".into(), None, "t");
        small.issue("d", "", "4".into(), None, "t");
        small.issue("e", "", "5".into(), None, "t");
        assert_eq!(small.len(), 3);
        assert_eq!(small.redeem("a", &first, "t").map(|(k, _)| k), None, "the oldest made room");
        assert_eq!(
            rounds.redeem("alice", &oldest, "create").map(|(k, _)| k).as_deref(),
            Some("k0")
        );
    }

    /// The store against a model of what it promises (a list of entries, oldest first, scanned
    /// in full): any sequence of inserts, replacements and takes, with small bounds, leaves the
    /// same entries, and takes the same ones.
    mod model {
        use super::super::Kept;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Insert { key: u8, quota: u8 },
            Take { key: u8, matching: bool },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0u8..24, 0u8..4).prop_map(|(key, quota)| Op::Insert { key, quota }),
                (0u8..24, any::<bool>()).prop_map(|(key, matching)| Op::Take { key, matching }),
            ]
        }

        proptest! {
            #[test]
            fn the_store_keeps_what_the_model_keeps(ops in prop::collection::vec(op(), 1..400)) {
                let (max, per_quota) = (10, 4);
                let kept: Kept<u8, u32> = Kept::new(max, per_quota);
                // (key, quota, value), oldest first.
                let mut model: Vec<(u8, String, u32)> = Vec::new();
                for (n, op) in ops.into_iter().enumerate() {
                    let value = u32::try_from(n).unwrap();
                    match op {
                        Op::Insert { key, quota } => {
                            let quota = format!("q{quota}");
                            kept.insert(key, &quota, value);
                            model.retain(|e| e.0 != key);
                            if model.iter().filter(|e| e.1 == quota).count() >= per_quota {
                                let i = model.iter().position(|e| e.1 == quota).unwrap();
                                model.remove(i);
                            }
                            while model.len() >= max {
                                model.remove(0);
                            }
                            model.push((key, quota, value));
                        }
                        Op::Take { key, matching } => {
                            let got = kept.take_if(&key, |_| matching).map(|(v, fresh)| {
                                assert!(fresh);
                                v
                            });
                            let want = model.iter().position(|e| e.0 == key && matching).map(|i| model.remove(i).2);
                            prop_assert_eq!(got, want);
                        }
                    }
                    prop_assert_eq!(kept.len(), model.len());
                }
                for (key, _, value) in model {
                    prop_assert_eq!(kept.take_if(&key, |_| true).map(|(v, _)| v), Some(value));
                }
            }
        }
    }

    /// A principal minting a token per request (each token's claims another owner) has one
    /// quota of rounds: its flood cannot evict another identity's round from the store.
    #[test]
    fn a_token_per_request_cannot_evict_others_rounds() {
        let rounds = ApprovalRounds::new(MAX_PENDING_ROUNDS * 2);
        let victim = rounds.issue("bob\0claims", "bob", "kb".into(), None, "create");
        for i in 0..MAX_PENDING_ROUNDS * 3 {
            rounds.issue(&format!("mallory\0jti-{i}"), "mallory", format!("m{i}"), None, "create");
        }
        assert!(rounds.len() <= MAX_PENDING_ROUNDS + 1, "{}", rounds.len());
        assert_eq!(
            rounds.redeem("bob\0claims", &victim, "create").map(|(k, _)| k).as_deref(),
            Some("kb")
        );
        // Still bound to the owner, not the quota: another token of mallory's redeems nothing
        // of the token that was given it.
        let t = rounds.issue("mallory\0jti-a", "mallory", "ka".into(), None, "create");
        assert_eq!(rounds.redeem("mallory\0jti-b", &t, "create").map(|(k, _)| k), None);
        assert_eq!(
            rounds.redeem("mallory\0jti-a", &t, "create").map(|(k, _)| k).as_deref(),
            Some("ka")
        );
    }

    /// The upstream's own rounds kept for clients without a session: bound to their owner, tool
    /// and arguments (another's use leaves them), used once; one principal minting a token per
    /// request fills its own quota, not the others'; at most `max` in all.
    #[test]
    fn upstream_rounds_are_bound_single_use_and_bounded_per_quota() {
        let fresh = Chain { decided: Instant::now(), rounds: 0 };
        let args = json!({"q": 1});
        let rounds = UpstreamRounds::new(MAX_PENDING_ROUNDS * 2);
        rounds.remember(("bob\0claims", "bob"), "s", "ask", &args, fresh);
        for i in 0..MAX_PENDING_ROUNDS * 3 {
            let owner = format!("mallory\0jti-{i}");
            rounds.remember((&owner, "mallory"), &format!("m{i}"), "ask", &args, fresh);
        }
        assert!(rounds.len() <= MAX_PENDING_ROUNDS + 1, "{}", rounds.len());
        assert!(rounds.redeem("mallory\0jti-0", "s", "ask", &args).is_none(), "not the owner");
        assert!(rounds.redeem("bob\0claims", "s", "other", &args).is_none(), "another tool");
        assert!(rounds.redeem("bob\0claims", "s", "ask", &json!({"q": 2})).is_none());
        let chain = rounds.redeem("bob\0claims", "s", "ask", &args).expect("left as it was");
        assert_eq!(chain.rounds, 1);
        assert!(rounds.redeem("bob\0claims", "s", "ask", &args).is_none(), "used once");
        let small = UpstreamRounds::new(3);
        for i in 0..5 {
            small.remember((&format!("o{i}"), ""), "s", "ask", &args, fresh);
        }
        assert_eq!(small.len(), 3);
        assert!(small.redeem("o0", "s", "ask", &args).is_none(), "the oldest made room");
        assert!(small.redeem("o4", "s", "ask", &args).is_some());
    }

    #[test]
    fn the_arguments_digest_ignores_member_order_only() {
        let a = json!({"x": 1, "y": [1, {"b": 2, "a": "s"}]});
        let b = json!({"y": [1, {"a": "s", "b": 2}], "x": 1});
        assert_eq!(arguments_digest(&a), arguments_digest(&b));
        for other in [
            json!({"x": 1, "y": [{"b": 2, "a": "s"}, 1]}),
            json!({"x": "1", "y": [1, {"b": 2, "a": "s"}]}),
            json!({"x": 1, "y": [1, {"b": 2, "a": "s"}], "z": null}),
            json!({"x": 1.0, "y": [1, {"b": 2, "a": "s"}]}),
        ] {
            assert_ne!(arguments_digest(&a), arguments_digest(&other), "{other}");
        }
    }
}
