//! One DDP connection ("link") to the server: opening it (REST session, WebSocket,
//! handshake, login), then a loop that reads frames, writes queued frames and keeps the link
//! alive, until the link fails or the connector shuts down.
//!
//! Other tasks talk to the live link through [`Link`]: method calls (typing) and
//! subscriptions register a one-shot answer under their id before the frame is written, and
//! the loop resolves it when the `result`/`ready`/`nosub` frame arrives. When the link ends,
//! every waiting call fails at once ("connection lost").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::ddp::{self, Frame};
use crate::rest::{RestError, Session};

/// The WebSocket of a link.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a link could not be opened or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The REST side failed (login, unreachable server).
    #[error(transparent)]
    Rest(#[from] RestError),
    /// The WebSocket could not be opened or failed.
    #[error("WebSocket: {0}")]
    Socket(String),
    /// The DDP handshake failed.
    #[error("DDP handshake failed: {0}")]
    Handshake(String),
    /// The server refused the DDP login.
    #[error("DDP login refused: {0}")]
    LoginRefused(String),
    /// The server did not answer in time.
    #[error("timed out waiting for {0}")]
    TimedOut(&'static str),
    /// The server closed the link.
    #[error("connection closed by the server")]
    Closed,
    /// The server stopped answering keepalive pings.
    #[error("no frame from the server for {0:?} (keepalive)")]
    Silent(Duration),
    /// The link was dropped on purpose (e.g. a subscription never confirmed).
    #[error("link reset: {0}")]
    Reset(String),
}

/// Why a method call or subscription on the link failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// There is no link right now.
    #[error("not connected")]
    NotConnected,
    /// The link ended before the answer came.
    #[error("connection lost before the server answered")]
    Lost,
    /// No answer in time.
    #[error("no answer in time")]
    TimedOut,
    /// The server said no.
    #[error("refused by the server: {0}")]
    Refused(String),
}

enum Outgoing {
    Frame(String),
    Reset(String),
}

type Waiters<T> = Mutex<HashMap<String, oneshot::Sender<T>>>;

/// The handle other tasks use to talk over the current link.
pub(crate) struct Link {
    /// Counts links over the connector's life (subscriptions belong to one link).
    pub(crate) generation: u64,
    out: mpsc::UnboundedSender<Outgoing>,
    methods: Waiters<Result<Value, String>>,
    subs: Waiters<Result<(), String>>,
    prefix: u32,
    ids: AtomicU64,
}

impl Link {
    fn new(generation: u64) -> (Arc<Link>, mpsc::UnboundedReceiver<Outgoing>) {
        let (out, rx) = mpsc::unbounded_channel();
        let link = Link {
            generation,
            out,
            methods: Mutex::new(HashMap::new()),
            subs: Mutex::new(HashMap::new()),
            prefix: rand::random(),
            ids: AtomicU64::new(1),
        };
        (Arc::new(link), rx)
    }

    /// A fresh id for a method call or subscription on this link.
    fn next_id(&self) -> String {
        format!(
            "{:08x}{:04x}",
            self.prefix,
            self.ids.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Calls a DDP method; `frame` builds the frame from the call id.
    pub(crate) async fn call(
        &self,
        frame: impl FnOnce(&str) -> String,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.methods).insert(id.clone(), tx);
        if self.out.send(Outgoing::Frame(frame(&id))).is_err() {
            lock(&self.methods).remove(&id);
            return Err(CallError::Lost);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(reason))) => Err(CallError::Refused(reason)),
            Ok(Err(_)) => Err(CallError::Lost),
            Err(_) => {
                lock(&self.methods).remove(&id);
                Err(CallError::TimedOut)
            }
        }
    }

    /// Subscribes to a room's messages and waits for `ready`; the subscription's id.
    pub(crate) async fn subscribe(
        &self,
        room_id: &str,
        timeout: Duration,
    ) -> Result<String, CallError> {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.subs).insert(id.clone(), tx);
        if self
            .out
            .send(Outgoing::Frame(ddp::sub_room_messages(&id, room_id)))
            .is_err()
        {
            lock(&self.subs).remove(&id);
            return Err(CallError::Lost);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => Ok(id),
            Ok(Ok(Err(reason))) => Err(CallError::Refused(reason)),
            Ok(Err(_)) => Err(CallError::Lost),
            Err(_) => {
                lock(&self.subs).remove(&id);
                Err(CallError::TimedOut)
            }
        }
    }

    /// Ends a subscription (fire and forget).
    pub(crate) fn unsubscribe(&self, sub_id: &str) {
        let _ = self.out.send(Outgoing::Frame(ddp::unsub(sub_id)));
    }

    /// Asks the loop to drop the connection (the supervisor then reconnects).
    pub(crate) fn reset(&self, why: &str) {
        let _ = self.out.send(Outgoing::Reset(why.to_string()));
    }

    /// Fails every waiting call (the link is gone).
    fn fail_all(&self) {
        lock(&self.methods).clear();
        lock(&self.subs).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where to open the link and how long each step may take.
pub(crate) struct OpenParams<'a> {
    pub(crate) ws_url: &'a str,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
    pub(crate) connect_timeout: Duration,
    pub(crate) method_timeout: Duration,
}

