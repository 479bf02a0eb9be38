//! The service object the daemon runs and the control socket talks to: connectors with their
//! watchers and state files, agent backends, and the operations of the CLI (list, pause,
//! resume, reset, send, inject, shutdown).
//!
//! A connector that cannot reach its server does not hold the gateway hostage: the start is
//! reported as degraded, the other connectors work, and watchers whose room could not be
//! resolved or subscribed for want of the server wait ([`WatcherInfo::waiting`]) until
//! [`start_when_connected`] starts them once the connector says it is connected.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::approval::ApprovalRegistry;
use crate::dispatcher::Dispatcher;
use crate::ports::{AgentBackend, Connector, Delivery, InboundHandler};
use crate::state::{StateError, StateFile, WatcherRecord};
use crate::types::{
    ConnectionState, ConnectorError, IncomingMessage, OutgoingMessage, Role, Room, RoomKind, Sender,
};
use crate::watcher::{StateBook, Watcher, WatcherDeps, WatcherError, WatcherInfo, WatcherSpec};

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
    #[serde(default = "default_injection_sender")]
    pub sender: String,
    /// With which role (default owner).
    #[serde(default = "default_injection_role")]
    pub role: Role,
}

impl Injection {
    /// An injection from `script` with the owner role.
    pub fn new(watcher: impl Into<String>, text: impl Into<String>) -> Self {
        Injection {
            watcher: watcher.into(),
            text: text.into(),
            sender: default_injection_sender(),
            role: default_injection_role(),
        }
    }
}

fn default_injection_sender() -> String {
    "script".to_string()
}

fn default_injection_role() -> Role {
    Role::Owner
}

/// One connector with everything the gateway keeps for it.
struct ConnectorEntry {
    name: String,
    connector: Arc<dyn Connector>,
    connector_type: String,
    dispatcher: Arc<Dispatcher>,
    state: Arc<StateBook>,
    online: Arc<AtomicBool>,
    watchers: Vec<Arc<Watcher>>,
}

/// The running gateway. Cheap to share (`Arc<Gateway>`); every method is safe to call
/// concurrently from control-socket connections.
pub struct Gateway {
    approvals: Arc<ApprovalRegistry>,
    backends: Vec<(String, Arc<dyn AgentBackend>)>,
    connectors: Vec<ConnectorEntry>,
    shutting_down: AtomicBool,
    shutdown_done: tokio::sync::Mutex<bool>,
    /// Stops the tasks that start waiting watchers (see [`start_when_connected`]).
    retry_cancel: CancellationToken,
}

impl Gateway {
    /// Starts backends, connects connectors (a connector that cannot reach its server keeps
    /// retrying in the background: the start is then degraded, not failed) and starts every
    /// non-paused watcher. Never fails as a whole; problems are in the report.
    ///
    /// Owners' `approve`/`deny` commands are always intercepted (with a registry of its own;
    /// use [`Gateway::start_with_approvals`] to share one with a permission broker).
    pub async fn start(
        options: GatewayOptions,
        agents: Vec<AgentSetup>,
        connectors: Vec<ConnectorSetup>,
    ) -> (Arc<Gateway>, StartReport) {
        Self::start_with_approvals(
            options,
            agents,
            connectors,
            Arc::new(ApprovalRegistry::new()),
        )
        .await
    }

