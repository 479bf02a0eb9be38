//! The service object the daemon runs and the control socket talks to: connectors with their
//! watchers and state files, agent backends, and the operations of the CLI (list, pause,
//! resume, reset, send, inject, shutdown).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ports::{AgentBackend, Connector};
use crate::types::{ConnectionState, Role};
use crate::watcher::{WatcherInfo, WatcherSpec};

/// Daemon-wide options.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `~/.agent-chat-gateway` (state files, system prompts).
    pub runtime_dir: PathBuf,
    /// How long each watcher may drain its queue on shutdown.
    pub drain_timeout: Duration,
}

/// One connector and the watchers configured on it.
pub struct ConnectorSetup {
    /// The connector.
    pub connector: Arc<dyn Connector>,
    /// Its `type:` word (`rocketchat`, `script`, …).
    pub connector_type: String,
    /// Its watchers, in config order.
    pub watchers: Vec<WatcherSpec>,
}

/// One agent backend under its config name.
pub struct AgentSetup {
    /// Key under `agents:`.
    pub name: String,
    /// The backend.
    pub backend: Arc<dyn AgentBackend>,
}

/// What happened during start, for the `start` command's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartReport {
    /// Non-fatal problems (degraded start): each a one-line operator message.
    pub errors: Vec<String>,
    /// Informational lines.
    pub info: Vec<String>,
}

/// A connector as `status`/`list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// Name.
    pub name: String,
    /// `type:` word.
    pub connector_type: String,
    /// Link state.
    pub state: ConnectionState,
}

/// A request the gateway refused, in words for the CLI user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GatewayError(pub String);

/// A message injected through the control socket as if a user had posted it (script rooms,
/// tests, automation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    /// The target watcher.
    pub watcher: String,
    /// The text.
    pub text: String,
    /// Who it is from (default `script`).
    pub sender: String,
    /// With which role (default owner).
    pub role: Role,
}

/// The running gateway. Cheap to share (`Arc<Gateway>`); every method is safe to call
/// concurrently from control-socket connections.
pub struct Gateway {
    _private: (),
}

impl Gateway {
    /// Starts backends, connects connectors (a connector that cannot reach its server keeps
    /// retrying in the background: the start is then degraded, not failed) and starts every
    /// non-paused watcher. Never fails as a whole; problems are in the report.
    pub async fn start(
        options: GatewayOptions,
        agents: Vec<AgentSetup>,
        connectors: Vec<ConnectorSetup>,
    ) -> (Arc<Gateway>, StartReport) {
        let _ = (options, agents, connectors);
        todo!()
    }

    /// Watchers of one connector, or of all.
    pub fn list(&self, connector: Option<&str>) -> Result<Vec<WatcherInfo>, GatewayError> {
        let _ = connector;
        todo!()
    }

    /// Every connector with its link state.
    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        todo!()
    }

    /// Pauses a watcher: it stops taking messages; its session is kept.
    pub async fn pause(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        let _ = (watcher, connector);
        todo!()
    }

    /// Resumes a paused watcher.
    pub async fn resume(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        let _ = (watcher, connector);
        todo!()
    }

    /// Starts a fresh session (a pinned session id is kept), unpauses and restarts the watcher.
    pub async fn reset(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        let _ = (watcher, connector);
        todo!()
    }

    /// Posts text and/or a file to a room directly (bypassing the agent).
    pub async fn send(
        &self,
        room: &str,
        text: Option<String>,
        attachment: Option<PathBuf>,
        connector: Option<&str>,
    ) -> Result<(), GatewayError> {
        let _ = (room, text, attachment, connector);
        todo!()
    }

    /// Delivers a message to a watcher as if a user had posted it in its room.
    pub async fn inject(&self, injection: Injection) -> Result<(), GatewayError> {
        let _ = injection;
        todo!()
    }

    /// Drains every watcher (bounded by the drain timeout), posts offline notices, saves
    /// state, disconnects connectors and stops backends.
    pub async fn shutdown(&self) {
        todo!()
    }
}
