//! What the gateway's stdin and stdout can be, as clients hand them over: pipes (Python, most
//! clients), sockets (Node's `child_process` gives a socket pair), or a regular file (a shell
//! redirect). Pipes and sockets are polled by the runtime's thread (non-blocking while the
//! gateway runs, given back blocking when it is done with them); anything else is served from
//! two threads. Each way, calls are decided and relayed, with the default `--stdio-spin` and
//! without it.
//!
//! The upstream is this executable started with `MCP_POLICY_TEST_UPSTREAM=1`: it answers at once
//! and needs nothing installed, so these tests never skip.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
#[path = "trivial/mod.rs"]
mod trivial;

use serde_json::{Value, json};

const POLICY: &str = r#"{"version": "1", "default": "deny", "tools": {"echo": {}}}"#;

fn nonblocking(fd: impl AsFd) -> bool {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
    flags.contains(OFlag::O_NONBLOCK)
}

fn gateway(policy: &std::path::Path, stdin: Stdio, stdout: Stdio) -> Child {
    gateway_with(policy, &[], stdin, stdout)
}

fn gateway_with(policy: &std::path::Path, extra: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    gateway_before(policy, extra, "1", stdin, stdout)
}

/// The gateway in front of this executable as the upstream `upstream` (the value of
/// `MCP_POLICY_TEST_UPSTREAM`: `1`, `big`, `late`).
fn gateway_before(
    policy: &std::path::Path,
    extra: &[&str],
    upstream: &str,
    stdin: Stdio,
    stdout: Stdio,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mcp-policy-gateway"))
        .arg("--policy")
        .arg(policy)
        .args(extra)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .env("MCP_POLICY_TEST_UPSTREAM", upstream)
        .stdin(stdin)
        .stdout(stdout)
        .spawn()
        .unwrap()
}

/// The gateway in front of `upstream` (see [`gateway_before`]) with stdin and stdout pipes:
/// it, the writing end of its stdin, the reading end of its stdout.
fn gateway_on_pipes(
    policy: &std::path::Path,
    upstream: &str,
) -> (Child, std::io::PipeWriter, std::io::PipeReader) {
    let (in_r, in_w) = std::io::pipe().unwrap();
    let (out_r, out_w) = std::io::pipe().unwrap();
    let g = gateway_before(
        policy,
        &[],
        upstream,
        Stdio::from(OwnedFd::from(in_r)),
        Stdio::from(OwnedFd::from(out_w)),
    );
    (g, in_w, out_r)
}

/// The requests of a session: initialize, an allowed call (id 2), a refused one (id 3).
fn session() -> String {
    [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {}}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "other", "arguments": {}}}),
    ]
    .iter()
    .map(|m| format!("{m}\n"))
    .collect()
}

/// Reads answers from `out` until ids 1, 2 and 3 have come; checks what they say.
fn expect_answers(out: impl Read) {
    let mut seen = std::collections::HashMap::new();
    for line in BufReader::new(out).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if let Some(id) = v["id"].as_u64() {
            seen.insert(id, v);
        }
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen[&1]["result"]["serverInfo"]["name"], "trivial-upstream", "{:?}", seen[&1]);
    assert_eq!(seen[&2]["result"]["content"][0]["text"], "ran", "{:?}", seen[&2]);
    assert_eq!(seen[&3]["result"]["isError"], true, "{:?}", seen[&3]);
    assert_ne!(seen[&3]["result"]["content"][0]["text"], "ran");
}

fn wait(child: &mut Child) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pipes_are_polled_and_given_back_blocking(policy: &std::path::Path) {
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let (out_r, out_w) = std::io::pipe().unwrap();
    // Our own copies of the gateway's ends: the same open file descriptions.
    let in_r_copy = in_r.try_clone().unwrap();
    let out_w_copy = out_w.try_clone().unwrap();
    let mut g = gateway(policy, in_r.into(), out_w.into());
    in_w.write_all(session().as_bytes()).unwrap();
    expect_answers(&out_r);
    assert!(nonblocking(&in_r_copy), "stdin (a pipe) is not polled");
    assert!(nonblocking(&out_w_copy), "stdout (a pipe) is not polled");
    drop(in_w);
    wait(&mut g);
    assert!(!nonblocking(&in_r_copy), "stdin was left non-blocking");
    assert!(!nonblocking(&out_w_copy), "stdout was left non-blocking");
}