/// Opens the WebSocket, does the DDP handshake and logs in: with the REST session's token as
/// a resume token first, then with the password digest. Returns the socket and whether the
/// resume token was refused (the REST session is then stale too).
pub(crate) async fn open(
    params: &OpenParams<'_>,
    session: &Session,
) -> Result<(Socket, bool), LinkError> {
    let connector = tokio_tungstenite::Connector::Rustls(params.tls.clone());
    // Buffers sized for DDP's small frames (bigger frames still arrive whole): the library's
    // defaults of 128 KiB each stay resident for the daemon's lifetime.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(16 * 1024);
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        params.ws_url,
        Some(config),
        true,
        Some(connector),
    );
    let (mut socket, _) = tokio::time::timeout(params.connect_timeout, connecting)
        .await
        .map_err(|_| LinkError::TimedOut("the WebSocket to open"))?
        .map_err(|e| LinkError::Socket(e.to_string()))?;
    handshake(&mut socket, params.method_timeout).await?;
    let resume_id = "login-resume";
    let outcome = login(
        &mut socket,
        resume_id,
        ddp::login_resume(resume_id, &session.token),
        params.method_timeout,
    )
    .await?;
    if outcome.is_ok() {
        return Ok((socket, false));
    }
    if let Err(reason) = outcome {
        debug!(%reason, "DDP resume login refused; logging in with the password digest");
    }
    let digest_id = "login-digest";
    let outcome = login(
        &mut socket,
        digest_id,
        ddp::login_digest(digest_id, params.username, params.password),
        params.method_timeout,
    )
    .await?;
    match outcome {
        Ok(()) => Ok((socket, true)),
        Err(reason) => {
            let _ = socket.close(None).await;
            Err(LinkError::LoginRefused(reason))
        }
    }
}

/// Sends `connect` and waits for `connected` (skipping Meteor's `server_id` greeting).
async fn handshake(socket: &mut Socket, limit: Duration) -> Result<(), LinkError> {
    send(socket, ddp::connect()).await?;
    let deadline = Instant::now() + limit;
    loop {
        match next_frame(socket, deadline, "the DDP handshake").await? {
            Ok(Frame::Connected { session }) => {
                debug!(session = session.as_deref().unwrap_or("?"), "DDP connected");
                return Ok(());
            }
            Ok(Frame::Failed { version }) => {
                return Err(LinkError::Handshake(format!(
                    "server refused DDP version 1 (offers {})",
                    version.as_deref().unwrap_or("nothing")
                )))
            }
            Ok(Frame::Ping { id }) => send(socket, ddp::pong(id.as_deref())).await?,
            Ok(other) => trace!(?other, "frame before the handshake ended"),
            Err(e) => debug!(error = %e, "unreadable frame during the handshake"),
        }
    }
}

/// Sends a login frame and waits for its result: `Ok(Err(reason))` when refused.
async fn login(
    socket: &mut Socket,
    id: &str,
    frame: String,
    limit: Duration,
) -> Result<Result<(), String>, LinkError> {
    send(socket, frame).await?;
    let deadline = Instant::now() + limit;
    loop {
        match next_frame(socket, deadline, "the DDP login").await? {
            Ok(Frame::MethodResult { id: rid, outcome }) if rid == id => {
                return Ok(outcome.map(|_| ()));
            }
            Ok(Frame::Ping { id }) => send(socket, ddp::pong(id.as_deref())).await?,
            Ok(_) => {}
            Err(e) => debug!(error = %e, "unreadable frame during login"),
        }
    }
}

async fn send(socket: &mut Socket, text: String) -> Result<(), LinkError> {
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|e| LinkError::Socket(e.to_string()))
}

/// The next text frame, parsed, before `deadline`.
async fn next_frame(
    socket: &mut Socket,
    deadline: Instant,
    what: &'static str,
) -> Result<Result<Frame, ddp::FrameError>, LinkError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .map_err(|_| LinkError::TimedOut(what))?;
        match message {
            None => return Err(LinkError::Closed),
            Some(Err(e)) => return Err(LinkError::Socket(e.to_string())),
            Some(Ok(Message::Text(text))) => return Ok(ddp::parse_frame(text.as_str())),
            Some(Ok(Message::Close(_))) => return Err(LinkError::Closed),
            Some(Ok(_)) => continue,
        }
    }
}

