//! A scriptable mock of the Anthropic Messages API that the real agent CLIs (Claude Code) talk
//! to offline.
//!
//! [`MockAnthropic::start`] serves on `127.0.0.1:<free port>`. Point the CLI at
//! [`MockAnthropic::base_url`] (see [`crate::agents::claude_offline_env`]). The mock:
//! - answers the CLI's `HEAD /` warm-up and any other probe with `200`;
//! - answers `POST /v1/messages` (any query string) with a real server-sent-event stream
//!   (`message_start`, `content_block_start`, `content_block_delta` with `text_delta` /
//!   `input_json_delta` / `thinking_delta`, `content_block_stop`, `message_delta` with the stop
//!   reason and usage, `message_stop`), or with one JSON message when the body says
//!   `"stream": false`;
//! - answers `POST /v1/messages/count_tokens` with a rough count;
//! - records every request (method, path, query, headers, parsed JSON body) so a test can assert
//!   exactly what the agent sent.
//!
//! Which reply a request gets: a *turn* request (one that carries a non-empty `tools` list — the
//! agent's own conversation) takes the next [`Reply`] from the FIFO filled with
//! [`MockAnthropic::push`], or the default reply when the FIFO is empty. Side requests the CLI
//! makes on its own (titles, summaries: no `tools`) never consume the FIFO; they get the
//! auxiliary reply. A responder closure set with [`MockAnthropic::respond_with`] sees every
//! messages request first and may answer it instead.
//!
//! What Claude Code 2.1.330 sends, run with [`crate::agents::claude_offline_env`] (logged with
//! `acg-testkit mock-anthropic --record`): one `POST /v1/messages?beta=true` per model round
//! trip, always streaming and always with `tools` — no warm-up, title, summary or token-count
//! requests — so with that CLI every request is a turn request. A session resumed with
//! `--resume` re-sends its whole history; after a tool call the next request carries the
//! `tool_result`; after a reply with no visible text the CLI asks once more with a
//! "[Your previous response had no visible output. …]" user message.

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
const DEFAULT_MODEL: &str = "claude-mock-1";
/// Text deltas are cut into pieces of this many characters, so clients see real streaming.
const DELTA_CHARS: usize = 24;

/// Token counts a reply reports (in `message_start` and `message_delta`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockUsage {
    /// `input_tokens`.
    pub input_tokens: u64,
    /// `output_tokens`.
    pub output_tokens: u64,
    /// `cache_read_input_tokens`.
    pub cache_read_input_tokens: u64,
    /// `cache_creation_input_tokens`.
    pub cache_creation_input_tokens: u64,
}

impl Default for MockUsage {
    fn default() -> Self {
        MockUsage {
            input_tokens: 10,
            output_tokens: 5,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
        }
    }
}

/// One content block of a scripted assistant message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Assistant text.
    Text(String),
    /// A tool call; `input` is the tool's JSON input.
    ToolUse {
        /// The call id (`toolu_…`).
        id: String,
        /// The tool name (`Bash`, `Write`, …).
        name: String,
        /// The tool input object.
        input: Value,
    },
    /// Extended thinking text.
    Thinking(String),
}

#[derive(Debug, Clone, PartialEq)]
enum ReplyBody {
    Message {
        content: Vec<Block>,
        stop_reason: Option<String>,
    },
    Error {
        status: u16,
        error_type: String,
        message: String,
    },
}

/// A scripted answer to one messages request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    body: ReplyBody,
    delay: Duration,
    usage: MockUsage,
}

static TOOL_USE_SEQ: AtomicU64 = AtomicU64::new(1);

fn next_tool_use_id() -> String {
    let n = TOOL_USE_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("toolu_mock{n:08}")
}

impl Reply {
    /// An assistant message with one text block (`stop_reason: end_turn`).
    pub fn text(text: impl Into<String>) -> Self {
        Reply::blocks(vec![Block::Text(text.into())])
    }

    /// An assistant message calling one tool (`stop_reason: tool_use`). The CLI runs the tool
    /// and sends its result in the next turn request.
    pub fn tool_use(name: impl Into<String>, input: Value) -> Self {
        Reply::blocks(vec![Block::ToolUse {
            id: next_tool_use_id(),
            name: name.into(),
            input,
        }])
    }

