//! The two ports adapters implement: [`Connector`] (a chat platform) and [`AgentBackend`]
//! (an agent). Core code only ever sees these traits.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::types::{
    AgentError, AgentEvent, AgentResponse, ConnectionState, ConnectorError, HistoryEntry,
    HistoryQuery, IncomingMessage, NewSession, OutgoingMessage, Room, TurnRequest,
};

/// What became of an inbound message handed to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for a watcher; it will be answered.
    Accepted,
    /// Every watcher of the room was full or stopping; the sender was told (rate-limited).
    Rejected,
    /// Consumed by the gateway itself (e.g. `approve ab12`); never reaches an agent.
    Intercepted,
    /// No watcher listens to this room.
    NoWatcher,
}

/// Receives normalized messages from a connector (the dispatcher implements it).
#[async_trait]
pub trait InboundHandler: Send + Sync {
    /// Hands one message to the gateway and says what became of it.
    async fn deliver(&self, msg: IncomingMessage) -> Delivery;
}

/// A chat platform adapter. It owns everything platform-specific: the wire protocol, the
/// allow-list and mention filters, normalization, the trusted prompt header, chunking and
/// retries of outbound posts.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The connector's configured name (e.g. `rc-home`).
    fn name(&self) -> &str;

    /// The platform's label, as it appears in prompt headers (e.g. `Rocket.Chat`).
    fn platform(&self) -> &str;

    /// The bot's own username on the platform, if it has one.
    fn bot_username(&self) -> Option<String> {
        None
    }

    /// The built-in context document for this platform (layer 0 of the durable context).
    fn builtin_context(&self) -> Option<&'static str> {
        None
    }

    /// The trusted prompt header for a message the gateway itself puts into `msg.room`
    /// (`inject` from the control socket, scheduled jobs), built from the message's fields.
    /// `None` (the default) = no header, the text goes to the agent as is.
    fn header_for_injected(&self, _msg: &IncomingMessage) -> Option<String> {
        None
    }

    /// Starts talking to the server and delivering messages to `inbound`. A connector that
    /// cannot reach its server should keep retrying in the background and return `Ok`.
    async fn connect(&self, inbound: Arc<dyn InboundHandler>) -> Result<(), ConnectorError>;

    /// Closes the connection.
    async fn disconnect(&self);

    /// Resolves a configured room string (`general`, `@alice`, a raw id …) to a room.
    async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError>;

    /// Starts delivering messages of `room`, first replaying everything posted after
    /// `replay_after_ms` (the watermark of the last answered message), when given.
    async fn subscribe(
        &self,
        room: &Room,
        replay_after_ms: Option<i64>,
    ) -> Result<(), ConnectorError>;

    /// Stops delivering messages of `room`.
    async fn unsubscribe(&self, room: &Room);

    /// Posts a message (chunked and retried as the platform needs).
    async fn send(&self, room: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError>;

    /// Shows or clears the typing indicator. Best effort.
    async fn set_typing(&self, _room: &Room, _thread_id: Option<&str>, _on: bool) {}

    /// The state of the link to the server, for `status` and `list`.
    fn connection_state(&self) -> ConnectionState {
        ConnectionState::Connected
    }

    /// Whether [`Connector::fetch_history`] is implemented (history handoff, `fetch-history`).
    fn supports_history(&self) -> bool {
        false
    }

    /// Messages of `room` from the server's history, oldest first. The default says the
    /// platform has no history.
    async fn fetch_history(
        &self,
        _room: &Room,
        _query: HistoryQuery,
    ) -> Result<Vec<HistoryEntry>, ConnectorError> {
        Err(ConnectorError::Other(format!(
            "connector '{}' does not support history fetch",
            self.name()
        )))
    }
}

/// Where an agent backend reports progress during a turn. Never blocks: when the receiver
/// lags, events are dropped (they only drive typing indicators and streaming previews).
#[derive(Debug, Clone, Default)]
pub struct EventSink {
    tx: Option<mpsc::Sender<AgentEvent>>,
}

impl EventSink {
    /// A sink that drops every event.
    pub fn discard() -> Self {
        EventSink { tx: None }
    }

    /// A sink and the receiver of its events, buffering up to `capacity` events.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<AgentEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (EventSink { tx: Some(tx) }, rx)
    }

    /// Reports one event.
    pub fn emit(&self, event: AgentEvent) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(event);
        }
    }
}

/// An agent adapter: creates sessions and runs turns in them.
#[async_trait]
pub trait AgentBackend: Send + Sync + 'static {
    /// The agent type (`claude`, `opencode`, …).
    fn kind(&self) -> &str;

    /// Prepares the backend (e.g. starts a sidecar server). Called once at daemon start.
    async fn start(&self) -> Result<(), AgentError> {
        Ok(())
    }

    /// Releases what `start` acquired.
    async fn stop(&self) {}

    /// Creates a session and returns its id.
    async fn create_session(&self, req: &NewSession) -> Result<String, AgentError>;

    /// Runs one turn, reporting progress to `events`, and returns the final response.
    /// Must enforce `req.timeout` itself and leave no process behind when it fails.
    async fn turn(
        &self,
        req: &TurnRequest,
        events: &EventSink,
    ) -> Result<AgentResponse, AgentError>;

    /// Best-effort removal of a session the gateway no longer needs.
    async fn delete_session(&self, _session_id: &str, _working_directory: &Path) {}

    /// A one-line state of the backend's own machinery for `status` and `list`, when it has
    /// any (e.g. an OpenCode sidecar server that is restarting or was given up on); `None`
    /// (the default) = nothing beyond "configured".
    fn health(&self) -> Option<String> {
        None
    }
}
