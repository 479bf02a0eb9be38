//! [`RocketChatConnector`]: the [`Connector`] the gateway drives.
//!
//! `connect()` starts a background supervisor and returns within `connect_grace`, whatever
//! the server does. The supervisor opens a link (REST login, WebSocket, DDP login), runs it,
//! and when it fails waits a capped, jittered backoff and opens the next; after every
//! successful open it re-subscribes every watched room and replays, from the room history,
//! what was posted since the room's replay anchor (see [`crate::filter::RoomLedger`]).
//!
//! Each watched room has one worker task that handles its messages strictly in order (live
//! ones and replayed ones through the same filters), so a message seen both live and in a
//! replay is delivered once. A room whose buffer overflows falls back to a replay instead of
//! losing messages.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use acg_config::model::ChatServerConfig;
use acg_core::ports::{Delivery, InboundHandler};
use acg_core::prompt::{prompt_header, HeaderFields};
use acg_core::{
    ConnectionState, Connector, ConnectorError, HistoryEntry, HistoryQuery, HistoryRole,
    IncomingMessage, OutgoingMessage, Room, RoomKind,
};

use crate::attachments::{download_all, room_cache_dir, DownloadLimits, DownloadOutcome};
use crate::backoff::Backoff;
use crate::chunk::{split_message, DEFAULT_MESSAGE_LIMIT};
use crate::doc::{iso_utc, parse_message, parse_time_ms};
use crate::filter::{agent_chain_note, screen, Gates, RoomLedger, TurnBudget};
use crate::link::{self, CallError, FrameSink, Link, LinkError, OpenParams};
use crate::normalize::{normalize, Ctx, Normalized, Settings, PLATFORM};
use crate::options::RocketChatOptions;
use crate::rest::{RestClient, RestError, RestTimeouts};
use crate::tls::{tls_config, TrustStore};
use crate::{ddp, mention};

/// Why a connector could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RocketChatError {
    /// `server.url` is not an http(s) URL.
    #[error("server.url must start with http:// or https:// (got '{0}')")]
    BadUrl(String),
    /// TLS or the HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
}

/// A replay after a reconnect starts this much before the room's anchor, so messages the
/// server stamped slightly out of order are not missed (duplicates are filtered by id).
const REPLAY_SLACK_MS: i64 = 2000;

/// A link that stayed up at least this long is reopened at once when it drops (the backoff
/// only starts if that first retry fails).
const QUICK_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The Rocket.Chat connector.
pub struct RocketChatConnector {
    inner: Arc<Inner>,
}

/// Facts about the server learnt at each connect.
#[derive(Debug, Clone, Copy)]
struct ServerFacts {
    major_version: Option<u32>,
    message_limit: usize,
}

/// How a room's subscription stands on the current link.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SubState {
    /// Not subscribed (no link yet, or the link was lost).
    Idle,
    /// A `sub` was sent on link `generation`.
    Pending(u64),
    /// Subscribed on link `generation` with id `id`.
    Active { generation: u64, id: String },
    /// The server refused it on link `generation`.
    Refused(u64),
}

