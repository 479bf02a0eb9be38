//! The script connector (`type: script`): in-memory rooms with no chat server behind them.
//!
//! It lets code (scheduled jobs, scripts, tests) talk to watchers exactly as a chat user would:
//! [`ScriptConnector::inject`] posts a message into a room through the gateway's dispatcher,
//! and everything the gateway posts to a room (agent replies, notices) is kept in memory for
//! [`ScriptConnector::receive_reply`] and, when a transcript directory is set, appended as one
//! JSON line per message to `<dir>/<room>.jsonl` so other processes can read it.
//!
//! Rooms need no setup: any name resolves to a room whose id is the name. Messages carry no
//! prompt header, so the agent sees the injected text as is.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use acg_core::ports::{Connector, Delivery, InboundHandler};
use acg_core::types::{
    ConnectionState, ConnectorError, IncomingMessage, OutgoingMessage, Role, Room, RoomKind, Sender,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::warn;

/// The sender of injected messages when none is given.
pub const DEFAULT_SENDER: &str = "script";

/// One message the gateway posted to a script room; also the shape of a transcript line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScriptReply {
    /// When it was posted, in ms since the Unix epoch.
    pub ts_ms: i64,
    /// The room's name.
    pub room: String,
    /// The text.
    pub text: String,
    /// The thread it was posted in.
    pub thread_id: Option<String>,
    /// True for gateway error notices.
    pub is_error: bool,
    /// A file sent with it.
    pub attachment: Option<PathBuf>,
}

/// Why a script call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// The connector is not connected to a gateway (no `connect` yet, or after `disconnect`).
    #[error("script connector '{0}' is not connected to a gateway")]
    NotConnected(String),
}

/// The in-memory connector. Share it as `Arc<ScriptConnector>`: the gateway holds one
/// reference as its `Connector`, the script keeps another to inject and read replies.
pub struct ScriptConnector {
    name: String,
    transcript_dir: Option<PathBuf>,
    inbound: Mutex<Option<Arc<dyn InboundHandler>>>,
    subscriptions: Mutex<HashSet<String>>,
    replies: Mutex<HashMap<String, VecDeque<ScriptReply>>>,
    typing: Mutex<HashSet<String>>,
    arrived: Notify,
    next_id: AtomicU64,
}