fn sockets_are_polled_and_given_back_blocking(policy: &std::path::Path) {
    // As Node's child_process does: a socket pair for each of stdin and stdout.
    let (mut in_ours, in_theirs) = UnixStream::pair().unwrap();
    let (out_ours, out_theirs) = UnixStream::pair().unwrap();
    let in_copy = in_theirs.try_clone().unwrap();
    let out_copy = out_theirs.try_clone().unwrap();
    let mut g = gateway(policy, OwnedFd::from(in_theirs).into(), OwnedFd::from(out_theirs).into());
    in_ours.write_all(session().as_bytes()).unwrap();
    expect_answers(&out_ours);
    assert!(nonblocking(&in_copy), "stdin (a socket) is not polled");
    assert!(nonblocking(&out_copy), "stdout (a socket) is not polled");
    in_ours.shutdown(std::net::Shutdown::Write).unwrap();
    wait(&mut g);
    assert!(!nonblocking(&in_copy), "stdin was left non-blocking");
    assert!(!nonblocking(&out_copy), "stdout was left non-blocking");
}

/// One socket for both stdin and stdout (inetd, systemd's `Accept=yes`, socat's `EXEC:`): one
/// open file description, whose flags are given back as they were (the second of the two
/// descriptors used to record them already non-blocking, and put that back last).
fn one_socket_for_stdin_and_stdout_is_given_back_blocking(policy: &std::path::Path) {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let copy = theirs.try_clone().unwrap();
    let stdin = OwnedFd::from(theirs.try_clone().unwrap());
    let mut g = gateway(policy, stdin.into(), OwnedFd::from(theirs).into());
    ours.write_all(session().as_bytes()).unwrap();
    expect_answers(&ours);
    assert!(nonblocking(&copy), "the socket is not polled");
    ours.shutdown(std::net::Shutdown::Write).unwrap();
    wait(&mut g);
    assert!(!nonblocking(&copy), "the socket was left non-blocking");
}

/// A client that never reads its standard output, stopped with SIGTERM while answers are still
/// queued for it: the gateway gives up on them after 2 s, and stdin and stdout are blocking
/// again all the same (they were left non-blocking, to the client's and to anything else that
/// shares them, such as the shell that started the gateway).
fn a_client_that_never_reads_gets_its_descriptors_back_blocking(policy: &std::path::Path) {
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let (out_r, out_w) = std::io::pipe().unwrap();
    let in_copy = in_r.try_clone().unwrap();
    let out_copy = out_w.try_clone().unwrap();
    let mut g = gateway_before(
        policy,
        &[],
        "big",
        Stdio::from(OwnedFd::from(in_r)),
        Stdio::from(OwnedFd::from(out_w)),
    );
    // A hundred answers of 4 KiB: the pipe holds 16, the rest is queued for the client.
    let mut all = session();
    for id in 100..200 {
        all.push_str(&format!(
            "{}\n",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "echo", "arguments": {}}})
        ));
    }
    in_w.write_all(all.as_bytes()).unwrap();
    // Until the pipe to the client is full (our copy of it is non-blocking while the gateway
    // polls it; blanks between lines are skipped by a reader): the gateway's writer then
    // queues the answers.
    let mut probe = out_copy.try_clone().unwrap();
    let mut written = 0;
    loop {
        match probe.write(b" ") {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Ok(n) => written += n,
            Err(e) => panic!("{e}"),
        }
        assert!(written < 1 << 24, "the pipe never filled");
    }
    // (The answers come meanwhile, and are queued.)
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(g.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait(&mut g);
    assert!(!nonblocking(&in_copy), "stdin was left non-blocking");
    assert!(!nonblocking(&out_copy), "stdout was left non-blocking");
    drop((out_r, in_w));
}

