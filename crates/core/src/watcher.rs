//! One worker per watched room: a bounded queue, strictly one agent turn at a time, catch-up
//! batching of messages that arrived during a turn, typing kept alive while the agent works,
//! the watermark moved only after a message was answered, and a drain on shutdown.
//!
//! A [`Watcher`] exists for every configured watcher, running or not; its lifecycle
//! (`start`, `stop`, `pause`, `resume`, `reset`) is serialized per watcher. While it runs, one
//! tokio task (the worker) takes everything queued at once and answers it in one turn; the
//! [`Inbox`] registered in the [`Dispatcher`] is how messages get into the queue.
//!
//! Persisted per-watcher state (session id, watermark, paused) lives in the connector's
//! [`StateBook`], which keeps the records of every configured watcher, running or not, so
//! a watcher that could not start never loses its saved session.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::approval::{ApprovalRegistry, TurnContext};
use crate::context::{self, ContextError, ContextSources};
use crate::dispatcher::Dispatcher;
use crate::ports::{AgentBackend, Connector, Delivery, EventSink};
use crate::prompt;
use crate::state::{StateError, StateFile, WatcherRecord};
use crate::types::{
    AgentError, AgentEvent, AgentResponse, ConnectorError, IncomingMessage, NewSession,
    OutgoingMessage, Room, TurnRequest,
};
use crate::user_messages;

/// At most one busy notice per watcher in this window, however many messages are dropped.
pub const BUSY_NOTICE_INTERVAL: Duration = Duration::from_secs(30);
/// How often the typing indicator is refreshed while the agent works (platforms expire it).
pub const TYPING_REFRESH: Duration = Duration::from_secs(4);
/// Streamed text deltas refresh typing at most this often (other events always do).
const DELTA_TYPING_THROTTLE: Duration = Duration::from_secs(1);
/// A backend must enforce the turn deadline itself; past the deadline plus this much the
/// worker gives up on it anyway (dropping the turn, which kills the agent process).
const TURN_GRACE: Duration = Duration::from_secs(30);
/// How long a cancelled worker may take to clear typing before it is aborted.
const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// Milliseconds since the Unix epoch by the local clock.
pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Bound on one typing-indicator call (best effort; never stalls a turn for long).
const TYPING_CALL_LIMIT: Duration = Duration::from_secs(5);

/// What the room is told when the agent no longer knows the watcher's session. A new session
/// is never created silently (the agent would lose the conversation without anyone noticing);
/// an owner decides with `reset`.
pub fn session_gone_notice(watcher: &str) -> String {
    format!(
        "❌ The agent session of this chat no longer exists, so your message was not answered. \
         An owner can start a new session with `agent-chat-gateway reset {watcher}`."
    )
}

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
    /// Not running because its connector could not reach the server when it tried to start;
    /// the gateway starts it once the connector is connected (`list` shows `waiting`).
    #[serde(default)]
    pub waiting: bool,
}

/// Why a watcher could not start (or restart after `resume`/`reset`). One line for the
/// operator; chat users never see these.
#[derive(Debug, thiserror::Error)]
pub enum WatcherError {
    /// The watcher is paused; `resume` starts it.
    #[error("watcher '{0}' is paused")]
    Paused(String),
    /// The gateway is shutting down; the watcher will not start again.
    #[error("watcher '{0}' is shut down")]
    Retired(String),
    /// Its connector did not connect.
    #[error("connector '{0}' is not connected")]
    ConnectorDown(String),
    /// Its agent backend failed to start or is not configured.
    #[error("agent '{0}' is not available")]
    AgentUnavailable(String),
    /// The configured room could not be resolved.
    #[error("cannot resolve room '{room}': {source}")]
    Room {
        /// The room as configured.
        room: String,
        /// The connector's error.
        source: ConnectorError,
    },
    /// The durable context could not be built (e.g. a context file is missing).
    #[error(transparent)]
    Context(#[from] ContextError),
    /// The system prompt file could not be written.
    #[error("cannot write the system prompt file: {0}")]
    SystemPrompt(std::io::Error),
    /// The agent could not create a session.
    #[error("cannot create an agent session: {0}")]
    Session(AgentError),
    /// The connector refused the subscription.
    #[error("cannot subscribe to room '{room}': {source}")]
    Subscribe {
        /// The room as configured.
        room: String,
        /// The connector's error.
        source: ConnectorError,
    },
}

impl WatcherError {
    /// True when the start failed only because the connector could not reach its server
    /// (room lookup or subscription said "not connected"): trying again once the connector
    /// is connected can succeed, so the gateway keeps the watcher waiting instead of giving up.
    pub fn waits_for_connector(&self) -> bool {
        matches!(
            self,
            WatcherError::Room {
                source: ConnectorError::NotConnected(_),
                ..
            } | WatcherError::Subscribe {
                source: ConnectorError::NotConnected(_),
                ..
            }
        )
    }
}

/// The least time between the starts of two deferred writes ([`StateBook::put_deferred`], the
/// watermark after each answer). The first change after a quiet spell is written at once (right
/// after the reply), so with the pace of a chat room a crash repeats at most the answers of
/// the last few milliseconds. Under a burst, changes made within the interval share one write,
/// so the file is written at most ten times a second, not once per message.
pub const DEFERRED_SAVE_INTERVAL: Duration = Duration::from_millis(100);

/// The in-memory copy of one connector's state file. It holds the records of every
/// configured watcher that has one — running, paused, or unable to start — and writes all of
/// them on every save, so a watcher that did not start never has its saved session wiped.
/// Records of watchers no longer in config are dropped when the book is created.
///
/// Saves are group commits: a save that finds its change already written by a concurrent one
/// returns at once, so many watchers saving together (a start with 2,000 rooms) cost a few
/// writes, not one write of every record per watcher.
pub struct StateBook {
    file: StateFile,
    order: Vec<String>,
    writable: bool,
    records: Mutex<BTreeMap<String, WatcherRecord>>,
    write: tokio::sync::Mutex<()>,
    /// Changes made to `records` (bumped under its lock).
    changes: AtomicU64,
    /// The value of `changes` the file reflects.
    saved: AtomicU64,
    /// Files written so far.
    writes: AtomicU64,
    /// A deferred save is scheduled.
    deferred: AtomicBool,
    /// When the last deferred write started.
    last_deferred: Mutex<Option<Instant>>,
}

impl StateBook {
    /// A book over `file` for the `configured` watcher names (in config order), seeded with
    /// the `loaded` records. With `writable == false` (the file exists but could not be read)
    /// saves are skipped, so unreadable data is never overwritten.
    pub fn new(
        file: StateFile,
        configured: Vec<String>,
        loaded: Vec<WatcherRecord>,
        writable: bool,
    ) -> Self {
        let mut records = BTreeMap::new();
        for record in loaded {
            if configured.contains(&record.watcher_name) {
                records.insert(record.watcher_name.clone(), record);
            } else {
                info!(
                    watcher = %record.watcher_name,
                    file = %file.path().display(),
                    "dropping the saved state of a watcher that is no longer configured"
                );
            }
        }
        StateBook {
            file,
            order: configured,
            writable,
            records: Mutex::new(records),
            write: tokio::sync::Mutex::new(()),
            changes: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            deferred: AtomicBool::new(false),
            last_deferred: Mutex::new(None),
        }
    }