/// What a room worker is asked to do.
enum RoomEvent {
    /// A message document arrived on the live subscription.
    Live(Value),
    /// Fetch the history after this time and handle it like live messages.
    Replay { after_ms: i64, why: &'static str },
}

/// A watched room.
struct RoomEntry {
    room: Room,
    watchers: usize,
    ledger: Arc<Mutex<RoomLedger>>,
    events: RoomSender,
    overflow: Arc<AtomicBool>,
    sub: SubState,
    /// Local time the room was first live, for replays of rooms with no other anchor.
    live_since_ms: Option<i64>,
    worker: JoinHandle<()>,
}

struct Inner {
    name: String,
    config: ChatServerConfig,
    options: RocketChatOptions,
    settings: Settings,
    rest: RestClient,
    tls: Arc<rustls::ClientConfig>,
    ws_url: String,
    cache_root: PathBuf,
    state: Mutex<ConnectionState>,
    connected: watch::Sender<bool>,
    attempts: watch::Sender<u64>,
    link: Mutex<Option<Arc<Link>>>,
    generation: AtomicU64,
    rooms: Mutex<HashMap<String, RoomEntry>>,
    budget: Mutex<TurnBudget>,
    inbound: Mutex<Option<Arc<dyn InboundHandler>>>,
    facts: Mutex<ServerFacts>,
    resolved: Arc<Mutex<HashMap<String, Room>>>,
    /// A write of the room cache is scheduled.
    room_cache_pending: Arc<AtomicBool>,
    cancel: CancellationToken,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl RocketChatConnector {
    /// A connector named `name` for the server and rules in `config`. Nothing is contacted
    /// until [`Connector::connect`].
    pub fn new(
        name: &str,
        config: ChatServerConfig,
        options: RocketChatOptions,
    ) -> Result<Self, RocketChatError> {
        let base = config.url.trim_end_matches('/').to_string();
        let ws_url = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}/websocket")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}/websocket")
        } else {
            return Err(RocketChatError::BadUrl(config.url.clone()));
        };
        let tls = tls_config(TrustStore::for_url(&base)).map_err(RocketChatError::Client)?;
        let rest = RestClient::new(
            &base,
            &config.username,
            &config.password,
            tls.clone(),
            RestTimeouts {
                request: options.request_timeout,
                transfer: options.transfer_timeout,
            },
        )
        .map_err(RocketChatError::Client)?;
        let timezone = if config.timezone.is_empty() {
            acg_core::prompt::host_timezone_name()
        } else {
            config.timezone.clone()
        };
        let settings = Settings {
            gates: Gates {
                bot_username: config.username.clone(),
                owners: config.owners.clone(),
                guests: config.guests.clone(),
                agents: config.agent_chain.agent_usernames.clone(),
                filter_sender: config.filter_sender,
                require_mention: config.require_mention,
            },
            reply_in_thread: config.reply_in_thread,
            permission_reply_in_thread: config.permission_reply_in_thread,
            timezone,
        };
        let cache_root = config.attachments.cache_dir_global.clone();
        let budget = TurnBudget::new(config.agent_chain.max_turns, config.agent_chain.ttl);
        let inner = Inner {
            name: name.to_string(),
            resolved: Arc::new(Mutex::new(load_room_cache(&room_cache_file(
                &cache_root,
                name,
            )))),
            room_cache_pending: Arc::new(AtomicBool::new(false)),
            config,
            options,
            settings,
            rest,
            tls: Arc::new(tls),
            ws_url,
            cache_root,
            state: Mutex::new(ConnectionState::Disconnected),
            connected: watch::channel(false).0,
            attempts: watch::channel(0).0,
            link: Mutex::new(None),
            generation: AtomicU64::new(0),
            rooms: Mutex::new(HashMap::new()),
            budget: Mutex::new(budget),
            inbound: Mutex::new(None),
            facts: Mutex::new(ServerFacts {
                major_version: None,
                message_limit: DEFAULT_MESSAGE_LIMIT,
            }),
            cancel: CancellationToken::new(),
            supervisor: Mutex::new(None),
        };
        Ok(RocketChatConnector {
            inner: Arc::new(inner),
        })
    }

    /// The chunk limit in use (the server's `Message_MaxAllowedSize`, or 5000).
    pub fn message_limit(&self) -> usize {
        lock(&self.inner.facts).message_limit
    }

    /// The server's major version, once known.
    pub fn server_major_version(&self) -> Option<u32> {
        lock(&self.inner.facts).major_version
    }

    /// Waits until the link is up, at most `limit`; true when connected.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        self.inner.wait_connected(limit).await
    }

    /// Room ids with an active subscription on the current link (for tests and status).
    pub fn active_rooms(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.inner.rooms)
            .iter()
            .filter(|(_, e)| matches!(e.sub, SubState::Active { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

impl Drop for RocketChatConnector {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn inbound(&self) -> Option<Arc<dyn InboundHandler>> {
        lock(&self.inbound).clone()
    }

    fn current_link(&self) -> Option<Arc<Link>> {
        lock(&self.link).clone()
    }

    async fn wait_connected(&self, limit: Duration) -> bool {
        let mut rx = self.connected.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn set_reconnecting(&self, error: Option<String>) {
        let mut state = lock(&self.state);
        let since_ms = match &*state {
            ConnectionState::Reconnecting { since_ms, .. } => *since_ms,
            _ => now_ms(),
        };
        *state = ConnectionState::Reconnecting {
            since_ms,
            last_error: error,
        };
        drop(state);
        self.connected.send_replace(false);
    }

    fn shutdown(&self) {
        self.cancel.cancel();
        if let Some(handle) = lock(&self.supervisor).take() {
            handle.abort();
        }
        *lock(&self.link) = None;
        for (_, entry) in lock(&self.rooms).drain() {
            entry.worker.abort();
        }
        *lock(&self.state) = ConnectionState::Disconnected;
        self.connected.send_replace(false);
    }

    /// The supervisor: open, run, back off, repeat — until the connector stops.
    async fn supervise(self: Arc<Self>) {
        let mut backoff = Backoff::new(self.options.backoff_initial, self.options.backoff_max);
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let started = Instant::now();
            let failure = match self.open_link().await {
                Ok((socket, link, driver)) => {
                    info!(connector = %self.name, url = %self.config.url, "connected to Rocket.Chat");
                    *lock(&self.state) = ConnectionState::Connected;
                    self.connected.send_replace(true);
                    self.attempts.send_modify(|n| *n += 1);
                    let resync = tokio::spawn(self.clone().resync(link.clone()));
                    let ended = link::run(
                        socket,
                        link.clone(),
                        driver,
                        &*self,
                        self.options.keepalive_interval,
                        self.cancel.clone(),
                    )
                    .await;
                    resync.abort();
                    *lock(&self.link) = None;
                    self.mark_rooms_idle();
                    if self.cancel.is_cancelled() {
                        return;
                    }
                    let lasted = started.elapsed();
                    if lasted >= self.options.stable_after {
                        backoff.reset();
                    }
                    self.set_reconnecting(Some(ended.to_string()));
                    // A link that worked for a while and then dropped (network blip, server
                    // closing sockets) is retried at once; only when that fails too does the
                    // backoff start. A link that keeps dropping within a second always waits.
                    if lasted >= QUICK_RETRY_AFTER && backoff.failures() == 0 {
                        warn!(connector = %self.name, error = %ended, "lost the connection to Rocket.Chat; reconnecting now");
                        continue;
                    }
                    warn!(connector = %self.name, error = %ended, "lost the connection to Rocket.Chat");
                    ended
                }
                Err(e) => {
                    self.attempts.send_modify(|n| *n += 1);
                    e
                }
            };
            let text = failure.to_string();
            self.set_reconnecting(Some(text.clone()));
            let delay = backoff.next_delay();
            let hint = match &failure {
                LinkError::Rest(RestError::LoginRefused(_)) | LinkError::LoginRefused(_) => {
                    " (check server.username and server.password)"
                }
                _ => "",
            };
            warn!(
                connector = %self.name,
                attempt = backoff.failures(),
                retry_in = ?delay,
                "cannot connect to Rocket.Chat: {text}{hint}"
            );
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection attempt: REST session, server facts, WebSocket, DDP login.
    async fn open_link(&self) -> Result<(link::Socket, Arc<Link>, link::LinkDriver), LinkError> {
        let session = self.rest.ensure_session().await?;
        self.refresh_facts().await;
        let params = OpenParams {
            ws_url: &self.ws_url,
            tls: self.tls.clone(),
            username: &self.config.username,
            password: &self.config.password,
            connect_timeout: self.options.request_timeout,
            method_timeout: self.options.method_timeout,
        };
        let (socket, resume_refused) = link::open(&params, &session).await?;
        if resume_refused {
            // The REST token is stale too; the next REST call logs in again.
            self.rest.forget_session();
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let (link, driver) = link::new_link(generation);
        *lock(&self.link) = Some(link.clone());
        Ok((socket, link, driver))
    }

    /// Reads the server version and message size limit (kept from before when unreadable).
    async fn refresh_facts(&self) {
        let version = self.rest.server_major_version().await;
        let limit = self.rest.message_size_limit().await;
        let mut facts = lock(&self.facts);
        if version.is_some() {
            facts.major_version = version;
        }
        facts.message_limit = limit.unwrap_or(DEFAULT_MESSAGE_LIMIT);
        debug!(connector = %self.name, version = ?facts.major_version, limit = facts.message_limit, "server facts");
    }

    fn mark_rooms_idle(&self) {
        for entry in lock(&self.rooms).values_mut() {
            entry.sub = SubState::Idle;
        }
    }

    /// After a (re)connect: subscribe every room again and replay what was missed.
    async fn resync(self: Arc<Self>, link: Arc<Link>) {
        let ids: Vec<String> = lock(&self.rooms).keys().cloned().collect();
        let jobs = ids.into_iter().map(|id| {
            let this = self.clone();
            let link = link.clone();
            async move {
                if this.subscribe_room(&link, &id).await == SubscribeOutcome::Subscribed {
                    this.replay_missed(&id);
                }
            }
        });
        futures_util::future::join_all(jobs).await;
    }

    /// Queues a replay of what a room missed while the link was down.
    fn replay_missed(&self, room_id: &str) {
        let rooms = lock(&self.rooms);
        let Some(entry) = rooms.get(room_id) else {
            return;
        };
        let anchor = lock(&entry.ledger).replay_anchor_ms();
        let after = match (anchor, entry.live_since_ms) {
            (Some(anchor), _) => Some(anchor.saturating_sub(REPLAY_SLACK_MS)),
            (None, Some(since)) => Some(since.saturating_sub(REPLAY_SLACK_MS)),
            (None, None) => None,
        };
        if let Some(after_ms) = after {
            queue_event(
                entry,
                RoomEvent::Replay {
                    after_ms,
                    why: "reconnect",
                },
                &self.name,
            );
        }
    }

    /// Subscribes one room on `link` unless that is done or under way.
    async fn subscribe_room(&self, link: &Link, room_id: &str) -> SubscribeOutcome {
        {
            let mut rooms = lock(&self.rooms);
            let Some(entry) = rooms.get_mut(room_id) else {
                return SubscribeOutcome::Gone;
            };
            match &entry.sub {
                SubState::Pending(g) | SubState::Refused(g) if *g == link.generation => {
                    return SubscribeOutcome::InProgress
                }
                SubState::Active { generation, .. } if *generation == link.generation => {
                    return SubscribeOutcome::AlreadyActive
                }
                _ => entry.sub = SubState::Pending(link.generation),
            }
        }
        let result = link
            .subscribe(room_id, self.options.subscribe_timeout)
            .await;
        let mut rooms = lock(&self.rooms);
        let Some(entry) = rooms.get_mut(room_id) else {
            // Unsubscribed meanwhile.
            if let Ok(sub_id) = result {
                link.unsubscribe(&sub_id);
            }
            return SubscribeOutcome::Gone;
        };
        match result {
            Ok(id) => {
                debug!(connector = %self.name, room = %entry.room.name, "subscribed");
                entry.sub = SubState::Active {
                    generation: link.generation,
                    id,
                };
                entry.live_since_ms.get_or_insert_with(now_ms);
                SubscribeOutcome::Subscribed
            }
            Err(CallError::Refused(reason)) => {
                warn!(connector = %self.name, room = %entry.room.name, %reason, "the server refused the room subscription");
                entry.sub = SubState::Refused(link.generation);
                SubscribeOutcome::Refused(reason)
            }
            Err(CallError::TimedOut) => {
                entry.sub = SubState::Idle;
                drop(rooms);
                warn!(connector = %self.name, room = room_id, "room subscription not confirmed in time; reconnecting");
                link.reset("a room subscription was not confirmed");
                SubscribeOutcome::Deferred
            }
            Err(CallError::Lost | CallError::NotConnected) => {
                entry.sub = SubState::Idle;
                SubscribeOutcome::Deferred
            }
        }
    }

    /// Registers a watcher's interest in a room (creating its worker) and raises its floor.
    fn register_room(self: &Arc<Self>, room: &Room, floor_ms: Option<i64>) {
        let mut rooms = lock(&self.rooms);
        if let Some(entry) = rooms.get_mut(&room.id) {
            entry.watchers += 1;
            lock(&entry.ledger).raise_floor(floor_ms);
            return;
        }
        let ledger = Arc::new(Mutex::new(RoomLedger::new(floor_ms)));
        let overflow = Arc::new(AtomicBool::new(false));
        let (tx, rx) = room_queue(self.options.room_queue_depth.max(1));
        let worker = tokio::spawn(room_worker(
            self.clone(),
            room.clone(),
            ledger.clone(),
            overflow.clone(),
            rx,
        ));
        rooms.insert(
            room.id.clone(),
            RoomEntry {
                room: room.clone(),
                watchers: 1,
                ledger,
                events: tx,
                overflow,
                sub: SubState::Idle,
                live_since_ms: None,
                worker,
            },
        );
    }

    /// Drops one watcher's interest; the last one ends the subscription and the worker.
    fn release_room(&self, room_id: &str) {
        let mut rooms = lock(&self.rooms);
        let Some(entry) = rooms.get_mut(room_id) else {
            return;
        };
        entry.watchers = entry.watchers.saturating_sub(1);
        if entry.watchers > 0 {
            return;
        }
        if let Some(entry) = rooms.remove(room_id) {
            if let SubState::Active { generation, id } = &entry.sub {
                if let Some(link) = self.current_link() {
                    if link.generation == *generation {
                        link.unsubscribe(id);
                    }
                }
            }
            entry.worker.abort();
        }
    }

    /// Handles one message document of a room: filters, normalization, downloads, delivery.
    async fn handle_doc(&self, room: &Room, ledger: &Mutex<RoomLedger>, doc: &Value, replay: bool) {
        let Some(msg) = parse_message(doc) else {
            debug!(connector = %self.name, "ignoring a message document that is not an object");
            return;
        };
        if msg.room_id.as_deref().is_some_and(|rid| rid != room.id) {
            debug!(connector = %self.name, room = %room.id, "ignoring a message of another room");
            return;
        }
        let id_for_log = msg.id.clone().unwrap_or_default();
        if let Err(reason) = lock(ledger).check(&msg) {
            debug!(connector = %self.name, room = %room.name, message = %id_for_log, replay, "dropped: {reason}");
            return;
        }
        let screened = screen(&msg, &self.settings.gates, room.kind);
        let Some(id) = msg.id.clone() else {
            debug!(connector = %self.name, room = %room.name, "dropped: document without _id");
            return;
        };
        let screened = match screened {
            Ok(s) => s,
            Err(reason) => {
                lock(ledger).mark_seen(&id);
                debug!(connector = %self.name, room = %room.name, message = %id, replay, "dropped: {reason}");
                return;
            }
        };
        let thread = msg.thread_id.as_deref();
        let sender = msg
            .sender
            .as_ref()
            .map(|s| s.username.as_str())
            .unwrap_or_default();
        let chain_turn = {
            let mut budget = lock(&self.budget);
            if screened.is_agent {
                match budget.charge(&room.id, thread, sender, Instant::now()) {
                    Some(turn) => Some((turn, budget.max_turns())),
                    None => {
                        drop(budget);
                        lock(ledger).mark_seen(&id);
                        debug!(connector = %self.name, room = %room.name, message = %id, "dropped: peer agent turn budget spent");
                        return;
                    }
                }
            } else {
                budget.reset(&room.id, thread);
                None
            }
        };
        lock(ledger).mark_seen(&id);
        let Normalized {
            mut message,
            downloads,
        } = normalize(
            &msg,
            &Ctx {
                settings: &self.settings,
                room,
            },
        );
        if !downloads.is_empty() {
            let dir = room_cache_dir(&self.cache_root, &self.name, &room.id);
            let limits = DownloadLimits {
                max_file_size_mb: self.config.attachments.max_file_size_mb,
                timeout: self.config.attachments.download_timeout,
            };
            let outcomes = download_all(&downloads, &self.rest, &dir, limits).await;
            for outcome in outcomes {
                match outcome {
                    DownloadOutcome::Saved(path) => message.attachments.push(path),
                    DownloadOutcome::Warning(text) => message.warnings.push(text),
                }
            }
        }
        if let Some((turn, max)) = chain_turn {
            message.warnings.push(agent_chain_note(turn, max));
        }
        let Some(inbound) = self.inbound() else {
            lock(ledger).forget(&id);
            return;
        };
        let delivery = inbound.deliver(message).await;
        debug!(connector = %self.name, room = %room.name, message = %id, replay, ?delivery, "delivered");
        match delivery {
            Delivery::Accepted | Delivery::Intercepted => lock(ledger).delivered(msg.ts_ms),
            Delivery::Rejected | Delivery::NoWatcher => lock(ledger).forget(&id),
        }
    }

    /// Every message of a room after `after_ms`, oldest first, paging back until the range
    /// is covered (or the page budget is spent, which is logged as possible loss).
    async fn history_since(&self, room: &Room, after_ms: i64) -> Result<Vec<Value>, RestError> {
        let budget = self.options.history_page_size.max(1) as usize
            * self.options.history_max_pages.max(1) as usize;
        let (docs, complete) = self
            .history_range(room, Some(after_ms), None, budget)
            .await?;
        if !complete {
            warn!(
                connector = %self.name,
                room = %room.name,
                messages = docs.len(),
                "replay stopped at its limit: older messages posted while disconnected may be lost"
            );
        }
        Ok(docs)
    }

    /// The newest `limit` messages of a room strictly between `after_ms` and `before_ms`,
    /// oldest first, paging back from `before_ms` (or now); and whether the range was covered.
    async fn history_range(
        &self,
        room: &Room,
        after_ms: Option<i64>,
        before_ms: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<Value>, bool), RestError> {
        let page_size = self.options.history_page_size.max(1);
        let oldest = after_ms.and_then(iso_utc);
        let in_range = |ts: Option<i64>| match ts {
            Some(ts) => after_ms.is_none_or(|a| ts > a) && before_ms.is_none_or(|b| ts < b),
            None => true,
        };
        let mut latest = before_ms;
        let mut docs: Vec<Value> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        let complete = loop {
            if docs.len() >= limit {
                break false;
            }
            let page = self
                .rest
                .history_page(
                    room.kind,
                    &room.id,
                    page_size,
                    oldest.as_deref(),
                    latest.and_then(iso_utc).as_deref(),
                    true,
                )
                .await?;
            let full = page.len() >= page_size as usize;
            let page_oldest = page
                .iter()
                .filter_map(|d| d.get("ts").and_then(parse_time_ms))
                .min();
            let mut added = 0;
            for doc in page {
                let new = match doc.get("_id").and_then(Value::as_str) {
                    Some(id) => ids.insert(id.to_string()),
                    None => true,
                };
                if new && in_range(doc.get("ts").and_then(parse_time_ms)) {
                    docs.push(doc);
                    added += 1;
                }
            }
            if !full {
                break true;
            }
            match page_oldest {
                Some(ts) if added > 0 && Some(ts) != latest => latest = Some(ts),
                _ => {
                    warn!(connector = %self.name, room = %room.name, "history paging made no progress (many messages with one timestamp); some may be missing");
                    break true;
                }
            }
        };
        docs.sort_by_key(|d| d.get("ts").and_then(parse_time_ms).unwrap_or(i64::MIN));
        if docs.len() > limit {
            docs.drain(..docs.len() - limit);
        }
        Ok((docs, complete))
    }

    /// Posts one chunk, retrying transient failures.
    async fn post_with_retry(
        &self,
        room_id: &str,
        text: &str,
        thread: Option<&str>,
    ) -> Result<(), RestError> {
        let mut delays = self.options.post_retry_delays.iter();
        loop {
            match self.rest.post_message(room_id, text, thread).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() => match delays.next() {
                    Some(delay) => {
                        debug!(connector = %self.name, error = %e, retry_in = ?delay, "post failed; retrying");
                        tokio::time::sleep(*delay).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    async fn upload_with_retry(
        &self,
        room_id: &str,
        path: &std::path::Path,
        caption: &str,
        thread: Option<&str>,
    ) -> Result<(), RestError> {
        let mut delays = self.options.post_retry_delays.iter();
        loop {
            let version = lock(&self.facts).major_version;
            match self
                .rest
                .upload(room_id, path, caption, thread, version)
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => match delays.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// Resolves a room string over REST (no caching, no waiting).
    async fn lookup_room(&self, room: &str) -> Result<Room, LookupError> {
        let room = room.trim();
        if let Some(user) = room.strip_prefix('@') {
            let id = self.rest.open_direct(user).await?;
            return Ok(Room {
                id,
                name: room.to_string(),
                kind: RoomKind::Dm,
            });
        }
        let name = room.strip_prefix('#').unwrap_or(room);
        if let Some(info) = self.rest.room_by_name(name).await? {
            return Ok(Room {
                id: info.id,
                name: info.name,
                kind: info.kind,
            });
        }
        if let Some(info) = self.rest.room_by_id(name).await? {
            return Ok(Room {
                id: info.id,
                name: info.name,
                kind: info.kind,
            });
        }
        Err(LookupError::NotFound)
    }

    /// Writes the room cache now if a write is still scheduled (at disconnect).
    async fn flush_room_cache(&self) {
        if !self.room_cache_pending.swap(false, Ordering::SeqCst) {
            return;
        }
        let path = room_cache_file(&self.cache_root, &self.name);
        write_room_cache(&self.resolved, path, &self.name).await;
    }

    /// Records a resolved room and schedules a write of the room cache: one write, off the
    /// runtime thread, for every room resolved within [`ROOM_CACHE_SAVE_DELAY`] (a start with
    /// 2,000 rooms resolves them all at once).
    fn remember_room(&self, key: &str, room: &Room) {
        {
            let mut resolved = lock(&self.resolved);
            if resolved.get(key) == Some(room) {
                return;
            }
            resolved.insert(key.to_string(), room.clone());
        }
        if self.room_cache_pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let (resolved, pending) = (self.resolved.clone(), self.room_cache_pending.clone());
        let (path, connector) = (
            room_cache_file(&self.cache_root, &self.name),
            self.name.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(ROOM_CACHE_SAVE_DELAY).await;
            if !pending.swap(false, Ordering::SeqCst) {
                return; // written by a flush meanwhile
            }
            write_room_cache(&resolved, path, &connector).await;
        });
    }
}

enum LookupError {
    NotFound,
    Rest(RestError),
}

impl From<RestError> for LookupError {
    fn from(e: RestError) -> Self {
        LookupError::Rest(e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SubscribeOutcome {
    Subscribed,
    AlreadyActive,
    InProgress,
    Refused(String),
    Deferred,
    Gone,
}

impl FrameSink for Inner {
    fn room_message(&self, room_id: Option<String>, doc: Value) {
        let rooms = lock(&self.rooms);
        let entry = room_id.as_deref().and_then(|id| rooms.get(id));
        match entry {
            Some(entry) => queue_event(entry, RoomEvent::Live(doc), &self.name),
            None => {
                debug!(connector = %self.name, room = ?room_id, "message of a room nobody watches")
            }
        }
    }

    fn subscription_ended(&self, sub_id: &str, error: Option<String>) {
        let mut rooms = lock(&self.rooms);
        for entry in rooms.values_mut() {
            if matches!(&entry.sub, SubState::Active { id, .. } if id == sub_id) {
                warn!(connector = %self.name, room = %entry.room.name, error = ?error, "the server ended the room subscription");
                entry.sub = SubState::Idle;
            }
        }
    }
}

/// Hands an event to a room worker; a full buffer flags the room for a replay instead.
fn queue_event(entry: &RoomEntry, event: RoomEvent, connector: &str) {
    if entry.events.push(event) == Pushed::Full && !entry.overflow.swap(true, Ordering::SeqCst) {
        warn!(connector, room = %entry.room.name, "room buffer full; will catch up from history");
    }
}

/// The events waiting for one room's worker, in order, up to a capacity. Unlike a tokio
/// channel, which allocates a block of 32 slots per room up front, it holds memory only while
/// events wait: most watched rooms are quiet most of the time, and a gateway may watch
/// thousands.
struct RoomQueue {
    events: Mutex<VecDeque<RoomEvent>>,
    ready: tokio::sync::Notify,
    closed: AtomicBool,
    capacity: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Queued,
    Full,
    Closed,
}

/// The room entry's end of a [`RoomQueue`]: dropping it (the room is released) closes the
/// queue; the worker still gets what was queued before, then `None`.
struct RoomSender(Arc<RoomQueue>);

fn room_queue(capacity: usize) -> (RoomSender, Arc<RoomQueue>) {
    let queue = Arc::new(RoomQueue {
        events: Mutex::new(VecDeque::new()),
        ready: tokio::sync::Notify::new(),
        closed: AtomicBool::new(false),
        capacity,
    });
    (RoomSender(queue.clone()), queue)
}

impl RoomSender {
    fn push(&self, event: RoomEvent) -> Pushed {
        let queue = &self.0;
        {
            let mut events = lock(&queue.events);
            if queue.closed.load(Ordering::SeqCst) {
                return Pushed::Closed;
            }
            if events.len() >= queue.capacity {
                return Pushed::Full;
            }
            events.push_back(event);
        }
        queue.ready.notify_one();
        Pushed::Queued
    }
}

impl Drop for RoomSender {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.ready.notify_one();
    }
}

impl RoomQueue {
    /// The next event; `None` once the sender is gone and nothing is left.
    async fn recv(&self) -> Option<RoomEvent> {
        loop {
            {
                let mut events = lock(&self.events);
                if let Some(event) = events.pop_front() {
                    if events.is_empty() && events.capacity() > 4 {
                        // A burst is over: give its buffer back.
                        *events = VecDeque::new();
                    }
                    return Some(event);
                }
                if self.closed.load(Ordering::SeqCst) {
                    return None;
                }
            }
            // `notify_one` stores a permit when nobody waits, so a push between the check
            // above and this wait is not missed.
            self.ready.notified().await;
        }
    }
}

/// One room's worker: handles live and replayed messages strictly in order.
async fn room_worker(
    inner: Arc<Inner>,
    room: Room,
    ledger: Arc<Mutex<RoomLedger>>,
    overflow: Arc<AtomicBool>,
    events: Arc<RoomQueue>,
) {
    loop {
        let event = tokio::select! {
            _ = inner.cancel.cancelled() => return,
            event = events.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        // Boxed: an idle room's task (one per watched room) then holds only this loop's
        // small state, not the largest state of message handling.
        match event {
            RoomEvent::Live(doc) => Box::pin(inner.handle_doc(&room, &ledger, &doc, false)).await,
            RoomEvent::Replay { after_ms, why } => {
                Box::pin(replay(&inner, &room, &ledger, after_ms, why)).await
            }
        }
        if overflow.swap(false, Ordering::SeqCst) {
            let anchor = lock(&ledger).replay_anchor_ms();
            let after = anchor
                .unwrap_or_else(now_ms)
                .saturating_sub(REPLAY_SLACK_MS);
            Box::pin(replay(&inner, &room, &ledger, after, "buffer overflow")).await;
        }
    }
}

async fn replay(inner: &Inner, room: &Room, ledger: &Mutex<RoomLedger>, after_ms: i64, why: &str) {
    match inner.history_since(room, after_ms).await {
        Ok(docs) => {
            debug!(connector = %inner.name, room = %room.name, count = docs.len(), why, "replaying history");
            for doc in &docs {
                inner.handle_doc(room, ledger, doc, true).await;
            }
        }
        Err(e) => {
            warn!(connector = %inner.name, room = %room.name, error = %e, why, "cannot fetch the room history to replay; the next reconnect tries again");
        }
    }
}

fn room_cache_file(cache_root: &std::path::Path, connector: &str) -> PathBuf {
    cache_root
        .join(crate::attachments::safe_component(connector))
        .join("rooms.json")
}

fn load_room_cache(path: &std::path::Path) -> HashMap<String, Room> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// How long [`Inner::remember_room`] gathers resolved rooms before writing the cache.
const ROOM_CACHE_SAVE_DELAY: Duration = Duration::from_millis(50);

/// Writes the rooms resolved so far to the cache file `path`, on the blocking pool; a failure
/// is logged (the cache is only an optimisation).
async fn write_room_cache(resolved: &Mutex<HashMap<String, Room>>, path: PathBuf, connector: &str) {
    let snapshot = lock(resolved).clone();
    let target = path.clone();
    let saved = tokio::task::spawn_blocking(move || save_room_cache(&target, &snapshot))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    if let Err(e) = saved {
        debug!(connector, path = %path.display(), error = %e, "cannot save the room cache");
    }
}

/// Replaces the room cache (no fsync: it is a cache, and a missing or unreadable one only
/// means the rooms are looked up on the server again).
fn save_room_cache(path: &std::path::Path, rooms: &HashMap<String, Room>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(rooms).map_err(std::io::Error::other)?;
    acg_core::state::replace_file(path, &bytes, 0o600)
}

fn not_connected(e: &RestError) -> ConnectorError {
    match e {
        RestError::Transport(_) | RestError::LoginRefused(_) => {
            ConnectorError::NotConnected(e.to_string())
        }
        other => ConnectorError::Other(other.to_string()),
    }
}

#[async_trait]
impl Connector for RocketChatConnector {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn platform(&self) -> &str {
        PLATFORM
    }

    fn bot_username(&self) -> Option<String> {
        Some(self.inner.config.username.clone())
    }

    fn builtin_context(&self) -> Option<&'static str> {
        acg_core::context::builtin_platform_context("rocketchat")
    }

    fn header_for_injected(&self, msg: &IncomingMessage) -> Option<String> {
        let settings = &self.inner.settings;
        Some(prompt_header(&HeaderFields {
            platform: PLATFORM,
            room_name: &msg.room.name,
            room_kind: msg.room.kind,
            sender: &msg.sender.username,
            role: msg.role,
            timestamp_ms: msg.timestamp_ms,
            timezone: Some(settings.timezone.as_str()),
            mentions: &msg.mentions,
            bot_username: Some(settings.gates.bot_username.as_str()),
            peer_agents: &settings.gates.agents,
        }))
    }

    async fn connect(&self, inbound: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
        let inner = &self.inner;
        *lock(&inner.inbound) = Some(inbound);
        if inner.cancel.is_cancelled() {
            return Err(ConnectorError::Other("connector was stopped".into()));
        }
        let mut attempts = inner.attempts.subscribe();
        {
            let mut supervisor = lock(&inner.supervisor);
            if supervisor.is_some() {
                return Ok(());
            }
            inner.set_reconnecting(None);
            *supervisor = Some(tokio::spawn(inner.clone().supervise()));
        }
        // Give the first attempt a moment so a healthy server is ready when watchers start;
        // never wait longer than the grace period, whatever the server does.
        let _ =
            tokio::time::timeout(inner.options.connect_grace, attempts.wait_for(|n| *n > 0)).await;
        Ok(())
    }

    async fn disconnect(&self) {
        self.inner.shutdown();
        self.inner.flush_room_cache().await;
    }

    async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
        let inner = &self.inner;
        // While the link is down, give it a moment; a room resolved before is then answered
        // from the cache rather than waiting for REST calls that may hang until their timeout.
        if !inner.wait_connected(inner.options.resolve_wait).await {
            if let Some(cached) = lock(&inner.resolved).get(room).cloned() {
                warn!(connector = %inner.name, room, "not connected; using the room as resolved before");
                return Ok(cached);
            }
        }
        match inner.lookup_room(room).await {
            Ok(resolved) => {
                inner.remember_room(room, &resolved);
                Ok(resolved)
            }
            Err(LookupError::NotFound) => Err(ConnectorError::RoomNotFound(format!(
                "Room '{room}' not found (tried channels, groups and room ids)"
            ))),
            Err(LookupError::Rest(e)) => {
                if let Some(cached) = lock(&inner.resolved).get(room).cloned() {
                    warn!(connector = %inner.name, room, error = %e, "server unreachable; using the room as resolved before");
                    return Ok(cached);
                }
                Err(not_connected(&e))
            }
        }
    }

    async fn subscribe(
        &self,
        room: &Room,
        replay_after_ms: Option<i64>,
    ) -> Result<(), ConnectorError> {
        let inner = &self.inner;
        inner.register_room(room, replay_after_ms);
        let Some(link) = inner.current_link() else {
            info!(connector = %inner.name, room = %room.name, "not connected yet; the room is subscribed (and replayed) once the server is reachable");
            return Ok(());
        };
        let outcome = inner.subscribe_room(&link, &room.id).await;
        match outcome {
            SubscribeOutcome::Refused(reason) => {
                inner.release_room(&room.id);
                Err(ConnectorError::Other(format!(
                    "Subscription rejected by server: {reason}"
                )))
            }
            SubscribeOutcome::Subscribed | SubscribeOutcome::AlreadyActive => {
                if let Some(after_ms) = replay_after_ms {
                    if let Some(entry) = lock(&inner.rooms).get(&room.id) {
                        queue_event(
                            entry,
                            RoomEvent::Replay {
                                after_ms,
                                why: "watcher start",
                            },
                            &inner.name,
                        );
                    }
                }
                Ok(())
            }
            SubscribeOutcome::InProgress | SubscribeOutcome::Deferred | SubscribeOutcome::Gone => {
                Ok(())
            }
        }
    }

    async fn unsubscribe(&self, room: &Room) {
        self.inner.release_room(&room.id);
    }

    async fn send(&self, room: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError> {
        let inner = &self.inner;
        let thread = msg.thread_id.as_deref();
        if let Some(path) = &msg.attachment {
            return inner
                .upload_with_retry(&room.id, path, &msg.text, thread)
                .await
                .map_err(|e| not_connected(&e));
        }
        if msg.text.trim().is_empty() {
            debug!(connector = %inner.name, room = %room.name, "not posting an empty message");
            return Ok(());
        }
        let limit = lock(&inner.facts).message_limit;
        for chunk in split_message(&msg.text, limit) {
            inner
                .post_with_retry(&room.id, &chunk, thread)
                .await
                .map_err(|e| not_connected(&e))?;
        }
        Ok(())
    }

    async fn set_typing(&self, room: &Room, thread_id: Option<&str>, on: bool) {
        let inner = &self.inner;
        let Some(link) = inner.current_link() else {
            return;
        };
        let username = inner.config.username.clone();
        let result = link
            .call(
                |id| ddp::typing(id, &room.id, &username, on, thread_id),
                inner.options.typing_timeout,
            )
            .await;
        if let Err(e) = result {
            debug!(connector = %inner.name, room = %room.name, error = %e, "typing indicator not updated");
        }
    }

    fn connection_state(&self) -> ConnectionState {
        lock(&self.inner.state).clone()
    }

    fn supports_history(&self) -> bool {
        true
    }

    async fn fetch_history(
        &self,
        room: &Room,
        query: HistoryQuery,
    ) -> Result<Vec<HistoryEntry>, ConnectorError> {
        let inner = &self.inner;
        let (docs, _) = inner
            .history_range(
                room,
                query.after_ms,
                query.before_ms,
                query.count.max(1) as usize,
            )
            .await
            .map_err(|e| not_connected(&e))?;
        let gates = &inner.settings.gates;
        let mut entries: Vec<HistoryEntry> = docs
            .iter()
            .filter_map(parse_message)
            .filter(|m| m.system_type.is_none() && !mention::strip(&m.text).is_empty())
            .filter_map(|m| {
                let sender = m.sender.as_ref()?;
                let (username, role) = if sender.username == gates.bot_username {
                    ("me".to_string(), HistoryRole::Agent)
                } else if gates.owners.contains(&sender.username) {
                    (sender.username.clone(), HistoryRole::Owner)
                } else if gates.guests.contains(&sender.username) {
                    (sender.username.clone(), HistoryRole::Guest)
                } else if gates.agents.contains(&sender.username) {
                    (sender.username.clone(), HistoryRole::Agent)
                } else {
                    return None;
                };
                Some(HistoryEntry {
                    timestamp_ms: m.ts_ms,
                    username,
                    role,
                    room_name: room.name.clone(),
                    text: m.text.clone(),
                })
            })
            .collect();
        entries.sort_by_key(|e| e.timestamp_ms.unwrap_or(i64::MIN));
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acg_config::model::{AgentChainSettings, AttachmentSettings};
    use acg_core::{Role, Sender};

    fn live(n: i64) -> RoomEvent {
        RoomEvent::Live(serde_json::json!({ "n": n }))
    }

    fn number(event: Option<RoomEvent>) -> i64 {
        match event {
            Some(RoomEvent::Live(doc)) => doc["n"].as_i64().unwrap(),
            _ => panic!("expected a live event"),
        }
    }

    /// The room queue keeps order, refuses beyond its capacity, wakes a waiting worker, holds
    /// no buffer once drained, and ends (after what was queued) when the room is released.
    #[tokio::test]
    async fn room_queue_orders_bounds_wakes_and_closes() {
        let (tx, rx) = room_queue(3);
        assert_eq!(
            lock(&rx.events).capacity(),
            0,
            "nothing allocated while quiet"
        );
        for n in 1..=3 {
            assert_eq!(tx.push(live(n)), Pushed::Queued);
        }
        assert_eq!(tx.push(live(4)), Pushed::Full);
        for n in 1..=3 {
            assert_eq!(number(rx.recv().await), n);
        }
        let waiter = tokio::spawn({
            let rx = rx.clone();
            async move { number(rx.recv().await) }
        });
        tokio::task::yield_now().await;
        assert_eq!(tx.push(live(5)), Pushed::Queued);
        assert_eq!(waiter.await.unwrap(), 5);
        assert_eq!(tx.push(live(6)), Pushed::Queued);
        drop(tx);
        assert_eq!(number(rx.recv().await), 6, "queued before the release");
        assert!(rx.recv().await.is_none());
        let (tx, rx) = room_queue(8);
        for n in 0..8 {
            tx.push(live(n));
        }
        for _ in 0..8 {
            rx.recv().await;
        }
        assert_eq!(
            lock(&rx.events).capacity(),
            0,
            "a drained burst gives its buffer back"
        );
    }

    fn config(url: &str) -> ChatServerConfig {
        ChatServerConfig {
            url: url.into(),
            username: "bot".into(),
            password: "pw".into(),
            team: None,
            token: None,
            owners: vec!["alice".into()],
            guests: vec![],
            attachments: AttachmentSettings {
                max_file_size_mb: 10.0,
                download_timeout: Duration::from_secs(30),
                cache_dir: String::new(),
                cache_dir_global: std::env::temp_dir().join("acg-rc-unit"),
            },
            reply_in_thread: false,
            permission_reply_in_thread: true,
            require_mention: true,
            filter_sender: true,
            agent_chain: AgentChainSettings {
                agent_usernames: vec!["wavebro".into()],
                max_turns: 5,
                ttl: Duration::from_secs(3600),
            },
            timezone: "America/Los_Angeles".into(),
        }
    }

    #[test]
    fn urls_must_be_http() {
        assert!(matches!(
            RocketChatConnector::new(
                "rc",
                config("chat.example.com"),
                RocketChatOptions::default()
            ),
            Err(RocketChatError::BadUrl(_))
        ));
        let rc = RocketChatConnector::new(
            "rc",
            config("https://chat.example.com/"),
            RocketChatOptions::default(),
        )
        .unwrap();
        assert_eq!(rc.inner.ws_url, "wss://chat.example.com/websocket");
        assert_eq!(rc.inner.rest.base(), "https://chat.example.com");
        let rc = RocketChatConnector::new(
            "rc",
            config("http://127.0.0.1:3000"),
            RocketChatOptions::default(),
        )
        .unwrap();
        assert_eq!(rc.inner.ws_url, "ws://127.0.0.1:3000/websocket");
        assert_eq!(rc.connection_state(), ConnectionState::Disconnected);
        assert_eq!(rc.message_limit(), DEFAULT_MESSAGE_LIMIT);
    }

    #[test]
    fn header_for_messages_the_gateway_injects() {
        let rc = RocketChatConnector::new(
            "rc",
            config("http://127.0.0.1:1"),
            RocketChatOptions::default(),
        )
        .unwrap();
        let msg = IncomingMessage {
            id: "sched-1".into(),
            room: Room {
                id: "R".into(),
                name: "general".into(),
                kind: RoomKind::Channel,
            },
            sender: Sender {
                id: "scheduler".into(),
                username: "scheduler".into(),
                display_name: Some("Scheduler".into()),
            },
            role: Role::Owner,
            text: "run the report".into(),
            timestamp_ms: Some(1_777_052_400_000),
            thread_id: None,
            permission_thread_id: None,
            mentions: vec![],
            attachments: vec![],
            warnings: vec![],
            prompt_header: String::new(),
        };
        assert_eq!(
            rc.header_for_injected(&msg).as_deref(),
            Some("[Rocket.Chat #general | from: scheduler | role: owner | day: Fri | ts: 2026-04-24T10:40:00-07:00 | to: *]")
        );
    }

    #[tokio::test]
    async fn nothing_is_waited_for_without_a_link() {
        let rc = RocketChatConnector::new(
            "rc",
            config("http://127.0.0.1:1"),
            RocketChatOptions::default(),
        )
        .unwrap();
        let room = Room {
            id: "R".into(),
            name: "general".into(),
            kind: RoomKind::Channel,
        };
        // Not connected: typing returns at once, subscribe only records the room.
        rc.set_typing(&room, None, true).await;
        rc.subscribe(&room, Some(5)).await.unwrap();
        assert!(rc.active_rooms().is_empty());
        assert_eq!(lock(&rc.inner.rooms).len(), 1);
        rc.unsubscribe(&room).await;
        assert!(lock(&rc.inner.rooms).is_empty());
    }
}
