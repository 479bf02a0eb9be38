//! Normalized types shared by every connector and agent backend.
//!
//! A connector turns a platform's message into an [`IncomingMessage`] (having already decided
//! who may speak and with which [`Role`]); an agent backend turns a [`TurnRequest`] into an
//! [`AgentResponse`], reporting [`AgentEvent`]s while it works.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the gateway grants a chat user. Decided by the connector from its allow-lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A configured owner: may approve tool calls and runs under the owner tool allow-list.
    Owner,
    /// Anyone else who is allowed to talk to the agent.
    Guest,
}

impl Role {
    /// The lower-case word used in prompt headers and `ACG_ROLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Guest => "guest",
        }
    }
}

/// The kind of room a message came from; it changes mention rules and the `to:` header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// A public channel.
    Channel,
    /// A private group.
    Group,
    /// A direct-message room with one person.
    Dm,
    /// An in-memory room of the script connector.
    Script,
}

impl RoomKind {
    /// The word stored in `state.<connector>.json` (`room_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Channel => "channel",
            RoomKind::Group => "group",
            RoomKind::Dm => "dm",
            RoomKind::Script => "script",
        }
    }
}

/// A resolved chat room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Room {
    /// The platform's stable id.
    pub id: String,
    /// The display name used in prompt headers (for DMs the configured `@user`).
    pub name: String,
    /// Channel, group, DM or script.
    pub kind: RoomKind,
}

/// Who sent a message, as the platform (not the message text) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The platform's user id.
    pub id: String,
    /// The login name.
    pub username: String,
    /// The human-readable name, when the platform gives one.
    pub display_name: Option<String>,
}

/// A chat message that passed the connector's filters and is ready for a watcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomingMessage {
    /// The platform's message id.
    pub id: String,
    /// The room it was posted in.
    pub room: Room,
    /// Its author.
    pub sender: Sender,
    /// The author's role, decided by the connector.
    pub role: Role,
    /// The text with a leading bot mention stripped; never empty (see `user_messages::EMPTY_MESSAGE`).
    pub text: String,
    /// Milliseconds since the Unix epoch, when known; drives the watermark and the header's `ts:`.
    pub timestamp_ms: Option<i64>,
    /// The thread the reply goes to (`None` = the room itself).
    pub thread_id: Option<String>,
    /// The thread permission requests go to.
    pub permission_thread_id: Option<String>,
    /// Usernames mentioned, as the server reported them (trusted), in message order.
    pub mentions: Vec<String>,
    /// Local paths of downloaded attachments.
    pub attachments: Vec<PathBuf>,
    /// Notes for the agent about attachments that could not be delivered.
    pub warnings: Vec<String>,
    /// The trusted prompt header the connector built for this message ("" = none).
    pub prompt_header: String,
}

/// Something to post in a room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The text (may be empty when only an attachment is sent).
    pub text: String,
    /// The thread to post in (`None` = the room).
    pub thread_id: Option<String>,
    /// True for gateway error notices (connectors may style them).
    pub is_error: bool,
    /// A local file to upload with `text` as its caption.
    pub attachment: Option<PathBuf>,
}

impl OutgoingMessage {
    /// A plain text post in the room (no thread).
    pub fn text(text: impl Into<String>) -> Self {
        OutgoingMessage {
            text: text.into(),
            ..Default::default()
        }
    }

    /// The same post, in a thread.
    pub fn in_thread(mut self, thread_id: Option<String>) -> Self {
        self.thread_id = thread_id;
        self
    }

    /// The same post, marked as a gateway error notice.
    pub fn error(mut self) -> Self {
        self.is_error = true;
        self
    }
}

/// Everything needed to start a new agent session.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    /// The agent's working directory.
    pub working_directory: PathBuf,
    /// Extra CLI arguments from `new_session_args`.
    pub extra_args: Vec<String>,
    /// A human title (`<session_prefix>:<room>`), when configured.
    pub title: Option<String>,
    /// How long creation may take.
    pub timeout: Duration,
}

/// One turn: a prompt sent to an existing session.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRequest {
    /// The agent session to continue.
    pub session_id: String,
    /// The full prompt (header, text, warnings; attachment notes are added by the backend).
    pub prompt: String,
    /// The agent's working directory.
    pub working_directory: PathBuf,
    /// The turn's deadline, measured from its start.
    pub timeout: Duration,
    /// Local files the message carried.
    pub attachments: Vec<PathBuf>,
    /// Per-message environment for the agent process (e.g. `ACG_ROLE`).
    pub env: BTreeMap<String, String>,
    /// The durable system prompt file, appended to the system prompt on every turn.
    pub system_prompt_file: Option<PathBuf>,
    /// The watcher this turn belongs to (for logs and the permission broker).
    pub watcher: Option<String>,
}