    /// How many times the file was written (saves covered by another one do not count).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn insert(&self, record: WatcherRecord) {
        let mut records = lock(&self.records);
        records.insert(record.watcher_name.clone(), record);
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The saved record of a watcher, if any.
    pub fn get(&self, watcher: &str) -> Option<WatcherRecord> {
        lock(&self.records).get(watcher).cloned()
    }

    /// Every record, in config order.
    pub fn records(&self) -> Vec<WatcherRecord> {
        let records = lock(&self.records);
        self.order
            .iter()
            .filter_map(|name| records.get(name).cloned())
            .collect()
    }

    /// Replaces one watcher's record and writes the file; returns once the change is on disk.
    pub async fn put(&self, record: WatcherRecord) -> Result<(), StateError> {
        self.insert(record);
        self.save().await
    }

    /// Replaces one watcher's record and writes the file soon, together with every other change
    /// made meanwhile: at once when no deferred write started within
    /// [`DEFERRED_SAVE_INTERVAL`], else when that interval has passed. For changes whose loss in
    /// a crash only costs a repeat (the watermark: a message answered just before a crash is
    /// replayed), so they never put a file write on a message's path. A shutdown's final
    /// [`StateBook::save`] writes whatever is still pending.
    pub fn put_deferred(self: &Arc<Self>, record: WatcherRecord) {
        self.insert(record);
        if self.deferred.swap(true, Ordering::SeqCst) {
            return;
        }
        let book = self.clone();
        tokio::spawn(async move {
            let wait = lock(&book.last_deferred)
                .map(|at| DEFERRED_SAVE_INTERVAL.saturating_sub(at.elapsed()))
                .unwrap_or_default();
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            *lock(&book.last_deferred) = Some(Instant::now());
            book.deferred.store(false, Ordering::SeqCst);
            if let Err(e) = book.save().await {
                error!(file = %book.file.path().display(), error = %e, "cannot save watcher state");
            }
        });
    }

