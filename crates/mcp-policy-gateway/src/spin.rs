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
//!
//! Over stdio with a command upstream, the relay spins itself ([`for_lines`]) instead, reading
//! the two descriptors as data comes: a message that comes during the spin reaches the relay
//! without the turn of the runtime's driver (its own `epoll_wait`, the task's wake-up and poll)
//! that follows a spin before sleeping: on the machine of [`docs/performance.md`], the
//! microseconds between a message's arrival and its sending on often cost a call more than
//! themselves (round eight).
//!
//! [`docs/performance.md`]: https://github.com/mcp-policy/mcp-policy/blob/main/docs/performance.md

use std::os::fd::BorrowedFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::lines::LineReader;

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
            Ok(0) => pause(),
            _ => return,
        }
    }
}

/// Spins for at most `budget` until one of the readers has a whole line buffered (or its input
/// ended), reading their descriptors directly as data comes ([`LineReader::read_now`]), so
/// that the relay's next read of it returns without waiting. Returns at once when one has.
pub fn for_lines(client: Option<&mut LineReader>, upstream: &mut LineReader, budget: Duration) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut client = client;
    if budget.is_zero() || upstream.ready() || client.as_ref().is_some_and(|c| c.ready()) {
        return;
    }
    let start = Instant::now();
    loop {
        let (from_client, from_upstream) = {
            // Without a client to read, the second entry is not polled.
            let second = client.as_ref().map_or(upstream.fd(), |c| c.fd());
            let mut fds = [
                PollFd::new(upstream.fd(), PollFlags::POLLIN),
                PollFd::new(second, PollFlags::POLLIN),
            ];
            let polled = fds.get_mut(..if client.is_some() { 2 } else { 1 }).unwrap_or_default();
            if poll(polled, PollTimeout::ZERO).is_err() {
                return;
            }
            let fds = if client.is_some() { &fds[..] } else { fds.get(..1).unwrap_or_default() };
            let seen =
                |f: Option<&PollFd<'_>>| f.and_then(PollFd::revents).is_some_and(|e| !e.is_empty());
            (seen(fds.get(1)), seen(fds.first()))
        };
        if from_upstream && upstream.read_now() && upstream.ready() {
            return;
        }
        if from_client
            && let Some(c) = client.as_mut()
            && c.read_now()
            && c.ready()
        {
            return;
        }
        if start.elapsed() >= budget {
            return;
        }
        pause();
    }
}

/// Whether this process may run on one CPU only (its affinity, or its cgroup's CPU quota), as
/// the first spin found it.
fn one_cpu() -> bool {
    static ONE: OnceLock<bool> = OnceLock::new();
    *ONE.get_or_init(runs_on_one_cpu)
}

/// Whether the calling thread may run on one CPU only.
fn runs_on_one_cpu() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() == 1)
}

/// A turn of a spin. On one CPU, the thread yields it: the process it has just woken (the
/// upstream it wrote a call to, the client it answered) runs on that CPU now, not when the
/// spin's budget is spent, if the kernel did not switch to it at once (measured in
/// docs/performance.md: p99 of about 250 µs, against 100 µs yielding). On several, a mere hint
/// to the CPU: a system call would delay the spin's answer to the next message, which a fast
/// peer sends within microseconds.
fn pause() {
    if one_cpu() {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
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
    fn a_thread_held_to_one_cpu_is_seen_to_be() {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        use nix::unistd::Pid;
        // In a thread of its own: an affinity is the calling thread's.
        std::thread::spawn(|| {
            let one_at_first = runs_on_one_cpu();
            let all = sched_getaffinity(Pid::from_raw(0)).unwrap();
            let first = (0..CpuSet::count()).find(|&c| all.is_set(c).unwrap_or(false)).unwrap();
            let mut one = CpuSet::new();
            one.set(first).unwrap();
            sched_setaffinity(Pid::from_raw(0), &one).unwrap();
            assert!(runs_on_one_cpu(), "held to CPU {first}");
            sched_setaffinity(Pid::from_raw(0), &all).unwrap();
            assert_eq!(runs_on_one_cpu(), one_at_first, "set free again");
            if one_at_first {
                eprintln!("this machine gives the test one CPU: the case of several is not run");
            }
        })
        .join()
        .unwrap();
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

    /// A reader of a fresh pipe, registered with the runtime as the relay's are, and its
    /// writing end.
    fn pipe_reader() -> (LineReader, std::io::PipeWriter) {
        let (reader, writer) = std::io::pipe().unwrap();
        let fd: std::os::fd::OwnedFd = reader.into();
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
            .unwrap();
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(fd).unwrap();
        let end = crate::lines::ReadEnd::Pipe(receiver);
        (LineReader::new(end, 1024), writer)
    }

    #[tokio::test]
    async fn the_relays_spin_ends_with_a_whole_line_and_keeps_the_lines_in_order() {
        let (mut client, mut to_client) = pipe_reader();
        let (mut upstream, mut to_upstream) = pipe_reader();
        // Nothing comes: the spin ends with its budget, nothing ready.
        let started = Instant::now();
        for_lines(Some(&mut client), &mut upstream, Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(!client.ready() && !upstream.ready());
        // Half a line does not end it; the line's end does, with the line buffered.
        to_client.write_all(b"{\"a\":").unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            to_client.write_all(b"1}\n{\"b\":2}\n").unwrap();
            to_client
        });
        for_lines(Some(&mut client), &mut upstream, Duration::from_secs(3600));
        assert!(client.ready());
        let mut to_client = writer.join().unwrap();
        // Both lines, in order, without waiting for the descriptor.
        for expected in [&b"{\"a\":1}"[..], b"{\"b\":2}"] {
            let line = tokio::time::timeout(Duration::from_secs(10), client.next_line()).await;
            assert!(matches!(line, Ok(Ok(Some(crate::lines::Line::Text(t)))) if t == expected));
        }
        // The upstream's line ends it too; a client not read (its input waits) is not spun on.
        to_client.write_all(b"{\"c\":3}\n").unwrap();
        to_upstream.write_all(b"{\"u\":1}\n").unwrap();
        for_lines(None, &mut upstream, Duration::from_secs(3600));
        assert!(upstream.ready() && !client.ready());
        // The end of the input ends it.
        drop(to_upstream);
        let line = upstream.next_line().await.unwrap();
        assert!(matches!(line, Some(crate::lines::Line::Text(t)) if t == b"{\"u\":1}"));
        for_lines(None, &mut upstream, Duration::from_secs(3600));
        assert!(upstream.ready());
        assert!(upstream.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_line_longer_than_the_limit_ends_the_relays_spin() {
        // The reader's limit is 1024 bytes: the spin buffers no more than about that (and the
        // chunk it reads) before the relay's read skips it.
        let (mut client, mut to_client) = pipe_reader();
        let (mut upstream, _to_upstream) = pipe_reader();
        to_client.write_all(&[b'x'; 4000]).unwrap();
        for_lines(Some(&mut client), &mut upstream, Duration::from_secs(3600));
        assert!(client.ready());
        to_client.write_all(b"\n{}\n").unwrap();
        let first = client.next_line().await.unwrap();
        assert!(matches!(first, Some(crate::lines::Line::TooLong(_))), "{first:?}");
        let second = client.next_line().await.unwrap();
        assert!(matches!(second, Some(crate::lines::Line::Text(t)) if t == b"{}"));
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
