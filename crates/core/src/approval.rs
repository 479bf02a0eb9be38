//! Human-in-the-loop approval of tool calls in chat (digest §6): the registry of pending
//! permission requests, the directory that maps an agent session to the chat turn it is
//! running, and the `approve <id>` / `deny <id>` commands of owners.
//!
//! How a decision travels:
//! 1. Before every turn the watcher records who the turn is for ([`TurnContext`]: watcher,
//!    agent, room, permission thread, requester, role) under the agent's session id
//!    ([`ApprovalRegistry::register_turn`]).
//! 2. The agent calls a tool; the permission broker (the binary's hook server) looks the
//!    session up ([`ApprovalRegistry::turn_context`]), applies the tool policy, and when an
//!    owner must decide calls [`ApprovalRegistry::ask`]. That posts the request message
//!    ([`request_text`]) to the room and waits — while the watcher is blocked inside the very
//!    turn, so later messages of the room wait in its queue.
//! 3. An owner answers `approve a3k9` or `deny a3k9`. The dispatcher hands every inbound
//!    message to the [`Interceptor`] built by [`ApprovalRegistry::interceptor`] *before* any
//!    queueing, so the answer gets through although the watcher is busy. Guests' identical
//!    text is ordinary chat and reaches the agent.
//! 4. `ask` returns a [`Decision`]; nobody answering within the timeout denies and posts
//!    [`user_messages::permission_timed_out`]. Pausing, resetting or stopping the watcher
//!    denies its pending requests without a message ([`ApprovalRegistry::close_watcher`]).
//!
//! Ids are 4 characters of `[a-z0-9]` from the operating system's CSPRNG, never equal to a
//! pending one. A command resolves a request only in the same connector and room; when both
//! the request and the command are in a thread, the threads must be the same (a room-level
//! command may settle a threaded request).
//!
//! **Mention gates.** Connectors filter before the dispatcher sees anything. In a room where
//! the bot must be @mentioned, a connector should still let through an *owner's* message for
//! which [`parse_command`] returns `Some` (0.5.2 required the mention there, digest §12.10) —
//! the command never reaches an agent, so nothing is lost by skipping the gate.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::dispatcher::Interceptor;
use crate::ports::Connector;
use crate::types::{IncomingMessage, OutgoingMessage, Role, Room};
use crate::user_messages;

/// Characters in a request id.
pub const ID_LEN: usize = 4;
/// The alphabet of request ids.
pub const ID_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// How often posting a request message is tried before the owners count as unreachable.
pub const POST_ATTEMPTS: usize = 3;
/// The pause between those attempts.
pub const POST_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Each parameter value is cut to this many characters in the request message.
pub const PARAM_VALUE_CHARS: usize = 60;
/// The whole parameter line longer than this is cut to [`PARAMS_CUT_TO`] characters + `...`.
pub const PARAMS_MAX_CHARS: usize = 200;
/// See [`PARAMS_MAX_CHARS`].
pub const PARAMS_CUT_TO: usize = 197;

/// Who a session's current turn is for: what the watcher records before every turn, and what
/// the broker needs to decide on a tool call and to ask in the right place.
#[derive(Clone)]
pub struct TurnContext {
    /// The watcher running the turn.
    pub watcher: String,
    /// The agent's name (key under `agents:`).
    pub agent: String,
    /// The connector of the room.
    pub connector: Arc<dyn Connector>,
    /// The room the turn answers.
    pub room: Room,
    /// The thread permission requests go to (`None` = the room itself).
    pub thread: Option<String>,
    /// The username of the person whose message started the turn.
    pub requester: String,
    /// Their role.
    pub role: Role,
}

impl fmt::Debug for TurnContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnContext")
            .field("watcher", &self.watcher)
            .field("agent", &self.agent)
            .field("connector", &self.connector.name())
            .field("room", &self.room)
            .field("thread", &self.thread)
            .field("requester", &self.requester)
            .field("role", &self.role)
            .finish()
    }
}

/// A tool call an owner is asked about.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The agent session that wants to call the tool.
    pub session_id: String,
    /// The tool's name.
    pub tool: String,
    /// The tool's input, top-level keys in the order the agent sent them.
    pub input: Vec<(String, Value)>,
    /// How long the owners have to answer.
    pub timeout: Duration,
    /// The requester may not approve their own request.
    pub require_other_owner: bool,
}

