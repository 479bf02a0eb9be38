//! Fakes shared by the pipeline tests: an agent backend that records every request and
//! asserts turns never overlap, and a connector that records everything the gateway does.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acg_core::context::ContextSources;
use acg_core::gateway::{AgentSetup, ConnectorSetup, Gateway, GatewayOptions, StartReport};
use acg_core::ports::{AgentBackend, Connector, Delivery, EventSink, InboundHandler};
use acg_core::state::{StateFile, WatcherRecord};
use acg_core::types::*;
use acg_core::watcher::WatcherSpec;
use async_trait::async_trait;
use tokio::sync::Semaphore;

/// What the fake agent does for one turn.
#[derive(Debug, Clone)]
pub enum Step {
    /// Answer with this text.
    Reply(String),
    /// Fail with this error.
    Fail(AgentError),
    /// Never answer (until dropped by a cancel).
    Hang,
    /// Report these events, then answer.
    Events(Vec<AgentEvent>, String),
    /// Answer, reporting that the session continues under a new id.
    Moved(String, String),
}

/// A scriptable agent backend.
pub struct FakeBackend {
    prefix: String,
    steps: Mutex<VecDeque<Step>>,
    pub turns: Mutex<Vec<TurnRequest>>,
    pub created: Mutex<Vec<NewSession>>,
    in_turn: AtomicBool,
    overlaps: AtomicUsize,
    started: AtomicUsize,
    finished: AtomicUsize,
    sessions: AtomicUsize,
    held: AtomicBool,
    gate: Semaphore,
    pub fail_start: Mutex<Option<AgentError>>,
    pub stopped: AtomicBool,
}

struct InTurn<'a>(&'a AtomicBool);

impl Drop for InTurn<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl FakeBackend {
    /// A backend whose sessions are named `<prefix>-<n>`.
    pub fn new(prefix: &str) -> Arc<Self> {
        Arc::new(FakeBackend {
            prefix: prefix.to_string(),
            steps: Mutex::new(VecDeque::new()),
            turns: Mutex::new(Vec::new()),
            created: Mutex::new(Vec::new()),
            in_turn: AtomicBool::new(false),
            overlaps: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            held: AtomicBool::new(false),
            gate: Semaphore::new(0),
            fail_start: Mutex::new(None),
            stopped: AtomicBool::new(false),
        })
    }

    /// Queues what the next turns do (default: echo the prompt).
    pub fn push(&self, step: Step) {
        self.steps.lock().unwrap().push_back(step);
    }

    /// From now on every turn waits for a `release` before answering.
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Lets `n` waiting (or future) turns answer.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }

    pub fn overlaps(&self) -> usize {
        self.overlaps.load(Ordering::SeqCst)
    }

    pub fn turns(&self) -> Vec<TurnRequest> {
        self.turns.lock().unwrap().clone()
    }

    pub fn created(&self) -> Vec<NewSession> {
        self.created.lock().unwrap().clone()
    }

    pub fn as_setup(self: &Arc<Self>, name: &str) -> AgentSetup {
        AgentSetup {
            name: name.to_string(),
            backend: self.clone(),
        }
    }
}

#[async_trait]
impl AgentBackend for FakeBackend {
    fn kind(&self) -> &str {
        "fake"
    }

    async fn start(&self) -> Result<(), AgentError> {
        match self.fail_start.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    async fn create_session(&self, req: &NewSession) -> Result<String, AgentError> {
        self.created.lock().unwrap().push(req.clone());
        let n = self.sessions.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("{}-{n}", self.prefix))
    }

    async fn turn(
        &self,
        req: &TurnRequest,
        events: &EventSink,
    ) -> Result<AgentResponse, AgentError> {
        if self.in_turn.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let _guard = InTurn(&self.in_turn);
        self.turns.lock().unwrap().push(req.clone());
        self.started.fetch_add(1, Ordering::SeqCst);
        let step = self.steps.lock().unwrap().pop_front();
        if let Some(Step::Events(evs, _)) = &step {
            for e in evs {
                events.emit(e.clone());
            }
        }
        if self.held.load(Ordering::SeqCst) {
            self.gate
                .acquire()
                .await
                .expect("gate never closes")
                .forget();
        }
        let result = match step {
            None => Ok(reply(&format!("echo: {}", req.prompt))),
            Some(Step::Reply(text)) | Some(Step::Events(_, text)) => Ok(reply(&text)),
            Some(Step::Fail(e)) => Err(e),
            Some(Step::Moved(session, text)) => Ok(AgentResponse {
                session_id: Some(session),
                ..reply(&text)
            }),
            Some(Step::Hang) => std::future::pending().await,
        };
        self.finished.fetch_add(1, Ordering::SeqCst);
        result
    }
}