    /// [`Gateway::start`] with the approval registry the permission broker asks through:
    /// every connector's dispatcher lets it take owners' commands first, and every watcher
    /// records its turns in it and denies its pending requests when it stops.
    pub async fn start_with_approvals(
        options: GatewayOptions,
        agents: Vec<AgentSetup>,
        connectors: Vec<ConnectorSetup>,
        approvals: Arc<ApprovalRegistry>,
    ) -> (Arc<Gateway>, StartReport) {
        let mut report = StartReport::default();

        // Agent backends, one after the other: two OpenCode sidecars of one user share one
        // SQLite store and one of them fails ("database is locked") when both initialise it
        // at the same moment. A failed agent's watchers are skipped (fail closed).
        let mut results = Vec::with_capacity(agents.len());
        for agent in &agents {
            results.push(agent.backend.start().await);
        }
        let mut backends = Vec::new();
        for (agent, result) in agents.into_iter().zip(results) {
            match result {
                Ok(()) => backends.push((agent.name, agent.backend)),
                Err(e) => {
                    error!(agent = %agent.name, error = %e, "agent backend failed to start");
                    report.errors.push(format!(
                        "Agent '{}' failed to start: {e}. Its watchers are not started.",
                        agent.name
                    ));
                }
            }
        }

        // State books, dispatchers and watchers (not yet started) per connector.
        let mut entries = Vec::new();
        for setup in connectors {
            let name = setup.connector.name().to_string();
            let file = StateFile::for_connector(&options.runtime_dir, &name);
            let (loaded, writable) = load_state(&file, &mut report);
            let configured = setup.watchers.iter().map(|w| w.name.clone()).collect();
            let state = Arc::new(StateBook::new(file, configured, loaded, writable));
            let dispatcher = Arc::new(Dispatcher::new());
            dispatcher.set_interceptor(approvals.interceptor(setup.connector.clone()));
            let online = Arc::new(AtomicBool::new(false));
            let watchers = setup
                .watchers
                .into_iter()
                .map(|spec| {
                    let backend = backends
                        .iter()
                        .find(|(n, _)| *n == spec.agent)
                        .map(|(_, b)| b.clone());
                    let deps = WatcherDeps {
                        connector: setup.connector.clone(),
                        backend,
                        dispatcher: dispatcher.clone(),
                        state: state.clone(),
                        runtime_dir: options.runtime_dir.clone(),
                        drain_timeout: options.drain_timeout,
                        connector_online: online.clone(),
                        approvals: approvals.clone(),
                    };
                    Arc::new(Watcher::new(spec, deps))
                })
                .collect();
            entries.push(ConnectorEntry {
                name,
                connector: setup.connector,
                connector_type: setup.connector_type,
                dispatcher,
                state,
                online,
                watchers,
            });
        }

        // Connect every connector, in parallel. One that fails does not stop the others; its
        // watchers stay stopped and their saved records stay in the book (and the file).
        let results = join_all(entries.iter().map(|e| {
            let inbound: Arc<dyn InboundHandler> = e.dispatcher.clone();
            e.connector.connect(inbound)
        }))
        .await;
        for (entry, result) in entries.iter().zip(results) {
            match result {
                Ok(()) => {
                    entry.online.store(true, Ordering::SeqCst);
                    match entry.connector.connection_state() {
                        // Its server is not reachable yet: the connector keeps trying in the
                        // background, and the start is degraded until it gets through.
                        ConnectionState::Reconnecting { last_error, .. } => {
                            let reason = last_error.unwrap_or_else(|| "no answer yet".into());
                            warn!(connector = %entry.name, %reason, "connector not connected yet; it keeps retrying");
                            report.errors.push(format!(
                                "Connector '{}' ({}) is not connected yet ({reason}); it keeps \
                                 retrying in the background",
                                entry.name, entry.connector_type
                            ));
                        }
                        _ => report
                            .info
                            .push(format!("Connector '{}' connected", entry.name)),
                    }
                }
                Err(e) => {
                    error!(connector = %entry.name, error = %e, "connector failed to connect");
                    report.errors.push(format!(
                        "Connector '{}' failed to connect: {e}. Its {} watcher(s) are not started; \
                         their saved state is kept.",
                        entry.name,
                        entry.watchers.len()
                    ));
                }
            }
        }

        // Watchers of connected connectors, all in parallel.
        let mut to_start = Vec::new();
        for entry in entries.iter().filter(|e| e.online.load(Ordering::SeqCst)) {
            for watcher in &entry.watchers {
                let spec = watcher.spec();
                if watcher.is_paused() {
                    report
                        .info
                        .push(format!("Watcher '{}' is paused", spec.name));
                } else if !backends.iter().any(|(n, _)| *n == spec.agent) {
                    report.errors.push(format!(
                        "Watcher '{}' skipped: agent '{}' is not available",
                        spec.name, spec.agent
                    ));
                } else {
                    to_start.push(watcher.clone());
                }
            }
        }
        let results = start_all(&to_start).await;
        let mut waiting: Vec<Arc<Watcher>> = Vec::new();
        for (watcher, result) in to_start.iter().zip(results) {
            match result {
                Ok(()) => report
                    .info
                    .push(format!("Watcher '{}' started", watcher.name())),
                Err(e) if e.waits_for_connector() => {
                    warn!(watcher = %watcher.name(), error = %e, "watcher waits for its connector");
                    watcher.set_waiting(true);
                    report.errors.push(format!(
                        "Watcher '{}' is waiting for connector '{}' ({e}); it starts once the \
                         server is reachable",
                        watcher.name(),
                        watcher.spec().connector
                    ));
                    waiting.push(watcher.clone());
                }
                Err(e) => {
                    error!(watcher = %watcher.name(), error = %e, "watcher failed to start");
                    report
                        .errors
                        .push(format!("Watcher '{}' failed to start: {e}", watcher.name()));
                }
            }
        }

        // Watchers whose connector could not reach its server start once it can.
        let retry_cancel = CancellationToken::new();
        for entry in &entries {
            let mine: Vec<Arc<Watcher>> = waiting
                .iter()
                .filter(|w| entry.watchers.iter().any(|e| Arc::ptr_eq(e, w)))
                .cloned()
                .collect();
            if !mine.is_empty() {
                tokio::spawn(start_when_connected(
                    entry.connector.clone(),
                    mine,
                    WaitingRetry::default(),
                    retry_cancel.clone(),
                ));
            }
        }

        let gateway = Arc::new(Gateway {
            approvals,
            backends,
            connectors: entries,
            shutting_down: AtomicBool::new(false),
            shutdown_done: tokio::sync::Mutex::new(false),
            retry_cancel,
        });
        (gateway, report)
    }

