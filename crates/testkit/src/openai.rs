//! A scriptable mock of the OpenAI Chat Completions API that OpenAI-compatible agents (OpenCode
//! with the bundled `@ai-sdk/openai-compatible` provider) talk to offline.
//!
//! [`MockOpenAI::start`] serves on `127.0.0.1:<free port>`; [`MockOpenAI::base_url`] is the
//! `…/v1` URL a provider's `baseURL` option takes (see
//! [`crate::agents::opencode_provider_config`]). The mock:
//! - answers `POST /v1/chat/completions` with a real server-sent-event stream when the body says
//!   `"stream": true` (one `chat.completion.chunk` per `data:` line: the role first, content and
//!   `reasoning_content` cut into several deltas, each tool call's `arguments` split over several
//!   chunks after a first chunk with its id and name, a chunk with the `finish_reason`, usage in
//!   the last chunk, then `data: [DONE]`), else with one `chat.completion` object;
//! - answers `GET /v1/models` with the one mock model, and any other path with `404`;
//! - records every request (method, path, query, headers, parsed JSON body) so a test can assert
//!   exactly what the agent sent.
//!
//! Which reply a request gets: a *turn* request (the agent's own conversation: it offers tools
//! and is not a title request) takes the next [`Reply`] from the FIFO filled with
//! [`MockOpenAI::push`], or the default reply when the FIFO is empty. Title requests (a system
//! message starting with "You are a title generator", or no tools at all) never consume the
//! FIFO; they get the auxiliary reply. A responder set with [`MockOpenAI::respond_with`] sees
//! every completion request first and may answer it instead.
//!
//! What OpenCode 1.18.33 sends (see `/work/shared/reference/opencode-cli.md`): `model`,
//! `messages`, `max_tokens`, `stream: true`, `stream_options.include_usage`, `tools` and
//! `tool_choice: "auto"`; each new session adds one title request; history comes back as
//! assistant `tool_calls` followed by `role: "tool"` messages. On 5xx, 429 and connection errors
//! it retries up to 6 times with back-off unless the response carries `retry-after-ms` — use
//! [`Reply::with_retry_after_ms`] on scripted errors that should come back fast.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The model name the mock reports when the request names none.
pub const MOCK_MODEL: &str = "mock-model";
/// Content deltas are cut into pieces of this many characters, so clients see real streaming.
const DELTA_CHARS: usize = 16;
/// Tool-call arguments are cut into pieces of this many characters.
const ARGUMENT_CHARS: usize = 12;
/// How a title request's system message starts (OpenCode's title agent).
const TITLE_PROMPT_START: &str = "You are a title generator";

/// Token counts a reply reports in its `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockUsage {
    /// `prompt_tokens`.
    pub prompt_tokens: u64,
    /// `completion_tokens`.
    pub completion_tokens: u64,
    /// `prompt_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
}

impl Default for MockUsage {
    fn default() -> Self {
        MockUsage {
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 0,
        }
    }
}

/// One piece of a scripted assistant message, streamed in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Assistant text (`content`).
    Text(String),
    /// Reasoning text (`reasoning_content`), as reasoning models stream it.
    Reasoning(String),
    /// A tool call; `arguments` is the tool's JSON input.
    ToolCall {
        /// The call id (`call_…`).
        id: String,
        /// The tool name (`bash`, `read`, …).
        name: String,
        /// The tool input object (sent as a JSON string, as the API does).
        arguments: Value,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum ReplyBody {
    Message {
        pieces: Vec<Piece>,
        finish_reason: Option<String>,
    },
    Error {
        status: u16,
        message: String,
    },
}

/// A scripted answer to one completion request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    body: ReplyBody,
    delay: Duration,
    chunk_delay: Duration,
    usage: MockUsage,
    headers: Vec<(String, String)>,
}

static CALL_SEQ: AtomicU64 = AtomicU64::new(1);

fn next_call_id() -> String {
    let n = CALL_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("call_mock{n:08}")
}

impl Reply {
    /// An assistant message with this text (`finish_reason: stop`).
    pub fn text(text: impl Into<String>) -> Self {
        Reply::pieces(vec![Piece::Text(text.into())])
    }

