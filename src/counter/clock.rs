//! Time: a [`Timestamp`] type and the [`Clock`] trait, with a [`ManualClock`] for tests and replays.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: nanoseconds since the Unix epoch (UTC).
///
/// A `Timestamp` can hold any `u64` of nanoseconds (up to the year 2554), but the evaluator
/// only decides at times in the **supported range**, from the epoch up to the end of the year
/// 2500 ([`Timestamp::SUPPORTED_MAX`]): a clock that reads a time past it (a saturated
/// conversion, a broken clock) makes every decision that needs the time a deny that says the
/// clock is out of range. Use [`Timestamp::try_from_unix_seconds`] to reject such times at the
/// edge of a program.
///
/// ```
/// use mcp_policy::Timestamp;
/// let t = Timestamp::from_unix_seconds(1_767_225_600.5);
/// assert_eq!(t.as_unix_nanos(), 1_767_225_600_500_000_000);
/// assert!(t.is_supported());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The last supported time: 2500-12-31T23:59:59.999999999Z (one nanosecond before
    /// 2501-01-01T00:00:00Z, Unix time 16,756,761,600 s). The evaluator denies a call that needs
    /// the time when the clock reads later than this.
    pub const SUPPORTED_MAX: Timestamp = Timestamp(16_756_761_600_000_000_000 - 1);

    /// A time past the supported range, given for input that has no place in it.
    const OUT_OF_RANGE: Timestamp = Timestamp(u64::MAX);

    /// A timestamp from nanoseconds since the Unix epoch.
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// A timestamp from (possibly fractional) seconds since the Unix epoch.
    ///
    /// Out-of-range input never gives a time inside the supported range by accident: a
    /// negative value (before 1970), NaN, and a value past
    /// [`SUPPORTED_MAX`](Timestamp::SUPPORTED_MAX) (infinity included) give a time past
    /// `SUPPORTED_MAX`, at which the evaluator denies. Prefer
    /// [`try_from_unix_seconds`](Timestamp::try_from_unix_seconds) for input from outside.
    ///
    /// ```
    /// use mcp_policy::Timestamp;
    /// assert!(!Timestamp::from_unix_seconds(1e300).is_supported());
    /// assert!(!Timestamp::from_unix_seconds(f64::INFINITY).is_supported());
    /// assert!(!Timestamp::from_unix_seconds(-1.0).is_supported());
    /// assert!(!Timestamp::from_unix_seconds(f64::NAN).is_supported());
    /// assert_eq!(Timestamp::from_unix_seconds(-0.0), Timestamp::EPOCH);
    /// ```
    pub fn from_unix_seconds(seconds: f64) -> Self {
        if seconds.is_nan() || seconds < 0.0 {
            return Timestamp::OUT_OF_RANGE;
        }
        // Saturating float-to-int conversion is the documented behaviour of `as`; every value
        // that saturates lies past `SUPPORTED_MAX`.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let nanos = (seconds * 1e9).round() as u64;
        Timestamp(nanos)
    }

    /// A timestamp from (possibly fractional) seconds since the Unix epoch, or `None` when
    /// `seconds` is NaN, infinite, negative, or later than
    /// [`SUPPORTED_MAX`](Timestamp::SUPPORTED_MAX).
    ///
    /// ```
    /// use mcp_policy::Timestamp;
    /// assert_eq!(Timestamp::try_from_unix_seconds(60.5), Some(Timestamp::from_unix_nanos(60_500_000_000)));
    /// assert_eq!(Timestamp::try_from_unix_seconds(0.0), Some(Timestamp::EPOCH));
    /// assert_eq!(Timestamp::try_from_unix_seconds(1e300), None);
    /// assert_eq!(Timestamp::try_from_unix_seconds(f64::NAN), None);
    /// assert_eq!(Timestamp::try_from_unix_seconds(-1.0), None);
    /// assert_eq!(Timestamp::try_from_unix_seconds(16_756_761_600.0), None); // 2501-01-01
    /// assert!(Timestamp::try_from_unix_seconds(16_756_761_599.0).is_some());
    /// ```
    pub fn try_from_unix_seconds(seconds: f64) -> Option<Self> {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        let t = Timestamp::from_unix_seconds(seconds);
        // The product is compared as a float too, so a value just past the range that the
        // conversion rounds back into it is still refused.
        #[allow(clippy::cast_precision_loss)]
        let max = Timestamp::SUPPORTED_MAX.0 as f64;
        (t.is_supported() && seconds * 1e9 <= max).then_some(t)
    }

    /// Whether this time lies in the supported range (the epoch to
    /// [`SUPPORTED_MAX`](Timestamp::SUPPORTED_MAX), both included).
    pub const fn is_supported(self) -> bool {
        self.0 <= Timestamp::SUPPORTED_MAX.0
    }

    /// The timestamp of a [`SystemTime`]; a time before the epoch gives a time past the
    /// supported range (the evaluator then denies rather than count in a wrong window).
    pub fn from_system_time(t: SystemTime) -> Self {
        let Ok(d) = t.duration_since(UNIX_EPOCH) else { return Timestamp::OUT_OF_RANGE };
        let nanos =
            d.as_secs().saturating_mul(1_000_000_000).saturating_add(u64::from(d.subsec_nanos()));
        Timestamp(nanos)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_unix_nanos(self) -> u64 {
        self.0
    }

    /// Seconds since the Unix epoch.
    pub fn as_unix_seconds(self) -> f64 {
        // Precision loss above 2^53 ns (year 2255) is irrelevant for display.
        #[allow(clippy::cast_precision_loss)]
        let s = self.0 as f64 / 1e9;
        s
    }

    /// This timestamp moved forward by `d` (saturating).
    pub fn saturating_add(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

/// A source of time for windows. Implement it to drive evaluation from another clock.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// A clock that only moves when told to, for tests and deterministic replays.
///
/// ```
/// use std::time::Duration;
/// use mcp_policy::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_unix_seconds(60.0));
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now(), Timestamp::from_unix_seconds(61.5));
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A manual clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock { nanos: AtomicU64::new(start.as_unix_nanos()) }
    }

    /// Sets the time (it may go backwards: windows then see the earlier time).
    pub fn set(&self, t: Timestamp) {
        self.nanos.store(t.as_unix_nanos(), Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let add = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add(add)));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.nanos.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}