fn a_file_for_stdout_is_served_from_a_thread(policy: &std::path::Path, dir: &std::path::Path) {
    let path = dir.join("out.jsonl");
    let file = File::create(&path).unwrap();
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let mut g = gateway(policy, in_r.into(), file.into());
    in_w.write_all(session().as_bytes()).unwrap();
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&path).unwrap();
        if text.lines().filter(|l| l.contains("\"id\"")).count() >= 3 {
            expect_answers(text.as_bytes());
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "answers never came: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(in_w);
    wait(&mut g);
}

fn calls_are_relayed_without_stdio_spin(policy: &std::path::Path) {
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let (out_r, out_w) = std::io::pipe().unwrap();
    let mut g = gateway_with(policy, &["--stdio-spin", "0"], in_r.into(), out_w.into());
    in_w.write_all(session().as_bytes()).unwrap();
    expect_answers(&out_r);
    drop(in_w);
    wait(&mut g);
}

/// The upstream of [`a_client_sending_many_calls_at_once_gets_every_answer`]: as the trivial
/// one, with answers of 4 KiB (its output pipe is full after 16 of them).
fn big_answers_upstream() {
    let mut out = std::io::stdout().lock();
    let text = "x".repeat(4096);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
        if let Some(mut reply) = trivial::answer(&msg) {
            if msg["method"] == "tools/call" {
                reply["result"]["content"][0]["text"] = json!(text);
            }
            if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
                std::process::exit(3);
            }
        }
    }
}

/// A client that writes many calls at once (1 KiB each, faster than the upstream takes them)
/// while reading the answers (4 KiB each): the upstream's input and output both fill up. Each
/// call is answered by the upstream: the relay never waits on the upstream's input while it has
/// stopped reading its output (that held both until the relay gave up after 1 s, and answered
/// a call that could run that the upstream is not reading its input).
fn a_client_sending_many_calls_at_once_gets_every_answer(policy: &std::path::Path) {
    const CALLS: u64 = 1500;
    let (mut g, mut in_w, out_r) = gateway_on_pipes(policy, "big");
    let writer = std::thread::spawn(move || {
        let pad = "p".repeat(1024);
        let mut all = session();
        for id in 100..100 + CALLS {
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"pad": pad}}});
            all.push_str(&format!("{call}\n"));
        }
        // One write: the client is faster than the upstream.
        let _ = in_w.write_all(all.as_bytes());
        in_w
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut answered = 0;
        for line in BufReader::new(out_r).lines() {
            let Ok(line) = line else { break };
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"].as_u64().is_some_and(|id| id >= 100) {
                if v.get("error").is_some() {
                    let _ = tx.send(Err(v));
                    return;
                }
                answered += 1;
                if answered == CALLS {
                    let _ = tx.send(Ok(()));
                    return;
                }
            }
        }
        let _ = tx.send(Err(json!("the gateway's output ended")));
    });
    let outcome = rx.recv_timeout(Duration::from_secs(120)).expect("the answers never all came");
    if let Err(v) = outcome {
        panic!("a call was not answered by the upstream: {v}");
    }
    drop(writer.join().unwrap());
    wait(&mut g);
}

/// The upstream of [`a_client_gone_with_a_call_in_flight_leaves_the_upstream_its_exit`]: it
/// answers once its input has ended (as a server finishing its work on shutdown), and exits
/// with 3 when it cannot write its answers, else 0.
fn late_upstream() {
    let requests: Vec<Value> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let mut out = std::io::stdout().lock();
    for reply in requests.iter().filter_map(trivial::answer) {
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            std::process::exit(3);
        }
    }
}

