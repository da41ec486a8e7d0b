//! A short spin before the stdio runtime's thread goes to sleep.
//!
//! On a virtual machine, putting a thread to sleep and waking it again costs tens of
//! microseconds (the wake-up is an inter-processor interrupt, and the idle vCPU halts). A call
//! through the gateway over stdio sleeps twice: waiting for the client's request, then for the
//! upstream's answer, which a fast server gives within microseconds. So before sleeping, the
//! runtime's thread polls the descriptors it waits on (the client's stdin, the upstream's stdout)
//! for at most a short budget, and goes to sleep only when nothing came: the CPU time spent is
//! bounded by the budget per sleep, and nothing is spent while the gateway is idle for longer.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The descriptors the runtime waits on (duplicates: the same open files).
static WATCHED: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());

/// Adds `fd` to the descriptors polled before sleeping.
pub fn watch(fd: BorrowedFd<'_>) {
    if let (Ok(dup), Ok(mut watched)) = (fd.try_clone_to_owned(), WATCHED.lock()) {
        watched.push(dup);
    }
}

/// Polls the watched descriptors until one is readable or `budget` has passed.
pub fn before_sleep(budget: Duration) {
    let Ok(watched) = WATCHED.lock() else { return };
    if watched.is_empty() || budget.is_zero() {
        return;
    }
    let mut fds: Vec<PollFd<'_>> =
        watched.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
    let start = Instant::now();
    while start.elapsed() < budget {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => std::hint::spin_loop(),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use super::*;

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
