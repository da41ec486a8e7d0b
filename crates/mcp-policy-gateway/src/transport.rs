//! What the relay needs from a transport: channels of JSON values, one pair per end.
//!
//! A downstream transport (stdio today, streamable HTTP later) hands the relay what the client
//! sent and takes what the client must receive; an upstream transport (a child process today,
//! an HTTP client later) does the same for the server. The relay never sees bytes.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};
use tokio::sync::mpsc;

/// The largest message the gateway reads over stdio (64 MiB); longer lines are refused.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Channel capacity between a transport and the relay.
pub const CHANNEL_CAPACITY: usize = 256;

/// What a downstream transport received from the client.
#[derive(Debug)]
pub enum Inbound {
    /// A JSON value (not yet known to be a valid JSON-RPC message).
    Message(Value),
    /// Bytes that are not JSON; the relay answers with a parse error.
    Malformed(String),
}

/// The relay's end of the client connection.
#[derive(Debug)]
pub struct ClientLink {
    /// Messages for the client.
    pub tx: mpsc::Sender<Value>,
    /// Messages from the client; `None` when the client has gone.
    pub rx: mpsc::Receiver<Inbound>,
}

/// Where the relay sends what the client must receive.
#[derive(Clone)]
pub enum ClientTx {
    /// A channel, read by the transport's writer.
    Channel(mpsc::Sender<Value>),
    /// A function that takes each message at once and must not block: the HTTP listener routes
    /// a message to the request waiting for it without a task in between.
    Direct(Arc<dyn Fn(Value) + Send + Sync>),
}

impl ClientTx {
    /// Sends `msg`; it comes back when the client has gone.
    pub async fn send(&self, msg: Value) -> Result<(), Value> {
        match self {
            ClientTx::Channel(tx) => tx.send(msg).await.map_err(|e| e.0),
            ClientTx::Direct(f) => {
                f(msg);
                Ok(())
            }
        }
    }
}

impl std::fmt::Debug for ClientTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientTx::Channel(tx) => f.debug_tuple("Channel").field(tx).finish(),
            ClientTx::Direct(_) => f.write_str("Direct"),
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
    pub tx: mpsc::Sender<Value>,
    /// Messages from the upstream; `None` when the upstream has gone.
    pub rx: mpsc::Receiver<Value>,
}

/// One line of newline-delimited JSON.
#[derive(Debug)]
pub enum Frame {
    /// A JSON value.
    Json(Value),
    /// A line that is not JSON (or too long), with why.
    Malformed(String),
}

/// Reads the next non-blank line as JSON; `None` at end of input. A line over `max` bytes is
/// skipped whole and reported as malformed.
pub async fn read_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<Frame>> {
    loop {
        buf.clear();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        let n = (&mut *reader).take(limit).read_until(b'\n', buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf.len() > max && buf.last() != Some(&b'\n') {
            // Skip the rest of the line.
            loop {
                buf.clear();
                let n = (&mut *reader).take(1 << 20).read_until(b'\n', buf).await?;
                if n == 0 || buf.last() == Some(&b'\n') {
                    break;
                }
            }
            return Ok(Some(Frame::Malformed(format!("message longer than {max} bytes"))));
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        return Ok(Some(match serde_json::from_slice::<Value>(line) {
            Ok(v) => Frame::Json(v),
            Err(e) => Frame::Malformed(format!("not JSON: {e}")),
        }));
    }
}

/// A message as one line of JSON, with its newline.
pub fn to_line(msg: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(msg).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_skips_blank_and_reports_garbage() {
        let input: &[u8] = b"{\"a\":1}\n\n  \nnot json\n\xff\xfe\n{\"b\":2}";
        let mut reader = tokio::io::BufReader::new(input);
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut reader, &mut buf, 1024).await.unwrap() {
            frames.push(f);
        }
        assert_eq!(frames.len(), 4);
        assert!(matches!(&frames[0], Frame::Json(v) if v["a"] == 1));
        assert!(matches!(&frames[1], Frame::Malformed(_)));
        assert!(matches!(&frames[2], Frame::Malformed(_)));
        assert!(matches!(&frames[3], Frame::Json(v) if v["b"] == 2));
    }

    #[tokio::test]
    async fn skips_lines_over_the_limit() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\n{\"ok\":true}\n");
        let mut reader = tokio::io::BufReader::new(&input[..]);
        let mut buf = Vec::new();
        let first = read_frame(&mut reader, &mut buf, 100).await.unwrap().unwrap();
        assert!(matches!(first, Frame::Malformed(m) if m.contains("longer than 100")));
        let second = read_frame(&mut reader, &mut buf, 100).await.unwrap().unwrap();
        assert!(matches!(second, Frame::Json(v) if v["ok"] == true));
    }
}
