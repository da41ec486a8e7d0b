//! [`FastClock`]: the system's wall clock, read through the CPU's time-stamp counter.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::clock::{Clock, Timestamp};

/// How long (by the counter) the clock runs from one reading of the system clock before it
/// reads the system clock again: 1 ms.
pub(crate) const ANCHOR_NANOS: u64 = 1_000_000;

/// The wall clock, read at the cost of the CPU's time-stamp counter rather than of a system
/// clock read: the evaluator's default clock.
///
/// On x86-64 with an invariant TSC (and on AArch64), reading the system clock costs 40 to 70 ns
/// under a hypervisor (`clock_gettime` through the vDSO), a large part of an allowed call with a
/// limit. A `FastClock` reads the system clock ([`SystemClock`](crate::SystemClock)) at most
/// once per millisecond and, in between, adds the time elapsed since that reading as measured
/// by the TSC through [`quanta`] (the counter that `governor` reads too): about a third of the
/// cost on the development VM (docs/performance.md). Where the CPU has no usable counter, `quanta` measures the elapsed time with the
/// system's monotonic clock instead, and the clock is as exact as `SystemClock`, at its cost.
///
/// **Resolution and error.** The resolution is the counter's (about a nanosecond). The time
/// read differs from `SystemClock`'s only by the counter's rate error over at most 1 ms since
/// the last reading of the system clock: a few microseconds at the very worst (the counter's
/// rate is calibrated against the system's monotonic clock, to within 10 ns of error, when the
/// first `FastClock` of a process is made; this calibration takes from under a millisecond to at
/// most 200 ms, once). A wall-clock step (NTP, an operator) is followed within 1 ms. The
/// counter is assumed to be synchronized across cores (an invariant TSC, which Linux checks
/// before it makes the TSC its own clock source; `quanta` and `governor` assume the same); a
/// reading earlier than the last anchor is answered with the system clock instead.
///
/// **Why counts stay exact.** The clock only decides which window a charge falls in. Every
/// admitted call is charged exactly once, and no window admits more than its `max`; an error of
/// microseconds can only place a call that arrives within those microseconds of a window's end
/// in the neighbouring window, against windows of at least one second. As with `SystemClock`, a
/// clock that goes back (a step, or the microsecond correction at a new reading) never lets a
/// window admit more: windows keep the newest window's count.
///
/// Every `FastClock` of a process shares one state; making one is cheap once the first is made.
/// No thread is started.
///
/// ```
/// use mcp_policy::{Clock, FastClock, SystemClock};
///
/// let fast = FastClock::new().now().as_unix_nanos();
/// let system = SystemClock.now().as_unix_nanos();
/// // Microseconds apart in practice (the bound allows for a thread descheduled in between).
/// assert!(fast.abs_diff(system) < 1_000_000_000);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FastClock {
    state: &'static State,
}

impl Default for FastClock {
    fn default() -> Self {
        FastClock::new()
    }
}

/// The process-wide state of every [`FastClock`].
struct State {
    counter: quanta::Clock,
    /// The counter's reading when the state was made: elapsed times are measured from it.
    base: u64,
    /// The system time minus the counter's elapsed nanoseconds at the last reading of the
    /// system clock (wrapping arithmetic).
    offset: AtomicU64,
    /// The counter's elapsed nanoseconds at which to read the system clock again.
    next: AtomicU64,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

static STATE: LazyLock<State> = LazyLock::new(|| {
    let counter = quanta::Clock::new();
    let base = counter.raw();
    // `next` is 0: the first reading reads the system clock.
    State { counter, base, offset: AtomicU64::new(0), next: AtomicU64::new(0) }
});

impl FastClock {
    /// The fast clock (calibrating the counter the first time in a process; see above).
    pub fn new() -> Self {
        FastClock { state: &STATE }
    }
}

impl State {
    /// Nanoseconds since `base`, by the counter.
    #[inline]
    fn elapsed(&self) -> u64 {
        self.counter.delta_as_nanos(self.base, self.counter.raw())
    }

    /// Reads the system clock: a new anchor when the last is 1 ms old or more; the system time
    /// alone when the counter reads before the last anchor (a counter of another core behind
    /// this one), so that such a reading never stands for a time in the past.
    #[cold]
    fn slow(&self, elapsed: u64, next: u64) -> Timestamp {
        let wall = Timestamp::from_system_time(SystemTime::now());
        if elapsed >= next && wall.is_supported() {
            self.offset.store(wall.as_unix_nanos().wrapping_sub(elapsed), Ordering::Relaxed);
            // Published after the offset: a reader that sees the new deadline sees the new offset.
            self.next.store(elapsed.saturating_add(ANCHOR_NANOS), Ordering::Release);
        }
        // A system clock outside the supported range is passed on as it is (the evaluator then
        // denies), and read again at the next call.
        wall
    }
}

impl Clock for FastClock {
    #[inline]
    fn now(&self) -> Timestamp {
        let s = self.state;
        let elapsed = s.elapsed();
        let next = s.next.load(Ordering::Acquire);
        // Inside [last reading, last reading + 1 ms) by the counter, in one comparison: the
        // difference wraps to a huge value when the counter reads before the last reading.
        if elapsed.wrapping_sub(next.wrapping_sub(ANCHOR_NANOS)) >= ANCHOR_NANOS {
            return s.slow(elapsed, next);
        }
        Timestamp::from_unix_nanos(elapsed.wrapping_add(s.offset.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemClock;

    #[test]
    fn stays_within_a_millisecond_of_the_system_clock() {
        let fast = FastClock::new();
        for _ in 0..20_000 {
            let before = SystemClock.now().as_unix_nanos();
            let t = fast.now().as_unix_nanos();
            let after = SystemClock.now().as_unix_nanos();
            assert!(fast.now().is_supported());
            // Bracketed by two system readings, give or take the bound the docs state.
            assert!(t + ANCHOR_NANOS >= before, "{t} vs {before}");
            assert!(t <= after + ANCHOR_NANOS, "{t} vs {after}");
        }
    }

    #[test]
    fn a_counter_behind_the_anchor_reads_the_system_clock() {
        let fast = FastClock::new();
        let _ = fast.now();
        let s = fast.state;
        let next = s.next.load(Ordering::Acquire);
        // As if another core's counter read 10 ms before the anchor.
        let behind = next.saturating_sub(ANCHOR_NANOS + 10_000_000);
        let before = SystemClock.now().as_unix_nanos();
        let t = s.slow(behind, next).as_unix_nanos();
        assert!(t >= before, "{t} < {before}");
        assert_eq!(s.next.load(Ordering::Acquire), next, "no new anchor from a lagging counter");
    }

    #[test]
    fn follows_the_system_clock_across_anchors() {
        let fast = FastClock::new();
        let start = fast.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let later = fast.now();
        let d = later.saturating_duration_since(start);
        assert!(d >= std::time::Duration::from_millis(19), "{d:?}");
    }
}
