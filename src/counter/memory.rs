//! The in-process counter store.

use std::time::Duration;

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

use super::clock::Timestamp;
use super::store::{ChargeOutcome, ChargeRequest, CounterKey, CounterStore, ScopeKey, StoreError};
use super::window::WindowState;
use crate::fasthash::{Seeds, eq_short};

/// The default number of shards.
const DEFAULT_SHARDS: usize = 64;

/// Separates the parts of an encoded key; `0xFF` never occurs in UTF-8.
const SEP: u8 = 0xFF;

/// An in-process [`CounterStore`]: counters in a sharded hash table, one short
/// [`parking_lot`] lock per shard that a batch touches, no allocation to charge a counter that
/// exists, and expired windows dropped as the store is used (see
/// [`retain_recent`](MemoryStore::retain_recent)).
///
/// ```
/// use mcp_policy::{ChargeOutcome, ChargeRequest, CounterKey, CounterStore, MemoryStore, ScopeKey,
///                  Timestamp, WindowSpec};
///
/// let store = MemoryStore::new();
/// let request = ChargeRequest {
///     key: CounterKey { counter: "calls", scope: ScopeKey::Grant("alice") },
///     window: WindowSpec { seconds: 60, sliding: false },
///     max: 1,
///     units: 1,
/// };
/// let now = Timestamp::from_unix_seconds(30.0);
/// assert!(matches!(store.charge(now, &[request])?, ChargeOutcome::Admitted { .. }));
/// assert!(matches!(store.charge(now, &[request])?, ChargeOutcome::Refused { index: 0, .. }));
/// # Ok::<(), mcp_policy::StoreError>(())
/// ```
pub struct MemoryStore {
    shards: Box<[Padded<Mutex<Shard>>]>,
    hasher: KeyHasher,
}

/// Keeps each shard's lock on its own cache line, so that threads working on different shards do
/// not slow each other down.
#[repr(align(128))]
struct Padded<T>(T);

/// The smallest table size at which a shard sweeps.
const MIN_SWEEP: usize = 64;

struct Shard {
    table: HashTable<Entry>,
    /// Sweep expired entries when the table grows to this size; after a sweep it is set to
    /// twice the live entries, so sweeping costs O(1) per insertion and the table holds at most
    /// about twice the live counters.
    sweep_at: usize,
}

/// One counter, in 32 bytes (the table holds it inline): the key and window length in one
/// allocation, and the window's state. The hash is not kept: it is computed again from the key
/// when the table grows.
struct Entry {
    /// The window's length in seconds ([`HEADER`] bytes, little-endian), then the key, encoded:
    /// a scope tag, the counter name, then the grant and session (see [`encode`]).
    key: Box<[u8]>,
    state: WindowState,
}

/// The bytes before the key's parts in [`Entry::key`]: the window's length in seconds.
const HEADER: usize = 8;

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// A store with the default number of shards (64).
    pub fn new() -> Self {
        MemoryStore::with_shards(DEFAULT_SHARDS)
    }

    /// A store with `shards` shards (rounded up to a power of two, at least 1). More shards mean
    /// less contention between threads that charge different counters.
    pub fn with_shards(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        MemoryStore {
            shards: (0..n)
                .map(|_| Padded(Mutex::new(Shard { table: HashTable::new(), sweep_at: MIN_SWEEP })))
                .collect(),
            hasher: KeyHasher::new(),
        }
    }

    /// The number of counters held, expired or not.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().table.len()).sum()
    }

    /// Whether the store holds no counter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every counter whose window has ended by `now`. The store also does this by itself,
    /// a shard at a time, as it is used; call this to free memory at a moment of your choosing.
    pub fn retain_recent(&self, now: Timestamp) {
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            shard.sweep(now);
        }
    }

    #[inline(always)]
    fn hash(&self, key: &CounterKey<'_>) -> u64 {
        let (tag, grant, session) = parts(key);
        self.hasher.hash(tag, key.counter.as_bytes(), grant.as_bytes(), session.as_bytes())
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> usize {
        // Bits 32 and up pick the shard: hashbrown uses the low bits for the position within a
        // shard's table and the top 7 bits as the tag it compares first, so that neither is
        // the same for every key of a shard.
        usize::try_from(hash >> 32).unwrap_or(0) & self.shards.len().wrapping_sub(1)
    }

    /// Locks the distinct shards of `hashes` in ascending order (so two batches never wait for
    /// each other in a cycle) and returns, for each request, the index of its guard.
    fn lock<'s>(
        &'s self,
        hashes: &[u64],
    ) -> (SmallVec<[MutexGuard<'s, Shard>; 4]>, SmallVec<[usize; 8]>) {
        let mut ids: SmallVec<[usize; 8]> = hashes.iter().map(|h| self.shard_of(*h)).collect();
        let mut order: SmallVec<[usize; 8]> = ids.clone();
        order.sort_unstable();
        order.dedup();
        let guards = order.iter().filter_map(|i| self.shards.get(*i).map(|s| s.0.lock())).collect();
        for id in ids.iter_mut() {
            *id = order.binary_search(id).unwrap_or(0);
        }
        (guards, ids)
    }
}