/// A pending permission request, as `pending()` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionRequest {
    /// The 4-character id owners type.
    pub id: String,
    /// The tool's name.
    pub tool: String,
    /// The tool's input, in the agent's key order.
    pub input: Vec<(String, Value)>,
    /// The connector's name.
    pub connector: String,
    /// The room it was asked in.
    pub room: Room,
    /// The thread it was asked in.
    pub thread: Option<String>,
    /// The agent session.
    pub session: String,
    /// The watcher whose turn is waiting.
    pub watcher: String,
    /// Who started the turn.
    pub requester: String,
    /// When it was created.
    pub created: SystemTime,
    /// How long the owners have.
    pub timeout: Duration,
    /// Whether the requester is barred from approving it.
    pub require_other_owner: bool,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An owner approved it.
    Approved {
        /// The approving owner's username.
        by: String,
    },
    /// An owner denied it.
    Denied {
        /// The denying owner's username.
        by: String,
    },
    /// Nobody answered in time (the room was told).
    TimedOut {
        /// The time the owners had.
        after: Duration,
    },
    /// The watcher was paused, reset or stopped while the request was pending.
    Cancelled,
    /// The request message could not be posted: nobody was asked.
    Undeliverable,
    /// The session is not linked to any chat turn: there is nobody to ask.
    NoRoom,
}

impl Decision {
    /// True only for [`Decision::Approved`]; everything else denies (fail closed).
    pub fn allows(&self) -> bool {
        matches!(self, Decision::Approved { .. })
    }

    /// The owner who decided, if one did.
    pub fn decided_by(&self) -> Option<&str> {
        match self {
            Decision::Approved { by } | Decision::Denied { by } => Some(by),
            _ => None,
        }
    }
}

/// What [`ApprovalRegistry::ask`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct AskOutcome {
    /// The request's id, when one was created.
    pub id: Option<String>,
    /// The decision.
    pub decision: Decision,
}

/// What an owner typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `approve <id>`.
    Approve,
    /// `deny <id>`.
    Deny,
}

impl Action {
    /// The command word.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Deny => "deny",
        }
    }
}

/// A parsed `approve <id>` / `deny <id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalCommand {
    /// Approve or deny.
    pub action: Action,
    /// The id, lower-cased (its length is checked later, to answer a clear error).
    pub id: String,
}