    /// Writes every record to the file (atomically). Concurrent saves are serialized; a save
    /// whose changes a concurrent one already wrote returns without writing again.
    pub async fn save(&self) -> Result<(), StateError> {
        let wanted = self.changes.load(Ordering::SeqCst);
        let _guard = self.write.lock().await;
        if !self.writable {
            warn!(
                file = %self.file.path().display(),
                "not saving state: the existing file could not be read and is left untouched"
            );
            return Ok(());
        }
        if wanted > 0 && self.saved.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        let (records, upto) = {
            let held = lock(&self.records);
            let upto = self.changes.load(Ordering::SeqCst);
            let records: Vec<WatcherRecord> = self
                .order
                .iter()
                .filter_map(|name| held.get(name).cloned())
                .collect();
            (records, upto)
        };
        let file = self.file.clone();
        let path = file.path().to_path_buf();
        let result = match tokio::task::spawn_blocking(move || file.save(&records)).await {
            Ok(result) => result,
            Err(join) => Err(StateError::Io {
                path,
                source: std::io::Error::other(join.to_string()),
            }),
        };
        if result.is_ok() {
            self.writes.fetch_add(1, Ordering::SeqCst);
            self.saved.fetch_max(upto, Ordering::SeqCst);
        }
        result
    }
}

/// What a watcher needs from the rest of the gateway.
#[derive(Clone)]
pub struct WatcherDeps {
    /// The connector of the watcher's room.
    pub connector: Arc<dyn Connector>,
    /// The agent backend (`None` when the agent failed to start or is unknown).
    pub backend: Option<Arc<dyn AgentBackend>>,
    /// The connector's dispatcher, where the running watcher registers its inbox.
    pub dispatcher: Arc<Dispatcher>,
    /// The connector's persisted watcher records.
    pub state: Arc<StateBook>,
    /// `~/.agent-chat-gateway` (system prompt files go under it).
    pub runtime_dir: PathBuf,
    /// How long the queue may take to drain on stop before the in-flight turn is cancelled.
    pub drain_timeout: Duration,
    /// Whether the connector connected; a watcher of a connector that did not never starts.
    pub connector_online: Arc<AtomicBool>,
    /// The gateway's permission requests: the watcher records who each turn is for, and
    /// denies its pending requests when it stops.
    pub approvals: Arc<ApprovalRegistry>,
}

/// A configured watcher: its spec, persisted record, and (while running) its worker.
pub struct Watcher {
    inner: Arc<Inner>,
    run: tokio::sync::Mutex<Option<Run>>,
}

struct Inner {
    spec: WatcherSpec,
    deps: WatcherDeps,
    status: Mutex<Status>,
    last_busy_notice: Arc<Mutex<Option<Instant>>>,
    retired: AtomicBool,
}

struct Status {
    record: WatcherRecord,
    room: Option<Room>,
    inbox: Option<Inbox>,
    context_state: &'static str,
    waiting: bool,
}

/// A running watcher's worker and what is needed to stop it.
struct Run {
    room: Room,
    inbox: Inbox,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// What the worker needs for every turn of one run.
struct RunCtx {
    queue: Arc<Queue>,
    room: Room,
    backend: Arc<dyn AgentBackend>,
    system_prompt_file: PathBuf,
    cancel: CancellationToken,
    /// The previous turn's typing indicator, still clearing in the background.
    typing: Mutex<Option<JoinHandle<()>>>,
}

impl Watcher {
    /// A stopped watcher, with its record taken from the state book (or a fresh one). A pinned
    /// session id always wins over a saved one.
    pub fn new(spec: WatcherSpec, deps: WatcherDeps) -> Self {
        let mut record = deps.state.get(&spec.name).unwrap_or_else(|| WatcherRecord {
            watcher_name: spec.name.clone(),
            session_id: String::new(),
            room_id: String::new(),
            room_type: String::new(),
            context_injected: false,
            paused: false,
            last_processed_ts: String::new(),
        });
        if let Some(pinned) = &spec.pinned_session_id {
            record.session_id = pinned.clone();
        }
        Watcher {
            inner: Arc::new(Inner {
                spec,
                deps,
                status: Mutex::new(Status {
                    record,
                    room: None,
                    inbox: None,
                    context_state: "not_started",
                    waiting: false,
                }),
                last_busy_notice: Arc::new(Mutex::new(None)),
                retired: AtomicBool::new(false),
            }),
            run: tokio::sync::Mutex::new(None),
        }
    }

    /// The watcher's name.
    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// The watcher's spec.
    pub fn spec(&self) -> &WatcherSpec {
        &self.inner.spec
    }

    /// Paused by `pause` (persisted).
    pub fn is_paused(&self) -> bool {
        self.inner.status().record.paused
    }

    /// Running: subscribed and taking messages.
    pub fn is_running(&self) -> bool {
        self.inner.status().inbox.is_some()
    }

    /// The resolved room, while running.
    pub fn room(&self) -> Option<Room> {
        self.inner.status().room.clone()
    }

    /// The current session id ("" = none yet).
    pub fn session_id(&self) -> String {
        self.inner.status().record.session_id.clone()
    }

    /// The watcher's current persisted record.
    pub fn record(&self) -> WatcherRecord {
        self.inner.status().record.clone()
    }

    /// What `list` shows.
    pub fn info(&self) -> WatcherInfo {
        let spec = &self.inner.spec;
        let status = self.inner.status();
        WatcherInfo {
            watcher_name: spec.name.clone(),
            room_name: spec.room.clone(),
            connector: spec.connector.clone(),
            agent_name: spec.agent.clone(),
            session_id: status.record.session_id.clone(),
            paused: status.record.paused,
            active: status.inbox.is_some(),
            context_injection_state: status.context_state.to_string(),
            queued: status.inbox.as_ref().map_or(0, Inbox::len),
            waiting: status.waiting && status.inbox.is_none(),
        }
    }

    /// Marks the watcher as waiting for its connector (see [`WatcherInfo::waiting`]); the
    /// gateway sets it when a start failed with [`WatcherError::waits_for_connector`] and
    /// clears it when it gives up. A successful start clears it too.
    pub fn set_waiting(&self, waiting: bool) {
        self.inner.status().waiting = waiting;
    }

    /// Waiting for its connector (see [`Watcher::set_waiting`]).
    pub fn is_waiting(&self) -> bool {
        let status = self.inner.status();
        status.waiting && status.inbox.is_none()
    }

