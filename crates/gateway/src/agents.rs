//! The daemon's agents as `status` and `list` report them.
//!
//! Core's `Gateway` keeps only the backends that started; an operator also needs to see the
//! ones that did not, and why, and how a long-lived backend (an OpenCode sidecar) is doing
//! right now. So every backend the daemon builds is wrapped in a [`StartTracked`] (which
//! remembers a failed `start`) and listed in an [`AgentBook`] with every configured agent,
//! and the control socket's `status` and `list` answers carry an `agents` section built from
//! it ([`AgentStatus`]). [`DaemonTarget`] is the control target that adds it to the gateway.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use acg_core::approval::PermissionRequest;
use acg_core::gateway::{ConnectorInfo, Gateway, GatewayError, Injection};
use acg_core::watcher::WatcherInfo;
use acg_core::{AgentBackend, AgentError, AgentResponse, EventSink, NewSession, TurnRequest};
use acg_opencode::OpencodeBackend;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::control::ControlTarget;

/// A backend that remembers why its `start` failed, so `status` can say so (core drops such a
/// backend and does not start its watchers). Everything else is passed through.
pub struct StartTracked {
    inner: Arc<dyn AgentBackend>,
    start_error: Mutex<Option<String>>,
}

impl StartTracked {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn AgentBackend>) -> Self {
        StartTracked {
            inner,
            start_error: Mutex::new(None),
        }
    }

    /// Why the last `start` failed, if it did.
    pub fn start_error(&self) -> Option<String> {
        self.start_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl AgentBackend for StartTracked {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn start(&self) -> Result<(), AgentError> {
        let result = self.inner.start().await;
        *self.start_error.lock().unwrap_or_else(|e| e.into_inner()) =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    async fn stop(&self) {
        self.inner.stop().await;
    }

    async fn create_session(&self, req: &NewSession) -> Result<String, AgentError> {
        self.inner.create_session(req).await
    }

    async fn turn(
        &self,
        req: &TurnRequest,
        events: &EventSink,
    ) -> Result<AgentResponse, AgentError> {
        self.inner.turn(req, events).await
    }

    async fn delete_session(&self, session_id: &str, working_directory: &Path) {
        self.inner
            .delete_session(session_id, working_directory)
            .await;
    }

    fn health(&self) -> Option<String> {
        match self.start_error() {
            Some(e) => Some(format!("failed to start: {e}")),
            None => self.inner.health(),
        }
    }
}

/// One configured agent as `status` and `list` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStatus {
    /// The key under `agents:`.
    pub name: String,
    /// `claude` / `opencode`.
    #[serde(rename = "type")]
    pub agent_type: String,
    /// `ready` (its watchers can run), `failed` (its start failed) or `unavailable` (the
    /// daemon could not build it).
    pub state: &'static str,
    /// One line for operators: the backend's own health (e.g. `opencode server running (pid
    /// …)`, `opencode server restarting (…)`), or why it is not running; `None` when there is
    /// nothing to say beyond the state.
    pub health: Option<String>,
    /// An OpenCode agent's sidecar state (`state`: `stopped` / `starting` / `running` /
    /// `restarting` / `broken`, with pid, URL, failures, last error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<Value>,
}

enum Built {
    Backend(Arc<StartTracked>),
    Missing(String),
}

struct AgentEntry {
    name: String,
    agent_type: String,
    built: Built,
    opencode: Option<Arc<OpencodeBackend>>,
}

/// Every configured agent, with its backend when it has one.
#[derive(Default)]
pub struct AgentBook {
    entries: Vec<AgentEntry>,
}

impl AgentBook {
    /// Records an agent with its (wrapped) backend; `opencode` is the same backend when it is
    /// an OpenCode one, for its sidecar state.
    pub fn add(
        &mut self,
        name: &str,
        agent_type: &str,
        backend: Arc<StartTracked>,
        opencode: Option<Arc<OpencodeBackend>>,
    ) {
        self.entries.push(AgentEntry {
            name: name.to_string(),
            agent_type: agent_type.to_string(),
            built: Built::Backend(backend),
            opencode,
        });
    }

    /// Records an agent the daemon could not build, and why.
    pub fn add_missing(&mut self, name: &str, agent_type: &str, why: impl Into<String>) {
        self.entries.push(AgentEntry {
            name: name.to_string(),
            agent_type: agent_type.to_string(),
            built: Built::Missing(why.into()),
            opencode: None,
        });
    }

    /// How every agent is doing right now, in config order.
    pub fn statuses(&self) -> Vec<AgentStatus> {
        self.entries
            .iter()
            .map(|entry| {
                let (state, health) = match &entry.built {
                    Built::Missing(why) => ("unavailable", Some(why.clone())),
                    Built::Backend(backend) => {
                        let state = if backend.start_error().is_some() {
                            "failed"
                        } else {
                            "ready"
                        };
                        (state, backend.health())
                    }
                };
                AgentStatus {
                    name: entry.name.clone(),
                    agent_type: entry.agent_type.clone(),
                    state,
                    health,
                    sidecar: entry
                        .opencode
                        .as_ref()
                        .and_then(|b| serde_json::to_value(b.sidecar_state()).ok()),
                }
            })
            .collect()
    }
}

/// What the control socket drives in the daemon: the gateway, plus the agent book.
pub struct DaemonTarget {
    gateway: Arc<Gateway>,
    agents: AgentBook,
}

impl DaemonTarget {
    /// The gateway and the daemon's agents.
    pub fn new(gateway: Arc<Gateway>, agents: AgentBook) -> Self {
        DaemonTarget { gateway, agents }
    }
}

#[async_trait]
impl ControlTarget for DaemonTarget {
    fn list(&self, connector: Option<&str>) -> Result<Vec<WatcherInfo>, GatewayError> {
        ControlTarget::list(self.gateway.as_ref(), connector)
    }
    fn connectors(&self) -> Vec<ConnectorInfo> {
        ControlTarget::connectors(self.gateway.as_ref())
    }
    async fn pause(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        ControlTarget::pause(self.gateway.as_ref(), watcher, connector).await
    }
    async fn resume(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        ControlTarget::resume(self.gateway.as_ref(), watcher, connector).await
    }
    async fn reset(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        ControlTarget::reset(self.gateway.as_ref(), watcher, connector).await
    }
    async fn send(
        &self,
        room: &str,
        text: Option<String>,
        attachment: Option<PathBuf>,
        connector: Option<&str>,
    ) -> Result<(), GatewayError> {
        ControlTarget::send(self.gateway.as_ref(), room, text, attachment, connector).await
    }
    async fn inject(&self, injection: Injection) -> Result<(), GatewayError> {
        ControlTarget::inject(self.gateway.as_ref(), injection).await
    }
    fn pending_approvals(&self) -> Vec<PermissionRequest> {
        ControlTarget::pending_approvals(self.gateway.as_ref())
    }
    fn agents(&self) -> Vec<AgentStatus> {
        self.agents.statuses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stub {
        fail: bool,
    }

    #[async_trait]
    impl AgentBackend for Stub {
        fn kind(&self) -> &str {
            "stub"
        }
        async fn start(&self) -> Result<(), AgentError> {
            if self.fail {
                Err(AgentError::Unavailable("no server".into()))
            } else {
                Ok(())
            }
        }
        async fn create_session(&self, _: &NewSession) -> Result<String, AgentError> {
            Ok("s".into())
        }
        async fn turn(&self, _: &TurnRequest, _: &EventSink) -> Result<AgentResponse, AgentError> {
            Err(AgentError::Timeout)
        }
        fn health(&self) -> Option<String> {
            Some("humming".into())
        }
    }

    #[tokio::test]
    async fn the_book_tells_ready_failed_and_unavailable_agents_apart() {
        let ok = Arc::new(StartTracked::new(Arc::new(Stub { fail: false })));
        let bad = Arc::new(StartTracked::new(Arc::new(Stub { fail: true })));
        ok.start().await.unwrap();
        assert!(bad.start().await.is_err());
        let opencode = Arc::new(
            OpencodeBackend::new(acg_opencode::OpencodeSettings::new("opencode", "/w")).unwrap(),
        );
        let mut book = AgentBook::default();
        book.add("a", "claude", ok, None);
        book.add("b", "opencode", bad, Some(opencode));
        book.add_missing("c", "opencode", "its tool rules cannot be used");
        let statuses = book.statuses();
        assert_eq!(statuses[0].state, "ready");
        assert_eq!(statuses[0].health.as_deref(), Some("humming"));
        assert_eq!(statuses[0].sidecar, None);
        assert_eq!(statuses[1].state, "failed");
        assert!(statuses[1]
            .health
            .as_deref()
            .is_some_and(|h| h.starts_with("failed to start: ") && h.contains("no server")));
        assert_eq!(statuses[1].sidecar.as_ref().unwrap()["state"], "stopped");
        assert_eq!(statuses[2].state, "unavailable");
        let json = serde_json::to_value(&statuses[2]).unwrap();
        assert_eq!(json["type"], "opencode");
        assert_eq!(json["health"], "its tool rules cannot be used");
        assert!(json.get("sidecar").is_none());
    }
}