    /// The approval registry (pending permission requests, session → turn directory).
    pub fn approvals(&self) -> &Arc<ApprovalRegistry> {
        &self.approvals
    }

    /// Watchers of one connector, or of all.
    pub fn list(&self, connector: Option<&str>) -> Result<Vec<WatcherInfo>, GatewayError> {
        let entries: Vec<&ConnectorEntry> = match connector {
            Some(name) => vec![self.connector_named(name)?],
            None => self.connectors.iter().collect(),
        };
        Ok(entries
            .iter()
            .flat_map(|e| e.watchers.iter().map(|w| w.info()))
            .collect())
    }

    /// Every connector with its link state.
    pub fn connectors(&self) -> Vec<ConnectorInfo> {
        self.connectors
            .iter()
            .map(|e| ConnectorInfo {
                name: e.name.clone(),
                connector_type: e.connector_type.clone(),
                state: if e.online.load(Ordering::SeqCst) {
                    e.connector.connection_state()
                } else {
                    ConnectionState::Disconnected
                },
            })
            .collect()
    }

    /// Pauses a watcher: it stops taking messages; its session is kept.
    pub async fn pause(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        self.ensure_running()?;
        let watcher = self.find_watcher(watcher, connector)?;
        watcher.pause().await;
        Ok(())
    }

    /// Resumes a paused watcher.
    pub async fn resume(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        self.ensure_running()?;
        let watcher = self.find_watcher(watcher, connector)?;
        watcher.resume().await.map_err(|e| {
            GatewayError(format!(
                "Watcher '{}' was resumed but could not start: {e}",
                watcher.name()
            ))
        })
    }

    /// Starts a fresh session (a pinned session id is kept), unpauses and restarts the watcher.
    pub async fn reset(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        self.ensure_running()?;
        let watcher = self.find_watcher(watcher, connector)?;
        watcher.reset().await.map_err(|e| {
            GatewayError(format!(
                "Watcher '{}' was reset but could not start: {e}",
                watcher.name()
            ))
        })
    }

    /// Posts text and/or a file to a room directly (bypassing the agent).
    pub async fn send(
        &self,
        room: &str,
        text: Option<String>,
        attachment: Option<PathBuf>,
        connector: Option<&str>,
    ) -> Result<(), GatewayError> {
        self.ensure_running()?;
        if room.trim().is_empty() {
            return Err(GatewayError("Missing 'room' field in send command".into()));
        }
        let text = text.unwrap_or_default();
        if text.is_empty() && attachment.is_none() {
            return Err(GatewayError(
                "Nothing to send: provide 'text' or 'attachment_path'".into(),
            ));
        }
        let entry = self.route(connector)?;
        if !entry.online.load(Ordering::SeqCst) {
            return Err(GatewayError(format!(
                "Connector '{}' is not connected",
                entry.name
            )));
        }
        let target = match entry.connector.resolve_room(room).await {
            Ok(r) => r,
            // Like the reference: a name the server does not know is taken as a raw room id.
            Err(ConnectorError::RoomNotFound(_)) => Room {
                id: room.to_string(),
                name: room.to_string(),
                kind: RoomKind::Channel,
            },
            Err(e) => return Err(GatewayError(format!("Cannot resolve room '{room}': {e}"))),
        };
        let msg = OutgoingMessage {
            text,
            thread_id: None,
            is_error: false,
            attachment,
        };
        entry
            .connector
            .send(&target, msg)
            .await
            .map_err(|e| GatewayError(format!("Cannot send to room '{room}': {e}")))
    }