fn reply(text: &str) -> AgentResponse {
    AgentResponse {
        text: text.to_string(),
        ..Default::default()
    }
}

/// Everything the fake connector saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Sent {
        room: String,
        msg: OutgoingMessage,
    },
    Typing {
        room: String,
        on: bool,
    },
    Subscribed {
        room: String,
        replay_after: Option<i64>,
    },
    Unsubscribed {
        room: String,
    },
}

/// A connector that records everything and lets tests post messages.
pub struct FakeConnector {
    name: String,
    fail_connect: bool,
    inbound: Mutex<Option<Arc<dyn InboundHandler>>>,
    seen: Mutex<Vec<Seen>>,
    pub header: Option<String>,
    pub disconnected: AtomicBool,
    /// When set, every `send` fails (after being recorded).
    pub send_fails: AtomicBool,
    /// When set, every typing call hangs (after being recorded) until the caller gives up.
    pub typing_hangs: AtomicBool,
    /// When set, the connector says it replays from history (so watchers keep a watermark).
    pub replays_history: AtomicBool,
}

impl FakeConnector {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(Self::build(name, false, None))
    }

    /// A connector whose `connect` fails.
    pub fn failing(name: &str) -> Arc<Self> {
        Arc::new(Self::build(name, true, None))
    }

    /// A connector that supplies a header for injected messages.
    pub fn with_header(name: &str, header: &str) -> Arc<Self> {
        Arc::new(Self::build(name, false, Some(header.to_string())))
    }

    fn build(name: &str, fail_connect: bool, header: Option<String>) -> Self {
        FakeConnector {
            name: name.to_string(),
            fail_connect,
            inbound: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            header,
            disconnected: AtomicBool::new(false),
            send_fails: AtomicBool::new(false),
            typing_hangs: AtomicBool::new(false),
            replays_history: AtomicBool::new(false),
        }
    }

    /// The room a configured name resolves to.
    pub fn room(name: &str) -> Room {
        Room {
            id: format!("id-{name}"),
            name: name.to_string(),
            kind: RoomKind::Channel,
        }
    }

    /// Posts a message as the server would.
    pub async fn post(&self, msg: IncomingMessage) -> Delivery {
        let inbound = self.inbound.lock().unwrap().clone();
        inbound.expect("connected").deliver(msg).await
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Messages posted to a room (by configured name).
    pub fn sent(&self, room: &str) -> Vec<OutgoingMessage> {
        let id = Self::room(room).id;
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Sent { room, msg } if room == id => Some(msg),
                _ => None,
            })
            .collect()
    }

    /// Texts posted to a room.
    pub fn texts(&self, room: &str) -> Vec<String> {
        self.sent(room).into_iter().map(|m| m.text).collect()
    }

    /// Typing calls in a room, in order.
    pub fn typing(&self, room: &str) -> Vec<bool> {
        let id = Self::room(room).id;
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Typing { room, on } if room == id => Some(on),
                _ => None,
            })
            .collect()
    }

    fn record(&self, s: Seen) {
        self.seen.lock().unwrap().push(s);
    }
}