    /// An assistant message made of the given blocks; the stop reason is `tool_use` when a
    /// block calls a tool, else `end_turn`.
    pub fn blocks(content: Vec<Block>) -> Self {
        Reply {
            body: ReplyBody::Message {
                content,
                stop_reason: None,
            },
            delay: Duration::ZERO,
            usage: MockUsage::default(),
        }
    }

    /// An HTTP error in the API's shape: `{"type":"error","error":{"type":…,"message":…}}`,
    /// e.g. `Reply::error(429, "rate_limit_error", "slow down")`.
    pub fn error(status: u16, error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Reply {
            body: ReplyBody::Error {
                status,
                error_type: error_type.into(),
                message: message.into(),
            },
            delay: Duration::ZERO,
            usage: MockUsage::default(),
        }
    }

    /// Adds a text block after the existing ones.
    pub fn then_text(self, text: impl Into<String>) -> Self {
        self.push_block(Block::Text(text.into()))
    }

    /// Adds a tool call after the existing blocks.
    pub fn then_tool_use(self, name: impl Into<String>, input: Value) -> Self {
        self.push_block(Block::ToolUse {
            id: next_tool_use_id(),
            name: name.into(),
            input,
        })
    }

    /// Puts a thinking block before the existing ones.
    pub fn with_thinking(mut self, thinking: impl Into<String>) -> Self {
        if let ReplyBody::Message { content, .. } = &mut self.body {
            content.insert(0, Block::Thinking(thinking.into()));
        }
        self
    }

    /// Overrides the stop reason (`end_turn`, `max_tokens`, …).
    pub fn with_stop_reason(mut self, reason: impl Into<String>) -> Self {
        if let ReplyBody::Message { stop_reason, .. } = &mut self.body {
            *stop_reason = Some(reason.into());
        }
        self
    }

    /// Waits this long before answering (before the response headers), e.g. to run a turn
    /// past its deadline.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Reports these input and output token counts.
    pub fn with_usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.usage.input_tokens = input_tokens;
        self.usage.output_tokens = output_tokens;
        self
    }

    /// Reports these prompt-cache token counts (read, creation).
    pub fn with_cache_usage(mut self, read: u64, creation: u64) -> Self {
        self.usage.cache_read_input_tokens = read;
        self.usage.cache_creation_input_tokens = creation;
        self
    }

    fn push_block(mut self, block: Block) -> Self {
        if let ReplyBody::Message { content, .. } = &mut self.body {
            content.push(block);
        }
        self
    }
}

/// What a recorded request was, by the mock's matching rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `POST /v1/messages` with a non-empty `tools` list: the agent's conversation.
    Turn,
    /// `POST /v1/messages` without tools: a side request (title, summary, …).
    Auxiliary,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// Anything else (`HEAD /` warm-up, unknown paths).
    Other,
}

/// One request as the mock received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string, if any (the CLI sends `beta=true`).
    pub query: Option<String>,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body (`Null` when empty or not JSON).
    pub body: Value,
    /// How the mock classified it.
    pub kind: RequestKind,
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

    /// The `system` prompt as one string (blocks joined with `\n`).
    pub fn system_text(&self) -> String {
        match self.body.get("system") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(blocks)) => blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }

    /// The `messages` array (empty when absent).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The names of the tools offered to the model.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The text a person typed in the last user message: its text blocks, except the
    /// `<system-reminder>` blocks the CLI adds, joined with `\n`. `None` when the last user
    /// message has no such text (e.g. it only carries tool results).
    pub fn last_user_text(&self) -> Option<String> {
        let last = self
            .messages()
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
        let texts = user_texts(last);
        if texts.is_empty() {
            None
        } else {
            Some(texts.join("\n"))
        }
    }

    /// Every user-typed text of the conversation, oldest first (see [`Self::last_user_text`]).
    pub fn user_texts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .flat_map(user_texts)
            .collect()
    }

    /// Every assistant text block of the conversation, oldest first.
    pub fn assistant_texts(&self) -> Vec<String> {
        self.messages()
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .flat_map(|m| content_blocks(m, "text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// The text of the first `tool_result` block in the newest message (text blocks joined
    /// with `\n`): what a tool just returned, when the agent is sending one back.
    pub fn newest_tool_result_text(&self) -> Option<String> {
        let newest = self.messages().last()?;
        content_blocks(newest, "tool_result")
            .next()
            .map(|b| tool_result_text(b.get("content")))
    }

    /// Every `tool_result` block of the conversation, oldest first.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.messages()
            .iter()
            .flat_map(|m| content_blocks(m, "tool_result"))
            .map(|b| ToolResult {
                tool_use_id: b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                text: tool_result_text(b.get("content")),
                is_error: b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect()
    }
}

/// A tool's result as the agent sent it back to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The call it answers.
    pub tool_use_id: String,
    /// Its text (text blocks joined with `\n`).
    pub text: String,
    /// The agent marked it as an error (e.g. a denied permission).
    pub is_error: bool,
}

fn content_blocks<'a>(message: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    message
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |b| b.get("type").and_then(Value::as_str) == Some(kind))
}