/// A client that sends a call and closes its input before the answer (`echo request |
/// gateway`): the upstream's answer, written as its input ends, is read and dropped, so that
/// the upstream exits by itself and the gateway with its status (0), rather than the upstream
/// failing on a closed pipe (its status, 3 here, or 141 for a program killed by `SIGPIPE`).
fn a_client_gone_with_a_call_in_flight_leaves_the_upstream_its_exit(policy: &std::path::Path) {
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let mut g =
        gateway_before(policy, &[], "late", Stdio::from(OwnedFd::from(in_r)), Stdio::null());
    in_w.write_all(session().as_bytes()).unwrap();
    drop(in_w);
    wait(&mut g);
    assert_eq!(g.wait().unwrap().code(), Some(0), "the upstream did not exit by itself");
}

/// A client that writes its requests and closes its input, then reads (`printf REQUESTS |
/// gateway`): the answers in flight still reach it, here from an upstream that answers only
/// once its input has ended (the gateway closes it as the client closed the gateway's).
fn a_client_closing_its_input_still_reads_the_answers(policy: &std::path::Path) {
    let (mut g, mut in_w, out_r) = gateway_on_pipes(policy, "late");
    in_w.write_all(session().as_bytes()).unwrap();
    drop(in_w);
    expect_answers(out_r);
    wait(&mut g);
    assert_eq!(g.wait().unwrap().code(), Some(0));
}

/// A client that closes its end of the gateway's stdout but keeps writing (it reads nothing
/// more): the gateway ends once a write to it fails, rather than deciding, charging and running
/// its calls for nobody while its stdin stays open.
fn a_client_that_closes_its_output_ends_the_gateway(policy: &std::path::Path) {
    let (mut g, mut in_w, out_r) = gateway_on_pipes(policy, "1");
    drop(out_r);
    in_w.write_all(session().as_bytes()).unwrap();
    wait(&mut g);
    drop(in_w);
}

fn main() {
    match std::env::var("MCP_POLICY_TEST_UPSTREAM").as_deref() {
        Ok("big") => return big_answers_upstream(),
        Ok("late") => return late_upstream(),
        Ok(_) => return trivial::stdio_upstream(),
        Err(_) => {}
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let tests: [(&str, &dyn Fn()); 10] = [
        ("a_client_that_closes_its_output_ends_the_gateway", &|| {
            a_client_that_closes_its_output_ends_the_gateway(&policy);
        }),
        ("a_client_closing_its_input_still_reads_the_answers", &|| {
            a_client_closing_its_input_still_reads_the_answers(&policy);
        }),
        ("a_client_gone_with_a_call_in_flight_leaves_the_upstream_its_exit", &|| {
            a_client_gone_with_a_call_in_flight_leaves_the_upstream_its_exit(&policy);
        }),
        ("one_socket_for_stdin_and_stdout_is_given_back_blocking", &|| {
            one_socket_for_stdin_and_stdout_is_given_back_blocking(&policy);
        }),
        ("a_client_that_never_reads_gets_its_descriptors_back_blocking", &|| {
            a_client_that_never_reads_gets_its_descriptors_back_blocking(&policy);
        }),
        ("a_client_sending_many_calls_at_once_gets_every_answer", &|| {
            a_client_sending_many_calls_at_once_gets_every_answer(&policy);
        }),
        ("pipes_are_polled_and_given_back_blocking", &|| {
            pipes_are_polled_and_given_back_blocking(&policy);
        }),
        ("sockets_are_polled_and_given_back_blocking", &|| {
            sockets_are_polled_and_given_back_blocking(&policy);
        }),
        ("calls_are_relayed_without_stdio_spin", &|| {
            calls_are_relayed_without_stdio_spin(&policy);
        }),
        ("a_file_for_stdout_is_served_from_a_thread", &|| {
            a_file_for_stdout_is_served_from_a_thread(&policy, dir.path());
        }),
    ];
    for (name, test) in tests {
        test();
        println!("test {name} ... ok");
    }
    println!("\ntest result: ok. {} passed", tests.len());
}