    /// Delivers a message to a watcher as if a user had posted it in its room.
    pub async fn inject(&self, injection: Injection) -> Result<(), GatewayError> {
        self.ensure_running()?;
        if injection.text.trim().is_empty() {
            return Err(GatewayError("Nothing to inject: the text is empty".into()));
        }
        let (entry, watcher) = self.find_entry_and_watcher(&injection.watcher, None)?;
        let Some(room) = watcher.room() else {
            return Err(GatewayError(format!(
                "Watcher '{}' is not running",
                injection.watcher
            )));
        };
        let sender = if injection.sender.trim().is_empty() {
            default_injection_sender()
        } else {
            injection.sender
        };
        let mut msg = IncomingMessage {
            id: format!("inject-{:016x}", rand::random::<u64>()),
            room,
            sender: Sender {
                id: sender.clone(),
                username: sender,
                display_name: None,
            },
            role: injection.role,
            text: injection.text,
            timestamp_ms: Some(now_ms()),
            thread_id: None,
            permission_thread_id: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
            warnings: Vec::new(),
            prompt_header: String::new(),
        };
        msg.prompt_header = entry
            .connector
            .header_for_injected(&msg)
            .unwrap_or_default();
        match entry.dispatcher.deliver(msg).await {
            Delivery::Accepted | Delivery::Intercepted => Ok(()),
            Delivery::Rejected => Err(GatewayError(format!(
                "Watcher '{}' is busy; the message was dropped",
                injection.watcher
            ))),
            Delivery::NoWatcher => Err(GatewayError(format!(
                "Watcher '{}' is not running",
                injection.watcher
            ))),
        }
    }

    /// Drains every watcher (bounded by the drain timeout), posts offline notices, saves
    /// state, disconnects connectors and stops backends. A second call waits for the first.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.retry_cancel.cancel();
        let mut done = self.shutdown_done.lock().await;
        if *done {
            return;
        }
        let watchers = self.connectors.iter().flat_map(|e| e.watchers.iter());
        join_all(watchers.map(|w| w.retire())).await;
        for entry in &self.connectors {
            if let Err(e) = entry.state.save().await {
                error!(connector = %entry.name, error = %e, "cannot save state at shutdown");
            }
            if entry.online.swap(false, Ordering::SeqCst) {
                entry.connector.disconnect().await;
            }
        }
        join_all(self.backends.iter().map(|(_, b)| b.stop())).await;
        info!("gateway stopped");
        *done = true;
    }

    fn ensure_running(&self) -> Result<(), GatewayError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            Err(GatewayError("The gateway is shutting down".into()))
        } else {
            Ok(())
        }
    }

    fn connector_named(&self, name: &str) -> Result<&ConnectorEntry, GatewayError> {
        self.connectors
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| GatewayError(format!("Unknown connector: '{name}'")))
    }

    /// The connector a command applies to: the named one, or the only one.
    fn route(&self, connector: Option<&str>) -> Result<&ConnectorEntry, GatewayError> {
        if let Some(name) = connector {
            return self.connector_named(name);
        }
        match self.connectors.as_slice() {
            [only] => Ok(only),
            [] => Err(GatewayError("No connectors configured".into())),
            several => {
                let names: Vec<String> = several.iter().map(|e| format!("'{}'", e.name)).collect();
                Err(GatewayError(format!(
                    "Multiple connectors configured ({}). Please specify --connector <name>.",
                    names.join(", ")
                )))
            }
        }
    }

    /// A watcher by name: in the named connector, or (names being unique) in any.
    fn find_entry_and_watcher(
        &self,
        watcher: &str,
        connector: Option<&str>,
    ) -> Result<(&ConnectorEntry, &Arc<Watcher>), GatewayError> {
        let entries: Vec<&ConnectorEntry> = match connector {
            Some(name) => vec![self.connector_named(name)?],
            None => self.connectors.iter().collect(),
        };
        entries
            .into_iter()
            .find_map(|e| {
                e.watchers
                    .iter()
                    .find(|w| w.name() == watcher)
                    .map(|w| (e, w))
            })
            .ok_or_else(|| GatewayError(format!("Unknown watcher: '{watcher}'")))
    }

    fn find_watcher(
        &self,
        watcher: &str,
        connector: Option<&str>,
    ) -> Result<&Arc<Watcher>, GatewayError> {
        self.find_entry_and_watcher(watcher, connector)
            .map(|(_, w)| w)
    }
}

/// When [`start_when_connected`] tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingRetry {
    /// How often the connector's state is looked at (cheap; no server traffic).
    pub poll: Duration,
    /// The pause after the first failed retry while the connector says it is connected
    /// (doubling after each failure).
    pub first_delay: Duration,
    /// The longest such pause.
    pub max_delay: Duration,
}

