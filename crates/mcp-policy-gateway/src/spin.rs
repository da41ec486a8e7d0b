//! A short spin before the runtime's thread goes to sleep (`--spin`).
//!
//! On a virtual machine, putting a thread to sleep and waking it again costs tens of
//! microseconds (the wake-up is an inter-processor interrupt, and the idle vCPU halts). A call
//! through the gateway sleeps twice: waiting for the client's request, then for the upstream's
//! answer, which a fast server gives within microseconds. So before sleeping, the runtime's
//! thread polls the descriptors it waits on (over stdio the client's stdin and the upstream's
//! stdout; for the HTTP listener every client connection and every connection to an HTTP
//! upstream) for at most a short budget, and goes to sleep only when nothing came: the CPU time
//! spent is bounded by the budget per sleep, and nothing is spent while the gateway is idle for
//! longer. Only where one thread runs everything (stdio, or the listener with `--threads 1`).

use std::cell::Cell;
use std::os::fd::BorrowedFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// The descriptors the runtime waits on, as an epoll interest list of its own (the runtime's
/// is out of reach). The kernel drops a descriptor from the list when its file is closed, so
/// watching holds nothing open: a session's upstream pipe closes with the session.
fn watched() -> Option<&'static Epoll> {
    static WATCHED: OnceLock<Option<Epoll>> = OnceLock::new();
    WATCHED.get_or_init(|| Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok()).as_ref()
}

/// Adds `fd` to the descriptors polled before sleeping, until its file is closed.
pub fn watch(fd: BorrowedFd<'_>) {
    if let Some(epoll) = watched() {
        // Level-triggered: readable data keeps reporting until it is read.
        let _ = epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 0));
    }
}

thread_local! {
    /// The budget of this thread's next spin (`None`: the most, not adapted yet).
    static BUDGET: Cell<Option<Duration>> = const { Cell::new(None) };
    /// When the wait that this thread is sleeping through began (its spin ran out).
    static WAITING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The next spin's budget after a wait of `waited` with a budget of `current`: twice as much
/// (at least a 64th of `max`, at most `max`) when a spin of `max` ends such a wait, half as
/// much otherwise (nothing under a microsecond).
fn next_budget(current: Duration, waited: Duration, max: Duration) -> Duration {
    if waited <= max {
        return (current * 2).max(max / 64).min(max);
    }
    let half = current / 2;
    if half < Duration::from_micros(1) { Duration::ZERO } else { half }
}

/// Polls the watched descriptors until one is readable or the spin's budget has passed.
///
/// The budget adapts between nothing and `max`: a wait that a spin of `max` ends (by the spin,
/// or by a sleep that ended within `max` of the wait's start; see [`after_wake`]) doubles it, a
/// longer one halves it. So the thread spins for events that come in quick succession (a
/// call's request, then its answer), and soon stops spinning for events mostly far apart (a
/// client that sends its bytes one packet at a time, the timers of an idle gateway), where a
/// spin would only spend its whole budget before each sleep.
pub fn before_sleep(max: Duration) {
    let Some(epoll) = watched() else { return };
    if max.is_zero() {
        return;
    }
    let budget = BUDGET.get().unwrap_or(max).min(max);
    let mut events = [EpollEvent::empty()];
    let start = Instant::now();
    while start.elapsed() < budget {
        match epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(0) => std::hint::spin_loop(),
            _ => {
                BUDGET.set(Some(next_budget(budget, start.elapsed(), max)));
                WAITING_SINCE.set(None);
                return;
            }
        }
    }
    WAITING_SINCE.set(Some(start));
}

/// Called when the thread wakes from the sleep that followed [`before_sleep`]: adapts the next
/// spin's budget to how long the wait lasted.
pub fn after_wake(max: Duration) {
    if let Some(since) = WAITING_SINCE.take() {
        let current = BUDGET.get().unwrap_or(max).min(max);
        BUDGET.set(Some(next_budget(current, since.elapsed(), max)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;

    /// The descriptors this process has open.
    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn watching_holds_no_descriptor_open() {
        // A session's upstream pipe is watched; when the session ends its pipe must close (a
        // copy kept for watching would leak one descriptor per session, and keep the pipe open).
        let _ = watched();
        let before = open_descriptors();
        for _ in 0..100 {
            let (reader, writer) = std::io::pipe().unwrap();
            watch(reader.as_fd());
            drop((reader, writer));
        }
        let after = open_descriptors();
        // Other tests of this binary open and close descriptors concurrently: a few may come
        // and go, but not one per watched pipe.
        assert!(after < before + 50, "{before} descriptors open before, {after} after");
    }

    #[test]
    fn the_budget_halves_for_long_waits_and_comes_back_for_short_ones() {
        let max = Duration::from_micros(200);
        let long = Duration::from_millis(5);
        let mut budget = max;
        let mut seen = Vec::new();
        for _ in 0..10 {
            budget = next_budget(budget, long, max);
            seen.push(budget.as_micros());
        }
        assert_eq!(seen, [100, 50, 25, 12, 6, 3, 1, 0, 0, 0]);
        // Waits that a whole spin ends: twice as much each time, from nothing too.
        let short = Duration::from_micros(150);
        let mut seen = Vec::new();
        for _ in 0..8 {
            budget = next_budget(budget, short, max);
            seen.push(budget.as_micros());
        }
        assert_eq!(seen, [3, 6, 12, 25, 50, 100, 200, 200]);
        // As many short waits as long ones: the spin stays.
        assert_eq!(next_budget(next_budget(max, long, max), short, max), max);
    }

    #[test]
    fn a_thread_woken_by_events_far_apart_stops_spinning() {
        // Nothing is readable: each spin runs out, and the thread "sleeps" 2 ms before waking.
        let _ = watched();
        let max = Duration::from_micros(500);
        std::thread::spawn(move || {
            // Nine halvings reach nothing; other tests of this binary may make a watched pipe
            // readable for a moment (a spin that ends early brings the budget back), so a few
            // more rounds are allowed.
            let mut rounds = 0;
            while BUDGET.get() != Some(Duration::ZERO) {
                assert!(rounds < 200, "the budget is still {:?}", BUDGET.get());
                before_sleep(max);
                std::thread::sleep(Duration::from_millis(2));
                after_wake(max);
                rounds += 1;
            }
            assert!(rounds >= 9, "{rounds} rounds");
            // Waits that the spin ends (a watched pipe is readable) bring it back: eight
            // doublings (a few more are allowed, for a wait this thread spends preempted).
            let (reader, mut writer) = std::io::pipe().unwrap();
            watch(reader.as_fd());
            writer.write_all(b"x").unwrap();
            let mut rounds = 0;
            while BUDGET.get() != Some(max) {
                assert!(rounds < 200, "the budget is still {:?}", BUDGET.get());
                before_sleep(max);
                after_wake(max);
                rounds += 1;
            }
            assert!(rounds >= 8, "{rounds} rounds");
            drop((reader, writer));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_spin_ends_when_a_watched_descriptor_is_readable() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        watch(reader.as_fd());
        writer.write_all(b"x").unwrap();
        // With data waiting, a budget of an hour returns at once; a spin that ignored the
        // descriptor would never report back.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            before_sleep(Duration::from_secs(3600));
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_secs(60)).is_ok(), "the spin did not end");
        drop(reader);
    }
}
