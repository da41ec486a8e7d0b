//! Window arithmetic: fixed windows aligned to the Unix epoch, and sliding windows kept as
//! sub-window buckets.
//!
//! **Fixed** windows of length `W` restart at every multiple of `W` since the epoch (a `"day"`
//! at 00:00 UTC). The state is the window's index and its count.
//!
//! **Sliding** windows keep [`SLIDING_BUCKETS`] + 1 buckets of `W / SLIDING_BUCKETS` each.
//! Units charged at time `t` fall in the bucket that holds `t`, and count until that bucket's
//! *end* plus `W`: never less than `[t, t + W)`, at most one bucket longer. So the store never
//! admits more than `max` units in any interval of length `W`; it may refuse up to one bucket
//! (`W / 16`: 3.75 s of a minute) early.

use std::num::NonZeroU64;
use std::time::Duration;

use super::clock::Timestamp;

/// Buckets per sliding window: the granularity of sliding windows is `window / 16`.
pub const SLIDING_BUCKETS: u64 = 16;
const RING: usize = SLIDING_BUCKETS as usize + 1;

const NANOS: u64 = 1_000_000_000;

/// The state of one counter.
#[derive(Debug, Clone)]
pub(crate) enum WindowState {
    /// `ends`: when the window of `count` ends (nanoseconds since the epoch). Keeping the end
    /// rather than the window's index spares the hot path a division: a new window's end is only
    /// computed when one starts. Never zero (a window ends at least one window after the
    /// epoch), which lets the state fit in 16 bytes.
    Fixed {
        ends: NonZeroU64,
        count: u64,
    },
    Sliding(Box<Sliding>),
}

/// Sliding-window buckets: `counts[i % RING]` holds bucket `i`, for the buckets from
/// `newest - SLIDING_BUCKETS` to `newest`.
#[derive(Debug, Clone)]
pub(crate) struct Sliding {
    newest: u64,
    counts: [u64; RING],
}

fn window_nanos(seconds: u64) -> u64 {
    seconds.saturating_mul(NANOS).max(1)
}

/// The end of the fixed window that holds `now_ns`.
fn window_end(now_ns: u64, seconds: u64) -> u64 {
    let w = window_nanos(seconds);
    (now_ns / w).saturating_add(1).saturating_mul(w)
}

/// [`window_end`], never zero: a window is at least a nanosecond long, so the first one ends at
/// 1 ns at the earliest.
fn fixed_end(now_ns: u64, seconds: u64) -> NonZeroU64 {
    NonZeroU64::new(window_end(now_ns, seconds)).unwrap_or(NonZeroU64::MIN)
}

fn bucket_nanos(seconds: u64) -> u64 {
    (window_nanos(seconds) / SLIDING_BUCKETS).max(1)
}

impl WindowState {
    pub(crate) fn new(now: Timestamp, seconds: u64, sliding: bool) -> Self {
        if sliding {
            let newest = now.as_unix_nanos() / bucket_nanos(seconds);
            WindowState::Sliding(Box::new(Sliding { newest, counts: [0; RING] }))
        } else {
            WindowState::Fixed { ends: fixed_end(now.as_unix_nanos(), seconds), count: 0 }
        }
    }

    /// Whether this state was made for a window of this kind (a reload may change it).
    pub(crate) fn is_sliding(&self) -> bool {
        matches!(self, WindowState::Sliding(_))
    }

    /// The units that count against a request at `now`.
    pub(crate) fn count(&self, now: Timestamp, seconds: u64) -> u64 {
        match self {
            WindowState::Fixed { ends, count } => {
                // A clock that went back still sees the newer window's count.
                if now.as_unix_nanos() < ends.get() { *count } else { 0 }
            }
            WindowState::Sliding(s) => {
                let cur = now.as_unix_nanos() / bucket_nanos(seconds);
                s.live(cur).map(|(_, c)| c).fold(0u64, u64::saturating_add)
            }
        }
    }

    /// How long from `now` until `excess` of the units counted now have stopped counting.
    pub(crate) fn retry_after(&self, now: Timestamp, seconds: u64, excess: u64) -> Duration {
        let now_ns = now.as_unix_nanos();
        match self {
            WindowState::Fixed { ends, .. } => {
                let end =
                    if now_ns < ends.get() { ends.get() } else { window_end(now_ns, seconds) };
                Duration::from_nanos(end.saturating_sub(now_ns))
            }
            WindowState::Sliding(s) => {
                let g = bucket_nanos(seconds);
                let cur = now_ns / g;
                let mut freed = 0u64;
                for (i, c) in s.live(cur) {
                    freed = freed.saturating_add(c);
                    if freed >= excess {
                        // Bucket i stops counting at its end plus the window.
                        let until = i.saturating_add(1 + SLIDING_BUCKETS).saturating_mul(g);
                        return Duration::from_nanos(until.saturating_sub(now_ns));
                    }
                }
                // Everything counted now is gone one window after the newest bucket ends.
                let until = cur.saturating_add(1 + SLIDING_BUCKETS).saturating_mul(g);
                Duration::from_nanos(until.saturating_sub(now_ns))
            }
        }
    }

    /// Adds `units` at `now`.
    pub(crate) fn add(&mut self, now: Timestamp, seconds: u64, units: u64) {
        match self {
            WindowState::Fixed { ends, count } => {
                let now = now.as_unix_nanos();
                if now >= ends.get() {
                    *ends = fixed_end(now, seconds);
                    *count = 0;
                }
                *count = count.saturating_add(units);
            }
            WindowState::Sliding(s) => {
                let cur = now.as_unix_nanos() / bucket_nanos(seconds);
                s.advance(cur);
                if let Some(slot) = s.counts.get_mut(slot_of(s.newest)) {
                    *slot = slot.saturating_add(units);
                }
            }
        }
    }

