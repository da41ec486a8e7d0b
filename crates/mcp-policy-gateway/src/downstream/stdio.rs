//! The client speaks MCP over the gateway's own stdin and stdout (newline-delimited JSON).

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::transport::{
    CHANNEL_CAPACITY, ClientLink, Frame, Inbound, MAX_MESSAGE_BYTES, read_frame, to_line,
};

/// The client link over stdin/stdout, and the writer task (await it to flush what is left for
/// the client before exiting).
pub fn serve() -> (ClientLink, JoinHandle<()>) {
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (out_tx, mut out_rx) = mpsc::channel::<serde_json::Value>(CHANNEL_CAPACITY);
    tokio::spawn(async move {
        let mut reader = BufReader::new(tokio::io::stdin());
        let mut buf = Vec::new();
        loop {
            let inbound = match read_frame(&mut reader, &mut buf, MAX_MESSAGE_BYTES).await {
                Ok(Some(Frame::Json(v))) => Inbound::Message(v),
                Ok(Some(Frame::Malformed(why))) => Inbound::Malformed(why),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("mcp-policy-gateway: cannot read standard input: {e}");
                    break;
                }
            };
            if in_tx.send(inbound).await.is_err() {
                break;
            }
        }
    });
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(msg) = out_rx.recv().await {
            if stdout.write_all(&to_line(&msg)).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    (ClientLink { tx: out_tx, rx: in_rx }, writer)
}
