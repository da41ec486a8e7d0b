//! The counter-store contract.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::clock::Timestamp;

/// Whose count a counter keeps: the scope part of a counter's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKey<'a> {
    /// One count for every caller.
    Global,
    /// One count per grant.
    Grant(&'a str),
    /// One count per (grant, session); calls without a session share their grant's
    /// "no session" bucket.
    Session {
        /// The caller's grant.
        grant: &'a str,
        /// The session, if any.
        session: Option<&'a str>,
    },
}

/// A counter's identity: its name and its scope value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterKey<'a> {
    /// The counter's name, as the policy names it.
    pub counter: &'a str,
    /// Whose count.
    pub scope: ScopeKey<'a>,
}

/// The window of a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowSpec {
    /// The window's length in seconds (at least 1).
    pub seconds: u64,
    /// Sliding (at most `max` in any interval of this length) rather than fixed and aligned to
    /// the Unix epoch.
    pub sliding: bool,
}

/// One counter to check and charge, as part of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeRequest<'a> {
    /// Which counter.
    pub key: CounterKey<'a>,
    /// Its window.
    pub window: WindowSpec,
    /// The most units this request admits per window (counting the units that earlier requests
    /// of the same batch add to the same counter).
    pub max: u64,
    /// The units this request charges.
    pub units: u64,
}

/// The answer of a store to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Every counter was charged, at the store's time `at` (pass it back to refund).
    Admitted {
        /// When the store charged the batch, by the store's clock.
        at: Timestamp,
    },
    /// No counter was charged.
    Refused {
        /// The index in the batch of the first request that could not be admitted.
        index: usize,
        /// How long until every exhausted counter would admit its request, or `None` when the
        /// batch can never be admitted (its own units on one counter exceed that counter's
        /// `max`), however long one waits.
        retry_after: Option<Duration>,
    },
}

/// What kind of failure a [`StoreError`] is, for an embedder that reacts differently to each
/// (retry on a timeout, alert on a protocol error). Every kind denies the call (fail-closed)
/// unless the evaluator is configured to fail open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store did not answer in time.
    Timeout,
    /// The store cannot be reached (connection refused, dropped, not connected).
    Unavailable,
    /// The store answered something the client does not understand (a malformed reply, a
    /// script error).
    Protocol,
    /// The store is configured wrongly (an invalid URL, bad options).
    Config,
    /// Any other failure, such as corrupt internal state.
    Other,
}

/// A counter store failed (unreachable, timed out, corrupt state).
///
/// ```
/// use mcp_policy::{StoreError, StoreErrorKind};
/// use std::error::Error as _;
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let e = StoreError::with_kind(StoreErrorKind::Unavailable, "cannot connect to Redis")
///     .with_source(io);
/// assert_eq!(e.kind(), StoreErrorKind::Unavailable);
/// assert_eq!(e.to_string(), "counter store error: cannot connect to Redis");
/// assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("refused"));
/// assert_eq!(StoreError::new("no shard").kind(), StoreErrorKind::Other);
/// ```
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

impl StoreError {
    /// A store error of kind [`StoreErrorKind::Other`] with a message in plain words.
    pub fn new(message: impl Into<String>) -> Self {
        StoreError::with_kind(StoreErrorKind::Other, message)
    }

    /// A store error of kind `kind` with a message in plain words.
    pub fn with_kind(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        StoreError { kind, message: message.into(), source: None }
    }