fn user_texts(message: &Value) -> Vec<String> {
    if let Some(s) = message.get("content").and_then(Value::as_str) {
        return vec![s.to_owned()];
    }
    content_blocks(message, "text")
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .filter(|t| !t.trim_start().starts_with("<system-reminder>"))
        .map(str::to_owned)
        .collect()
}

fn tool_result_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A closure that may answer a messages request instead of the FIFO.
type Responder = dyn Fn(&RecordedRequest) -> Option<Reply> + Send + Sync;

struct Script {
    queue: VecDeque<Reply>,
    default_reply: Reply,
    auxiliary_reply: Reply,
    responder: Option<Arc<Responder>>,
}

struct Shared {
    script: Mutex<Script>,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Notify,
    message_seq: AtomicU64,
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
pub struct MockAnthropic {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for MockAnthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockAnthropic")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MockAnthropic {
    /// Starts a mock on `127.0.0.1` with a free port; the default reply is the text `ok`.
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
                auxiliary_reply: Reply::text("ok"),
                responder: None,
            }),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            message_seq: AtomicU64::new(1),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("mock anthropic server stopped: {e}");
            }
        });
        Ok(MockAnthropic {
            addr,
            shared,
            server,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`: the value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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

    /// The reply side requests (no `tools`) get.
    pub fn set_auxiliary_reply(&self, reply: Reply) -> &Self {
        self.shared.script().auxiliary_reply = reply;
        self
    }

    /// Lets `responder` answer messages requests: it sees each one first; `Some(reply)` answers
    /// it, `None` falls back to the FIFO / defaults.
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

    /// The most recent turn request.
    pub fn last_turn_request(&self) -> Option<RecordedRequest> {
        self.shared
            .requests()
            .iter()
            .rev()
            .find(|r| r.is_turn())
            .cloned()
    }

    /// The user-typed text of the last user message of the most recent turn request.
    pub fn last_user_text(&self) -> Option<String> {
        self.last_turn_request()?.last_user_text()
    }

    /// The system prompt of the most recent turn request.
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

impl Drop for MockAnthropic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn classify(method: &Method, path: &str, body: &Value) -> RequestKind {
    if method != Method::POST {
        return RequestKind::Other;
    }
    match path.trim_end_matches('/') {
        "/v1/messages" => {
            let has_tools = body
                .get("tools")
                .and_then(Value::as_array)
                .is_some_and(|t| !t.is_empty());
            if has_tools {
                RequestKind::Turn
            } else {
                RequestKind::Auxiliary
            }
        }
        "/v1/messages/count_tokens" => RequestKind::CountTokens,
        _ => RequestKind::Other,
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
        path,
        body,
        kind,
    };
    tracing::debug!(method = %request.method, path = %request.path, ?kind, "mock anthropic request");

    let reply = match kind {
        RequestKind::Turn | RequestKind::Auxiliary => Some(pick_reply(&shared, &request)),
        _ => None,
    };
    let streaming = request.body.get("stream").and_then(Value::as_bool) == Some(true);
    let model = request
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_MODEL)
        .to_owned();
    let count_tokens_estimate = request.body.to_string().len() as u64 / 4;

    shared.requests().push(request);
    shared.arrived.notify_waiters();

    match (kind, reply) {
        (_, Some(reply)) => {
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            let id = format!(
                "msg_mock{:08}",
                shared.message_seq.fetch_add(1, Ordering::Relaxed)
            );
            render_reply(&reply, &id, &model, streaming)
        }
        (RequestKind::CountTokens, None) => {
            json_response(200, &json!({ "input_tokens": count_tokens_estimate }))
        }
        (_, None) if method == Method::POST => json_response(
            404,
            &error_json("not_found_error", "the mock does not serve this path"),
        ),
        _ => Response::builder()
            .status(StatusCode::OK)
            .body(Body::empty())
            .unwrap_or_default(),
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
        script.auxiliary_reply.clone()
    }
}

fn error_json(error_type: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type, "message": message}})
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("request-id", "req_mock")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn render_reply(reply: &Reply, id: &str, model: &str, streaming: bool) -> Response<Body> {
    match &reply.body {
        ReplyBody::Error {
            status,
            error_type,
            message,
        } => {
            let mut response = json_response(*status, &error_json(error_type, message));
            // Tell SDK clients not to retry scripted errors: tests want one request per error.
            if let Ok(v) = "false".parse() {
                response.headers_mut().insert("x-should-retry", v);
            }
            response
        }
        ReplyBody::Message {
            content,
            stop_reason,
        } => {
            let stop_reason = stop_reason.clone().unwrap_or_else(|| {
                let calls_tool = content.iter().any(|b| matches!(b, Block::ToolUse { .. }));
                if calls_tool { "tool_use" } else { "end_turn" }.to_owned()
            });
            if streaming {
                sse_response(sse_events(content, &stop_reason, reply.usage, id, model))
            } else {
                json_response(
                    200,
                    &message_json(content, Some(&stop_reason), reply.usage, id, model, true),
                )
            }
        }
    }
}

fn usage_json(usage: MockUsage, output_tokens: u64) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "output_tokens": output_tokens,
    })
}

fn block_json(block: &Block) -> Value {
    match block {
        Block::Text(text) => json!({"type": "text", "text": text}),
        Block::ToolUse { id, name, input } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        Block::Thinking(thinking) => {
            json!({"type": "thinking", "thinking": thinking, "signature": "mock-signature"})
        }
    }
}

fn message_json(
    content: &[Block],
    stop_reason: Option<&str>,
    usage: MockUsage,
    id: &str,
    model: &str,
    complete: bool,
) -> Value {
    let content: Vec<Value> = if complete {
        content.iter().map(block_json).collect()
    } else {
        Vec::new()
    };
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage_json(usage, if complete { usage.output_tokens } else { 1 }),
    })
}

/// Cuts `text` into pieces of at most `DELTA_CHARS` characters (at char boundaries).
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(DELTA_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

fn sse_events(
    content: &[Block],
    stop_reason: &str,
    usage: MockUsage,
    id: &str,
    model: &str,
) -> Vec<(&'static str, Value)> {
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": message_json(content, None, usage, id, model, false)}),
    )];
    for (index, block) in content.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match block {
            Block::Text(text) => (
                json!({"type": "text", "text": ""}),
                pieces(text)
                    .into_iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            Block::ToolUse { id, name, input } => (
                json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                pieces(&input.to_string())
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
            Block::Thinking(thinking) => {
                let mut deltas: Vec<Value> = pieces(thinking)
                    .into_iter()
                    .map(|p| json!({"type": "thinking_delta", "thinking": p}))
                    .collect();
                deltas.push(json!({"type": "signature_delta", "signature": "mock-signature"}));
                (json!({"type": "thinking", "thinking": ""}), deltas)
            }
        };
        events.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        if index == 0 {
            events.push(("ping", json!({"type": "ping"})));
        }
        for delta in deltas {
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push((
        "message_delta",
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": usage_json(usage, usage.output_tokens),
        }),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events
}

fn sse_response(events: Vec<(&'static str, Value)>) -> Response<Body> {
    let frames = events.into_iter().map(|(name, data)| {
        Ok::<_, Infallible>(Bytes::from(format!("event: {name}\ndata: {data}\n\n")))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("request-id", "req_mock")
        .body(Body::from_stream(futures_util::stream::iter(frames)))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn post(base: &str, path: &str, body: &Value) -> (u16, String) {
        // A minimal HTTP/1.1 client over a raw socket keeps the test kit free of an HTTP client.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text[9..12].parse().unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_owned();
        (status, body)
    }

    fn turn_body(stream: bool) -> Value {
        json!({
            "model": "m", "stream": stream, "system": [{"type": "text", "text": "sys A"}, {"type": "text", "text": "sys B"}],
            "tools": [{"name": "Bash"}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                {"type": "text", "text": "hello"}]}]
        })
    }

    #[tokio::test]
    async fn fifo_feeds_turn_requests_only_and_records_them() {
        let mock = MockAnthropic::start().await.unwrap();
        mock.push(Reply::text("first"));
        mock.set_auxiliary_reply(Reply::text("title"));
        let (status, body) = post(
            &mock.base_url(),
            "/v1/messages?beta=true",
            &json!({"model": "m", "messages": []}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.contains("\"title\""), "{body}");
        assert_eq!(mock.pending_replies(), 1);
        let (_, body) = post(
            &mock.base_url(),
            "/v1/messages?beta=true",
            &turn_body(false),
        )
        .await;
        let v: Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
            // chunked encoding: take the JSON line
            serde_json::from_str(body.lines().find(|l| l.starts_with('{')).unwrap()).unwrap()
        });
        assert_eq!(v["content"][0]["text"], "first");
        assert_eq!(v["stop_reason"], "end_turn");
        let (_, body) = post(&mock.base_url(), "/v1/messages", &turn_body(false)).await;
        assert!(body.contains("\"ok\""), "default reply: {body}");
        let requests = mock.requests();
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].kind, RequestKind::Auxiliary);
        assert_eq!(requests[1].query.as_deref(), Some("beta=true"));
        assert_eq!(mock.turn_requests().len(), 2);
        assert_eq!(mock.last_user_text().as_deref(), Some("hello"));
        assert_eq!(mock.system_text().as_deref(), Some("sys A\nsys B"));
        assert_eq!(requests[1].header("content-type"), Some("application/json"));
    }

    #[tokio::test]
    async fn streams_sse_events_in_order() {
        let mock = MockAnthropic::start().await.unwrap();
        mock.push(
            Reply::text("a fairly long text that is split into several deltas")
                .then_tool_use("Bash", json!({"command": "echo hi"}))
                .with_thinking("hmm")
                .with_usage(7, 9),
        );
        let (status, body) = post(&mock.base_url(), "/v1/messages", &turn_body(true)).await;
        assert_eq!(status, 200);
        let names: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.last(), Some(&"message_stop"));
        assert_eq!(
            names
                .iter()
                .filter(|n| **n == "content_block_start")
                .count(),
            3
        );
        assert!(
            names
                .iter()
                .filter(|n| **n == "content_block_delta")
                .count()
                > 4
        );
        assert!(body.contains("\"input_json_delta\""));
        assert!(body.contains("\"thinking_delta\""));
        assert!(body.contains("\"stop_reason\":\"tool_use\""));
        assert!(body.contains("\"output_tokens\":9"));
        // Reassemble the text deltas.
        let text: String = body
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter(|v| v["delta"]["type"] == "text_delta")
            .map(|v| v["delta"]["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(text, "a fairly long text that is split into several deltas");
    }

    #[tokio::test]
    async fn errors_responder_and_count_tokens() {
        let mock = MockAnthropic::start().await.unwrap();
        mock.push(Reply::error(429, "rate_limit_error", "slow down"));
        let (status, body) = post(&mock.base_url(), "/v1/messages", &turn_body(true)).await;
        assert_eq!(status, 429);
        assert!(body.contains("rate_limit_error"));
        mock.respond_with(|r| {
            (r.last_user_text().as_deref() == Some("hello")).then(|| Reply::text("from closure"))
        });
        mock.push(Reply::text("queued"));
        let (_, body) = post(&mock.base_url(), "/v1/messages", &turn_body(false)).await;
        assert!(body.contains("from closure"));
        assert_eq!(mock.pending_replies(), 1);
        let (status, body) = post(
            &mock.base_url(),
            "/v1/messages/count_tokens",
            &turn_body(false),
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.contains("input_tokens"));
        assert_eq!(mock.requests()[2].kind, RequestKind::CountTokens);
        assert!(mock.wait_for_turn_requests(2, Duration::from_secs(1)).await);
        assert!(
            !mock
                .wait_for_turn_requests(3, Duration::from_millis(50))
                .await
        );
    }

    #[test]
    fn tool_results_are_extracted() {
        let request = RecordedRequest {
            method: "POST".into(),
            path: "/v1/messages".into(),
            query: None,
            headers: vec![],
            kind: RequestKind::Turn,
            body: json!({"messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "calling"}, {"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "out"}], "is_error": true}]}
            ]}),
        };
        assert_eq!(request.user_texts(), vec!["hi".to_owned()]);
        assert_eq!(request.assistant_texts(), vec!["calling".to_owned()]);
        assert_eq!(request.last_user_text(), None);
        assert_eq!(
            request.tool_results(),
            vec![ToolResult {
                tool_use_id: "t1".into(),
                text: "out".into(),
                is_error: true
            }]
        );
    }
}