    /// Starts the watcher: resolves the room, builds and writes the durable context, finds or
    /// creates the session, starts the worker, registers in the dispatcher, subscribes
    /// (replaying from the watermark) and posts the online notice. Already running = `Ok`.
    pub async fn start(&self) -> Result<(), WatcherError> {
        let mut run = self.run.lock().await;
        if run.is_some() {
            return Ok(());
        }
        let started = self.inner.start().await?;
        *run = Some(started);
        Ok(())
    }

    /// Stops the watcher: no new messages, the queue drains within the drain timeout, then
    /// the in-flight turn is cancelled; the offline notice is posted. Not running = no-op.
    pub async fn stop(&self) {
        let mut run = self.run.lock().await;
        if let Some(current) = run.take() {
            self.inner.stop(current).await;
        }
    }

    /// Stops the watcher for good (gateway shutdown): a `resume` or `reset` racing with the
    /// shutdown cannot start it again.
    pub async fn retire(&self) {
        let mut run = self.run.lock().await;
        self.inner.retired.store(true, Ordering::SeqCst);
        if let Some(current) = run.take() {
            self.inner.stop(current).await;
        }
    }

    /// Pauses: the watcher stops taking messages (and stays stopped across daemon restarts);
    /// its session is kept.
    pub async fn pause(&self) {
        let mut run = self.run.lock().await;
        self.inner.update_record(|r| r.paused = true);
        self.inner.persist().await;
        if let Some(current) = run.take() {
            self.inner.stop(current).await;
        }
    }

    /// Resumes a paused watcher (starts it). Running and not paused = `Ok`.
    pub async fn resume(&self) -> Result<(), WatcherError> {
        let mut run = self.run.lock().await;
        if self.inner.status().record.paused {
            self.inner.update_record(|r| r.paused = false);
            self.inner.persist().await;
        }
        if run.is_some() {
            return Ok(());
        }
        let started = self.inner.start().await?;
        *run = Some(started);
        Ok(())
    }

    /// Resets: stops the watcher, drops its session id unless it is pinned, marks the context
    /// as not injected, unpauses and starts again (creating a new session).
    pub async fn reset(&self) -> Result<(), WatcherError> {
        let mut run = self.run.lock().await;
        if let Some(current) = run.take() {
            self.inner.stop(current).await;
        }
        let pinned = self.inner.spec.pinned_session_id.clone();
        self.inner.update_record(|r| {
            r.session_id = pinned.unwrap_or_default();
            r.context_injected = false;
            r.paused = false;
        });
        self.inner.persist().await;
        let started = self.inner.start().await?;
        *run = Some(started);
        Ok(())
    }
}

impl Inner {
    fn status(&self) -> MutexGuard<'_, Status> {
        lock(&self.status)
    }

    fn update_record(&self, change: impl FnOnce(&mut WatcherRecord)) {
        change(&mut self.status().record);
    }

    /// Writes this watcher's record to the state file. Failures are logged: the watcher keeps
    /// working, and the next save retries.
    async fn persist(&self) {
        let record = self.status().record.clone();
        if let Err(e) = self.deps.state.put(record).await {
            error!(watcher = %self.spec.name, error = %e, "cannot save watcher state");
        }
    }

    async fn start(self: &Arc<Self>) -> Result<Run, WatcherError> {
        let spec = &self.spec;
        let deps = &self.deps;
        if self.retired.load(Ordering::SeqCst) {
            return Err(WatcherError::Retired(spec.name.clone()));
        }
        if self.status().record.paused {
            return Err(WatcherError::Paused(spec.name.clone()));
        }
        if !deps.connector_online.load(Ordering::SeqCst) {
            return Err(WatcherError::ConnectorDown(spec.connector.clone()));
        }
        deps.approvals.open_watcher(&spec.name);
        let backend = deps
            .backend
            .clone()
            .ok_or_else(|| WatcherError::AgentUnavailable(spec.agent.clone()))?;
        let room = deps
            .connector
            .resolve_room(&spec.room)
            .await
            .map_err(|source| WatcherError::Room {
                room: spec.room.clone(),
                source,
            })?;

        // The durable context is built once per start and re-supplied with every turn. Reading
        // the context files and writing (with fsync) the prompt file block, so they run on
        // the blocking pool: a start with many watchers must not stall the runtime.
        let (sources, runtime_dir, name) = (
            spec.context.clone(),
            deps.runtime_dir.clone(),
            spec.name.clone(),
        );
        let (built, system_prompt_file) = tokio::task::spawn_blocking(move || {
            let built = context::build_context(&sources)?;
            let file = context::write_system_prompt(&runtime_dir, &name, &built.text)
                .map_err(WatcherError::SystemPrompt)?;
            Ok::<_, WatcherError>((built, file))
        })
        .await
        .map_err(|e| WatcherError::SystemPrompt(std::io::Error::other(e.to_string())))??;
        for warning in &built.warnings {
            warn!(watcher = %spec.name, "{warning}");
        }

        self.ensure_session(&backend).await?;
        self.update_record(|r| {
            r.room_id = room.id.clone();
            r.room_type = room.kind.as_str().to_string();
            r.context_injected = true;
        });
        self.persist().await;

        let queue = Arc::new(Queue {
            watcher: spec.name.clone(),
            max_depth: spec.max_queue_depth,
            connector: deps.connector.clone(),
            last_busy_notice: self.last_busy_notice.clone(),
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                accepting: true,
                draining: false,
            }),
            wake: Notify::new(),
        });
        let inbox = Inbox {
            queue: queue.clone(),
        };
        let cancel = CancellationToken::new();
        let ctx = RunCtx {
            queue: queue.clone(),
            room: room.clone(),
            backend,
            system_prompt_file,
            cancel: cancel.clone(),
            typing: Mutex::new(None),
        };
        let handle = tokio::spawn(self.clone().work(ctx));
        deps.dispatcher.register(&room.id, inbox.clone());