    /// The same error, caused by `source` (returned by [`Error::source`]).
    #[must_use]
    pub fn with_source(mut self, source: impl Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "counter store error: {}", self.message)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Two store errors are equal when their kind and message are (the source is not compared).
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for StoreError {}

/// Where counters live. The contract:
///
/// - [`charge`](CounterStore::charge) checks and charges a whole batch atomically: either every
///   request is admitted and charged, or none is charged. Request `j` is admitted when the
///   counter's count in its window, plus the units of the earlier requests of the batch on the
///   same counter, plus its own units, is at most its `max`.
/// - [`refund`](CounterStore::refund) returns the units of an admitted batch where they still
///   count: in the same fixed window, or, for a sliding window, while they are inside it.
/// - [`check`](CounterStore::check) answers as `charge` would, and charges nothing.
/// - Expired state is dropped, so memory is bounded by the counters active in their window.
///
/// Stores that do I/O implement [`AsyncCounterStore`] instead.
pub trait CounterStore: Send + Sync {
    /// Checks and charges `batch` atomically at time `now`.
    fn charge(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError>;

    /// Returns the units of a batch admitted at `charged_at`, as seen at `now`.
    fn refund(
        &self,
        now: Timestamp,
        charged_at: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError>;

    /// Checks `batch` as [`charge`](CounterStore::charge) would at time `now`, and charges
    /// nothing: [`ChargeOutcome::Admitted`] when every request has room (nothing was charged),
    /// else [`ChargeOutcome::Refused`] with the index and wait that `charge` would answer.
    ///
    /// The evaluator asks this before it answers `approve`, so that nobody is asked to approve a
    /// call that a limit would then refuse. The default answers `Admitted` without looking: a
    /// store that does not implement it still enforces every limit when the call is charged,
    /// but cannot spare a human the prompt for a call that will be limited.
    fn check(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        let _ = batch;
        Ok(ChargeOutcome::Admitted { at: now })
    }

    /// The units counted against `request`'s counter (its key and window) at time `now`,
    /// charging nothing; `request`'s own `units` and `max` are not used. For
    /// [`Evaluator::explain`](crate::Evaluator::explain), which shows each counter's count.
    ///
    /// The default fails (an explanation then says the count is unknown): a store that does
    /// not implement it loses nothing else.
    fn count(&self, now: Timestamp, request: &ChargeRequest<'_>) -> Result<u64, StoreError> {
        let _ = (now, request);
        Err(StoreError::new("this counter store cannot report a count"))
    }
}

/// The asynchronous face of a counter store, for stores that do I/O (such as Redis) and must not
/// block an executor's thread. Every [`CounterStore`] is one, at no cost.
pub trait AsyncCounterStore: Send + Sync {
    /// Checks and charges `batch` atomically; see [`CounterStore::charge`].
    fn charge_async(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> impl Future<Output = Result<ChargeOutcome, StoreError>> + Send;

    /// Returns the units of an admitted batch; see [`CounterStore::refund`].
    fn refund_async(
        &self,
        now: Timestamp,
        charged_at: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Checks `batch` without charging anything; see [`CounterStore::check`], whose default
    /// (`Admitted`, without looking) this shares.
    fn check_async(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> impl Future<Output = Result<ChargeOutcome, StoreError>> + Send {
        let _ = batch;
        std::future::ready(Ok(ChargeOutcome::Admitted { at: now }))
    }
}

impl<S: CounterStore> AsyncCounterStore for S {
    fn charge_async(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> impl Future<Output = Result<ChargeOutcome, StoreError>> + Send {
        std::future::ready(self.charge(now, batch))
    }

    fn refund_async(
        &self,
        now: Timestamp,
        charged_at: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(self.refund(now, charged_at, batch))
    }

    fn check_async(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> impl Future<Output = Result<ChargeOutcome, StoreError>> + Send {
        std::future::ready(self.check(now, batch))
    }
}

impl<S: CounterStore + ?Sized> CounterStore for std::sync::Arc<S> {
    fn charge(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        (**self).charge(now, batch)
    }

    fn refund(
        &self,
        now: Timestamp,
        charged_at: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<(), StoreError> {
        (**self).refund(now, charged_at, batch)
    }

    fn check(
        &self,
        now: Timestamp,
        batch: &[ChargeRequest<'_>],
    ) -> Result<ChargeOutcome, StoreError> {
        (**self).check(now, batch)
    }

    fn count(&self, now: Timestamp, request: &ChargeRequest<'_>) -> Result<u64, StoreError> {
        (**self).count(now, request)
    }
}
