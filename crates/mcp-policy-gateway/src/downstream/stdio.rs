//! The client speaks MCP over the gateway's own stdin and stdout (newline-delimited JSON).
//!
//! Stdin and stdout are served by two dedicated threads doing plain blocking I/O: tokio's
//! `stdin()`/`stdout()` hand every read and write to its blocking pool, a thread hop each way
//! that costs more than everything else the gateway does to a call.

use std::io::{BufRead, BufReader, Read, Write};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::transport::{CHANNEL_CAPACITY, ClientLink, Inbound, MAX_MESSAGE_BYTES, to_line};

/// The client link over stdin/stdout, and a receiver that fires once everything sent to the
/// client has been written (await it before exiting, so that the last errors reach the client).
pub fn serve() -> (ClientLink, oneshot::Receiver<()>) {
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (out_tx, mut out_rx) = mpsc::channel::<Value>(CHANNEL_CAPACITY);
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new().name("mcp-stdin".into()).spawn(move || read_stdin(&in_tx)).ok();
    let spawned = std::thread::Builder::new().name("mcp-stdout".into()).spawn(move || {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        while let Some(msg) = out_rx.blocking_recv() {
            if out.write_all(&to_line(&msg)).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        eprintln!("mcp-policy-gateway: cannot start the stdout thread: {e}");
    }
    (ClientLink { tx: out_tx, rx: in_rx }, done_rx)
}

fn read_stdin(tx: &mpsc::Sender<Inbound>) {
    let stdin = std::io::stdin();
    let mut reader = BufReader::new(stdin.lock());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let limit = u64::try_from(MAX_MESSAGE_BYTES).unwrap_or(u64::MAX).saturating_add(1);
        let n = match (&mut reader).take(limit).read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("mcp-policy-gateway: cannot read standard input: {e}");
                return;
            }
        };
        if n == 0 {
            return;
        }
        let inbound = if buf.len() > MAX_MESSAGE_BYTES && buf.last() != Some(&b'\n') {
            // Skip the rest of the line.
            loop {
                buf.clear();
                match (&mut reader).take(1 << 20).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
            Inbound::Malformed(format!("message longer than {MAX_MESSAGE_BYTES} bytes"))
        } else {
            let line = buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(line) {
                Ok(v) => Inbound::Message(v),
                Err(e) => Inbound::Malformed(format!("not JSON: {e}")),
            }
        };
        if tx.blocking_send(inbound).is_err() {
            return;
        }
    }
}
