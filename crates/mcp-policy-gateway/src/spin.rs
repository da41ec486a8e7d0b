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

/// Polls the watched descriptors until one is readable or `budget` has passed.
pub fn before_sleep(budget: Duration) {
    let Some(epoll) = watched() else { return };
    if budget.is_zero() {
        return;
    }
    let mut events = [EpollEvent::empty()];
    let start = Instant::now();
    while start.elapsed() < budget {
        match epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(0) => std::hint::spin_loop(),
            _ => return,
        }
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