/// The scope tag and the grant and session parts of a key.
#[inline(always)]
fn parts<'a>(key: &CounterKey<'a>) -> (u8, &'a str, &'a str) {
    match key.scope {
        ScopeKey::Global => (0, "", ""),
        ScopeKey::Grant(g) => (1, g, ""),
        ScopeKey::Session { grant, session: None } => (2, grant, ""),
        ScopeKey::Session { grant, session: Some(s) } => (3, grant, s),
    }
}

/// The hash of a key's parts: the same for a [`CounterKey`] and for its encoding.
///
/// Each part is mixed in with [`Seeds::mix`] (random seeds per store; a part of up to 16 bytes,
/// as counter names and grants mostly are, costs two word loads and a multiply), after the
/// parts' lengths and the scope tag, so that parts that split one text differently hash
/// differently.
#[derive(Clone)]
struct KeyHasher {
    seeds: Seeds,
}

impl KeyHasher {
    fn new() -> Self {
        KeyHasher { seeds: Seeds::new() }
    }

    #[inline(always)]
    fn hash(&self, tag: u8, counter: &[u8], grant: &[u8], session: &[u8]) -> u64 {
        let [k0, k1, k2, k3] = self.seeds.k;
        let lens = (counter.len() as u64)
            ^ (grant.len() as u64).rotate_left(21)
            ^ (session.len() as u64).rotate_left(42)
            ^ (u64::from(tag) << 62);
        let mut acc = self.seeds.mix(k0 ^ lens, counter, k1);
        acc = self.seeds.mix(acc, grant, k2);
        if !session.is_empty() {
            acc = self.seeds.mix(acc, session, k3);
        }
        acc
    }
}

/// The hash of a stored key, found again from its encoding (when the table grows): its parts
/// are split at the separators, which UTF-8 text never contains.
fn stored_hash(hasher: &KeyHasher, e: &Entry) -> u64 {
    let encoded = e.parts();
    let (tag, rest) = encoded.split_first().map_or((0, &[][..]), |(t, r)| (*t, r));
    let mut fields = rest.splitn(3, |b| *b == SEP);
    let counter = fields.next().unwrap_or_default();
    let grant = fields.next().unwrap_or_default();
    let session = fields.next().unwrap_or_default();
    hasher.hash(tag, counter, grant, session)
}

/// The bytes of an [`Entry::key`]: the window's length, then the key's parts.
fn encode(key: &CounterKey<'_>, window_seconds: u64) -> Box<[u8]> {
    let (tag, grant, session) = parts(key);
    let mut v = Vec::with_capacity(HEADER + 3 + key.counter.len() + grant.len() + session.len());
    v.extend_from_slice(&window_seconds.to_le_bytes());
    v.push(tag);
    v.extend_from_slice(key.counter.as_bytes());
    v.push(SEP);
    v.extend_from_slice(grant.as_bytes());
    v.push(SEP);
    v.extend_from_slice(session.as_bytes());
    v.into_boxed_slice()
}

/// A key's parts, found once per lookup: what an entry's key is compared with.
#[derive(Clone, Copy)]
struct Probe<'a> {
    tag: u8,
    counter: &'a [u8],
    grant: &'a [u8],
    session: &'a [u8],
    /// The length of [`Entry::key`] for this key (header included).
    len: usize,
}

impl<'a> Probe<'a> {
    #[inline(always)]
    fn of(key: &CounterKey<'a>) -> Self {
        let (tag, grant, session) = parts(key);
        let (counter, grant, session) =
            (key.counter.as_bytes(), grant.as_bytes(), session.as_bytes());
        let len = HEADER + 3 + counter.len() + grant.len() + session.len();
        Probe { tag, counter, grant, session, len }
    }