/// What the loop hands to the connector.
pub(crate) trait FrameSink: Send + Sync {
    /// A message of a subscribed room arrived.
    fn room_message(&self, room_id: Option<String>, doc: Value);
    /// The server ended an active subscription.
    fn subscription_ended(&self, sub_id: &str, error: Option<String>);
}

/// Creates the handle of a new link; [`run`] drives it.
pub(crate) fn new_link(generation: u64) -> (Arc<Link>, LinkDriver) {
    let (link, rx) = Link::new(generation);
    (link, LinkDriver { rx })
}

/// The receiving end of a link's outgoing queue, consumed by [`run`].
pub(crate) struct LinkDriver {
    rx: mpsc::UnboundedReceiver<Outgoing>,
}

/// Runs the link until it fails or `cancel` fires; returns why it ended.
pub(crate) async fn run(
    socket: Socket,
    link: Arc<Link>,
    driver: LinkDriver,
    sink: &dyn FrameSink,
    keepalive: Duration,
    cancel: CancellationToken,
) -> LinkError {
    let result = drive(socket, &link, driver, sink, keepalive, cancel).await;
    link.fail_all();
    result
}

async fn drive(
    socket: Socket,
    link: &Link,
    mut driver: LinkDriver,
    sink: &dyn FrameSink,
    keepalive: Duration,
    cancel: CancellationToken,
) -> LinkError {
    let (mut writer, mut reader) = socket.split();
    let keepalive = keepalive.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let mut last_heard = Instant::now();
    let silence_limit = keepalive * 2 + Duration::from_secs(1).min(keepalive);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = writer.send(Message::Close(None)).await;
                return LinkError::Reset("connector stopped".into());
            }
            incoming = reader.next() => {
                match incoming {
                    None => return LinkError::Closed,
                    Some(Err(e)) => return LinkError::Socket(e.to_string()),
                    Some(Ok(Message::Close(_))) => return LinkError::Closed,
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        if let Some(reply) = dispatch(text.as_str(), link, sink) {
                            if let Err(e) = writer.send(Message::Text(reply.into())).await {
                                return LinkError::Socket(e.to_string());
                            }
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        last_heard = Instant::now();
                        // The pong is queued by tungstenite; flushing sends it.
                        if let Err(e) = writer.flush().await {
                            return LinkError::Socket(e.to_string());
                        }
                    }
                    Some(Ok(_)) => last_heard = Instant::now(),
                }
            }
            outgoing = driver.rx.recv() => {
                match outgoing {
                    Some(Outgoing::Frame(text)) => {
                        if let Err(e) = writer.send(Message::Text(text.into())).await {
                            return LinkError::Socket(e.to_string());
                        }
                    }
                    Some(Outgoing::Reset(why)) => {
                        let _ = writer.send(Message::Close(None)).await;
                        return LinkError::Reset(why);
                    }
                    None => return LinkError::Reset("link handle dropped".into()),
                }
            }
            _ = ticker.tick() => {
                let silent = last_heard.elapsed();
                if silent > silence_limit {
                    return LinkError::Silent(silent);
                }
                let id = link.next_id();
                if let Err(e) = writer.send(Message::Text(ddp::ping(&id).into())).await {
                    return LinkError::Socket(e.to_string());
                }
            }
        }
    }
}

/// Acts on one received frame; returns a frame to send back (a pong), if any.
fn dispatch(text: &str, link: &Link, sink: &dyn FrameSink) -> Option<String> {
    let frame = match ddp::parse_frame(text) {
        Ok(frame) => frame,
        Err(e) => {
            debug!(error = %e, "ignoring an unreadable DDP frame");
            return None;
        }
    };
    match frame {
        Frame::Ping { id } => return Some(ddp::pong(id.as_deref())),
        Frame::MethodResult { id, outcome } => {
            if let Some(waiter) = lock(&link.methods).remove(&id) {
                let _ = waiter.send(outcome);
            }
        }
        Frame::Ready { subs } => {
            for id in subs {
                if let Some(waiter) = lock(&link.subs).remove(&id) {
                    let _ = waiter.send(Ok(()));
                }
            }
        }
        Frame::NoSub { id, error } => {
            let waiter = lock(&link.subs).remove(&id);
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(Err(
                        error.unwrap_or_else(|| "subscription rejected".to_string())
                    ));
                }
                None => sink.subscription_ended(&id, error),
            }
        }
        Frame::RoomMessage { room_id, doc } => sink.room_message(room_id, doc),
        Frame::Pong | Frame::ServerId | Frame::Connected { .. } => {}
        Frame::Failed { version } => warn!(?version, "unexpected DDP `failed` frame"),
        Frame::Other(kind) => trace!(%kind, "ignoring DDP frame"),
    }
    None
}