impl ScriptConnector {
    /// A script connector with the configured name.
    pub fn new(name: impl Into<String>) -> Self {
        ScriptConnector {
            name: name.into(),
            transcript_dir: None,
            inbound: Mutex::new(None),
            subscriptions: Mutex::new(HashSet::new()),
            replies: Mutex::new(HashMap::new()),
            typing: Mutex::new(HashSet::new()),
            arrived: Notify::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Also appends every outgoing message to `<dir>/<room>.jsonl` (the directory is created
    /// when needed).
    pub fn with_transcript_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.transcript_dir = Some(dir.into());
        self
    }

    /// The transcript file of a room, when a transcript directory is set.
    pub fn transcript_path(&self, room: &str) -> Option<PathBuf> {
        self.transcript_dir
            .as_ref()
            .map(|dir| dir.join(format!("{}.jsonl", sanitize_room(room))))
    }

    /// Posts `text` into `room` from [`DEFAULT_SENDER`] as an owner, through the gateway.
    pub async fn inject(&self, room: &str, text: &str) -> Result<Delivery, ScriptError> {
        self.inject_as(room, text, DEFAULT_SENDER, Role::Owner)
            .await
    }

    /// Posts `text` into `room` from `sender` with `role`, through the gateway.
    pub async fn inject_as(
        &self,
        room: &str,
        text: &str,
        sender: &str,
        role: Role,
    ) -> Result<Delivery, ScriptError> {
        let inbound = lock(&self.inbound)
            .clone()
            .ok_or_else(|| ScriptError::NotConnected(self.name.clone()))?;
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let msg = IncomingMessage {
            id: format!("script-{n}"),
            room: script_room(room),
            sender: Sender {
                id: sender.to_string(),
                username: sender.to_string(),
                display_name: None,
            },
            role,
            text: text.to_string(),
            timestamp_ms: Some(now_ms()),
            thread_id: None,
            permission_thread_id: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
            warnings: Vec::new(),
            prompt_header: String::new(),
        };
        Ok(inbound.deliver(msg).await)
    }

    /// Takes the oldest message posted to `room` that was not taken yet, if any.
    pub fn try_receive_reply(&self, room: &str) -> Option<ScriptReply> {
        lock(&self.replies).get_mut(room)?.pop_front()
    }

    /// Waits for the next message posted to `room` and takes it. Every post counts (agent
    /// replies, error notices, online/offline notices), in order. Bound the wait with
    /// `tokio::time::timeout` if the agent might never answer.
    pub async fn receive_reply(&self, room: &str) -> ScriptReply {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            // Register before checking, so a post between the check and the wait is not missed.
            arrived.as_mut().enable();
            if let Some(reply) = self.try_receive_reply(room) {
                return reply;
            }
            arrived.await;
        }
    }

    /// Waits for the next message posted to `from_room` and posts its text into `to_room`
    /// (sender = `from_room`, owner role): one watcher's answer becomes another's prompt.
    pub async fn pipe_to(&self, from_room: &str, to_room: &str) -> Result<Delivery, ScriptError> {
        let reply = self.receive_reply(from_room).await;
        self.inject_as(to_room, &reply.text, from_room, Role::Owner)
            .await
    }

    /// True while a watcher is subscribed to `room`.
    pub fn is_subscribed(&self, room: &str) -> bool {
        lock(&self.subscriptions).contains(room)
    }

    /// True while the gateway shows the typing indicator in `room`.
    pub fn is_typing(&self, room: &str) -> bool {
        lock(&self.typing).contains(room)
    }

    fn append_transcript(&self, reply: &ScriptReply) {
        let Some(path) = self.transcript_path(&reply.room) else {
            return;
        };
        if let Err(e) = append_line(&path, reply) {
            warn!(connector = %self.name, file = %path.display(), error = %e, "cannot append to the transcript");
        }
    }
}

#[async_trait]
impl Connector for ScriptConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn platform(&self) -> &str {
        "Script"
    }

    async fn connect(&self, inbound: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
        *lock(&self.inbound) = Some(inbound);
        Ok(())
    }

    async fn disconnect(&self) {
        lock(&self.inbound).take();
        lock(&self.subscriptions).clear();
    }

    async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
        if room.is_empty() {
            return Err(ConnectorError::RoomNotFound(room.to_string()));
        }
        Ok(script_room(room))
    }

    async fn subscribe(
        &self,
        room: &Room,
        _replay_after_ms: Option<i64>,
    ) -> Result<(), ConnectorError> {
        // No history to replay: script rooms exist only in memory.
        lock(&self.subscriptions).insert(room.id.clone());
        Ok(())
    }

    async fn unsubscribe(&self, room: &Room) {
        lock(&self.subscriptions).remove(&room.id);
    }

    async fn send(&self, room: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError> {
        let reply = ScriptReply {
            ts_ms: now_ms(),
            room: room.id.clone(),
            text: msg.text,
            thread_id: msg.thread_id,
            is_error: msg.is_error,
            attachment: msg.attachment,
        };
        self.append_transcript(&reply);
        lock(&self.replies)
            .entry(reply.room.clone())
            .or_default()
            .push_back(reply);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn set_typing(&self, room: &Room, _thread_id: Option<&str>, on: bool) {
        let mut typing = lock(&self.typing);
        if on {
            typing.insert(room.id.clone());
        } else {
            typing.remove(&room.id);
        }
    }

    fn connection_state(&self) -> ConnectionState {
        if lock(&self.inbound).is_some() {
            ConnectionState::Connected
        } else {
            ConnectionState::Disconnected
        }
    }
}

/// A script room: its id is its name.
fn script_room(name: &str) -> Room {
    Room {
        id: name.to_string(),
        name: name.to_string(),
        kind: RoomKind::Script,
    }
}

/// A room name as a file name: every char outside `[A-Za-z0-9._-]` becomes `_`; names that
/// would be empty or `.`/`..` get a leading `_`.
pub fn sanitize_room(room: &str) -> String {
    let clean: String = room
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        format!("_{clean}")
    } else {
        clean
    }
}