    #[inline(always)]
    fn hash(&self, hasher: &KeyHasher) -> u64 {
        hasher.hash(self.tag, self.counter, self.grant, self.session)
    }

    /// Whether an [`Entry::key`] is this key, without allocating.
    #[inline(always)]
    fn matches(&self, stored: &[u8]) -> bool {
        // The length rejects almost every other key before any bytes are compared.
        if stored.len() != self.len {
            return false;
        }
        // `header tag c SEP g SEP s`: with the total length equal, the parts are where the key
        // puts them.
        let Some((&t, rest)) = stored.get(HEADER..).and_then(<[u8]>::split_first) else {
            return false;
        };
        let Some((ec, rest)) = rest.split_at_checked(self.counter.len()) else { return false };
        let Some((&sep1, rest)) = rest.split_first() else { return false };
        let Some((eg, rest)) = rest.split_at_checked(self.grant.len()) else { return false };
        let Some((&sep2, es)) = rest.split_first() else { return false };
        t == self.tag
            && sep1 == SEP
            && sep2 == SEP
            && eq_short(ec, self.counter)
            && eq_short(eg, self.grant)
            && (self.session.is_empty() || eq_short(es, self.session))
    }
}

impl Shard {
    #[inline(always)]
    fn find(&self, hash: u64, probe: &Probe<'_>) -> Option<&Entry> {
        self.table.find(hash, |e| probe.matches(&e.key))
    }

    #[inline(always)]
    fn find_mut(&mut self, hash: u64, probe: &Probe<'_>) -> Option<&mut Entry> {
        self.table.find_mut(hash, |e| probe.matches(&e.key))
    }

    fn sweep(&mut self, now: Timestamp) {
        self.table.retain(|e| e.state.expires_at(e.window_seconds()) > now);
        self.sweep_at = (self.table.len() * 2).max(MIN_SWEEP);
    }
}

impl Entry {
    /// The key's parts, after the header.
    #[inline(always)]
    fn parts(&self) -> &[u8] {
        self.key.get(HEADER..).unwrap_or_default()
    }

    /// The window length the state was made for.
    fn window_seconds(&self) -> u64 {
        self.key.first_chunk::<HEADER>().map_or(0, |h| u64::from_le_bytes(*h))
    }

    fn set_window_seconds(&mut self, seconds: u64) {
        if let Some(h) = self.key.first_chunk_mut::<HEADER>() {
            *h = seconds.to_le_bytes();
        }
    }

    /// The count that applies to a request with this window, resetting a state made for another
    /// window (after a reload changed the counter's window).
    fn count(&self, now: Timestamp, req: &ChargeRequest<'_>) -> u64 {
        if self.matches(req) { self.state.count(now, req.window.seconds) } else { 0 }
    }

    fn matches(&self, req: &ChargeRequest<'_>) -> bool {
        self.window_seconds() == req.window.seconds && self.state.is_sliding() == req.window.sliding
    }
}

/// `Some(wait)` when `req` cannot be admitted, counting `earlier` units that earlier requests of
/// the batch add to the same counter; the wait is `None` when it can never be admitted.
fn refusal(
    entry: Option<&Entry>,
    now: Timestamp,
    req: &ChargeRequest<'_>,
    earlier: u64,
) -> Option<Option<Duration>> {
    let stored = entry.map_or(0, |e| e.count(now, req));
    let total = stored.saturating_add(earlier).saturating_add(req.units);
    if total <= req.max {
        return None;
    }
    let excess = total - req.max;
    Some(match entry.filter(|e| e.matches(req)) {
        Some(e) if excess <= stored => Some(e.state.retry_after(now, req.window.seconds, excess)),
        // The batch alone is over the limit: the units can never be admitted.
        _ => None,
    })
}

impl Entry {
    /// Adds the units of `req`, first resetting a state made for another window.
    fn charge(&mut self, now: Timestamp, req: &ChargeRequest<'_>) {
        if !self.matches(req) {
            self.set_window_seconds(req.window.seconds);
            self.state = WindowState::new(now, req.window.seconds, req.window.sliding);
        }
        self.state.add(now, req.window.seconds, req.units);
    }
}

impl Shard {
    /// Charges `req`, creating its counter if needed.
    fn apply(&mut self, hasher: &KeyHasher, hash: u64, now: Timestamp, req: &ChargeRequest<'_>) {
        match self.find_mut(hash, &Probe::of(&req.key)) {
            Some(e) => e.charge(now, req),
            None => self.insert(hasher, hash, now, req),
        }
    }