/// Reads `approve <id>` / `deny <id>`: the whole message (after the connector stripped a
/// leading bot mention), surrounding whitespace ignored, the word in any case, the id one run
/// of ASCII letters and digits. Anything else — extra words, punctuation — is not a command
/// and goes to the agent as ordinary chat.
pub fn parse_command(text: &str) -> Option<ApprovalCommand> {
    let mut words = text.split_whitespace();
    let (word, id) = (words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let action = if word.eq_ignore_ascii_case("approve") {
        Action::Approve
    } else if word.eq_ignore_ascii_case("deny") {
        Action::Deny
    } else {
        return None;
    };
    if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(ApprovalCommand {
        action,
        id: id.to_ascii_lowercase(),
    })
}

/// The request message for a tool call (digest §6, golden §13).
pub fn request_text(id: &str, tool: &str, input: &[(String, Value)]) -> String {
    user_messages::permission_request(id, tool, &render_params(input))
}

/// The parameter line of a request message: `key=<value repr>` joined by `, `, where each
/// value is written the way Python's `repr` writes it (`'text'`, `True`, `None`, `[1, 'a']`)
/// and cut to [`PARAM_VALUE_CHARS`] characters; a line over [`PARAMS_MAX_CHARS`] characters
/// is cut to [`PARAMS_CUT_TO`] plus `...`; no parameters at all reads `(none)`.
pub fn render_params(input: &[(String, Value)]) -> String {
    if input.is_empty() {
        return "(none)".to_string();
    }
    let line = input
        .iter()
        .map(|(k, v)| {
            let repr: String = py_repr(v).chars().take(PARAM_VALUE_CHARS).collect();
            format!("{k}={repr}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    if line.chars().count() > PARAMS_MAX_CHARS {
        let cut: String = line.chars().take(PARAMS_CUT_TO).collect();
        format!("{cut}...")
    } else {
        line
    }
}

/// A JSON value as Python's `repr` would print the equivalent Python object.
pub fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => py_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => py_str(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has a `'` and no `"`; backslash,
/// the quote and control characters escaped.
fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr(float)`: the shortest round-trip digits, positional for exponents in
/// `-4..16`, else `1e+16` style.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let text = f.to_string();
        if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// A fresh id from the OS CSPRNG; `None` when the OS refuses randomness (fail closed).
fn random_id() -> Option<String> {
    let mut id = String::with_capacity(ID_LEN);
    let mut buf = [0u8; 16];
    while id.len() < ID_LEN {
        OsRng.try_fill_bytes(&mut buf).ok()?;
        for b in buf {
            // 252 = 7 × 36: rejecting the top 4 byte values keeps every character equally likely.
            if b < 252 && id.len() < ID_LEN {
                id.push(char::from(ID_ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    Some(id)
}

/// How a pending request was settled by someone other than the clock.
enum Settled {
    Approved(String),
    Denied(String),
    Cancelled,
}

struct Pending {
    request: PermissionRequest,
    settle: oneshot::Sender<Settled>,
}

/// The registry of pending requests and the session → turn directory. One per gateway,
/// shared by every connector's dispatcher, every watcher and the broker.
pub struct ApprovalRegistry {
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, TurnContext>>,
    closed: Mutex<HashSet<String>>,
    retry_delay: Duration,
}

impl Default for ApprovalRegistry {
    fn default() -> Self {
        ApprovalRegistry {
            pending: Mutex::default(),
            sessions: Mutex::default(),
            closed: Mutex::default(),
            retry_delay: POST_RETRY_DELAY,
        }
    }
}

impl fmt::Debug for ApprovalRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApprovalRegistry")
            .field("pending", &lock(&self.pending).keys().collect::<Vec<_>>())
            .field("sessions", &lock(&self.sessions).len())
            .finish()
    }
}

impl ApprovalRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same registry with another pause between posting attempts (tests use a short one).
    pub fn with_post_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Records who the next turn of `session_id` is for (called by the watcher before every
    /// turn; replaces the previous record of that session).
    pub fn register_turn(&self, session_id: &str, context: TurnContext) {
        lock(&self.sessions).insert(session_id.to_string(), context);
    }

    /// Who the current turn of a session is for; `None` for a session no watcher ran.
    pub fn turn_context(&self, session_id: &str) -> Option<TurnContext> {
        lock(&self.sessions).get(session_id).cloned()
    }

    /// The watcher (re)starts: its requests may be asked again.
    pub fn open_watcher(&self, watcher: &str) {
        lock(&self.closed).remove(watcher);
    }

    /// The watcher is pausing, resetting or stopping: every pending request of it is denied
    /// (no chat message), and so is every request it makes until [`Self::open_watcher`].
    /// Returns how many pending requests were denied.
    pub fn close_watcher(&self, watcher: &str) -> usize {
        lock(&self.closed).insert(watcher.to_string());
        let settled: Vec<Pending> = {
            let mut pending = lock(&self.pending);
            let ids: Vec<String> = pending
                .iter()
                .filter(|(_, p)| p.request.watcher == watcher)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        let n = settled.len();
        for p in settled {
            info!(id = %p.request.id, watcher, "permission request denied: the watcher stops");
            let _ = p.settle.send(Settled::Cancelled);
        }
        n
    }

    /// The requests waiting for an owner, oldest first.
    pub fn pending(&self) -> Vec<PermissionRequest> {
        let mut list: Vec<PermissionRequest> = lock(&self.pending)
            .values()
            .map(|p| p.request.clone())
            .collect();
        list.sort_by_key(|r| r.created);
        list
    }

    /// Asks the owners of the session's room about a tool call and waits for the decision:
    /// posts the request message (up to [`POST_ATTEMPTS`] times), then waits until an owner
    /// answers, the watcher stops, or `ask.timeout` (counted from now) passes — then the
    /// room is told it timed out. Dropping the future withdraws the request.
    pub async fn ask(&self, ask: Ask) -> AskOutcome {
        self.ask_then(ask, |_| std::future::ready(())).await
    }

    /// [`Self::ask`], running `posted` (e.g. an "asked" audit record) once the request
    /// message is in the room, before waiting for the answer.
    pub async fn ask_then<F, Fut>(&self, ask: Ask, on_posted: F) -> AskOutcome
    where
        F: FnOnce(PermissionRequest) -> Fut + Send,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let Some(context) = self.turn_context(&ask.session_id) else {
            warn!(session = %ask.session_id, tool = %ask.tool,
                "permission request for a session no watcher runs; nobody can be asked");
            return AskOutcome {
                id: None,
                decision: Decision::NoRoom,
            };
        };
        if lock(&self.closed).contains(&context.watcher) {
            return AskOutcome {
                id: None,
                decision: Decision::Cancelled,
            };
        }
        let deadline = tokio::time::Instant::now() + ask.timeout;
        let (settle, settled) = oneshot::channel();
        let Some(request) = self.insert(&ask, &context, settle) else {
            warn!("no random id for a permission request (OS randomness unavailable)");
            return AskOutcome {
                id: None,
                decision: Decision::Undeliverable,
            };
        };
        let id = request.id.clone();
        // Withdraws the request however this future ends (answered, timed out, dropped).
        let _withdraw = Withdraw {
            registry: self,
            id: &id,
        };
        info!(%id, tool = %ask.tool, watcher = %context.watcher, room = %context.room.name,
            "asking the owners in chat");
        let text = request_text(&id, &ask.tool, &ask.input);
        let posted = tokio::time::timeout_at(
            deadline,
            post_with_retries(&context, text, self.retry_delay),
        )
        .await;
        if !matches!(posted, Ok(true)) {
            warn!(%id, room = %context.room.name, "permission request could not be posted");
            return AskOutcome {
                id: Some(id.clone()),
                decision: Decision::Undeliverable,
            };
        }
        // The request is in the room: that is recorded even when an owner was quicker
        // than this task and has already settled it.
        on_posted(request).await;
        let decision = match tokio::time::timeout_at(deadline, settled).await {
            Ok(Ok(Settled::Approved(by))) => Decision::Approved { by },
            Ok(Ok(Settled::Denied(by))) => Decision::Denied { by },
            Ok(Ok(Settled::Cancelled)) | Ok(Err(_)) => Decision::Cancelled,
            Err(_) => {
                // Settled in the same instant? Then that answer stands.
                if lock(&self.pending).remove(&id).is_some() {
                    let notice = OutgoingMessage::text(user_messages::permission_timed_out(&id))
                        .in_thread(context.thread.clone());
                    if let Err(e) = context.connector.send(&context.room, notice).await {
                        warn!(%id, error = %e, "cannot post the timeout notice");
                    }
                    info!(%id, "permission request timed out");
                    Decision::TimedOut { after: ask.timeout }
                } else {
                    Decision::Cancelled
                }
            }
        };
        AskOutcome {
            id: Some(id.clone()),
            decision,
        }
    }

    /// Registers a new pending request under a fresh id (never one that is pending) and
    /// returns it.
    fn insert(
        &self,
        ask: &Ask,
        context: &TurnContext,
        settle: oneshot::Sender<Settled>,
    ) -> Option<PermissionRequest> {
        let mut pending = lock(&self.pending);
        let id = (0..100)
            .filter_map(|_| random_id())
            .find(|id| !pending.contains_key(id))?;
        let request = PermissionRequest {
            id: id.clone(),
            tool: ask.tool.clone(),
            input: ask.input.clone(),
            connector: context.connector.name().to_string(),
            room: context.room.clone(),
            thread: context.thread.clone(),
            session: ask.session_id.clone(),
            watcher: context.watcher.clone(),
            requester: context.requester.clone(),
            created: SystemTime::now(),
            timeout: ask.timeout,
            require_other_owner: ask.require_other_owner,
        };
        pending.insert(
            id,
            Pending {
                request: request.clone(),
                settle,
            },
        );
        Some(request)
    }

    /// Applies an owner's command arriving through `connector`; returns the reply for the
    /// room. `msg` must be from an owner (the interceptor checks).
    pub fn apply(&self, connector: &str, msg: &IncomingMessage, cmd: &ApprovalCommand) -> String {
        let id = cmd.id.as_str();
        if id.chars().count() != ID_LEN {
            return user_messages::permission_invalid_id(id, cmd.action.as_str());
        }
        let mut pending = lock(&self.pending);
        let in_scope = pending.get(id).is_some_and(|p| {
            let r = &p.request;
            let same_thread = match (&r.thread, &msg.thread_id) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            r.connector == connector && r.room.id == msg.room.id && same_thread
        });
        if !in_scope {
            return user_messages::permission_unknown(id);
        }
        let own = pending.get(id).is_some_and(|p| {
            p.request.require_other_owner && p.request.requester == msg.sender.username
        });
        if own && cmd.action == Action::Approve {
            info!(id, owner = %msg.sender.username, "refused: the requester may not approve");
            return user_messages::permission_own_request(id);
        }
        let Some(p) = pending.remove(id) else {
            return user_messages::permission_unknown(id);
        };
        drop(pending);
        let by = msg.sender.username.clone();
        info!(id, owner = %by, action = cmd.action.as_str(), tool = %p.request.tool,
            "permission request settled in chat");
        let (settled, reply) = match cmd.action {
            Action::Approve => (
                Settled::Approved(by),
                user_messages::permission_approved(id),
            ),
            Action::Deny => (Settled::Denied(by), user_messages::permission_denied(id)),
        };
        // The asker may have gone (its turn was cancelled); the reply is still true.
        let _ = p.settle.send(settled);
        reply
    }

    /// The dispatcher hook for one connector: consumes owners' `approve`/`deny` commands
    /// (answering in the same room and thread) before anything is queued.
    pub fn interceptor(self: &Arc<Self>, connector: Arc<dyn Connector>) -> Arc<dyn Interceptor> {
        Arc::new(CommandInterceptor {
            registry: self.clone(),
            connector,
        })
    }
}

/// Removes a request from the registry when its `ask` ends, however it ends.
struct Withdraw<'a> {
    registry: &'a ApprovalRegistry,
    id: &'a str,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        lock(&self.registry.pending).remove(self.id);
    }
}

async fn post_with_retries(context: &TurnContext, text: String, delay: Duration) -> bool {
    for attempt in 1..=POST_ATTEMPTS {
        let msg = OutgoingMessage::text(text.clone()).in_thread(context.thread.clone());
        match context.connector.send(&context.room, msg).await {
            Ok(()) => return true,
            Err(e) => {
                warn!(attempt, room = %context.room.name, error = %e,
                    "cannot post a permission request");
                if attempt < POST_ATTEMPTS {
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
    false
}

struct CommandInterceptor {
    registry: Arc<ApprovalRegistry>,
    connector: Arc<dyn Connector>,
}

#[async_trait]
impl Interceptor for CommandInterceptor {
    async fn intercept(&self, msg: &IncomingMessage) -> bool {
        if msg.role != Role::Owner {
            return false;
        }
        let Some(cmd) = parse_command(&msg.text) else {
            return false;
        };
        let reply = self.registry.apply(self.connector.name(), msg, &cmd);
        let out = OutgoingMessage::text(reply).in_thread(msg.thread_id.clone());
        if let Err(e) = self.connector.send(&msg.room, out).await {
            warn!(room = %msg.room.name, error = %e, "cannot answer an approval command");
        }
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::InboundHandler;
    use crate::types::{ConnectorError, RoomKind, Sender};
    use serde_json::json;

    /// Records posts; can be told to fail them, or to have an owner approve each request
    /// while it is being posted (before the asking task runs again).
    #[derive(Default)]
    struct Chat {
        posts: Mutex<Vec<(String, OutgoingMessage)>>,
        fail: std::sync::atomic::AtomicBool,
        quick_owner: std::sync::OnceLock<std::sync::Weak<ApprovalRegistry>>,
    }

    impl Chat {
        fn texts(&self) -> Vec<String> {
            lock(&self.posts)
                .iter()
                .map(|(_, m)| m.text.clone())
                .collect()
        }
        fn posts(&self) -> Vec<(String, OutgoingMessage)> {
            lock(&self.posts).clone()
        }
    }

    #[async_trait]
    impl Connector for Chat {
        fn name(&self) -> &str {
            "chat"
        }
        fn platform(&self) -> &str {
            "Test"
        }
        async fn connect(&self, _: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn disconnect(&self) {}
        async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
            Ok(room_named(room))
        }
        async fn subscribe(&self, _: &Room, _: Option<i64>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn unsubscribe(&self, _: &Room) {}
        async fn send(&self, room: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError> {
            let registry = self.quick_owner.get().and_then(std::sync::Weak::upgrade);
            if let (Some(registry), Some(id)) = (registry, msg.text.split("`[").nth(1)) {
                let text = format!("approve {}", &id[..ID_LEN]);
                let cmd = parse_command(&text).unwrap();
                registry.apply(
                    "chat",
                    &command("desk", None, "bob", Role::Owner, &text),
                    &cmd,
                );
            }
            lock(&self.posts).push((room.id.clone(), msg));
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                Err(ConnectorError::NotConnected("down".into()))
            } else {
                Ok(())
            }
        }
    }

    fn room_named(name: &str) -> Room {
        Room {
            id: format!("id-{name}"),
            name: name.into(),
            kind: RoomKind::Channel,
        }
    }

    fn context(chat: &Arc<Chat>, watcher: &str, room: &str, thread: Option<&str>) -> TurnContext {
        TurnContext {
            watcher: watcher.into(),
            agent: "claude".into(),
            connector: chat.clone(),
            room: room_named(room),
            thread: thread.map(str::to_string),
            requester: "alice".into(),
            role: Role::Owner,
        }
    }

    fn ask(session: &str, timeout: Duration) -> Ask {
        Ask {
            session_id: session.into(),
            tool: "Bash".into(),
            input: vec![("command".into(), json!("rm -rf build"))],
            timeout,
            require_other_owner: false,
        }
    }

    fn command(
        room: &str,
        thread: Option<&str>,
        from: &str,
        role: Role,
        text: &str,
    ) -> IncomingMessage {
        IncomingMessage {
            id: "m1".into(),
            room: room_named(room),
            sender: Sender {
                id: from.into(),
                username: from.into(),
                display_name: None,
            },
            role,
            text: text.into(),
            timestamp_ms: None,
            thread_id: thread.map(str::to_string),
            permission_thread_id: None,
            mentions: vec![],
            attachments: vec![],
            warnings: vec![],
            prompt_header: String::new(),
        }
    }

    /// Waits until the registry has `n` pending requests and returns their ids.
    async fn pending_ids(registry: &ApprovalRegistry, n: usize) -> Vec<String> {
        for _ in 0..3000 {
            let p = registry.pending();
            if p.len() == n {
                return p.into_iter().map(|r| r.id).collect();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never saw {n} pending requests");
    }

    #[tokio::test]
    async fn the_posted_hook_runs_even_when_an_owner_answered_first() {
        let registry = Arc::new(ApprovalRegistry::new());
        let chat = Arc::new(Chat::default());
        let _ = chat.quick_owner.set(Arc::downgrade(&registry));
        registry.register_turn("s1", context(&chat, "w", "desk", None));
        let posted = std::sync::atomic::AtomicBool::new(false);
        let outcome = registry
            .ask_then(ask("s1", Duration::from_secs(30)), |request| {
                assert_eq!(request.tool, "Bash");
                posted.store(true, std::sync::atomic::Ordering::SeqCst);
                std::future::ready(())
            })
            .await;
        assert_eq!(outcome.decision, Decision::Approved { by: "bob".into() });
        assert!(posted.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn golden_request_message() {
        let input = vec![
            ("command".to_string(), json!("rm -rf build")),
            ("description".to_string(), json!("clean")),
        ];
        assert_eq!(
            request_text("a3k9", "Bash", &input),
            "🔐 **Permission required** `[a3k9]`\n**Tool:** `Bash`\n**Params:** `command='rm -rf build', description='clean'`\nReply `approve a3k9` or `deny a3k9`"
        );
        assert_eq!(
            user_messages::permission_timed_out("a3k9"),
            "⏱️ Permission `a3k9` timed out — **auto-denied**."
        );
        assert!(request_text("zz99", "ToolX", &[]).contains("**Params:** `(none)`"));
    }

    #[test]
    fn params_are_python_reprs_cut_per_value_and_overall() {
        let v = |v: Value| py_repr(&v);
        assert_eq!(v(json!("it's")), "\"it's\"");
        assert_eq!(v(json!("both ' and \"")), "'both \\' and \"'");
        assert_eq!(v(json!("a\\b\nc\td\u{1}")), "'a\\\\b\\nc\\td\\x01'");
        assert_eq!(v(json!("héllo ✓")), "'héllo ✓'");
        assert_eq!(v(json!(true)), "True");
        assert_eq!(v(json!(null)), "None");
        assert_eq!(v(json!(42)), "42");
        assert_eq!(v(json!(1.5)), "1.5");
        assert_eq!(v(json!(2.0)), "2.0");
        assert_eq!(v(json!(1e16)), "1e+16");
        assert_eq!(v(json!(0.00001)), "1e-05");
        assert_eq!(v(json!([1, "a", false])), "[1, 'a', False]");
        assert_eq!(v(json!({"k": "v", "n": 1})), "{'k': 'v', 'n': 1}");

        let long = "x".repeat(100);
        let line = render_params(&[("content".into(), json!(long))]);
        assert_eq!(line, format!("content='{}", "x".repeat(59)));
        // Five values of 60 characters each: 5 × (8 + 60) + 4 × 2 = 348 > 200.
        let input: Vec<(String, Value)> = (0..5)
            .map(|i| (format!("key{i}_ab"), json!("y".repeat(100))))
            .collect();
        let line = render_params(&input);
        assert_eq!(line.chars().count(), 200);
        assert!(line.ends_with("..."));
        // Exactly 200 characters stay whole.
        let exact = render_params(&[("k".into(), json!("z".repeat(58)))]);
        assert_eq!(exact.chars().count(), 2 + 60);
        assert!(!exact.ends_with("..."));
        // Multi-byte characters are counted as characters, never split.
        let wide = render_params(&[("k".into(), json!("é".repeat(100)))]);
        assert_eq!(wide.chars().count(), 62);
    }

    #[test]
    fn ids_are_four_lowercase_alphanumerics_and_vary() {
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let id = random_id().unwrap();
            assert_eq!(id.len(), ID_LEN);
            assert!(id.bytes().all(|b| ID_ALPHABET.contains(&b)), "{id}");
            seen.insert(id);
        }
        // 500 draws from 36^4 ids: a handful of repeats at most.
        assert!(seen.len() > 490, "{}", seen.len());
    }

    #[test]
    fn commands_are_parsed_case_insensitively_and_strictly() {
        let cmd = |t: &str| parse_command(t);
        assert_eq!(
            cmd("approve a3k9"),
            Some(ApprovalCommand {
                action: Action::Approve,
                id: "a3k9".into()
            })
        );
        assert_eq!(cmd("  DENY   A3K9 \n").unwrap().id, "a3k9");
        assert_eq!(cmd("Deny A3k9").unwrap().action, Action::Deny);
        assert_eq!(cmd("approve\ta3k9").unwrap().id, "a3k9");
        assert_eq!(cmd("approve abcdef").unwrap().id, "abcdef");
        for not in [
            "approve",
            "approve a3k9 please",
            "please approve a3k9",
            "approve a3-9",
            "approve a3k9!",
            "approves a3k9",
            "",
            "ok a3k9",
        ] {
            assert_eq!(cmd(not), None, "{not:?}");
        }
    }

    #[tokio::test]
    async fn approve_settles_and_replies_in_the_command_thread() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        let r = registry.clone();
        let asking = tokio::spawn(async move { r.ask(ask("s1", Duration::from_secs(60))).await });
        let id = pending_ids(&registry, 1).await.remove(0);
        assert!(chat.texts()[0].contains(&format!("`[{id}]`")));

        let interceptor = registry.interceptor(chat.clone());
        let msg = command(
            "desk",
            Some("t9"),
            "bob",
            Role::Owner,
            &format!("APPROVE {}", id.to_uppercase()),
        );
        assert!(interceptor.intercept(&msg).await);
        let outcome = asking.await.unwrap();
        assert_eq!(outcome.decision, Decision::Approved { by: "bob".into() });
        assert!(outcome.decision.allows());
        assert_eq!(outcome.id.as_deref(), Some(id.as_str()));
        let (room, reply) = chat.posts().pop().unwrap();
        assert_eq!(room, "id-desk");
        assert_eq!(reply.text, format!("✅ Permission `{id}` approved."));
        assert_eq!(reply.thread_id.as_deref(), Some("t9"));
        assert!(registry.pending().is_empty());

        // Settled: the same command now finds nothing.
        assert!(interceptor.intercept(&msg).await);
        assert_eq!(
            chat.texts().pop().unwrap(),
            format!("⚠️ No pending permission request with ID `{id}`.")
        );
    }

    #[tokio::test]
    async fn deny_malformed_unknown_and_guests() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        let r = registry.clone();
        let asking = tokio::spawn(async move { r.ask(ask("s1", Duration::from_secs(60))).await });
        let id = pending_ids(&registry, 1).await.remove(0);
        let interceptor = registry.interceptor(chat.clone());

        // A guest's command is ordinary chat.
        let guest = command("desk", None, "gus", Role::Guest, &format!("approve {id}"));
        assert!(!interceptor.intercept(&guest).await);
        // Ordinary owner chat is not consumed.
        let chat_line = command("desk", None, "bob", Role::Owner, "approve this plan please");
        assert!(!interceptor.intercept(&chat_line).await);

        let owner = |text: &str| command("desk", None, "bob", Role::Owner, text);
        assert!(interceptor.intercept(&owner("deny abc")).await);
        assert_eq!(
            chat.texts().pop().unwrap(),
            "⚠️ Invalid ID `abc` — expected 4 characters (e.g. `deny a3k9`)."
        );
        assert!(interceptor.intercept(&owner("approve abcde")).await);
        assert_eq!(
            chat.texts().pop().unwrap(),
            "⚠️ Invalid ID `abcde` — expected 4 characters (e.g. `approve a3k9`)."
        );
        let other = if id == "zzzz" { "yyyy" } else { "zzzz" };
        assert!(
            interceptor
                .intercept(&owner(&format!("approve {other}")))
                .await
        );
        assert_eq!(
            chat.texts().pop().unwrap(),
            format!("⚠️ No pending permission request with ID `{other}`.")
        );
        assert_eq!(registry.pending().len(), 1);

        assert!(interceptor.intercept(&owner(&format!("deny {id}"))).await);
        assert_eq!(
            chat.texts().pop().unwrap(),
            format!("❌ Permission `{id}` denied.")
        );
        let outcome = asking.await.unwrap();
        assert_eq!(outcome.decision, Decision::Denied { by: "bob".into() });
        assert!(!outcome.decision.allows());
    }

    #[tokio::test]
    async fn room_thread_and_connector_scoping() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", Some("t1")));
        let r = registry.clone();
        let asking = tokio::spawn(async move { r.ask(ask("s1", Duration::from_secs(60))).await });
        let id = pending_ids(&registry, 1).await.remove(0);
        // The request went to its thread.
        assert_eq!(chat.posts()[0].1.thread_id.as_deref(), Some("t1"));
        let cmd = parse_command(&format!("approve {id}")).unwrap();
        let unknown = format!("⚠️ No pending permission request with ID `{id}`.");

        // Another room, another thread, another connector: not found, still pending.
        let m = command("other", None, "bob", Role::Owner, "");
        assert_eq!(registry.apply("chat", &m, &cmd), unknown);
        let m = command("desk", Some("t2"), "bob", Role::Owner, "");
        assert_eq!(registry.apply("chat", &m, &cmd), unknown);
        let m = command("desk", Some("t1"), "bob", Role::Owner, "");
        assert_eq!(registry.apply("elsewhere", &m, &cmd), unknown);
        assert_eq!(registry.pending().len(), 1);

        // A room-level command settles a threaded request.
        let m = command("desk", None, "bob", Role::Owner, "");
        assert_eq!(
            registry.apply("chat", &m, &cmd),
            format!("✅ Permission `{id}` approved.")
        );
        assert!(asking.await.unwrap().decision.allows());
    }

    #[tokio::test]
    async fn require_other_owner_bars_only_the_requesters_approval() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        let r = registry.clone();
        let asking = tokio::spawn(async move {
            let mut a = ask("s1", Duration::from_secs(60));
            a.require_other_owner = true;
            r.ask(a).await
        });
        let id = pending_ids(&registry, 1).await.remove(0);
        let approve = parse_command(&format!("approve {id}")).unwrap();
        let alice = command("desk", None, "alice", Role::Owner, "");
        let reply = registry.apply("chat", &alice, &approve);
        assert!(reply.contains("another owner must approve"), "{reply}");
        assert_eq!(registry.pending().len(), 1);
        let bob = command("desk", None, "bob", Role::Owner, "");
        assert!(registry.apply("chat", &bob, &approve).contains("approved"));
        assert_eq!(
            asking.await.unwrap().decision,
            Decision::Approved { by: "bob".into() }
        );

        // The requester may still deny their own request.
        let r = registry.clone();
        let asking = tokio::spawn(async move {
            let mut a = ask("s1", Duration::from_secs(60));
            a.require_other_owner = true;
            r.ask(a).await
        });
        let id = pending_ids(&registry, 1).await.remove(0);
        let deny = parse_command(&format!("deny {id}")).unwrap();
        assert!(registry.apply("chat", &alice, &deny).contains("denied"));
        assert_eq!(
            asking.await.unwrap().decision,
            Decision::Denied { by: "alice".into() }
        );

        // Without the setting the requester approves their own request.
        let r = registry.clone();
        let asking = tokio::spawn(async move { r.ask(ask("s1", Duration::from_secs(60))).await });
        let id = pending_ids(&registry, 1).await.remove(0);
        let approve = parse_command(&format!("approve {id}")).unwrap();
        assert!(registry
            .apply("chat", &alice, &approve)
            .contains("approved"));
        assert!(asking.await.unwrap().decision.allows());
    }

    #[tokio::test]
    async fn timeout_denies_and_tells_the_room() {
        let chat = Arc::new(Chat::default());
        let registry = ApprovalRegistry::new();
        registry.register_turn("s1", context(&chat, "w1", "desk", Some("t1")));
        let outcome = registry.ask(ask("s1", Duration::from_millis(200))).await;
        let id = outcome.id.clone().unwrap();
        assert_eq!(
            outcome.decision,
            Decision::TimedOut {
                after: Duration::from_millis(200)
            }
        );
        let (_, notice) = chat.posts().pop().unwrap();
        assert_eq!(
            notice.text,
            format!("⏱️ Permission `{id}` timed out — **auto-denied**.")
        );
        assert_eq!(notice.thread_id.as_deref(), Some("t1"));
        assert!(registry.pending().is_empty());
    }

    #[tokio::test]
    async fn closing_a_watcher_denies_silently_and_scopes_to_it() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        registry.register_turn("s2", context(&chat, "w2", "lab", None));
        let r = registry.clone();
        let first = tokio::spawn(async move { r.ask(ask("s1", Duration::from_secs(60))).await });
        let r = registry.clone();
        let second = tokio::spawn(async move { r.ask(ask("s2", Duration::from_secs(60))).await });
        pending_ids(&registry, 2).await;
        let posts_before = chat.posts().len();
        assert_eq!(registry.close_watcher("w1"), 1);
        assert_eq!(first.await.unwrap().decision, Decision::Cancelled);
        assert_eq!(chat.posts().len(), posts_before, "no message on close");
        let left = registry.pending();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].watcher, "w2");
        // While closed, new requests of w1 are denied at once; after open they are asked.
        assert_eq!(
            registry
                .ask(ask("s1", Duration::from_secs(60)))
                .await
                .decision,
            Decision::Cancelled
        );
        registry.open_watcher("w1");
        let r = registry.clone();
        let again = tokio::spawn(async move { r.ask(ask("s1", Duration::from_millis(100))).await });
        assert!(matches!(
            again.await.unwrap().decision,
            Decision::TimedOut { .. }
        ));
        registry.close_watcher("w2");
        assert_eq!(second.await.unwrap().decision, Decision::Cancelled);
    }

    #[tokio::test]
    async fn unknown_session_and_unreachable_room() {
        let chat = Arc::new(Chat::default());
        let registry = ApprovalRegistry::new().with_post_retry_delay(Duration::from_millis(10));
        assert_eq!(
            registry
                .ask(ask("nobody", Duration::from_secs(1)))
                .await
                .decision,
            Decision::NoRoom
        );
        chat.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        let outcome = registry.ask(ask("s1", Duration::from_secs(60))).await;
        assert_eq!(outcome.decision, Decision::Undeliverable);
        assert_eq!(chat.posts().len(), POST_ATTEMPTS);
        assert!(registry.pending().is_empty());
    }

    #[tokio::test]
    async fn ask_then_runs_after_posting_and_before_the_answer() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let c = chat.clone();
        let outcome = registry
            .ask_then(ask("s1", Duration::from_millis(100)), move |request| {
                s.lock()
                    .unwrap()
                    .push((request.id, request.tool, c.texts().len()));
                std::future::ready(())
            })
            .await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        assert_eq!(Some(&seen[0].0), outcome.id.as_ref());
        assert_eq!(seen[0].1, "Bash");
        assert_eq!(
            seen[0].2, 1,
            "called after the request was posted, before the notice"
        );
    }

    #[tokio::test]
    async fn a_dropped_ask_withdraws_its_request() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        let r = registry.clone();
        let asking = tokio::spawn(async move { r.ask(ask("s1", Duration::from_secs(60))).await });
        pending_ids(&registry, 1).await;
        asking.abort();
        let _ = asking.await;
        assert!(registry.pending().is_empty());
    }

    #[tokio::test]
    async fn ids_never_collide_with_pending_ones() {
        let chat = Arc::new(Chat::default());
        let registry = Arc::new(ApprovalRegistry::new());
        registry.register_turn("s1", context(&chat, "w1", "desk", None));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let r = registry.clone();
            tasks.push(tokio::spawn(async move {
                r.ask(ask("s1", Duration::from_secs(60))).await
            }));
        }
        let ids = pending_ids(&registry, 50).await;
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), 50);
        registry.close_watcher("w1");
        for t in tasks {
            assert_eq!(t.await.unwrap().decision, Decision::Cancelled);
        }
    }
}