    /// An assistant message calling one tool (`finish_reason: tool_calls`). The agent runs the
    /// tool and sends its result in the next request.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Reply::pieces(vec![Piece::ToolCall {
            id: next_call_id(),
            name: name.into(),
            arguments,
        }])
    }

    /// An assistant message made of these pieces; the finish reason is `tool_calls` when one
    /// calls a tool, else `stop`.
    pub fn pieces(pieces: Vec<Piece>) -> Self {
        Reply {
            body: ReplyBody::Message {
                pieces,
                finish_reason: None,
            },
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            usage: MockUsage::default(),
            headers: Vec::new(),
        }
    }

    /// An HTTP error in the API's shape: `{"error":{"message","type","code"}}`. Agents retry
    /// 429 and 5xx answers with back-off; add [`Self::with_retry_after_ms`] to keep it short.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply {
            body: ReplyBody::Error {
                status,
                message: message.into(),
            },
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            usage: MockUsage::default(),
            headers: Vec::new(),
        }
    }

    /// Adds text after the existing pieces.
    pub fn then_text(self, text: impl Into<String>) -> Self {
        self.push_piece(Piece::Text(text.into()))
    }

    /// Adds a tool call after the existing pieces.
    pub fn then_tool_call(self, name: impl Into<String>, arguments: Value) -> Self {
        self.push_piece(Piece::ToolCall {
            id: next_call_id(),
            name: name.into(),
            arguments,
        })
    }

    /// Puts reasoning text before the existing pieces.
    pub fn with_reasoning(mut self, reasoning: impl Into<String>) -> Self {
        if let ReplyBody::Message { pieces, .. } = &mut self.body {
            pieces.insert(0, Piece::Reasoning(reasoning.into()));
        }
        self
    }

    /// Overrides the finish reason (`stop`, `length`, …).
    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> Self {
        if let ReplyBody::Message { finish_reason, .. } = &mut self.body {
            *finish_reason = Some(reason.into());
        }
        self
    }

    /// Waits this long before answering (before the response headers), e.g. to run a turn
    /// past its deadline.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Waits this long between stream chunks, so a turn stays busy while streaming.
    pub fn with_chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Reports these prompt and completion token counts.
    pub fn with_usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        self.usage.prompt_tokens = prompt_tokens;
        self.usage.completion_tokens = completion_tokens;
        self
    }

    /// Reports this many cached prompt tokens.
    pub fn with_cached_tokens(mut self, cached: u64) -> Self {
        self.usage.cached_tokens = cached;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `retry-after-ms: <ms>`, which makes OpenCode retry after `ms` instead of its
    /// multi-second back-off.
    pub fn with_retry_after_ms(self, ms: u64) -> Self {
        self.with_header("retry-after-ms", ms.to_string())
    }

    fn push_piece(mut self, piece: Piece) -> Self {
        if let ReplyBody::Message { pieces, .. } = &mut self.body {
            pieces.push(piece);
        }
        self
    }
}

/// What a recorded request was, by the mock's matching rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A completion request of the agent's own conversation.
    Turn,
    /// A title request (title-generator system prompt, or no tools).
    Title,
    /// Anything else (`GET /v1/models`, unknown paths).
    Other,
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when empty or not JSON).
    pub body: Value,
    /// How the mock classified it.
    pub kind: RequestKind,
}

/// A tool's result as the agent sent it back to the model (`role: "tool"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The call it answers.
    pub tool_call_id: String,
    /// Its text.
    pub text: String,
}

impl RecordedRequest {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True for the agent's own conversation requests.
    pub fn is_turn(&self) -> bool {
        self.kind == RequestKind::Turn
    }

    /// The `messages` array (empty when absent).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every `system` message's text, joined with `\n`.
    pub fn system_text(&self) -> String {
        self.messages()
            .iter()
            .filter(|m| role(m) == Some("system"))
            .flat_map(message_texts)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The names of the tools offered to the model.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The text of the last user message (its text parts joined with `\n`).
    pub fn last_user_text(&self) -> Option<String> {
        let last = self
            .messages()
            .iter()
            .rev()
            .find(|m| role(m) == Some("user"))?;
        Some(message_texts(last).join("\n"))
    }

    /// Every user message's text, oldest first.
    pub fn user_texts(&self) -> Vec<String> {
        self.texts_of("user")
    }

    /// Every assistant message's text, oldest first (messages with no text are skipped).
    pub fn assistant_texts(&self) -> Vec<String> {
        self.texts_of("assistant")
    }

    /// Every `role: "tool"` message, oldest first.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.messages()
            .iter()
            .filter(|m| role(m) == Some("tool"))
            .map(|m| ToolResult {
                tool_call_id: m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                text: message_texts(m).join("\n"),
            })
            .collect()
    }