        let replay_after = self.status().record.last_processed_ts.parse::<i64>().ok();
        if let Err(source) = deps.connector.subscribe(&room, replay_after).await {
            deps.dispatcher.unregister(&room.id, &spec.name);
            queue.begin_drain();
            cancel.cancel();
            let _ = handle.await;
            return Err(WatcherError::Subscribe {
                room: spec.room.clone(),
                source,
            });
        }
        {
            let mut status = self.status();
            status.room = Some(room.clone());
            status.inbox = Some(inbox.clone());
            status.context_state = "injected";
            status.waiting = false;
        }
        if replay_after.is_none() && deps.connector.supports_history() {
            // A watcher that has never answered anything starts its watermark at the moment it
            // began listening, durably, so a crash before its first answer still replays every
            // message it accepted since (and nothing older than the watcher itself). Only
            // connectors that replay from history use a watermark at all.
            self.update_record(|r| {
                if r.last_processed_ts.is_empty() {
                    r.last_processed_ts = unix_now_ms().to_string();
                }
            });
            self.persist().await;
        }
        info!(watcher = %spec.name, room = %room.name, "watcher started");
        if let Some(text) = &spec.online_notification {
            self.post(&room, OutgoingMessage::text(text.clone())).await;
        }
        Ok(Run {
            room,
            inbox,
            cancel,
            handle,
        })
    }

    /// Pinned > persisted > a new session (persisted at once, so a crash cannot orphan it).
    async fn ensure_session(&self, backend: &Arc<dyn AgentBackend>) -> Result<(), WatcherError> {
        let spec = &self.spec;
        if let Some(pinned) = &spec.pinned_session_id {
            self.update_record(|r| r.session_id = pinned.clone());
            return Ok(());
        }
        if !self.status().record.session_id.is_empty() {
            return Ok(());
        }
        let title = if spec.session_prefix.is_empty() {
            None
        } else {
            Some(format!("{}:{}", spec.session_prefix, spec.room))
        };
        let request = NewSession {
            working_directory: spec.working_directory.clone(),
            extra_args: spec.new_session_args.clone(),
            title,
            timeout: spec.turn_timeout,
        };
        let id = backend
            .create_session(&request)
            .await
            .map_err(WatcherError::Session)?;
        info!(watcher = %spec.name, session = %id, "created a new agent session");
        self.update_record(|r| r.session_id = id);
        self.persist().await;
        Ok(())
    }

    async fn stop(&self, run: Run) {
        let spec = &self.spec;
        let deps = &self.deps;
        deps.dispatcher.unregister(&run.room.id, &spec.name);
        // Before the drain: a turn waiting for an owner's decision ends now (denied, no
        // message) instead of holding the drain, and so does any request made while draining.
        let denied = deps.approvals.close_watcher(&spec.name);
        if denied > 0 {
            info!(watcher = %spec.name, denied, "pending permission requests denied: the watcher stops");
        }
        deps.connector.unsubscribe(&run.room).await;
        run.inbox.queue.begin_drain();
        let mut handle = run.handle;
        if tokio::time::timeout(deps.drain_timeout, &mut handle)
            .await
            .is_err()
        {
            warn!(
                watcher = %spec.name,
                "queue not drained within {:?}; cancelling the turn in flight",
                deps.drain_timeout
            );
            run.cancel.cancel();
            if tokio::time::timeout(CANCEL_GRACE, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
            }
        }
        let dropped = run.inbox.queue.clear();
        if dropped > 0 {
            warn!(
                watcher = %spec.name,
                dropped, "unanswered messages left in the queue at stop (they are replayed after restart)"
            );
        }
        {
            let mut status = self.status();
            status.inbox = None;
            status.room = None;
            status.context_state = "not_started";
        }
        if let Some(text) = &spec.offline_notification {
            self.post(&run.room, OutgoingMessage::text(text.clone()))
                .await;
        }
        self.persist().await;
        info!(watcher = %spec.name, "watcher stopped");
    }

    /// The worker: one batch, one turn, until the queue is drained or the run is cancelled.
    async fn work(self: Arc<Self>, ctx: RunCtx) {
        while let Some(batch) = ctx.queue.next_batch(&ctx.cancel).await {
            // Boxed: an idle worker (one per watcher) then holds only this loop's small
            // state, not the whole state of a turn.
            if !Box::pin(self.answer(&ctx, batch)).await {
                break;
            }
        }
        // The last turn's typing-off is through before the worker reports itself done.
        let typing = lock(&ctx.typing).take();
        if let Some(typing) = typing {
            let _ = typing.await;
        }
        debug!(watcher = %self.spec.name, "worker finished");
    }

    /// Runs one turn for everything that was queued and posts the outcome. Returns false when
    /// the run was cancelled mid-turn (nothing posted, watermark unchanged).
    async fn answer(&self, ctx: &RunCtx, batch: Vec<IncomingMessage>) -> bool {
        let Some(last) = batch.last() else {
            return true;
        };
        let spec = &self.spec;
        let connector = &self.deps.connector;
        let room = &ctx.room;
        let thread = last.thread_id.clone();
        let session_id = self.status().record.session_id.clone();

        let mut attachments: Vec<PathBuf> = Vec::new();
        for path in batch.iter().flat_map(|m| m.attachments.iter()) {
            if !attachments.contains(path) {
                attachments.push(path.clone());
            }
        }
        let mut env = BTreeMap::new();
        env.insert("ACG_ROLE".to_string(), last.role.as_str().to_string());
        let request = TurnRequest {
            session_id: session_id.clone(),
            prompt: prompt::build_batch_prompt(&batch),
            working_directory: spec.working_directory.clone(),
            timeout: spec.turn_timeout,
            attachments,
            env,
            system_prompt_file: Some(ctx.system_prompt_file.clone()),
            watcher: Some(spec.name.clone()),
        };
        if batch.len() > 1 {
            info!(watcher = %spec.name, messages = batch.len(), "catch-up turn");
        }
        // Who this turn is for, so the permission broker can judge and ask about tool calls.
        self.deps.approvals.register_turn(
            &session_id,
            TurnContext {
                watcher: spec.name.clone(),
                agent: spec.agent.clone(),
                connector: connector.clone(),
                room: room.clone(),
                thread: last.permission_thread_id.clone(),
                requester: last.sender.username.clone(),
                role: last.role,
            },
        );

        // Typing is best effort and runs beside the turn: a slow typing call never delays
        // the agent or the reply.
        let previous = lock(&ctx.typing).take();
        let typist = Typist::start(connector.clone(), room.clone(), thread.clone(), previous);
        let outcome = self.run_turn(ctx, &request, &typist).await;
        let typing = typist.finish();
        let Some(outcome) = outcome else {
            // Clear the indicator before the worker gives up (each call is bounded).
            let _ = typing.await;
            info!(watcher = %spec.name, "turn cancelled by shutdown");
            return false;
        };
        *lock(&ctx.typing) = Some(typing);

        let reply = match outcome {
            Ok(response) => {
                self.note_response(&session_id, &response).await;
                let text = if response.text.trim().is_empty() {
                    user_messages::EMPTY_RESPONSE.to_string()
                } else {
                    response.text
                };
                OutgoingMessage::text(text).in_thread(thread)
            }
            Err(AgentError::SessionNotFound(detail)) => {
                error!(
                    watcher = %spec.name,
                    session = %session_id,
                    %detail,
                    "the agent no longer knows this watcher's session; `reset` starts a new one"
                );
                OutgoingMessage::text(session_gone_notice(&spec.name))
                    .in_thread(thread)
                    .error()
            }
            Err(e) => {
                warn!(watcher = %spec.name, session = %session_id, error = %e, "agent turn failed");
                OutgoingMessage::text(user_messages::agent_failure(&e, Some(&session_id)))
                    .in_thread(thread)
                    .error()
            }
        };
        self.post(room, reply).await;

        // The batch is answered: only now may the watermark pass it. It is written with the
        // next deferred save (a crash before that replays the batch; nothing is lost).
        if let Some(ts) = batch.iter().filter_map(|m| m.timestamp_ms).max() {
            self.update_record(|r| {
                let current = r.last_processed_ts.parse::<i64>().ok();
                if current.is_none_or(|c| ts > c) {
                    r.last_processed_ts = ts.to_string();
                }
            });
            let record = self.status().record.clone();
            self.deps.state.put_deferred(record);
        }
        true
    }

    /// The turn itself, keeping typing alive; `None` when cancelled.
    async fn run_turn(
        &self,
        ctx: &RunCtx,
        request: &TurnRequest,
        typist: &Typist,
    ) -> Option<Result<AgentResponse, AgentError>> {
        let (sink, mut events) = EventSink::channel(64);
        let turn = tokio::time::timeout(
            request.timeout.saturating_add(TURN_GRACE),
            ctx.backend.turn(request, &sink),
        );
        tokio::pin!(turn);
        let start = tokio::time::Instant::now();
        let mut refresh = tokio::time::interval_at(start + TYPING_REFRESH, TYPING_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_typing = start;
        loop {
            tokio::select! {
                result = &mut turn => {
                    return Some(result.unwrap_or_else(|_| {
                        warn!(watcher = %self.spec.name, "agent backend ignored the turn deadline");
                        Err(AgentError::Timeout)
                    }));
                }
                Some(event) = events.recv() => {
                    let throttled = matches!(event, AgentEvent::TextDelta(_))
                        && last_typing.elapsed() < DELTA_TYPING_THROTTLE;
                    if !throttled {
                        typist.refresh();
                        last_typing = tokio::time::Instant::now();
                    }
                }
                _ = refresh.tick() => {
                    typist.refresh();
                    last_typing = tokio::time::Instant::now();
                }
                _ = ctx.cancel.cancelled() => return None,
            }
        }
    }

    /// Logs usage and follows a session id change the backend reports.
    async fn note_response(&self, session_id: &str, response: &AgentResponse) {
        let u = &response.usage;
        let cost = response
            .cost_usd
            .map_or_else(|| "n/a".to_string(), |c| format!("${c:.4}"));
        info!(
            watcher = %self.spec.name,
            "agent usage in={} out={} cache_read={} cost={cost}",
            u.input_tokens, u.output_tokens, u.cache_read
        );
        let Some(reported) = response.session_id.as_deref() else {
            return;
        };
        if reported.is_empty() || reported == session_id {
            return;
        }
        if self.spec.pinned_session_id.is_some() {
            warn!(
                watcher = %self.spec.name,
                reported, "agent reported a different session id; keeping the pinned one"
            );
            return;
        }
        info!(watcher = %self.spec.name, from = %session_id, to = %reported, "agent moved the session");
        let reported = reported.to_string();
        self.update_record(|r| r.session_id = reported);
        self.persist().await;
    }

    /// Posts to the room; a delivery failure is logged only (never a second error post).
    async fn post(&self, room: &Room, msg: OutgoingMessage) {
        if let Err(e) = self.deps.connector.send(room, msg).await {
            error!(watcher = %self.spec.name, room = %room.name, error = %e, "cannot post to the room");
        }
    }
}