impl Default for WaitingRetry {
    fn default() -> Self {
        WaitingRetry {
            poll: Duration::from_millis(500),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// Starts watchers that are waiting for their connector (their start failed because the
/// server could not be reached). Nothing is tried while the connector reports it is not
/// connected; the moment it is, every waiting watcher is started at once; a start that still
/// fails for want of the server is retried after a capped, doubling delay. A watcher whose
/// start fails for any other reason (paused meanwhile, gateway shutting down, room unknown to
/// the server, …) stops waiting. Ends when no watcher waits or `cancel` fires.
pub async fn start_when_connected(
    connector: Arc<dyn Connector>,
    mut waiting: Vec<Arc<Watcher>>,
    retry: WaitingRetry,
    cancel: CancellationToken,
) {
    let is_up = || matches!(connector.connection_state(), ConnectionState::Connected);
    let mut delay = retry.first_delay;
    let mut next_try = tokio::time::Instant::now();
    let mut was_up = false;
    while !waiting.is_empty() {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(retry.poll) => {}
        }
        let up = is_up();
        let came_up = up && !was_up;
        was_up = up;
        if !up || (!came_up && tokio::time::Instant::now() < next_try) {
            continue;
        }
        if came_up {
            delay = retry.first_delay;
        }
        // Never abandoned half-way: a shutdown waits for these starts (and then stops them).
        let results = start_all(&waiting).await;
        let mut still = Vec::new();
        for (watcher, result) in waiting.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    watcher.set_waiting(false);
                    info!(watcher = %watcher.name(), connector = %connector.name(), "watcher started: its connector is connected");
                }
                Err(e) if e.waits_for_connector() => {
                    warn!(watcher = %watcher.name(), error = %e, retry_in = ?delay, "watcher still waits for its connector");
                    still.push(watcher);
                }
                Err(e) => {
                    watcher.set_waiting(false);
                    if !matches!(e, WatcherError::Retired(_) | WatcherError::Paused(_)) {
                        error!(watcher = %watcher.name(), error = %e, "watcher failed to start; not retried");
                    }
                }
            }
        }
        waiting = still;
        next_try = tokio::time::Instant::now() + delay;
        delay = delay.saturating_mul(2).min(retry.max_delay);
    }
}

/// Loads a connector's state file. A corrupt file is renamed aside (never lost, never
/// overwritten) and the connector starts empty; an unreadable one is left alone and the book
/// will not write over it.
fn load_state(file: &StateFile, report: &mut StartReport) -> (Vec<WatcherRecord>, bool) {
    match file.load() {
        Ok(records) => (records, true),
        Err(StateError::Corrupt { reason, .. }) => {
            let path = file.path();
            let aside = corrupt_aside_path(path);
            match std::fs::rename(path, &aside) {
                Ok(()) => {
                    warn!(file = %path.display(), aside = %aside.display(), %reason, "corrupt state file moved aside");
                    report.errors.push(format!(
                        "State file {} is corrupt ({reason}); it was moved to {} and the connector \
                         starts with empty state",
                        path.display(),
                        aside.display()
                    ));
                    (Vec::new(), true)
                }
                Err(e) => {
                    report.errors.push(format!(
                        "State file {} is corrupt ({reason}) and could not be moved aside ({e}); \
                         it is left untouched and will not be overwritten",
                        path.display()
                    ));
                    (Vec::new(), false)
                }
            }
        }
        Err(e) => {
            report.errors.push(format!(
                "{e}; the file is left untouched and will not be overwritten"
            ));
            (Vec::new(), false)
        }
    }
}

/// `state.<c>.json.corrupt-<unix ts>` next to the file (with `-2`, `-3`… if taken).
fn corrupt_aside_path(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}.corrupt-{secs}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 2;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

fn now_ms() -> i64 {
    crate::watcher::unix_now_ms()
}

/// How many watchers start at once. Each start creates an agent session (one agent process)
/// and writes files; thousands at once only contend for the CPU and leave the heap fragmented
/// by their transient buffers, so resident memory stays high after the start.
const START_CONCURRENCY: usize = 16;

/// Starts `watchers`, [`START_CONCURRENCY`] at a time; results in the same order.
async fn start_all(watchers: &[Arc<Watcher>]) -> Vec<Result<(), WatcherError>> {
    use futures_util::stream::{self, StreamExt};
    let starts: Vec<_> = watchers
        .iter()
        .cloned()
        .map(|w| async move { w.start().await })
        .collect();
    stream::iter(starts)
        .buffered(START_CONCURRENCY)
        .collect()
        .await
}