#[async_trait]
impl Connector for FakeConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn supports_history(&self) -> bool {
        self.replays_history.load(Ordering::SeqCst)
    }

    fn platform(&self) -> &str {
        "Fake"
    }

    fn header_for_injected(&self, msg: &IncomingMessage) -> Option<String> {
        self.header
            .as_ref()
            .map(|h| format!("{h} from: {}", msg.sender.username))
    }

    async fn connect(&self, inbound: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
        if self.fail_connect {
            return Err(ConnectorError::Other("login refused".into()));
        }
        *self.inbound.lock().unwrap() = Some(inbound);
        Ok(())
    }

    async fn disconnect(&self) {
        self.disconnected.store(true, Ordering::SeqCst);
    }

    async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
        if room.starts_with("missing") {
            return Err(ConnectorError::RoomNotFound(room.to_string()));
        }
        Ok(Self::room(room))
    }

    async fn subscribe(
        &self,
        room: &Room,
        replay_after: Option<i64>,
    ) -> Result<(), ConnectorError> {
        self.record(Seen::Subscribed {
            room: room.id.clone(),
            replay_after,
        });
        Ok(())
    }

    async fn unsubscribe(&self, room: &Room) {
        self.record(Seen::Unsubscribed {
            room: room.id.clone(),
        });
    }

    async fn send(&self, room: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError> {
        self.record(Seen::Sent {
            room: room.id.clone(),
            msg,
        });
        if self.send_fails.load(Ordering::SeqCst) {
            return Err(ConnectorError::NotConnected("server gone".into()));
        }
        Ok(())
    }

    async fn set_typing(&self, room: &Room, _thread_id: Option<&str>, on: bool) {
        self.record(Seen::Typing {
            room: room.id.clone(),
            on,
        });
        if self.typing_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

/// A watcher spec with test defaults (queue 100, 60 s turns, no context files).
pub fn spec(name: &str, connector: &str, room: &str, agent: &str, workdir: &Path) -> WatcherSpec {
    WatcherSpec {
        name: name.to_string(),
        connector: connector.to_string(),
        room: room.to_string(),
        agent: agent.to_string(),
        pinned_session_id: None,
        working_directory: workdir.to_path_buf(),
        new_session_args: Vec::new(),
        session_prefix: "agent-chat".to_string(),
        turn_timeout: Duration::from_secs(60),
        max_queue_depth: 100,
        context: ContextSources {
            watcher_name: name.to_string(),
            room: room.to_string(),
            connector_name: connector.to_string(),
            ..Default::default()
        },
        online_notification: None,
        offline_notification: None,
    }
}

/// Gateway options over a runtime dir.
pub fn options(runtime_dir: &Path) -> GatewayOptions {
    GatewayOptions {
        runtime_dir: runtime_dir.to_path_buf(),
        drain_timeout: Duration::from_secs(30),
    }
}

/// Starts a gateway with one connector, one agent `a` and the given watchers.
pub async fn start_one(
    runtime_dir: &Path,
    backend: &Arc<FakeBackend>,
    connector: &Arc<FakeConnector>,
    watchers: Vec<WatcherSpec>,
) -> (Arc<Gateway>, StartReport) {
    Gateway::start(
        options(runtime_dir),
        vec![backend.as_setup("a")],
        vec![ConnectorSetup {
            connector: connector.clone(),
            connector_type: "fake".into(),
            watchers,
        }],
    )
    .await
}

/// A message in a room (by configured name).
pub fn msg(room: &str, id: &str, text: &str, ts: i64) -> IncomingMessage {
    IncomingMessage {
        id: id.to_string(),
        room: FakeConnector::room(room),
        sender: Sender {
            id: "u-alice".into(),
            username: "alice".into(),
            display_name: None,
        },
        role: Role::Owner,
        text: text.to_string(),
        timestamp_ms: Some(ts),
        thread_id: None,
        permission_thread_id: None,
        mentions: Vec::new(),
        attachments: Vec::new(),
        warnings: Vec::new(),
        prompt_header: String::new(),
    }
}

/// Polls `cond` every 10 ms until it holds; panics after 30 s with `what`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The saved records of a connector.
pub fn saved(runtime_dir: &Path, connector: &str) -> Vec<WatcherRecord> {
    StateFile::for_connector(runtime_dir, connector)
        .load()
        .expect("state file readable")
}

/// One saved record by watcher name.
pub fn saved_record(runtime_dir: &Path, connector: &str, watcher: &str) -> Option<WatcherRecord> {
    saved(runtime_dir, connector)
        .into_iter()
        .find(|r| r.watcher_name == watcher)
}

/// A fresh record for seeding state files.
pub fn record(watcher: &str, session: &str, ts: &str) -> WatcherRecord {
    WatcherRecord {
        watcher_name: watcher.to_string(),
        session_id: session.to_string(),
        room_id: String::new(),
        room_type: "channel".to_string(),
        context_injected: true,
        paused: false,
        last_processed_ts: ts.to_string(),
    }
}

/// A path under a dir (shorthand).
pub fn under(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
