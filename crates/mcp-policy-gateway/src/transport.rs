//! What the relay needs from a transport: a way in and a way out for JSON values, one pair per
//! end.
//!
//! A downstream transport (stdio, streamable HTTP) hands the relay what the client sent and
//! takes what the client must receive; an upstream transport (a child process, an HTTP client)
//! does the same for the server. Each way is a channel to a task of the transport's own, or,
//! for a pipe or a socket, the descriptor itself, read and written by the relay's task (see
//! [`crate::lines`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::lines::{Frame, Line, LineReader, LineWriter};

/// In `error.data` of the error a request without a session gets when the upstream refused it
/// with an HTTP client error (4xx), or when the gateway refuses it as such an upstream would (a
/// command upstream that does not offer the request's revision): that status, which the
/// listener answers the client's POST with (and takes out of the body). An upstream cannot say
/// it itself: every transport takes it out of what the upstream sends.
pub const UPSTREAM_STATUS: &str = "mcp-policy-gateway/upstreamHttpStatus";

/// Channel capacity between a transport and the relay.
pub const CHANNEL_CAPACITY: usize = 256;

/// What a downstream transport received from the client.
#[derive(Debug)]
pub enum Inbound {
    /// A JSON value (not yet known to be a valid JSON-RPC message).
    Message(Value),
    /// Bytes that are not JSON; the relay answers with a parse error.
    Malformed(String),
    /// A line read from the client's descriptor, not yet parsed (see [`crate::raw`]): the
    /// relay parses it, and answers a line that is not JSON with a parse error.
    Line(Vec<u8>),
}

/// The relay's end of the client connection.
#[derive(Debug)]
pub struct ClientLink {
    /// Messages for the client.
    pub tx: ClientTx,
    /// Messages from the client.
    pub rx: ClientRx,
}

/// Where the relay reads what the client sent.
#[derive(Debug)]
pub enum ClientRx {
    /// A channel, filled by the transport's reader.
    Channel(mpsc::Receiver<Inbound>),
    /// The client's descriptor (stdin), read by the relay.
    Lines(LineReader),
}

impl ClientRx {
    /// The next message; `None` when the client has gone. Cancel safe.
    pub async fn recv(&mut self) -> Option<Inbound> {
        match self {
            ClientRx::Channel(rx) => rx.recv().await,
            ClientRx::Lines(lines) => match lines.next_line().await {
                Ok(Some(Line::Text(bytes))) => Some(Inbound::Line(bytes)),
                Ok(Some(Line::TooLong(why))) => Some(Inbound::Malformed(why)),
                Ok(None) => None,
                Err(e) => {
                    eprintln!("mcp-policy-gateway: cannot read standard input: {e}");
                    None
                }
            },
        }
    }
}

impl ClientRx {
    /// The client's descriptor's reader, when the relay reads it itself.
    pub fn lines_mut(&mut self) -> Option<&mut LineReader> {
        match self {
            ClientRx::Lines(l) => Some(l),
            ClientRx::Channel(_) => None,
        }
    }
}

impl From<mpsc::Receiver<Inbound>> for ClientRx {
    fn from(rx: mpsc::Receiver<Inbound>) -> Self {
        ClientRx::Channel(rx)
    }
}

/// Where the relay sends what the client must receive.
#[derive(Clone)]
pub enum ClientTx {
    /// A channel, read by the transport's writer.
    Channel(mpsc::Sender<Value>),
    /// A function that takes each message at once and must not block: the HTTP listener routes
    /// a message to the request waiting for it without a task in between.
    Direct(Arc<dyn Fn(Value) + Send + Sync>),
    /// The client's descriptor (stdout), written by the relay.
    Lines(Arc<LineWriter>),
}

impl ClientTx {
    /// The client's descriptor, when the relay writes it itself.
    pub fn lines(&self) -> Option<&Arc<LineWriter>> {
        match self {
            ClientTx::Lines(w) => Some(w),
            ClientTx::Channel(_) | ClientTx::Direct(_) => None,
        }
    }

