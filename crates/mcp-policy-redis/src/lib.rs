//! # mcp-policy-redis
//!
//! A counter store on Redis (or Valkey) for [`mcp-policy`](mcp_policy), so that a server that
//! runs as several replicas keeps one count: "10 a minute" stays 10 a minute, not 10 per replica.
//!
//! - **One round trip per decision.** All counters of a call are checked and charged by one Lua
//!   script (`EVALSHA`, loaded once and reloaded after `NOSCRIPT`), atomically: every counter is
//!   charged or none is. A call with one fixed-window limit (the common case) costs one
//!   `INCRBY` in a script of its own.
//! - **One clock.** Windows use the Redis server's clock (`TIME`, and the expiry of a fixed
//!   window's key), so replicas with skewed clocks agree. Needs Redis 7.0 or Valkey 7.2.
//! - **Only live windows.** Every counter key expires when its window can no longer matter.
//! - **Bounded waiting.** A call to Redis that takes longer than the timeout (default 50 ms)
//!   fails, and the evaluator denies (fail-closed) unless the embedder chose fail-open. The
//!   connection comes back by itself when Redis does.
//!
//! ```no_run
//! use mcp_policy::{Evaluator, Policy, ToolCall};
//! use mcp_policy_redis::RedisStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
//! let evaluator = Evaluator::with_store(Policy::from_path("policy.json")?, store);
//! let call = ToolCall::new("cancel_run").with_grant("agent-7");
//! let decision = evaluator.evaluate_async(&call).await;
//! # Ok(()) }
//! ```
//!
//! See [`docs/redis.md`] for the key layout, Redis Cluster, and failure behaviour.
//!
//! [`docs/redis.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/redis.md

use std::fmt::Write as _;
use std::time::Duration;

use mcp_policy::{
    AsyncCounterStore, ChargeOutcome, ChargeRequest, CounterKey, ScopeKey, StoreError,
    StoreErrorKind, Timestamp,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, Value};

const CHARGE: &str = include_str!("charge.lua");
const CHARGE_ONE: &str = include_str!("charge_one.lua");
const REFUND: &str = include_str!("refund.lua");
const COUNT: &str = include_str!("count.lua");

/// Counts up to this stay exact in the scripts' doubles.
const EXACT: u64 = 1 << 53;

/// The default key prefix. The braces make it a Redis Cluster hash tag: every key of the store
/// lives in one slot, so that a batch stays atomic (see [`docs/redis.md`]).
///
/// [`docs/redis.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/redis.md
pub const DEFAULT_PREFIX: &str = "{mcp-policy}";

/// The default time a decision waits for Redis.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// How a [`RedisStore`] names its keys and how long it waits.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    prefix: String,
    timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions { prefix: DEFAULT_PREFIX.to_owned(), timeout: DEFAULT_TIMEOUT }
    }
}

