//! A plain-HTTP client for one sidecar server: JSON requests with basic auth, and its event
//! stream.
//!
//! The sidecar listens on `127.0.0.1` only, so there is no TLS; `hyper` with a pooled
//! connector is all it takes. Every call has its own timeout; what a failure means for a chat
//! user (rate limit, permission, unavailable, …) is decided by [`status_error`] and
//! [`HttpError::into_agent_error`].

use std::time::Duration;

use acg_core::AgentError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::sse::{SseEvent, SseParser};

/// The basic-auth user OpenCode expects (we also set `OPENCODE_SERVER_USERNAME` to it).
pub const SERVER_USER: &str = "opencode";

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The server could not be reached (refused, reset, closed).
    #[error("cannot reach the opencode server: {0}")]
    Connect(String),
    /// No (complete) answer in time.
    #[error("the opencode server did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not even be built (a bad path).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl HttpError {
    /// Every transport failure means the agent is unavailable right now.
    pub fn into_agent_error(self) -> AgentError {
        AgentError::Unavailable(self.to_string())
    }
}

/// An HTTP answer: its status and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The body bytes.
    pub body: Bytes,
}

impl HttpReply {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as (lossy) text, cut to 500 characters for messages and logs.
    pub fn text_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let mut excerpt: String = text.chars().take(500).collect();
        if text.chars().count() > 500 {
            excerpt.push('…');
        }
        excerpt
    }
}

/// The error class of a non-2xx answer from the server (or a provider status it reports):
/// 429 rate limited, 401/403 permission, 502/503/504 unavailable, anything else "other".
pub fn status_error(status: u16, detail: String) -> AgentError {
    match status {
        429 => AgentError::RateLimited(detail),
        401 | 403 => AgentError::Permission(detail),
        502..=504 => AgentError::Unavailable(detail),
        _ => AgentError::Other(detail),
    }
}

/// A client bound to one server start (its URL and password).
#[derive(Clone)]
pub struct ServerClient {
    base_url: String,
    auth: HeaderValue,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("ServerClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ServerClient {
    /// A client for `base_url` (`http://127.0.0.1:<port>`, no trailing slash) that sends
    /// `password` as basic auth (user [`SERVER_USER`]).
    pub fn new(base_url: &str, password: &str) -> Self {
        let token = base64(format!("{SERVER_USER}:{password}").as_bytes());
        let auth = HeaderValue::from_str(&format!("Basic {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        ServerClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            auth,
            client,
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// True when both clients talk to the same server start (same URL and password: a
    /// restarted server may reuse the port, never the password).
    pub fn same_server(&self, other: &ServerClient) -> bool {
        self.base_url == other.base_url && self.auth == other.auth
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        authorized: bool,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        if authorized {
            builder = builder.header(AUTHORIZATION, self.auth.clone());
        }
        let body = match body {
            Some(value) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(value.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        builder
            .body(body)
            .map_err(|e| HttpError::Invalid(e.to_string()))
    }

    /// Sends a request and reads the whole answer, all within `timeout`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<HttpReply, HttpError> {
        let request = self.request(method, path, body, true)?;
        self.send(request, timeout).await
    }

    /// The same request without the password (to check the server refuses it).
    pub async fn call_without_auth(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<HttpReply, HttpError> {
        let request = self.request(method, path, None, false)?;
        self.send(request, timeout).await
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<HttpReply, HttpError> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Connect(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| HttpError::Connect(error_chain(&e)))?
                .to_bytes();
            Ok(HttpReply { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
    }

    /// Opens an event stream (`GET path`, e.g. `/event`) and waits up to `timeout` for the
    /// response headers. A non-2xx answer is returned as the error's reply.
    pub async fn events(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<Result<EventStream, HttpReply>, HttpError> {
        let mut request = self.request(Method::GET, path, None, true)?;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| HttpError::Timeout(timeout))?
            .map_err(|e| HttpError::Connect(error_chain(&e)))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = tokio::time::timeout(timeout, response.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Ok(Err(HttpReply {
                status: status.as_u16(),
                body,
            }));
        }
        Ok(Ok(EventStream {
            body: response.into_body(),
            parser: SseParser::new(),
            ready: std::collections::VecDeque::new(),
        }))
    }
}

/// A live event stream: yields one [`SseEvent`] at a time.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
}

/// Why an event stream ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamEnd {
    /// The server closed it.
    #[error("the opencode event stream closed")]
    Closed,
    /// Reading it failed (the server died, the connection broke).
    #[error("the opencode event stream broke: {0}")]
    Broken(String),
}

impl EventStream {
    /// The next event; an error when the stream ends.
    pub async fn next(&mut self) -> Result<SseEvent, StreamEnd> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            match self.body.frame().await {
                None => return Err(StreamEnd::Closed),
                Some(Err(e)) => return Err(StreamEnd::Broken(error_chain(&e))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let events = self
                            .parser
                            .push(&data)
                            .map_err(|e| StreamEnd::Broken(e.to_string()))?;
                        self.ready.extend(events);
                    }
                }
            }
        }
    }
}

/// An error with its sources, `: `-joined (hyper's top-level messages are terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved bytes).
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("opencode:secret", "b3BlbmNvZGU6c2VjcmV0"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn statuses_map_to_error_classes() {
        let class = |s| std::mem::discriminant(&status_error(s, String::new()));
        let d = |e: AgentError| std::mem::discriminant(&e);
        assert_eq!(class(429), d(AgentError::RateLimited(String::new())));
        assert_eq!(class(401), d(AgentError::Permission(String::new())));
        assert_eq!(class(403), d(AgentError::Permission(String::new())));
        for s in [502, 503, 504] {
            assert_eq!(class(s), d(AgentError::Unavailable(String::new())));
        }
        for s in [400, 500, 418] {
            assert_eq!(class(s), d(AgentError::Other(String::new())));
        }
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("ses_AZ09-._~"), "ses_AZ09-._~");
        assert_eq!(encode_component("/tmp/a b/é"), "%2Ftmp%2Fa%20b%2F%C3%A9");
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let client = ServerClient::new("http://127.0.0.1:1/", "hunter2");
        assert_eq!(client.base_url(), "http://127.0.0.1:1");
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = ServerClient::new(&format!("http://127.0.0.1:{port}"), "x");
        let err = client
            .call(Method::GET, "/session", None, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Connect(_)), "{err:?}");
        assert!(matches!(err.into_agent_error(), AgentError::Unavailable(_)));
    }
}
