//! One worker per watched room: a bounded queue, strictly one agent turn at a time, catch-up
//! batching of messages that arrived during a turn, typing kept alive while the agent works,
//! the watermark moved only after a message was answered, and a drain on shutdown.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::ContextSources;

/// Everything a watcher needs to know, resolved from config by the binary.
#[derive(Debug, Clone)]
pub struct WatcherSpec {
    /// Unique watcher name.
    pub name: String,
    /// The connector's name.
    pub connector: String,
    /// The room as configured.
    pub room: String,
    /// The agent's name (key under `agents:`).
    pub agent: String,
    /// A pinned session id (kept across `reset`).
    pub pinned_session_id: Option<String>,
    /// The agent's working directory.
    pub working_directory: PathBuf,
    /// `new_session_args`.
    pub new_session_args: Vec<String>,
    /// `session_prefix` ("" = no title).
    pub session_prefix: String,
    /// Per-turn deadline.
    pub turn_timeout: Duration,
    /// Queue bound (0 = unbounded).
    pub max_queue_depth: usize,
    /// Durable context inputs (layer 0 documents and files).
    pub context: ContextSources,
    /// Posted when the watcher starts.
    pub online_notification: Option<String>,
    /// Posted when the watcher stops.
    pub offline_notification: Option<String>,
}

/// What `list` shows about a watcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherInfo {
    /// Watcher name.
    pub watcher_name: String,
    /// The room as configured.
    pub room_name: String,
    /// Connector name.
    pub connector: String,
    /// Agent name.
    pub agent_name: String,
    /// Current session id ("" = none).
    pub session_id: String,
    /// Paused by `pause`.
    pub paused: bool,
    /// Running and subscribed.
    pub active: bool,
    /// `not_started | pending | injected | failed_retryable | failed_degraded`.
    pub context_injection_state: String,
    /// Messages waiting in the queue.
    pub queued: usize,
}