/// One turn's typing indicator, kept by a background task so a slow or hanging typing call
/// never holds up the turn, the agent's output or the reply. Calls go out one at a time and in
/// order: "on" once the previous turn's "off" is through, one refresh per [`Typist::refresh`]
/// (coalesced while a call is in flight), then "off" after [`Typist::finish`].
struct Typist {
    wake: Arc<Notify>,
    done: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Typist {
    fn start(
        connector: Arc<dyn Connector>,
        room: Room,
        thread: Option<String>,
        previous: Option<JoinHandle<()>>,
    ) -> Typist {
        let wake = Arc::new(Notify::new());
        let done = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (wake, done) = (wake.clone(), done.clone());
            async move {
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                // A turn already over before "on" went out needs no "on".
                while !done.load(Ordering::Acquire) {
                    set_typing(&connector, &room, thread.as_deref(), true).await;
                    wake.notified().await;
                }
                set_typing(&connector, &room, thread.as_deref(), false).await;
            }
        });
        Typist { wake, done, task }
    }

    /// Asks for a refresh ("on" again).
    fn refresh(&self) {
        self.wake.notify_one();
    }

    /// Asks for "off" after any call in flight; the handle completes once it was made.
    fn finish(self) -> JoinHandle<()> {
        self.done.store(true, Ordering::Release);
        self.wake.notify_one();
        self.task
    }
}

