//! [`FakeRocketChat`]: starting, stopping and restarting the fake on one port, fault
//! injection, and the inspection helpers tests assert with.
//!
//! The HTTP side is a hand-rolled accept loop (hyper HTTP/1 with upgrades) rather than
//! `axum::serve`, so that [`FakeRocketChat::stop`] can cut every open connection at once, the
//! way a crashed server does, and [`FakeRocketChat::restart`] can listen on the same port again
//! with the database (users, rooms, messages, login tokens) intact.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::faults::{MalformedFrames, RestFaults};
use super::human::HumanClient;
use super::seed::{RoomKind, Seed};
use super::world::{self, ServerSettings, ServerVersion, World, WorldEvent};
use super::{rest, FakeError};

/// How to start the fake.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The Rocket.Chat version to imitate: `7.x` (e.g. `7.10.0`) or `8.x` (e.g. `8.1.0`).
    /// Behaviour that differs: `rooms.upload` (gone in 8), the 401/403 bodies, `/api/info`.
    pub version: String,
    /// Users and rooms.
    pub seed: Seed,
    /// `Message_MaxAllowedSize` (default 5000, like a fresh server).
    pub message_max_allowed_size: usize,
    /// `FileUpload_MaxFileSize` in bytes (default 104857600).
    pub file_upload_max_size: usize,
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Server heartbeat: after this long without a frame from the client the server sends
    /// `{"msg":"ping"}` and closes the socket if nothing arrives within the same time again
    /// (Meteor's default is 15 s). `None` turns it off.
    pub heartbeat: Option<Duration>,
    /// Login token lifetime (`Accounts_LoginExpiration`, default 90 days).
    pub token_lifetime: Duration,
    /// Send Meteor's legacy `{"server_id":"0"}` greeting first on every WebSocket (default
    /// true, as real servers do). Clients that expect `connected` as the first frame (the
    /// Python agent-chat-gateway 0.5.2) need it off; the benchmark harness turns it off for
    /// every gateway it compares.
    pub legacy_greeting: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            version: "7.10.0".to_owned(),
            seed: Seed::default(),
            message_max_allowed_size: 5000,
            file_upload_max_size: 104_857_600,
            port: 0,
            heartbeat: Some(Duration::from_secs(15)),
            token_lifetime: Duration::from_secs(90 * 24 * 3600),
            legacy_greeting: true,
        }
    }
}

impl FakeOptions {
    /// Options for a version with a seed, everything else default.
    pub fn new(version: &str, seed: Seed) -> Self {
        FakeOptions {
            version: version.to_owned(),
            seed,
            ..FakeOptions::default()
        }
    }
}

/// One REST request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// `X-User-Id` header, if sent.
    pub user_id: Option<String>,
    /// `X-Auth-Token` header, if sent.
    pub auth_token: Option<String>,
    /// `Content-Type` header, if sent.
    pub content_type: Option<String>,
    /// The body: parsed JSON when it is JSON, a string otherwise (multipart bodies are
    /// summarised as `"<multipart N bytes>"`).
    pub body: Value,
    /// The status the fake answered with.
    pub status: u16,
}

/// A `stream-notify-room` call (typing indicator) as the fake received it.
#[derive(Debug, Clone, PartialEq)]
pub struct TypingEvent {
    /// Room id (the part before `/` of the event name).
    pub rid: String,
    /// Event kind after the `/`: `user-activity` or (legacy) `typing`.
    pub event: String,
    /// The username argument.
    pub username: String,
    /// The raw remaining arguments (e.g. `[["user-typing"]]`, `[[]]`, or `[true]`).
    pub args: Vec<Value>,
    /// Whether a real server would relay it: logged in and the username is the caller's.
    pub accepted: bool,
    /// The DDP session it came from.
    pub session: u64,
}

impl TypingEvent {
    /// Whether this turns typing on (`["user-typing"]` or legacy `true`).
    pub fn is_typing(&self) -> bool {
        match self.args.first() {
            Some(Value::Array(a)) => a.iter().any(|v| v == "user-typing"),
            Some(Value::Bool(b)) => *b,
            _ => false,
        }
    }
}

/// One frame a DDP client sent (for assertions on the exact wire traffic).
#[derive(Debug, Clone, PartialEq)]
pub struct DdpFrame {
    /// The session (one per WebSocket connection).
    pub session: u64,
    /// The frame text as received.
    pub text: String,
}

/// Things every DDP session must react to.
#[derive(Debug, Clone)]
pub(crate) enum Control {
    /// Close every socket without a close frame.
    DropAll,
    /// Send these raw text frames to every socket.
    Frames(Vec<String>),
    /// Login tokens were revoked; sessions logged in with one close (Meteor does that).
    TokensRevoked,
}