impl RedisOptions {
    /// The default options: prefix [`DEFAULT_PREFIX`], timeout [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        RedisOptions::default()
    }

    /// The prefix of every key, for several policies or applications in one Redis.
    ///
    /// ```
    /// let options = mcp_policy_redis::RedisOptions::new().prefix("{billing-mcp}");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one decision waits for Redis before it fails (and the evaluator denies).
    ///
    /// ```
    /// let options = mcp_policy_redis::RedisOptions::new()
    ///     .timeout(std::time::Duration::from_millis(20));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A [`mcp_policy::AsyncCounterStore`] on Redis. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    options: RedisOptions,
    charge: Script,
    charge_one: Script,
    refund: Script,
    count: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("options", &self.options).finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to Redis at `url` (`redis://host:port/db`) with the default options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        RedisStore::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to Redis at `url` with `options`. The connection reconnects by itself after
    /// Redis restarts; until it is back, decisions fail (and deny) after the timeout.
    ///
    /// Fails with [`StoreErrorKind::Config`] when the server is older than Redis 7.0 (or
    /// Valkey 7.2): the store needs `PEXPIRETIME`.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|e| {
            StoreError::with_kind(StoreErrorKind::Config, format!("invalid Redis URL: {e}"))
                .with_source(e)
        })?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(options.timeout))
            .set_connection_timeout(Some(options.timeout.max(Duration::from_millis(250))))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connect = ConnectionManager::new_with_config(client, config);
        let connection = tokio::time::timeout(options.timeout.max(Duration::from_secs(2)), connect)
            .await
            .map_err(|e| {
                StoreError::with_kind(StoreErrorKind::Timeout, "timed out connecting to Redis")
                    .with_source(e)
            })?
            .map_err(|e| {
                StoreError::with_kind(
                    StoreErrorKind::Unavailable,
                    format!("cannot connect to Redis: {e}"),
                )
                .with_source(e)
            })?;
        let store = RedisStore {
            connection,
            options,
            charge: Script::new(CHARGE),
            charge_one: Script::new(CHARGE_ONE),
            refund: Script::new(REFUND),
            count: Script::new(COUNT),
        };
        store.require_pexpiretime().await?;
        Ok(store)
    }

    /// Fails unless the server knows `PEXPIRETIME` (Redis 7.0, Valkey 7.2): fixed windows are
    /// named by their keys' expiry, and an older server would fail (and deny) every call.
    async fn require_pexpiretime(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let probe = format!("{}:version-check", self.options.prefix);
        let mut cmd = redis::cmd("PEXPIRETIME");
        cmd.arg(probe);
        match self.with_timeout("version check", cmd.query_async::<i64>(&mut connection)).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == StoreErrorKind::Protocol => Err(StoreError::with_kind(
                StoreErrorKind::Config,
                format!(
                    "the Redis server does not run `PEXPIRETIME`: mcp-policy-redis needs \
                     Redis 7.0 or later, or Valkey 7.2 or later ({})",
                    e.message()
                ),
            )),
            Err(e) => Err(e),
        }
    }

    /// The Redis key of a counter with the given window.
    ///
    /// `PREFIX:COUNTER:WINDOW:SCOPE`, where `WINDOW` is the length in seconds followed by `f2`
    /// (fixed: an integer that expires with its window) or `s` (sliding: a hash of buckets), and `SCOPE` is `global`, `g:GRANT`, `s:GRANT:SESSION` or
    /// `n:GRANT` (a session-scoped call without a session). Names, grants and sessions are
    /// percent-encoded where they hold `%`, `:`, `{`, `}` or control characters, so no two
    /// counters share a key.
    ///
    /// ```
    /// # async fn f(store: mcp_policy_redis::RedisStore) {
    /// use mcp_policy::{CounterKey, ScopeKey, WindowSpec};
    /// let key = CounterKey { counter: "cancel_run_rate", scope: ScopeKey::Grant("alice") };
    /// let window = WindowSpec { seconds: 60, sliding: false };
    /// assert_eq!(store.key(&key, window), "{mcp-policy}:cancel_run_rate:60f2:g:alice");
    /// # }
    /// ```
    pub fn key(&self, key: &CounterKey<'_>, window: mcp_policy::WindowSpec) -> String {
        let mut k = String::with_capacity(self.options.prefix.len() + 64);
        k.push_str(&self.options.prefix);
        k.push(':');
        encode(&mut k, key.counter);
        let _ = write!(k, ":{}{}:", window.seconds, if window.sliding { "s" } else { "f2" });
        match key.scope {
            ScopeKey::Global => k.push_str("global"),
            ScopeKey::Grant(g) => {
                k.push_str("g:");
                encode(&mut k, g);
            }
            ScopeKey::Session { grant, session: Some(s) } => {
                k.push_str("s:");
                encode(&mut k, grant);
                k.push(':');
                encode(&mut k, s);
            }
            ScopeKey::Session { grant, session: None } => {
                k.push_str("n:");
                encode(&mut k, grant);
            }
        }
        k
    }

    async fn with_timeout<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.options.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let kind = if e.is_timeout() {
                    StoreErrorKind::Timeout
                } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped()
                {
                    StoreErrorKind::Unavailable
                } else {
                    StoreErrorKind::Protocol
                };
                Err(StoreError::with_kind(kind, format!("Redis {what} failed: {e}")).with_source(e))
            }
            Err(elapsed) => Err(StoreError::with_kind(
                StoreErrorKind::Timeout,
                format!("Redis {what} timed out after {} ms", self.options.timeout.as_millis()),
            )
            .with_source(elapsed)),
        }
    }
}