async fn set_typing(connector: &Arc<dyn Connector>, room: &Room, thread: Option<&str>, on: bool) {
    if tokio::time::timeout(TYPING_CALL_LIMIT, connector.set_typing(room, thread, on))
        .await
        .is_err()
    {
        debug!(room = %room.name, on, "typing indicator call timed out");
    }
}

/// The running watcher's mailbox, registered in the dispatcher under the room id.
#[derive(Clone)]
pub struct Inbox {
    queue: Arc<Queue>,
}

impl Inbox {
    /// The watcher this inbox feeds.
    pub fn watcher(&self) -> &str {
        &self.queue.watcher
    }

    /// Messages waiting (not counting the one being answered).
    pub fn len(&self) -> usize {
        lock(&self.queue.state).items.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a message. A full queue rejects it and tells the room (at most once per
    /// [`BUSY_NOTICE_INTERVAL`]); a stopping watcher rejects it silently (it is replayed from
    /// the server's history after restart, since the watermark has not passed it).
    pub fn offer(&self, msg: IncomingMessage) -> Delivery {
        let queue = &self.queue;
        {
            let mut state = lock(&queue.state);
            if !state.accepting {
                return Delivery::Rejected;
            }
            if queue.max_depth == 0 || state.items.len() < queue.max_depth {
                state.items.push_back(msg);
                drop(state);
                queue.wake.notify_one();
                return Delivery::Accepted;
            }
        }
        warn!(watcher = %queue.watcher, message = %msg.id, "queue full; message dropped");
        let notify = {
            let mut last = lock(&queue.last_busy_notice);
            let due = last.is_none_or(|t| t.elapsed() >= BUSY_NOTICE_INTERVAL);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if notify {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    let connector = queue.connector.clone();
                    let notice = OutgoingMessage::text(user_messages::BUSY)
                        .in_thread(msg.thread_id.clone())
                        .error();
                    let room = msg.room;
                    handle.spawn(async move {
                        if let Err(e) = connector.send(&room, notice).await {
                            warn!(room = %room.name, error = %e, "cannot post the busy notice");
                        }
                    });
                }
                Err(_) => warn!("no runtime to post the busy notice"),
            }
        }
        Delivery::Rejected
    }
}

struct Queue {
    watcher: String,
    max_depth: usize,
    connector: Arc<dyn Connector>,
    last_busy_notice: Arc<Mutex<Option<Instant>>>,
    state: Mutex<QueueState>,
    wake: Notify,
}

struct QueueState {
    items: VecDeque<IncomingMessage>,
    accepting: bool,
    draining: bool,
}

impl Queue {
    /// Waits for messages and takes all of them; `None` once drained (or cancelled).
    async fn next_batch(&self, cancel: &CancellationToken) -> Option<Vec<IncomingMessage>> {
        loop {
            {
                let mut state = lock(&self.state);
                if !state.items.is_empty() {
                    return Some(state.items.drain(..).collect());
                }
                if state.draining {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a message queued between the
            // check above and this wait still wakes us.
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Stops accepting and lets the worker finish what is queued.
    fn begin_drain(&self) {
        {
            let mut state = lock(&self.state);
            state.accepting = false;
            state.draining = true;
        }
        self.wake.notify_one();
    }

    /// Drops whatever is still queued; returns how many.
    fn clear(&self) -> usize {
        let mut state = lock(&self.state);
        let n = state.items.len();
        state.items.clear();
        n
    }
}

/// Locks a std mutex, carrying on with the data if a panicking thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(dir: &std::path::Path, names: &[&str]) -> Arc<StateBook> {
        let file = StateFile::for_connector(dir, "rc");
        let names = names.iter().map(|n| n.to_string()).collect();
        Arc::new(StateBook::new(file, names, Vec::new(), true))
    }

    fn record(name: &str, ts: &str) -> WatcherRecord {
        WatcherRecord {
            watcher_name: name.into(),
            session_id: "s".into(),
            room_id: "R".into(),
            room_type: "channel".into(),
            context_injected: true,
            paused: false,
            last_processed_ts: ts.into(),
        }
    }

    /// Many watchers saving at once (a start with many rooms) share writes instead of each
    /// writing every record, and every one of them is on disk when its `put` returns.
    #[tokio::test]
    async fn concurrent_puts_are_group_committed() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..200).map(|i| format!("w{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let book = book(dir.path(), &refs);
        futures_util::future::join_all(
            names
                .iter()
                .map(|n| book.put(record(n, "1")))
                .collect::<Vec<_>>(),
        )
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
        let saved = StateFile::for_connector(dir.path(), "rc").load().unwrap();
        assert_eq!(saved.len(), 200);
        assert!(book.writes() < 200, "{} writes for 200 puts", book.writes());
        // Nothing new: a save writes nothing.
        let before = book.writes();
        book.save().await.unwrap();
        assert_eq!(book.writes(), before);
    }

    /// Watermark changes never write on the message's path; they are written together soon
    /// after, and a final save writes whatever is still pending.
    #[tokio::test]
    async fn deferred_puts_are_written_together_later() {
        let dir = tempfile::tempdir().unwrap();
        let book = book(dir.path(), &["a", "b"]);
        for ts in 1..=50 {
            book.put_deferred(record("a", &ts.to_string()));
            book.put_deferred(record("b", &ts.to_string()));
        }
        assert_eq!(book.writes(), 0, "nothing written on the message path");
        let deadline = Instant::now() + Duration::from_secs(30);
        while book.writes() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(book.writes(), 1);
        let saved = StateFile::for_connector(dir.path(), "rc").load().unwrap();
        assert!(saved.iter().all(|r| r.last_processed_ts == "50"));

        book.put_deferred(record("a", "51"));
        book.save().await.unwrap();
        let saved = StateFile::for_connector(dir.path(), "rc").load().unwrap();
        assert_eq!(saved[0].last_processed_ts, "51");
    }

    /// A steady stream of answers (one every 10 ms) writes the file about once per
    /// [`DEFERRED_SAVE_INTERVAL`], not once per answer; the first change after a quiet spell is
    /// written at once, and the last change of the stream is written without a further put.
    #[tokio::test]
    async fn deferred_puts_under_a_stream_are_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let book = book(dir.path(), &["a"]);
        let wait_for = |n: u64| {
            let book = book.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                while book.writes() < n && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                book.writes()
            }
        };
        book.put_deferred(record("a", "1"));
        let started = Instant::now();
        assert_eq!(wait_for(1).await, 1);
        assert!(
            started.elapsed() < DEFERRED_SAVE_INTERVAL,
            "the first change after a quiet spell waits for nothing"
        );
        let stream = Instant::now();
        for ts in 2..=31 {
            book.put_deferred(record("a", &ts.to_string()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = stream.elapsed();
        tokio::time::sleep(DEFERRED_SAVE_INTERVAL * 2).await;
        let writes = book.writes() - 1;
        let bound = (elapsed.as_millis() / DEFERRED_SAVE_INTERVAL.as_millis()) as u64 + 2;
        assert!(
            writes <= bound,
            "{writes} writes for 30 answers in {elapsed:?} (at most {bound})"
        );
        let saved = StateFile::for_connector(dir.path(), "rc").load().unwrap();
        assert_eq!(
            saved[0].last_processed_ts, "31",
            "the last change is written"
        );
    }

    #[test]
    fn session_gone_notice_names_reset_and_no_internals() {
        let text = session_gone_notice("rc-home-general");
        assert!(text.contains("agent-chat-gateway reset rc-home-general"));
        assert!(!text.contains("session id"));
    }
}