    /// Adds `units` when the units that count at `now` plus `units` are at most `max`, and
    /// says whether it did (nothing changes when it did not): `count` and `add` in one step.
    #[inline]
    pub(crate) fn try_add(&mut self, now: Timestamp, seconds: u64, units: u64, max: u64) -> bool {
        match self {
            WindowState::Fixed { ends, count } => {
                let now = now.as_unix_nanos();
                let live = now < ends.get();
                let counted = if live { *count } else { 0 };
                if counted.saturating_add(units) > max {
                    return false;
                }
                if !live {
                    *ends = fixed_end(now, seconds);
                }
                *count = counted.saturating_add(units);
                true
            }
            WindowState::Sliding(_) => {
                if self.count(now, seconds).saturating_add(units) > max {
                    return false;
                }
                self.add(now, seconds, units);
                true
            }
        }
    }

    /// Takes back `units` charged at `charged_at`, where they still count at `now`.
    pub(crate) fn remove(
        &mut self,
        now: Timestamp,
        charged_at: Timestamp,
        seconds: u64,
        units: u64,
    ) {
        match self {
            WindowState::Fixed { ends, count } => {
                // Only in the window the units were charged in, while it lasts.
                let then = window_end(charged_at.as_unix_nanos(), seconds);
                if ends.get() == then && now.as_unix_nanos() < then {
                    *count = count.saturating_sub(units);
                }
            }
            WindowState::Sliding(s) => {
                let g = bucket_nanos(seconds);
                let cur = now.as_unix_nanos() / g;
                let then = charged_at.as_unix_nanos() / g;
                s.advance(cur);
                if then <= s.newest && then + SLIDING_BUCKETS >= cur {
                    if let Some(slot) = s.counts.get_mut(slot_of(then)) {
                        *slot = slot.saturating_sub(units);
                    }
                }
            }
        }
    }

    /// When this state stops mattering: after this time its count is zero.
    pub(crate) fn expires_at(&self, seconds: u64) -> Timestamp {
        match self {
            WindowState::Fixed { ends, .. } => Timestamp::from_unix_nanos(ends.get()),
            WindowState::Sliding(s) => {
                let g = bucket_nanos(seconds);
                Timestamp::from_unix_nanos(
                    s.newest.saturating_add(1 + SLIDING_BUCKETS).saturating_mul(g),
                )
            }
        }
    }
}

fn slot_of(bucket: u64) -> usize {
    // RING is tiny, so the remainder always fits.
    usize::try_from(bucket % RING as u64).unwrap_or(0)
}

impl Sliding {
    /// The buckets that count at bucket `cur`, oldest first, with their counts.
    fn live(&self, cur: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        // Buckets newer than `cur` (a clock that went back) still count: refusing early is safe.
        let from = cur.max(self.newest).saturating_sub(SLIDING_BUCKETS);
        (from..=self.newest).map(move |i| (i, self.counts.get(slot_of(i)).copied().unwrap_or(0)))
    }

    /// Moves the newest bucket to `cur`, clearing the buckets that fell out.
    fn advance(&mut self, cur: u64) {
        if cur <= self.newest {
            return;
        }
        let gap = cur - self.newest;
        if gap >= RING as u64 {
            self.counts = [0; RING];
        } else {
            for i in self.newest + 1..=cur {
                if let Some(slot) = self.counts.get_mut(slot_of(i)) {
                    *slot = 0;
                }
            }
        }
        self.newest = cur;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> Timestamp {
        Timestamp::from_unix_seconds(s)
    }

    #[test]
    fn fixed_windows_align_to_the_epoch() {
        let mut w = WindowState::new(at(119.0), 60, false);
        w.add(at(119.0), 60, 5);
        assert_eq!(w.count(at(119.9), 60), 5);
        assert_eq!(w.retry_after(at(119.5), 60, 1), Duration::from_millis(500));
        assert_eq!(w.count(at(120.0), 60), 0);
        w.add(at(120.0), 60, 1);
        assert_eq!(w.count(at(120.0), 60), 1);
    }

    #[test]
    fn sliding_windows_never_admit_early() {
        // Window 16 s, so buckets of 1 s.
        let mut w = WindowState::new(at(100.0), 16, true);
        w.add(at(100.5), 16, 3);
        // Still counted anywhere in [100.5, 116.5).
        assert_eq!(w.count(at(116.4), 16), 3);
        // Counted until the bucket's end (101) plus the window: 117.
        assert_eq!(w.count(at(116.99), 16), 3);
        assert_eq!(w.count(at(117.0), 16), 0);
        assert_eq!(w.retry_after(at(110.0), 16, 1), Duration::from_secs(7));
    }

    #[test]
    fn a_state_fits_in_16_bytes() {
        assert_eq!(std::mem::size_of::<WindowState>(), 16);
    }

    #[test]
    fn sliding_refund_only_inside_the_window() {
        let mut w = WindowState::new(at(0.0), 16, true);
        w.add(at(0.0), 16, 2);
        w.remove(at(5.0), at(0.0), 16, 1);
        assert_eq!(w.count(at(5.0), 16), 1);
        w.remove(at(30.0), at(0.0), 16, 1);
        assert_eq!(w.count(at(30.0), 16), 0);
    }
}