    /// Sends `msg`; it comes back when the client has gone.
    pub async fn send(&self, msg: Value) -> Result<(), Value> {
        match self {
            ClientTx::Channel(tx) => tx.send(msg).await.map_err(|e| e.0),
            ClientTx::Direct(f) => {
                f(msg);
                Ok(())
            }
            ClientTx::Lines(w) => w.send(&msg).await.map_err(|_| msg),
        }
    }
}

impl ClientTx {
    /// Whether the client is known to read nothing more: a write to its descriptor failed (it
    /// closed its end of the gateway's stdout).
    pub fn is_gone(&self) -> bool {
        match self {
            ClientTx::Lines(w) => w.is_broken(),
            ClientTx::Channel(_) | ClientTx::Direct(_) => false,
        }
    }
}

impl std::fmt::Debug for ClientTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientTx::Channel(tx) => f.debug_tuple("Channel").field(tx).finish(),
            ClientTx::Direct(_) => f.write_str("Direct"),
            ClientTx::Lines(w) => f.debug_tuple("Lines").field(w).finish(),
        }
    }
}

impl From<mpsc::Sender<Value>> for ClientTx {
    fn from(tx: mpsc::Sender<Value>) -> Self {
        ClientTx::Channel(tx)
    }
}

/// The relay's end of the upstream connection.
#[derive(Debug)]
pub struct UpstreamLink {
    /// Messages for the upstream; a failed send means the upstream has gone.
    pub tx: UpstreamTx,
    /// Messages from the upstream; `None` when the upstream has gone.
    pub rx: UpstreamRx,
}

/// Where the relay sends what the upstream must receive.
#[derive(Debug)]
pub enum UpstreamTx {
    /// A channel, read by the transport's writer.
    Channel(mpsc::Sender<Value>),
    /// The upstream process's stdin, written by the relay.
    Lines(LineWriter),
}

impl UpstreamTx {
    /// Sends `msg`; it comes back when the upstream has gone.
    pub async fn send(&self, msg: Value) -> Result<(), Value> {
        match self {
            UpstreamTx::Channel(tx) => tx.send(msg).await.map_err(|e| e.0),
            UpstreamTx::Lines(w) => w.send(&msg).await.map_err(|_| msg),
        }
    }

    /// Whether a message sent now is taken at once (a failure, when the upstream has gone,
    /// counts as taken: it is known at once).
    pub fn has_room(&self) -> bool {
        match self {
            UpstreamTx::Channel(tx) => tx.is_closed() || tx.capacity() > 0,
            UpstreamTx::Lines(w) => w.has_room(),
        }
    }

    /// Waits until [`UpstreamTx::has_room`]. Cancel safe.
    pub async fn room(&self) {
        match self {
            UpstreamTx::Channel(tx) => {
                // A slot, given back at once (or the channel closed: a send fails at once).
                let _ = tx.reserve().await;
            }
            UpstreamTx::Lines(w) => w.room().await,
        }
    }

    /// The upstream process's stdin, when the relay writes it itself.
    pub fn lines(&self) -> Option<&LineWriter> {
        match self {
            UpstreamTx::Lines(w) => Some(w),
            UpstreamTx::Channel(_) => None,
        }
    }

    /// [`UpstreamTx::send`], failing when the message is not taken within `timeout`.
    pub async fn send_timeout(&self, msg: Value, timeout: Duration) -> Result<(), ()> {
        match self {
            UpstreamTx::Channel(tx) => tx.send_timeout(msg, timeout).await.map_err(|_| ()),
            UpstreamTx::Lines(w) => match tokio::time::timeout(timeout, w.send(&msg)).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(()),
            },
        }
    }
}