    fn texts_of(&self, wanted: &str) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| role(m) == Some(wanted))
            .map(|m| message_texts(m).join("\n"))
            .filter(|t| !t.is_empty())
            .collect()
    }
}

fn role(message: &Value) -> Option<&str> {
    message.get("role").and_then(Value::as_str)
}

/// A message's text: its `content` string, or the `text` of its content parts.
fn message_texts(message: &Value) -> Vec<String> {
    match message.get("content") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// A closure that may answer a completion request instead of the FIFO.
type Responder = dyn Fn(&RecordedRequest) -> Option<Reply> + Send + Sync;

struct Script {
    queue: VecDeque<Reply>,
    default_reply: Reply,
    title_reply: Reply,
    responder: Option<Arc<Responder>>,
}

struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Notify,
    completion_seq: AtomicU64,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        // A panic while holding the lock only happens in a failing test; keep serving.
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running mock server. Dropping it stops the server.
pub struct MockOpenAI {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for MockOpenAI {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOpenAI")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockOpenAI {
    /// Starts a mock on `127.0.0.1` with a free port; the default reply is the text `ok` and
    /// title requests are answered `Mock title`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a mock on the given address (port 0 = any free port).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                queue: VecDeque::new(),
                default_reply: Reply::text("ok"),
                title_reply: Reply::text("Mock title"),
                responder: None,
            }),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            completion_seq: AtomicU64::new(1),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("mock openai server stopped: {e}");
            }
        });
        Ok(MockOpenAI {
            addr,
            shared,
            server,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/v1`: the value for a provider's `baseURL`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a reply for the next turn request.
    pub fn push(&self, reply: Reply) -> &Self {
        self.shared.script().queue.push_back(reply);
        self
    }

    /// Queues several replies, in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) -> &Self {
        self.shared.script().queue.extend(replies);
        self
    }

    /// How many queued replies were not used yet.
    pub fn pending_replies(&self) -> usize {
        self.shared.script().queue.len()
    }

    /// The reply a turn request gets when the FIFO is empty.
    pub fn set_default(&self, reply: Reply) -> &Self {
        self.shared.script().default_reply = reply;
        self
    }

    /// The reply title requests get.
    pub fn set_title_reply(&self, reply: Reply) -> &Self {
        self.shared.script().title_reply = reply;
        self
    }

    /// Lets `responder` answer completion requests: it sees each one first; `Some(reply)`
    /// answers it, `None` falls back to the FIFO / defaults.
    pub fn respond_with(
        &self,
        responder: impl Fn(&RecordedRequest) -> Option<Reply> + Send + Sync + 'static,
    ) -> &Self {
        self.shared.script().responder = Some(Arc::new(responder));
        self
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests().clone()
    }

    /// The turn requests (the agent's conversation) received so far.
    pub fn turn_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.is_turn())
            .cloned()
            .collect()
    }

    /// The title requests received so far.
    pub fn title_requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .filter(|r| r.kind == RequestKind::Title)
            .cloned()
            .collect()
    }

    /// The most recent turn request.
    pub fn last_turn_request(&self) -> Option<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .rev()
            .find(|r| r.is_turn())
            .cloned()
    }

    /// The text of the last user message of the most recent turn request.
    pub fn last_user_text(&self) -> Option<String> {
        self.last_turn_request()?.last_user_text()
    }

    /// The system text of the most recent turn request.
    pub fn system_text(&self) -> Option<String> {
        Some(self.last_turn_request()?.system_text())
    }

    /// Forgets the recorded requests (the script is kept).
    pub fn clear_requests(&self) {
        self.shared.requests().clear();
    }

    /// Waits until at least `count` turn requests were recorded; `false` after `timeout`.
    pub async fn wait_for_turn_requests(&self, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            if self.turn_requests().len() >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.turn_requests().len() >= count;
            }
        }
    }
}

impl Drop for MockOpenAI {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn classify(method: &Method, path: &str, body: &Value) -> RequestKind {
    if method != Method::POST || path.trim_end_matches('/') != "/v1/chat/completions" {
        return RequestKind::Other;
    }
    let has_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let title_prompt = body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| role(m) == Some("system"))
        .flat_map(message_texts)
        .any(|t| t.trim_start().starts_with(TITLE_PROMPT_START));
    if has_tools && !title_prompt {
        RequestKind::Turn
    } else {
        RequestKind::Title
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = uri.path().to_owned();
    let kind = classify(&method, &path, &body);
    let request = RecordedRequest {
        method: method.to_string(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        path: path.clone(),
        body,
        kind,
    };
    tracing::debug!(method = %request.method, path = %request.path, ?kind, "mock openai request");

    let reply = match kind {
        RequestKind::Turn | RequestKind::Title => Some(pick_reply(&shared, &request)),
        RequestKind::Other => None,
    };
    let streaming = request.body.get("stream").and_then(Value::as_bool) == Some(true);
    let model = request
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(MOCK_MODEL)
        .to_owned();

    shared.requests().push(request);
    shared.arrived.notify_waiters();

    match reply {
        Some(reply) => {
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            let id = format!(
                "chatcmpl-mock{:08}",
                shared.completion_seq.fetch_add(1, Ordering::Relaxed)
            );
            render_reply(&reply, &id, &model, streaming)
        }
        None if method == Method::GET && path.trim_end_matches('/') == "/v1/models" => {
            json_response(
                200,
                &json!({"object": "list", "data": [
                    {"id": MOCK_MODEL, "object": "model", "created": 0, "owned_by": "mock"}
                ]}),
            )
        }
        None => json_response(404, &error_json(404, "the mock does not serve this path")),
    }
}

fn pick_reply(shared: &Shared, request: &RecordedRequest) -> Reply {
    let responder = shared.script().responder.clone();
    if let Some(responder) = responder {
        if let Some(reply) = responder(request) {
            return reply;
        }
    }
    let mut script = shared.script();
    if request.kind == RequestKind::Turn {
        match script.queue.pop_front() {
            Some(reply) => reply,
            None => script.default_reply.clone(),
        }
    } else {
        script.title_reply.clone()
    }
}

fn error_json(status: u16, message: &str) -> Value {
    let error_type = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": error_type, "code": status.to_string()}})
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn render_reply(reply: &Reply, id: &str, model: &str, streaming: bool) -> Response<Body> {
    let mut response = match &reply.body {
        ReplyBody::Error { status, message } => {
            json_response(*status, &error_json(*status, message))
        }
        ReplyBody::Message {
            pieces,
            finish_reason,
        } => {
            let finish_reason = finish_reason.clone().unwrap_or_else(|| {
                let calls_tool = pieces.iter().any(|p| matches!(p, Piece::ToolCall { .. }));
                if calls_tool { "tool_calls" } else { "stop" }.to_owned()
            });
            if streaming {
                let chunks = stream_chunks(pieces, &finish_reason, reply.usage, id, model);
                sse_response(chunks, reply.chunk_delay)
            } else {
                json_response(
                    200,
                    &completion_json(pieces, &finish_reason, reply.usage, id, model),
                )
            }
        }
    };
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn usage_json(usage: MockUsage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

fn created() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn completion_json(
    pieces: &[Piece],
    finish_reason: &str,
    usage: MockUsage,
    id: &str,
    model: &str,
) -> Value {
    let text: String = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let reasoning: String = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Reasoning(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let tool_calls: Vec<Value> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::ToolCall {
                id,
                name,
                arguments,
            } => Some(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments.to_string()},
            })),
            _ => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": (!text.is_empty()).then_some(text)});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": usage_json(usage),
    })
}

/// Cuts `text` into pieces of at most `size` characters (at char boundaries).
fn split(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The `data:` payloads of a streamed reply, in order (without the final `[DONE]`).
fn stream_chunks(
    pieces: &[Piece],
    finish_reason: &str,
    usage: MockUsage,
    id: &str,
    model: &str,
) -> Vec<Value> {
    let created = created();
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let mut tool_index = 0;
    for piece in pieces {
        match piece {
            Piece::Text(text) => chunks.extend(
                split(text, DELTA_CHARS)
                    .into_iter()
                    .map(|p| chunk(json!({"content": p}), None)),
            ),
            Piece::Reasoning(text) => chunks.extend(
                split(text, DELTA_CHARS)
                    .into_iter()
                    .map(|p| chunk(json!({"reasoning_content": p}), None)),
            ),
            Piece::ToolCall {
                id,
                name,
                arguments,
            } => {
                chunks.push(chunk(
                    json!({"tool_calls": [{"index": tool_index, "id": id, "type": "function",
                        "function": {"name": name, "arguments": ""}}]}),
                    None,
                ));
                chunks.extend(
                    split(&arguments.to_string(), ARGUMENT_CHARS)
                        .into_iter()
                        .map(|p| {
                            chunk(
                                json!({"tool_calls": [{"index": tool_index,
                                    "function": {"arguments": p}}]}),
                                None,
                            )
                        }),
                );
                tool_index += 1;
            }
        }
    }
    chunks.push(chunk(json!({}), Some(finish_reason)));
    chunks.push(json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [], "usage": usage_json(usage),
    }));
    chunks
}

fn sse_response(chunks: Vec<Value>, chunk_delay: Duration) -> Response<Body> {
    let frames = chunks
        .into_iter()
        .map(|c| format!("data: {c}\n\n"))
        .chain(std::iter::once("data: [DONE]\n\n".to_owned()));
    let stream =
        futures_util::stream::unfold((frames, true), move |(mut frames, first)| async move {
            let frame = frames.next()?;
            if !first && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            Some((Ok::<_, Infallible>(Bytes::from(frame)), (frames, false)))
        });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn request(base: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        // A minimal HTTP/1.1 client over a raw socket keeps the test kit free of an HTTP client.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base
            .trim_start_matches("http://")
            .trim_end_matches("/v1")
            .to_owned();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text[9..12].parse().unwrap();
        (status, text)
    }

    fn turn_body(stream: bool) -> Value {
        json!({
            "model": "mock-model", "stream": stream,
            "messages": [
                {"role": "system", "content": "You are opencode."},
                {"role": "user", "content": [{"type": "text", "text": "hello"}]},
            ],
            "tools": [{"type": "function", "function": {"name": "bash", "parameters": {}}}],
            "tool_choice": "auto",
        })
    }

    fn title_body() -> Value {
        json!({
            "model": "mock-model", "stream": true,
            "messages": [
                {"role": "system", "content": "You are a title generator. You output ONLY a thread title."},
                {"role": "user", "content": "hello"},
            ],
            "tools": [{"type": "function", "function": {"name": "bash"}}],
        })
    }

    /// The JSON payloads of the `data:` lines, and whether `[DONE]` closed the stream.
    fn data_lines(response: &str) -> (Vec<Value>, bool) {
        let mut done = false;
        let mut out = Vec::new();
        for line in response.lines() {
            if let Some(data) = line.strip_prefix("data: ") {
                if data == "[DONE]" {
                    done = true;
                } else {
                    out.push(serde_json::from_str(data).unwrap());
                }
            }
        }
        (out, done)
    }

    #[tokio::test]
    async fn streams_text_tool_calls_and_usage_in_chunks() {
        let mock = MockOpenAI::start().await.unwrap();
        mock.push(
            Reply::text("a reply long enough to be cut into several deltas")
                .then_tool_call("bash", json!({"command": "echo hello there"}))
                .with_reasoning("thinking it over")
                .with_usage(7, 9),
        );
        let (status, response) = request(
            &mock.base_url(),
            "POST",
            "/v1/chat/completions",
            Some(&turn_body(true)),
        )
        .await;
        assert_eq!(status, 200);
        assert!(response.contains("text/event-stream"));
        let (chunks, done) = data_lines(&response);
        assert!(done, "the stream ends with [DONE]");
        let deltas: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta"))
            .collect();
        assert_eq!(deltas[0]["role"], "assistant");
        let content: Vec<&str> = deltas
            .iter()
            .filter_map(|d| d["content"].as_str())
            .filter(|s| !s.is_empty())
            .collect();
        assert!(content.len() > 2, "content split over chunks: {content:?}");
        assert_eq!(
            content.concat(),
            "a reply long enough to be cut into several deltas"
        );
        let reasoning: String = deltas
            .iter()
            .filter_map(|d| d["reasoning_content"].as_str())
            .collect();
        assert_eq!(reasoning, "thinking it over");
        let calls: Vec<&Value> = deltas
            .iter()
            .filter_map(|d| d["tool_calls"].get(0))
            .collect();
        assert!(calls.len() > 2, "tool call split over chunks");
        assert_eq!(calls[0]["function"]["name"], "bash");
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
        let arguments: String = calls
            .iter()
            .filter_map(|c| c["function"]["arguments"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&arguments).unwrap(),
            json!({"command": "echo hello there"})
        );
        let finish: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/finish_reason")?.as_str())
            .collect();
        assert_eq!(finish, vec!["tool_calls"]);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 7);
        assert_eq!(last["usage"]["completion_tokens"], 9);
    }

    #[tokio::test]
    async fn titles_do_not_consume_the_fifo_and_requests_are_recorded() {
        let mock = MockOpenAI::start().await.unwrap();
        mock.push(Reply::text("first"));
        mock.set_title_reply(Reply::text("A title"));
        let (_, response) = request(
            &mock.base_url(),
            "POST",
            "/v1/chat/completions",
            Some(&title_body()),
        )
        .await;
        assert!(response.contains("A title"), "{response}");
        assert_eq!(mock.pending_replies(), 1);
        let (_, response) = request(
            &mock.base_url(),
            "POST",
            "/v1/chat/completions",
            Some(&turn_body(false)),
        )
        .await;
        let body = response.split_once("\r\n\r\n").unwrap().1;
        let v: Value = serde_json::from_str(body.trim()).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "first");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        let (_, response) = request(
            &mock.base_url(),
            "POST",
            "/v1/chat/completions",
            Some(&turn_body(true)),
        )
        .await;
        assert!(response.contains("\"ok\""), "default reply: {response}");
        let requests = mock.requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].kind, RequestKind::Title);
        assert_eq!(mock.title_requests().len(), 1);
        assert_eq!(mock.turn_requests().len(), 2);
        assert_eq!(mock.last_user_text().as_deref(), Some("hello"));
        assert_eq!(mock.system_text().as_deref(), Some("You are opencode."));
        assert_eq!(requests[1].tool_names(), vec!["bash".to_owned()]);
        assert_eq!(requests[1].header("content-type"), Some("application/json"));
        assert!(mock.wait_for_turn_requests(2, Duration::from_secs(1)).await);
        assert!(
            !mock
                .wait_for_turn_requests(3, Duration::from_millis(50))
                .await
        );
    }

    #[tokio::test]
    async fn errors_headers_responder_and_models() {
        let mock = MockOpenAI::start().await.unwrap();
        mock.push(Reply::error(429, "slow down").with_retry_after_ms(50));
        let (status, response) = request(
            &mock.base_url(),
            "POST",
            "/v1/chat/completions",
            Some(&turn_body(true)),
        )
        .await;
        assert_eq!(status, 429);
        assert!(response.contains("rate_limit_error"), "{response}");
        assert!(response.contains("retry-after-ms: 50"), "{response}");
        mock.respond_with(|r| {
            (r.last_user_text().as_deref() == Some("hello")).then(|| Reply::text("from closure"))
        });
        mock.push(Reply::text("queued"));
        let (_, response) = request(
            &mock.base_url(),
            "POST",
            "/v1/chat/completions",
            Some(&turn_body(false)),
        )
        .await;
        assert!(response.contains("from closure"));
        assert_eq!(mock.pending_replies(), 1);
        let (status, response) = request(&mock.base_url(), "GET", "/v1/models", None).await;
        assert_eq!(status, 200);
        assert!(response.contains(MOCK_MODEL));
        let (status, _) = request(&mock.base_url(), "POST", "/v1/other", None).await;
        assert_eq!(status, 404);
        assert_eq!(mock.requests()[2].kind, RequestKind::Other);
    }

    #[tokio::test]
    async fn chunk_delay_spreads_the_stream() {
        let mock = MockOpenAI::start().await.unwrap();
        mock.push(Reply::text("abc").with_chunk_delay(Duration::from_millis(30)));
        let started = std::time::Instant::now();
        let (_, response) = request(
            &mock.base_url(),
            "POST",
            "/v1/chat/completions",
            Some(&turn_body(true)),
        )
        .await;
        let (chunks, done) = data_lines(&response);
        assert!(done);
        // Five frames after the first, each after the delay: the stream cannot be faster.
        assert!(chunks.len() >= 4);
        assert!(started.elapsed() >= Duration::from_millis(30 * 4));
    }

    #[test]
    fn history_helpers_read_tool_messages() {
        let request = RecordedRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            query: None,
            headers: vec![],
            kind: RequestKind::Turn,
            body: json!({"messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "calling", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "out"},
                {"role": "assistant", "content": null},
                {"role": "user", "content": [{"type": "text", "text": "again"}]}
            ]}),
        };
        assert_eq!(
            request.user_texts(),
            vec!["hi".to_owned(), "again".to_owned()]
        );
        assert_eq!(request.assistant_texts(), vec!["calling".to_owned()]);
        assert_eq!(request.last_user_text().as_deref(), Some("again"));
        assert_eq!(
            request.tool_results(),
            vec![ToolResult {
                tool_call_id: "c1".into(),
                text: "out".into()
            }]
        );
    }
}
