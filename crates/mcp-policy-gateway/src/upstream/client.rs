//! The HTTP/1.1 client the gateway speaks to an HTTP upstream with: hyper's pooled client over
//! plain TCP, and no more (no redirects, proxies, cookies, retries or TLS: the upstream is one
//! `http` URL the operator gave).
//!
//! One client serves the whole process: its pool lets any connection carry any session's
//! requests (the session is a header). Each connection's socket is watched by the spin
//! ([`crate::spin`]), so that an answer arriving just after the gateway ran out of work is taken
//! without the thread going to sleep and being woken.

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{self, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{BodyDataStream, BodyExt, Full};
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

/// How long the gateway waits for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the process's client ([`Client::shared`]) keeps an idle pooled connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most idle connections kept to the upstream (the rest are closed when their request is
/// done).
pub const IDLE_MAX: usize = 256;

/// Opens plain TCP connections to the upstream, with `TCP_NODELAY`, each watched by the spin.
#[derive(Clone, Copy, Debug)]
struct Connector;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(async move {
            let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host");
            let host = uri.host().ok_or_else(invalid)?;
            // An IPv6 address is written between brackets in a URL, not in a socket address.
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(80);
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            stream.set_nodelay(true)?;
            crate::spin::watch(stream.as_fd());
            Ok(TokioIo::new(stream))
        })
    }
}

/// The client (cheap to clone: the pool is shared).
#[derive(Clone, Debug)]
pub struct Client {
    pooled: Pooled<Connector, Full<Bytes>>,
    idle_timeout: Duration,
}

/// Why a request got no response.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `e` and its sources, as one line (hyper's own text alone says only "client error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Client {
    /// The process's client (one pool for every upstream session), keeping idle connections
    /// [`IDLE_TIMEOUT`].
    pub fn shared() -> Client {
        static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
        CLIENT.get_or_init(|| Client::new(IDLE_TIMEOUT)).clone()
    }

    /// A client with a pool of its own, which keeps a connection that has been idle for
    /// `idle_timeout` no longer (it closes it), and at most [`IDLE_MAX`] idle ones per host.
    pub fn new(idle_timeout: Duration) -> Client {
        Client {
            pooled: Pooled::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(idle_timeout)
                .pool_max_idle_per_host(IDLE_MAX)
                .build(Connector),
            idle_timeout,
        }
    }

    /// How long this client keeps an idle pooled connection.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A request of `method` to `uri`.
    pub fn request(&self, method: Method, uri: &Uri) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            parts: http::Request::builder().method(method).uri(uri.clone()),
            body: Bytes::new(),
        }
    }
}

/// A request being built (the subset of headers and body the upstream needs).
#[derive(Debug)]
pub struct RequestBuilder {
    client: Client,
    parts: http::request::Builder,
    body: Bytes,
}

impl RequestBuilder {
    /// Adds a header (an invalid name or value fails the request when it is sent).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.parts = self.parts.header(name, value);
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Bytes::from(body);
        self
    }

    /// Sends the request; the response's headers when they come.
    pub async fn send(self) -> Result<Response, Error> {
        let request = self
            .parts
            .body(Full::new(self.body))
            .map_err(|e| Error(format!("bad request: {e}")))?;
        let response = self.client.pooled.request(request).await.map_err(|e| Error(chain(&e)))?;
        Ok(Response { inner: response })
    }
}

/// A response whose body is still to be read.
#[derive(Debug)]
pub struct Response {
    inner: http::Response<hyper::body::Incoming>,
}

impl Response {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The body, as it comes.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, hyper::Error>> + Send + Unpin {
        BodyDataStream::new(self.inner.into_body())
    }

    /// The body as text (lossy), at most `limit` bytes of it.
    pub async fn text(self, limit: usize) -> String {
        let mut body = self.inner.into_body();
        let mut bytes = Vec::new();
        while bytes.len() < limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        bytes.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
        bytes.truncate(limit);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server on `listener` that answers one request with `200 ok`.
    async fn answer_once(listener: tokio::net::TcpListener) {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = socket.read(&mut buf).await.unwrap();
        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
    }

    #[tokio::test]
    async fn a_request_reaches_an_ipv4_and_an_ipv6_address() {
        for host in ["127.0.0.1", "[::1]"] {
            let Ok(listener) = tokio::net::TcpListener::bind(format!("{host}:0")).await else {
                eprintln!("SKIPPED: no {host} on this machine");
                continue;
            };
            let port = listener.local_addr().unwrap().port();
            let server = tokio::spawn(answer_once(listener));
            let uri: Uri = format!("http://{host}:{port}/mcp").parse().unwrap();
            let resp = Client::shared().request(Method::POST, &uri).body(b"{}".to_vec());
            let resp = resp.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.text(100).await, "ok");
            server.await.unwrap();
        }
    }

    /// What the counting server saw: a connection accepted (its number), or its client's end
    /// of it (EOF).
    #[derive(Debug, PartialEq)]
    enum Seen {
        Accepted(usize),
        Closed(usize),
    }

    /// A keep-alive HTTP/1.1 server on `listener` answering every request with `200 ok`, and
    /// telling `seen` of each connection it accepts and each one its client closes.
    async fn counting_server(
        listener: tokio::net::TcpListener,
        seen: tokio::sync::mpsc::UnboundedSender<Seen>,
    ) {
        for n in 1.. {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let _ = seen.send(Seen::Accepted(n));
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = seen.send(Seen::Closed(n));
                            return;
                        }
                        Ok(k) => request.extend_from_slice(&buf[..k]),
                    }
                    // Requests without a body (GET): each ends with an empty line.
                    while let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        request.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }

    /// What the counting server sees next, within a generous bound.
    async fn next(seen: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>) -> Option<Seen> {
        let event = tokio::time::timeout(Duration::from_secs(60), seen.recv());
        event.await.expect("the server saw nothing within a minute")
    }

    #[test]
    fn the_shared_client_keeps_idle_connections_90_s() {
        assert_eq!(Client::shared().idle_timeout(), Duration::from_secs(90));
    }

    /// An idle connection is reused for the next request within the idle timeout (the server
    /// sees one connection), and closed once it has been idle that long (the server reads EOF).
    #[tokio::test]
    async fn an_idle_connection_is_reused_within_the_timeout_and_closed_after_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri: Uri = format!("http://{}/mcp", listener.local_addr().unwrap()).parse().unwrap();
        let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(counting_server(listener, tx));
        // Long enough for the second request to come well within it, short for the test.
        let client = Client::new(Duration::from_secs(2));

        let resp = client.request(Method::GET, &uri).send().await.unwrap();
        assert_eq!(resp.text(100).await, "ok");
        assert_eq!(next(&mut seen).await, Some(Seen::Accepted(1)));
        // The connection goes back to the pool once its answer has been read.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = client.request(Method::GET, &uri).send().await.unwrap();
        assert_eq!(resp.text(100).await, "ok");

        // Nothing more until the idle connection is closed: no second connection, before it or
        // after it (every event of the second request was sent before its answer).
        assert_eq!(next(&mut seen).await, Some(Seen::Closed(1)), "reused, then closed");
        let after = seen.try_recv();
        assert!(after.is_err(), "one connection for both requests: then {after:?}");
        server.abort();
    }

    #[tokio::test]
    async fn an_unreachable_upstream_says_why() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let uri: Uri = format!("http://127.0.0.1:{port}/mcp").parse().unwrap();
        let Err(e) = Client::shared().request(Method::GET, &uri).send().await else {
            panic!("a closed port answered");
        };
        // hyper's own text alone ("client error (Connect)") does not say it.
        assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
    }
}