impl From<mpsc::Sender<Value>> for UpstreamTx {
    fn from(tx: mpsc::Sender<Value>) -> Self {
        UpstreamTx::Channel(tx)
    }
}

/// Where the relay reads what the upstream sent.
#[derive(Debug)]
pub enum UpstreamRx {
    /// A channel, filled by the transport.
    Channel(mpsc::Receiver<Value>),
    /// The upstream process's stdout, read by the relay; each message goes through `clean`
    /// first.
    Lines {
        /// The reader.
        lines: LineReader,
        /// What is done to each message before the relay sees it.
        clean: fn(&mut Value),
    },
}

/// What the upstream sent, as [`UpstreamRx::recv_line`] gives it.
#[derive(Debug)]
pub enum Received {
    /// A message.
    Message(Value),
    /// A line read from the upstream process's stdout, not yet parsed (see [`crate::raw`]):
    /// [`UpstreamRx::parse`] makes it a message.
    Line(Vec<u8>),
}

impl UpstreamRx {
    /// The next message; `None` when the upstream has gone. Cancel safe.
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            match self.recv_line().await? {
                Received::Message(v) => return Some(v),
                Received::Line(line) => {
                    if let Some(v) = self.parse(&line) {
                        return Some(v);
                    }
                }
            }
        }
    }

    /// The upstream process's stdout's reader, when the relay reads it itself.
    pub fn lines_mut(&mut self) -> Option<&mut LineReader> {
        match self {
            UpstreamRx::Lines { lines, .. } => Some(lines),
            UpstreamRx::Channel(_) => None,
        }
    }

    /// The next message or line; `None` when the upstream has gone. Cancel safe.
    pub async fn recv_line(&mut self) -> Option<Received> {
        match self {
            UpstreamRx::Channel(rx) => rx.recv().await.map(Received::Message),
            UpstreamRx::Lines { lines, .. } => loop {
                match lines.next_line().await {
                    Ok(Some(Line::Text(bytes))) => return Some(Received::Line(bytes)),
                    Ok(Some(Line::TooLong(why))) => dropped(&why),
                    Ok(None) | Err(_) => return None,
                }
            },
        }
    }

    /// A line the upstream wrote, as the message it is; `None` (and a word on stderr) when it
    /// is not JSON.
    pub fn parse(&self, line: &[u8]) -> Option<Value> {
        match crate::lines::parse(line) {
            Frame::Json(mut v) => {
                if let UpstreamRx::Lines { clean, .. } = self {
                    clean(&mut v);
                }
                Some(v)
            }
            Frame::Malformed(why) => {
                dropped(&why);
                None
            }
        }
    }
}

/// Says on stderr that a line of the upstream's was dropped (without quoting it: it may hold
/// what the upstream read from its arguments).
fn dropped(why: &str) {
    eprintln!(
        "mcp-policy-gateway: the upstream wrote a line that is not a JSON-RPC message ({why}); \
         dropped"
    );
}

/// How long [`UpstreamRx::discard`] reads what a command upstream still writes.
const DISCARD_FOR: Duration = Duration::from_secs(10);

impl UpstreamRx {
    /// The relay is done with the upstream (its client has gone): what a command upstream still
    /// writes (its answers to the requests in flight, as its input closes) is read and dropped
    /// until it closes its output or exits, for at most 10 s, so that it is not killed by
    /// `SIGPIPE` (or fails with `EPIPE`) for answering, and exits with its own status. Must be
    /// called within the tokio runtime.
    pub fn discard(self) {
        if let UpstreamRx::Lines { .. } = self {
            let mut rx = self;
            tokio::spawn(async move {
                let drained = async { while rx.recv().await.is_some() {} };
                let _ = tokio::time::timeout(DISCARD_FOR, drained).await;
            });
        }
    }
}

impl From<mpsc::Receiver<Value>> for UpstreamRx {
    fn from(rx: mpsc::Receiver<Value>) -> Self {
        UpstreamRx::Channel(rx)
    }
}