/// Appends `s`, percent-encoding `%`, `:`, `{`, `}` and control characters.
fn encode(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '%' | ':' | '{' | '}' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

fn micros(seconds: u64) -> u64 {
    seconds.saturating_mul(1_000_000)
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

impl RedisStore {
    /// Runs the charge script on `batch`; with `check`, read-only (nothing is charged).
    async fn run_charge(
        &self,
        batch: &[ChargeRequest<'_>],
        check: bool,
    ) -> Result<ChargeOutcome, StoreError> {
        // One fixed-window counter whose counts stay exact: the cheap script.
        if let [one] = batch {
            let fits = one.units <= one.max && one.max <= EXACT - one.units;
            if !check && !one.window.sliding && fits {
                return self.charge_one(one).await;
            }
        }
        let mut invocation = self.charge.prepare_invoke();
        invocation.arg(batch.len());
        for req in batch {
            invocation.key(self.key(&req.key, req.window));
            invocation
                .arg(micros(req.window.seconds))
                .arg(if req.window.sliding { "1" } else { "0" })
                .arg(req.max)
                .arg(req.units);
        }
        if check {
            invocation.arg("check");
        }
        let what = if check { "check" } else { "charge" };
        let mut connection = self.connection.clone();
        let reply: Vec<Value> =
            self.with_timeout(what, invocation.invoke_async(&mut connection)).await?;
        match reply.as_slice() {
            [ok, now] if int(ok) == Some(1) => {
                let now = int(now).ok_or_else(|| {
                    StoreError::with_kind(
                        StoreErrorKind::Protocol,
                        "malformed reply from the charge script",
                    )
                })?;
                let nanos = u64::try_from(now).unwrap_or(0).saturating_mul(1000);
                Ok(ChargeOutcome::Admitted { at: Timestamp::from_unix_nanos(nanos) })
            }
            [ok, index, retry] if int(ok) == Some(0) => {
                let index = int(index).and_then(|i| usize::try_from(i).ok());
                let index = index.ok_or_else(|| {
                    StoreError::with_kind(
                        StoreErrorKind::Protocol,
                        "malformed reply from the charge script",
                    )
                })?;
                // A negative wait from the script: the batch can never be admitted.
                let retry_after = match int(retry) {
                    Some(us) if us >= 0 => {
                        Some(Duration::from_micros(u64::try_from(us).unwrap_or(0)))
                    }
                    _ => None,
                };
                Ok(ChargeOutcome::Refused { index, retry_after })
            }
            _ => Err(StoreError::with_kind(
                StoreErrorKind::Protocol,
                "malformed reply from the charge script",
            )),
        }
    }
}

impl RedisStore {
    /// The common case, one fixed-window counter, in one `INCRBY` (`charge_one.lua`).
    async fn charge_one(&self, req: &ChargeRequest<'_>) -> Result<ChargeOutcome, StoreError> {
        let mut invocation = self.charge_one.key(self.key(&req.key, req.window));
        invocation.arg(req.window.seconds).arg(req.units).arg(req.max);
        let mut connection = self.connection.clone();
        let reply: i64 =
            self.with_timeout("charge", invocation.invoke_async(&mut connection)).await?;
        if reply >= 0 {
            // `reply` is the key's expiry, its window's last millisecond: the charge is dated
            // at the window's last microsecond, so that a refund finds the same window.
            let end_us = reply.saturating_add(1).saturating_mul(1000).saturating_sub(1);
            let nanos = u64::try_from(end_us).unwrap_or(0).saturating_mul(1000);
            Ok(ChargeOutcome::Admitted { at: Timestamp::from_unix_nanos(nanos) })
        } else {
            let wait = u64::try_from(-1 - reply).unwrap_or(0);
            Ok(ChargeOutcome::Refused { index: 0, retry_after: Some(Duration::from_micros(wait)) })
        }
    }

    /// The units counted against `request`'s counter (its key and window) now, on the
    /// server's clock, charging nothing; `request`'s `units` and `max` are not used. One round
    /// trip (a read-only script); the same count a charge would see.
    ///
    /// This is what [`mcp_policy::CounterStore::count`] answers for `Evaluator::explain`; the
    /// asynchronous store trait has no such method yet, so it is offered here.
    ///
    /// ```no_run
    /// # async fn f(store: mcp_policy_redis::RedisStore) -> Result<(), mcp_policy::StoreError> {
    /// use mcp_policy::{ChargeRequest, CounterKey, ScopeKey, WindowSpec};
    /// let request = ChargeRequest {
    ///     key: CounterKey { counter: "cancel_run_rate", scope: ScopeKey::Grant("alice") },
    ///     window: WindowSpec { seconds: 60, sliding: false },
    ///     max: 10,
    ///     units: 1,
    /// };
    /// let used = store.count(&request).await?;
    /// # Ok(()) }
    /// ```
    pub async fn count(&self, request: &ChargeRequest<'_>) -> Result<u64, StoreError> {
        let mut invocation = self.count.key(self.key(&request.key, request.window));
        invocation.arg(micros(request.window.seconds)).arg(if request.window.sliding {
            "1"
        } else {
            "0"
        });
        let mut connection = self.connection.clone();
        let reply: Value =
            self.with_timeout("count", invocation.invoke_async(&mut connection)).await?;
        int(&reply).and_then(|n| u64::try_from(n).ok()).ok_or_else(|| {
            StoreError::with_kind(StoreErrorKind::Protocol, "malformed reply from the count script")
        })
    }
}

impl AsyncCounterStore for RedisStore {
    async fn charge_async(
        &self,
        _now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        self.run_charge(batch, false).await
    }

    /// Checks the batch with the charge script in its read-only mode (it returns before any
    /// write): one round trip, on the server's clock, charging nothing.
    async fn check_async(
        &self,
        _now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        self.run_charge(batch, true).await
    }

    async fn refund_async(
        &self,
        _now: Timestamp,
        charged_at: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError> {
        let mut invocation = self.refund.prepare_invoke();
        invocation.arg(batch.len()).arg(charged_at.as_unix_nanos() / 1000);
        for req in batch {
            invocation.key(self.key(&req.key, req.window));
            invocation
                .arg(micros(req.window.seconds))
                .arg(if req.window.sliding { "1" } else { "0" })
                .arg(req.units);
        }
        let mut connection = self.connection.clone();
        let _: Value =
            self.with_timeout("refund", invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_keys_apart() {
        let mut a = String::new();
        encode(&mut a, "a:b{c}%\n");
        assert_eq!(a, "a%3Ab%7Bc%7D%25%0A");
    }
}