fn append_line(path: &Path, reply: &ScriptReply) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    // One write call per line keeps concurrent appends from interleaving.
    file.write_all(&line)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_become_safe_file_names() {
        assert_eq!(sanitize_room("daily-report"), "daily-report");
        assert_eq!(sanitize_room("a/b c"), "a_b_c");
        assert_eq!(sanitize_room(".."), "_..");
        assert_eq!(sanitize_room(""), "_");
    }

    #[tokio::test]
    async fn rooms_resolve_to_their_name() {
        let c = ScriptConnector::new("jobs");
        let room = c.resolve_room("nightly").await.unwrap();
        assert_eq!(
            room,
            Room {
                id: "nightly".into(),
                name: "nightly".into(),
                kind: RoomKind::Script
            }
        );
        assert_eq!(c.platform(), "Script");
        assert!(c.header_for_injected(&sample()).is_none());
    }

    #[tokio::test]
    async fn inject_before_connect_fails() {
        let c = ScriptConnector::new("jobs");
        assert_eq!(
            c.inject("r", "hi").await,
            Err(ScriptError::NotConnected("jobs".into()))
        );
    }

    #[tokio::test]
    async fn replies_are_queued_per_room_and_written_to_the_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let c = ScriptConnector::new("jobs").with_transcript_dir(dir.path().join("t"));
        let room = c.resolve_room("a/b").await.unwrap();
        c.send(&room, OutgoingMessage::text("one")).await.unwrap();
        c.send(
            &room,
            OutgoingMessage::text("two")
                .in_thread(Some("t1".into()))
                .error(),
        )
        .await
        .unwrap();
        assert_eq!(c.receive_reply("a/b").await.text, "one");
        let second = c.try_receive_reply("a/b").unwrap();
        assert_eq!((second.text.as_str(), second.is_error), ("two", true));
        assert!(c.try_receive_reply("a/b").is_none());

        let text = std::fs::read_to_string(dir.path().join("t/a_b.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let keys: Vec<&str> = lines[1]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for key in [
            "ts_ms",
            "room",
            "text",
            "thread_id",
            "is_error",
            "attachment",
        ] {
            assert!(keys.contains(&key), "missing {key} in {keys:?}");
        }
        assert_eq!(lines[1]["room"], "a/b");
        assert_eq!(lines[1]["thread_id"], "t1");
        assert_eq!(lines[1]["is_error"], true);
        assert_eq!(lines[0]["attachment"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn receive_reply_waits_for_a_later_post() {
        let c = Arc::new(ScriptConnector::new("jobs"));
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.receive_reply("r").await })
        };
        tokio::task::yield_now().await;
        let room = c.resolve_room("r").await.unwrap();
        c.send(&room, OutgoingMessage::text("late")).await.unwrap();
        let reply = tokio::time::timeout(std::time::Duration::from_secs(30), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.text, "late");
    }

    #[tokio::test]
    async fn subscription_and_typing_bookkeeping() {
        let c = ScriptConnector::new("jobs");
        let room = c.resolve_room("r").await.unwrap();
        c.subscribe(&room, Some(5)).await.unwrap();
        assert!(c.is_subscribed("r"));
        c.set_typing(&room, None, true).await;
        assert!(c.is_typing("r"));
        c.set_typing(&room, None, false).await;
        assert!(!c.is_typing("r"));
        c.unsubscribe(&room).await;
        assert!(!c.is_subscribed("r"));
    }

    fn sample() -> IncomingMessage {
        IncomingMessage {
            id: "x".into(),
            room: script_room("r"),
            sender: Sender {
                id: "s".into(),
                username: "s".into(),
                display_name: None,
            },
            role: Role::Owner,
            text: "hi".into(),
            timestamp_ms: None,
            thread_id: None,
            permission_thread_id: None,
            mentions: Vec::new(),
            attachments: Vec::new(),
            warnings: Vec::new(),
            prompt_header: String::new(),
        }
    }
}