/// Token counts of one turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Tokens read from the prompt cache.
    pub cache_read: u64,
    /// Tokens written to the prompt cache.
    pub cache_write: u64,
}

/// A tool call the agent's own permission system refused during the turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionDenial {
    /// The tool's name (e.g. `Bash`).
    pub tool_name: String,
    /// The call's id.
    pub tool_use_id: String,
    /// The call's input.
    pub tool_input: serde_json::Value,
}

/// What an agent answered in one turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentResponse {
    /// The reply text, never empty (see `user_messages::EMPTY_RESPONSE`).
    pub text: String,
    /// The agent flagged the result as an error.
    pub is_error: bool,
    /// The session the turn ran in (backends may report a new one).
    pub session_id: Option<String>,
    /// Token counts.
    pub usage: Usage,
    /// Cost in USD, when the agent reports it.
    pub cost_usd: Option<f64>,
    /// Model round trips in the turn.
    pub num_turns: Option<u32>,
    /// The agent's own wall time for the turn.
    pub duration_ms: Option<u64>,
    /// Tool calls the agent refused on its own.
    pub permission_denials: Vec<PermissionDenial>,
}

/// Progress an agent reports while a turn runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AgentEvent {
    /// A piece of reply text (streamed).
    TextDelta(String),
    /// A complete block of assistant text.
    Text(String),
    /// The agent called a tool.
    ToolCall {
        /// The tool's name.
        name: String,
    },
    /// The agent is thinking; a short excerpt.
    Thinking(String),
}

/// Why a turn (or session creation) failed, in the classes chat users are told about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgentError {
    /// The turn ran past its deadline and the agent was stopped.
    #[error("agent timed out")]
    Timeout,
    /// A usage or rate limit.
    #[error("agent rate limited: {0}")]
    RateLimited(String),
    /// The agent was refused something it needed.
    #[error("agent permission error: {0}")]
    Permission(String),
    /// The agent or its model service is unavailable.
    #[error("agent unavailable: {0}")]
    Unavailable(String),
    /// The agent's output could not be understood.
    #[error("agent protocol error: {0}")]
    Protocol(String),
    /// The session id is unknown to the agent.
    #[error("agent session not found: {0}")]
    SessionNotFound(String),
    /// Anything else.
    #[error("agent failed: {0}")]
    Other(String),
}

/// Who wrote a message of a room's history, as the gateway tells the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryRole {
    /// A configured owner.
    Owner,
    /// A configured guest.
    Guest,
    /// The bot itself (username `me`) or a configured peer agent.
    Agent,
}

impl HistoryRole {
    /// The lower-case word used in history headers.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryRole::Owner => "owner",
            HistoryRole::Guest => "guest",
            HistoryRole::Agent => "agent",
        }
    }
}

/// Which part of a room's history to fetch (history handoff, `fetch-history`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// At most this many messages (the newest ones in the range).
    pub count: u32,
    /// Only messages strictly before this time (ms since the epoch).
    pub before_ms: Option<i64>,
    /// Only messages strictly after this time (ms since the epoch).
    pub after_ms: Option<i64>,
}

/// One message of a room's history. Messages of people who are neither owners, guests nor
/// peer agents are never included, nor are system messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When it was posted (ms since the epoch), if known.
    pub timestamp_ms: Option<i64>,
    /// The author's username; `me` for the bot's own messages.
    pub username: String,
    /// The author's role.
    pub role: HistoryRole,
    /// The room's display name.
    pub room_name: String,
    /// The text as posted.
    pub text: String,
}

/// A connector's failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectorError {
    /// The room does not exist or the bot cannot see it.
    #[error("room not found: {0}")]
    RoomNotFound(String),
    /// The server cannot be reached right now.
    #[error("not connected: {0}")]
    NotConnected(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// How a connector's link to its server is doing, for `status` and `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// Working.
    Connected,
    /// Trying to (re)connect since a Unix time in milliseconds.
    Reconnecting {
        /// When the link was lost.
        since_ms: i64,
        /// The last error seen.
        last_error: Option<String>,
    },
    /// Not started or stopped.
    Disconnected,
}