    /// Adds a counter for `req`, charged with its units.
    fn insert(&mut self, hasher: &KeyHasher, hash: u64, now: Timestamp, req: &ChargeRequest<'_>) {
        if self.table.len() >= self.sweep_at {
            self.sweep(now);
        }
        let mut state = WindowState::new(now, req.window.seconds, req.window.sliding);
        state.add(now, req.window.seconds, req.units);
        let entry = Entry { key: encode(&req.key, req.window.seconds), state };
        self.table.insert_unique(hash, entry, |e| stored_hash(hasher, e));
    }
}

/// The first request of `batch` that cannot be admitted, and the longest wait of all that
/// cannot, with the shards of the batch locked.
fn refused(
    guards: &[MutexGuard<'_, Shard>],
    hashes: &[u64],
    slots: &[usize],
    now: Timestamp,
    batch: &[ChargeRequest<'_>],
) -> Result<Option<(usize, Option<Duration>)>, StoreError> {
    let mut refused: Option<(usize, Option<Duration>)> = None;
    for (j, req) in batch.iter().enumerate() {
        let (hash, slot) =
            (hashes.get(j).copied().unwrap_or(0), slots.get(j).copied().unwrap_or(0));
        let shard = guards.get(slot).ok_or_else(|| StoreError::new("shard lock missing"))?;
        let earlier: u64 = batch
            .iter()
            .take(j)
            .filter(|r| r.key == req.key)
            .map(|r| r.units)
            .fold(0, u64::saturating_add);
        if let Some(wait) = refusal(shard.find(hash, &Probe::of(&req.key)), now, req, earlier) {
            refused = Some(match refused {
                None => (j, wait),
                // `None` (never) outlasts every wait.
                Some((first, w)) => (first, w.zip(wait).map(|(a, b)| a.max(b))),
            });
        }
    }
    Ok(refused)
}

impl MemoryStore {
    /// [`CounterStore::charge`] of a batch of one request.
    #[inline]
    fn charge_one(
        &self,
        now: Timestamp,
        req: &ChargeRequest<'_>,
    ) -> Result<ChargeOutcome, StoreError> {
        let probe = Probe::of(&req.key);
        let hash = probe.hash(&self.hasher);
        let shard =
            self.shards.get(self.shard_of(hash)).ok_or_else(|| StoreError::new("no shard"))?;
        let mut shard = shard.0.lock();
        // One lookup both checks and charges an existing counter.
        if let Some(e) = shard.find_mut(hash, &probe) {
            // The common case, in one step: the counter's window is the request's, and
            // there is room.
            if e.matches(req) && e.state.try_add(now, req.window.seconds, req.units, req.max) {
                return Ok(ChargeOutcome::Admitted { at: now });
            }
            if let Some(retry_after) = refusal(Some(e), now, req, 0) {
                return Ok(ChargeOutcome::Refused { index: 0, retry_after });
            }
            e.charge(now, req);
        } else {
            if let Some(retry_after) = refusal(None, now, req, 0) {
                return Ok(ChargeOutcome::Refused { index: 0, retry_after });
            }
            shard.insert(&self.hasher, hash, now, req);
        }
        Ok(ChargeOutcome::Admitted { at: now })
    }

    /// [`CounterStore::charge`] of a batch of several requests (or none).
    #[inline(never)]
    fn charge_batch(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        let hashes: SmallVec<[u64; 8]> = batch.iter().map(|r| self.hash(&r.key)).collect();
        let (mut guards, slots) = self.lock(&hashes);

        // Check every request before charging anything.
        if let Some((index, retry_after)) = refused(&guards, &hashes, &slots, now, batch)? {
            return Ok(ChargeOutcome::Refused { index, retry_after });
        }
        for (j, req) in batch.iter().enumerate() {
            let (hash, slot) =
                (hashes.get(j).copied().unwrap_or(0), slots.get(j).copied().unwrap_or(0));
            let shard =
                guards.get_mut(slot).ok_or_else(|| StoreError::new("shard lock missing"))?;
            shard.apply(&self.hasher, hash, now, req);
        }
        Ok(ChargeOutcome::Admitted { at: now })
    }
}

impl CounterStore for MemoryStore {
    fn count(&self, now: Timestamp, request: &ChargeRequest<'_>) -> Result<u64, StoreError> {
        let hash = self.hash(&request.key);
        let shard =
            self.shards.get(self.shard_of(hash)).ok_or_else(|| StoreError::new("no shard"))?;
        let shard = shard.0.lock();
        Ok(shard.find(hash, &Probe::of(&request.key)).map_or(0, |e| e.count(now, request)))
    }

    fn check(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        let hashes: SmallVec<[u64; 8]> = batch.iter().map(|r| self.hash(&r.key)).collect();
        let (guards, slots) = self.lock(&hashes);
        Ok(match refused(&guards, &hashes, &slots, now, batch)? {
            Some((index, retry_after)) => ChargeOutcome::Refused { index, retry_after },
            None => ChargeOutcome::Admitted { at: now },
        })
    }

    fn charge(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        // One counter (the common case): one lock, no bookkeeping.
        match batch {
            [req] => self.charge_one(now, req),
            _ => self.charge_batch(now, batch),
        }
    }

    fn refund(
        &self,
        now: Timestamp,
        charged_at: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError> {
        let hashes: SmallVec<[u64; 8]> = batch.iter().map(|r| self.hash(&r.key)).collect();
        let (mut guards, slots) = self.lock(&hashes);
        for (j, req) in batch.iter().enumerate() {
            let (hash, slot) =
                (hashes.get(j).copied().unwrap_or(0), slots.get(j).copied().unwrap_or(0));
            let shard =
                guards.get_mut(slot).ok_or_else(|| StoreError::new("shard lock missing"))?;
            if let Some(e) = shard.find_mut(hash, &Probe::of(&req.key)) {
                if e.matches(req) {
                    e.state.remove(now, charged_at, req.window.seconds, req.units);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::store::WindowSpec;

    fn req<'a>(counter: &'a str, grant: &'a str, max: u64, units: u64) -> ChargeRequest<'a> {
        ChargeRequest {
            key: CounterKey { counter, scope: ScopeKey::Grant(grant) },
            window: WindowSpec { seconds: 60, sliding: false },
            max,
            units,
        }
    }

    #[test]
    fn count_reads_without_charging() {
        let store = MemoryStore::with_shards(4);
        let now = Timestamp::from_unix_seconds(10.0);
        assert_eq!(store.count(now, &req("a", "g", 5, 1)).unwrap(), 0);
        assert!(store.is_empty(), "a count creates no counter");
        store.charge(now, &[req("a", "g", 5, 2)]).unwrap();
        for _ in 0..3 {
            assert_eq!(store.count(now, &req("a", "g", 5, 1)).unwrap(), 2);
        }
        assert_eq!(store.count(now, &req("a", "h", 5, 1)).unwrap(), 0, "another grant");
        // The next fixed window starts from zero.
        assert_eq!(
            store.count(Timestamp::from_unix_seconds(60.0), &req("a", "g", 5, 1)).unwrap(),
            0
        );
    }

    #[test]
    fn keys_do_not_collide_across_parts() {
        let a = CounterKey { counter: "ab", scope: ScopeKey::Grant("c") };
        let b = CounterKey { counter: "a", scope: ScopeKey::Grant("bc") };
        let stored = |k: &CounterKey<'_>| encode(k, 60).to_vec();
        assert!(Probe::of(&a).matches(&stored(&a)));
        assert!(!Probe::of(&b).matches(&stored(&a)));
        let none =
            CounterKey { counter: "a", scope: ScopeKey::Session { grant: "g", session: None } };
        let empty =
            CounterKey { counter: "a", scope: ScopeKey::Session { grant: "g", session: Some("") } };
        assert!(!Probe::of(&empty).matches(&stored(&none)));
        assert!(!Probe::of(&none).matches(&stored(&empty)));
    }

    #[test]
    fn an_entry_is_32_bytes_and_its_hash_is_found_again_from_its_key() {
        assert_eq!(std::mem::size_of::<Entry>(), 32);
        let store = MemoryStore::with_shards(1);
        let keys = [
            CounterKey { counter: "c", scope: ScopeKey::Global },
            CounterKey { counter: "c", scope: ScopeKey::Grant("g") },
            CounterKey { counter: "c", scope: ScopeKey::Session { grant: "g", session: None } },
            CounterKey { counter: "", scope: ScopeKey::Session { grant: "", session: Some("") } },
            CounterKey {
                counter: "c",
                scope: ScopeKey::Session { grant: "g", session: Some("s") },
            },
        ];
        let now = Timestamp::from_unix_seconds(10.0);
        for key in keys {
            let state = WindowState::new(now, 60, false);
            let e = Entry { key: encode(&key, 60), state };
            assert_eq!(stored_hash(&store.hasher, &e), store.hash(&key), "{key:?}");
            assert_eq!(e.window_seconds(), 60);
        }
        // The table grows (and rehashes every key from its encoding) many times over; every
        // counter is still found and counted.
        for i in 0..5000 {
            let g = format!("grant-{i}");
            store.charge(now, &[req("c", &g, 2, 1)]).unwrap();
        }
        for i in 0..5000 {
            let g = format!("grant-{i}");
            assert!(matches!(
                store.charge(now, &[req("c", &g, 2, 1)]).unwrap(),
                ChargeOutcome::Admitted { .. }
            ));
            assert!(matches!(
                store.charge(now, &[req("c", &g, 2, 1)]).unwrap(),
                ChargeOutcome::Refused { .. }
            ));
        }
        assert_eq!(store.len(), 5000);
    }

    #[test]
    fn batch_is_all_or_nothing() {
        let store = MemoryStore::with_shards(4);
        let now = Timestamp::from_unix_seconds(10.0);
        let batch = [req("a", "g", 5, 1), req("b", "g", 1, 1)];
        assert!(matches!(store.charge(now, &batch).unwrap(), ChargeOutcome::Admitted { .. }));
        // `b` is exhausted, so `a` must not be charged either.
        assert!(matches!(
            store.charge(now, &batch).unwrap(),
            ChargeOutcome::Refused { index: 1, .. }
        ));
        let only_a = [req("a", "g", 2, 1)];
        assert!(matches!(store.charge(now, &only_a).unwrap(), ChargeOutcome::Admitted { .. }));
        assert!(matches!(store.charge(now, &only_a).unwrap(), ChargeOutcome::Refused { .. }));
    }

    #[test]
    fn check_answers_like_charge_and_charges_nothing() {
        let store = MemoryStore::with_shards(4);
        let now = Timestamp::from_unix_seconds(10.0);
        let batch = [req("a", "g", 2, 1), req("b", "g", 1, 1)];
        for _ in 0..3 {
            assert!(matches!(store.check(now, &batch).unwrap(), ChargeOutcome::Admitted { .. }));
        }
        assert!(store.is_empty(), "a check creates no counter");
        assert!(matches!(store.charge(now, &batch).unwrap(), ChargeOutcome::Admitted { .. }));
        let checked = store.check(now, &batch).unwrap();
        assert_eq!(checked, store.charge(now, &batch).unwrap());
        assert!(matches!(checked, ChargeOutcome::Refused { index: 1, .. }), "{checked:?}");
        // `a` still has one unit of room: the checks charged nothing.
        assert!(matches!(
            store.charge(now, &[req("a", "g", 2, 1)]).unwrap(),
            ChargeOutcome::Admitted { .. }
        ));
        let too_big = [req("c", "g", 1, 2)];
        assert!(matches!(
            store.check(now, &too_big).unwrap(),
            ChargeOutcome::Refused { index: 0, retry_after: None }
        ));
    }

    #[test]
    fn same_counter_twice_in_a_batch_counts_both() {
        let store = MemoryStore::new();
        let now = Timestamp::from_unix_seconds(10.0);
        let batch = [req("calls", "g", 3, 1), req("calls", "g", 3, 2)];
        assert!(matches!(store.charge(now, &batch).unwrap(), ChargeOutcome::Admitted { .. }));
        assert!(matches!(
            store.charge(now, &batch).unwrap(),
            ChargeOutcome::Refused { index: 0, .. }
        ));
    }

    #[test]
    fn expired_windows_are_dropped() {
        let store = MemoryStore::with_shards(1);
        for i in 0..1000 {
            let g = format!("grant-{i}");
            store.charge(Timestamp::from_unix_seconds(10.0), &[req("c", &g, 5, 1)]).unwrap();
        }
        assert_eq!(store.len(), 1000);
        store.retain_recent(Timestamp::from_unix_seconds(60.0));
        assert_eq!(store.len(), 0);
        // And by itself, as it is used in later windows.
        for i in 0..1000 {
            let g = format!("grant-{i}");
            store.charge(Timestamp::from_unix_seconds(70.0), &[req("c", &g, 5, 1)]).unwrap();
        }
        for i in 0..2000 {
            let g = format!("other-{i}");
            store.charge(Timestamp::from_unix_seconds(130.0), &[req("c", &g, 5, 1)]).unwrap();
        }
        assert!(store.len() <= 2000 + MIN_SWEEP, "{}", store.len());
    }
}