/// State shared by the HTTP handlers, the DDP sessions and the test-facing API.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub events: broadcast::Sender<WorldEvent>,
    pub control: broadcast::Sender<Control>,
    pub faults: Mutex<RestFaults>,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub typing: Mutex<Vec<TypingEvent>>,
    pub ddp_frames: Mutex<Vec<DdpFrame>>,
    pub next_session: AtomicU64,
    pub open_sessions: AtomicUsize,
    pub heartbeat: Option<Duration>,
    /// Whether sessions open with `{"server_id":"0"}`.
    pub legacy_greeting: bool,
    /// The running generation's cancellation token (replaced on restart).
    pub generation: Mutex<CancellationToken>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (test code panics).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }
}

/// A running fake Rocket.Chat server (REST under `/api`, DDP at `/websocket`, files under
/// `/file-upload`). Dropping it stops the server.
pub struct FakeRocketChat {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl FakeRocketChat {
    /// Starts the fake on `127.0.0.1:<options.port>`.
    pub async fn start(options: FakeOptions) -> Result<FakeRocketChat, FakeError> {
        let version = ServerVersion::parse(&options.version)
            .ok_or_else(|| FakeError::BadVersion(options.version.clone()))?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
        let addr = listener.local_addr()?;
        let (events, _) = broadcast::channel(4096);
        let (control, _) = broadcast::channel(256);
        let settings = ServerSettings {
            message_max_allowed_size: options.message_max_allowed_size,
            file_upload_max_size: options.file_upload_max_size,
            site_url: format!("http://{addr}"),
            token_lifetime_ms: i64::try_from(options.token_lifetime.as_millis())
                .unwrap_or(i64::MAX),
        };
        let world = World::new(version, settings, &options.seed, events.clone())?;
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            events,
            control,
            faults: Mutex::new(RestFaults::default()),
            requests: Mutex::new(Vec::new()),
            typing: Mutex::new(Vec::new()),
            ddp_frames: Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
            open_sessions: AtomicUsize::new(0),
            heartbeat: options.heartbeat,
            legacy_greeting: options.legacy_greeting,
            generation: Mutex::new(CancellationToken::new()),
        });
        let fake = FakeRocketChat {
            shared,
            addr,
            running: Mutex::new(None),
        };
        fake.serve(listener);
        Ok(fake)
    }

    fn serve(&self, listener: TcpListener) {
        let cancel = CancellationToken::new();
        *lock(&self.shared.generation) = cancel.clone();
        let app = rest::router(self.shared.clone());
        let task = tokio::spawn(accept_loop(listener, app, cancel.clone()));
        *lock(&self.running) = Some((cancel, task));
    }

    /// `http://127.0.0.1:<port>` — the `server.url` a connector is configured with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:<port>/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/websocket", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The imitated version string.
    pub fn version(&self) -> String {
        self.shared.world().version.full.clone()
    }

    // ---- lifecycle ----------------------------------------------------------------------

    /// Takes the server down: stops listening and cuts every open HTTP and WebSocket
    /// connection (no close frames). The database is kept for [`FakeRocketChat::restart`].
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some((cancel, task)) = running {
            cancel.cancel();
            let _ = task.await;
        }
        // Sessions end on the cancelled token; wait (bounded) until they are gone.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.shared.open_sessions.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Brings the server back on the same port (stopping it first if it is running).
    pub async fn restart(&self) -> Result<(), FakeError> {
        self.stop().await;
        // The old listener is closed; rebinding can still race the kernel for a moment.
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) if attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.serve(listener);
        Ok(())
    }

    /// Whether the server is currently accepting connections.
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    // ---- fault injection ----------------------------------------------------------------

    /// Closes every DDP WebSocket abruptly (TCP closed, no close frame), like a network drop.
    /// The server keeps running; clients may reconnect at once.
    pub fn drop_all_sockets(&self) {
        let _ = self.shared.control.send(Control::DropAll);
    }

    /// Answers the next `n` REST calls (any endpoint, including login and file downloads)
    /// with `status` instead of serving them: a 5xx gets `{"success":false,"error":...}`, a
    /// 401 the server's "You must be logged in" body.
    pub fn fail_next_rest(&self, n: usize, status: u16) {
        lock(&self.shared.faults).fail_next = (n > 0).then_some((n, status));
    }

    /// Delays every REST call by `delay` (`Duration::ZERO` turns it off).
    pub fn set_rest_delay(&self, delay: Duration) {
        lock(&self.shared.faults).delay = (!delay.is_zero()).then_some(delay);
    }

    /// Sends broken DDP frames of one kind to every connected WebSocket.
    pub fn send_malformed_frames(&self, kind: MalformedFrames) {
        let _ = self.shared.control.send(Control::Frames(kind.frames()));
    }

    /// Sends arbitrary raw text frames to every connected WebSocket.
    pub fn send_raw_frames(&self, frames: Vec<String>) {
        let _ = self.shared.control.send(Control::Frames(frames));
    }

    /// Revokes every login token: the next REST call with an old token gets 401 until the
    /// client logs in again, `{"resume": old}` fails, and DDP sessions logged in with an old
    /// token are closed (Meteor closes connections whose token disappears).
    pub fn expire_tokens(&self) {
        self.shared.world().expire_tokens();
        let _ = self.shared.control.send(Control::TokensRevoked);
    }

    // ---- acting and inspecting -----------------------------------------------------------

    /// A helper that acts as a human user (posting, replying, uploading, editing). It writes
    /// straight into the fake's database — not through HTTP — so REST faults never hit it.
    pub fn login_as(&self, username: &str) -> Result<HumanClient, FakeError> {
        let user = self
            .shared
            .world()
            .user_by_username(username)
            .cloned()
            .ok_or_else(|| FakeError::UnknownUser(username.to_owned()))?;
        Ok(HumanClient::new(
            self.shared.clone(),
            user.id,
            user.username,
        ))
    }

    /// The `_id` of a user.
    pub fn user_id(&self, username: &str) -> Option<String> {
        self.shared
            .world()
            .user_by_username(username)
            .map(|u| u.id.clone())
    }

    /// The `_id` of a room given by id, name, `#name`, or `@a,@b` / `a,b` for a DM between two
    /// users.
    pub fn room_id(&self, room: &str) -> Option<String> {
        resolve_room(&self.shared.world(), room)
    }

    /// The room type of a room (see [`FakeRocketChat::room_id`] for the forms accepted).
    pub fn room_kind(&self, room: &str) -> Option<RoomKind> {
        let w = self.shared.world();
        let rid = resolve_room(&w, room)?;
        w.room(&rid).map(|r| r.kind)
    }

    /// Every message of a room, oldest first, in REST form (ISO dates), including system
    /// messages and thread replies.
    pub fn messages(&self, room: &str) -> Vec<Value> {
        let w = self.shared.world();
        resolve_room(&w, room)
            .map(|rid| w.room_messages(&rid).iter().map(world::rest_doc).collect())
            .unwrap_or_default()
    }

    /// One message by `_id`, in REST form.
    pub fn message(&self, msg_id: &str) -> Option<Value> {
        self.shared.world().message(msg_id).map(world::rest_doc)
    }

    /// Waits until a message of the room satisfies `predicate` (checking existing messages
    /// first), returning it in REST form; polls every 10 ms until `timeout`.
    pub async fn wait_for_message<F>(
        &self,
        room: &str,
        predicate: F,
        timeout: Duration,
    ) -> Result<Value, FakeError>
    where
        F: Fn(&Value) -> bool,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = self.messages(room).into_iter().find(|m| predicate(m)) {
                return Ok(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(FakeError::Timeout(format!(
                    "no matching message in {room} within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The typing events received for a room, in order.
    pub fn typing_events(&self, room: &str) -> Vec<TypingEvent> {
        let rid = self.room_id(room).unwrap_or_else(|| room.to_owned());
        lock(&self.shared.typing)
            .iter()
            .filter(|t| t.rid == rid)
            .cloned()
            .collect()
    }

    /// Every REST request so far, in arrival order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.shared.requests).clone()
    }

    /// Clears the REST request log.
    pub fn clear_request_log(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Every DDP frame clients sent, in arrival order.
    pub fn ddp_frames(&self) -> Vec<DdpFrame> {
        lock(&self.shared.ddp_frames).clone()
    }

    /// How many DDP WebSocket sessions are open now.
    pub fn open_sockets(&self) -> usize {
        self.shared.open_sessions.load(Ordering::SeqCst)
    }

    /// The bytes of an uploaded file.
    pub fn file_bytes(&self, file_id: &str) -> Option<Vec<u8>> {
        self.shared
            .world()
            .upload(file_id)
            .map(|u| u.bytes.as_ref().clone())
    }
}

impl Drop for FakeRocketChat {
    fn drop(&mut self) {
        if let Some((cancel, task)) = lock(&self.running).take() {
            cancel.cancel();
            task.abort();
        }
    }
}

/// Resolves the room forms accepted by the inspection helpers.
pub(crate) fn resolve_room(w: &World, room: &str) -> Option<String> {
    let key = room.strip_prefix('#').unwrap_or(room);
    if let Some(r) = w.room_by_id_or_name(key) {
        return Some(r.id.clone());
    }
    let (a, b) = key.split_once(',')?;
    let a = w.user_by_username(a.trim().trim_start_matches('@'))?;
    let b = w.user_by_username(b.trim().trim_start_matches('@'))?;
    let rid = world::dm_id(&[a.id.clone(), b.id.clone()]);
    w.room(&rid).map(|r| r.id.clone())
}

/// Accepts connections until cancelled; each connection dies with the token too.
async fn accept_loop(listener: TcpListener, app: axum::Router, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        // Like Node.js servers (`noDelay` is on by default): small DDP frames written back to
        // back (`updated`, then `result`) must not wait for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}
