//! One long-lived `GET /event` subscription per server start (and directory), shared by every
//! turn: [`EventHub`].
//!
//! Opening the stream and waiting for its `server.connected` greeting costs a round trip per
//! turn (measured 12–36 ms). The hub opens it once, and a reader task parses each event once
//! and hands it to every turn subscribed at that moment; each turn's
//! [`TurnTracker`](crate::turn::TurnTracker) keeps the events of its own session family (so
//! the stream is demultiplexed by session id where it is consumed). A turn subscribes *before*
//! it posts its prompt, so none of its events can be missed.
//!
//! When the stream ends (the server exited or the connection broke) every subscribed turn
//! gets the reason, and the next subscription opens a new stream. A feed belongs to one server
//! start: a restarted server (a new password, maybe the same port) gets a new feed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::http::{HttpError, HttpReply, ServerClient, StreamEnd};

/// Why a subscription could not be made.
#[derive(Debug)]
pub enum SubscribeError {
    /// The server answered the `GET` with something other than 200.
    Refused(HttpReply),
    /// No stream: a transport error, or no greeting in time.
    Failed(String),
}

impl From<HttpError> for SubscribeError {
    fn from(e: HttpError) -> Self {
        SubscribeError::Failed(e.to_string())
    }
}

/// The subscribers of one feed, and how it ended (under one lock, so a turn can never
/// subscribe to a feed that has just ended without hearing it).
#[derive(Default)]
struct FeedState {
    subscribers: Vec<mpsc::UnboundedSender<Arc<Value>>>,
    ended: Option<StreamEnd>,
}

struct Feed {
    client: ServerClient,
    state: Arc<Mutex<FeedState>>,
    reader: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A turn's view of the shared stream: every event from the moment it subscribed.
#[derive(Debug)]
pub struct Subscription {
    events: mpsc::UnboundedReceiver<Arc<Value>>,
    state: Arc<Mutex<FeedState>>,
}

impl std::fmt::Debug for FeedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedState")
            .field("subscribers", &self.subscribers.len())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Subscription {
    /// The next event (parsed JSON); an error once the stream has ended.
    pub async fn next(&mut self) -> Result<Arc<Value>, StreamEnd> {
        match self.events.recv().await {
            Some(event) => Ok(event),
            None => Err(lock(&self.state).ended.clone().unwrap_or(StreamEnd::Closed)),
        }
    }
}

/// The shared event streams of one backend, by path (`/event` plus an optional
/// `?directory=` query).
#[derive(Default)]
pub struct EventHub {
    feeds: tokio::sync::Mutex<HashMap<String, Feed>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    /// Subscribes to `path` on `client`'s server: joins the live feed, or opens one (the
    /// request and its `server.connected` greeting within `timeout`).
    pub async fn subscribe(
        &self,
        client: &ServerClient,
        path: &str,
        timeout: Duration,
    ) -> Result<Subscription, SubscribeError> {
        let mut feeds = self.feeds.lock().await;
        if let Some(feed) = feeds.get(path).filter(|f| f.client.same_server(client)) {
            if let Some(subscription) = join(&feed.state) {
                return Ok(subscription);
            }
        }
        if let Some(old) = feeds.remove(path) {
            old.reader.abort();
        }
        let feed = open(client, path, timeout).await?;
        let subscription = join(&feed.state).ok_or_else(|| {
            SubscribeError::Failed("the opencode event stream ended at once".to_owned())
        })?;
        feeds.insert(path.to_owned(), feed);
        Ok(subscription)
    }

    /// How many feeds are open (for tests).
    pub async fn open_feeds(&self) -> usize {
        self.feeds
            .lock()
            .await
            .values()
            .filter(|f| lock(&f.state).ended.is_none())
            .count()
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        for feed in self.feeds.get_mut().values() {
            feed.reader.abort();
        }
    }
}

/// A new subscriber of a feed that has not ended.
fn join(state: &Arc<Mutex<FeedState>>) -> Option<Subscription> {
    let mut guard = lock(state);
    if guard.ended.is_some() {
        return None;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    guard.subscribers.push(tx);
    Some(Subscription {
        events: rx,
        state: Arc::clone(state),
    })
}

/// Opens the stream, waits for its greeting, and starts the reader that fans events out.
async fn open(
    client: &ServerClient,
    path: &str,
    timeout: Duration,
) -> Result<Feed, SubscribeError> {
    let mut stream = match client.events(path, timeout).await? {
        Ok(stream) => stream,
        Err(reply) => return Err(SubscribeError::Refused(reply)),
    };
    let greeting = async {
        loop {
            let event = stream.next().await?;
            if parse(&event.data)
                .is_some_and(|e| e.get("type").and_then(Value::as_str) == Some("server.connected"))
            {
                return Ok::<(), StreamEnd>(());
            }
        }
    };
    match tokio::time::timeout(timeout, greeting).await {
        Ok(Ok(())) => {}
        Ok(Err(end)) => return Err(SubscribeError::Failed(end.to_string())),
        Err(_) => {
            return Err(SubscribeError::Failed(
                "the opencode event stream sent no greeting".to_owned(),
            ))
        }
    }
    let state = Arc::new(Mutex::new(FeedState::default()));
    let shared = Arc::clone(&state);
    let reader = tokio::spawn(async move {
        let end = loop {
            match stream.next().await {
                Ok(event) => {
                    let Some(value) = parse(&event.data) else {
                        tracing::debug!(data = %event.data, "skipping an event that is not JSON");
                        continue;
                    };
                    let value = Arc::new(value);
                    // Turns that finished dropped their receivers: forget them.
                    lock(&shared)
                        .subscribers
                        .retain(|tx| tx.send(Arc::clone(&value)).is_ok());
                }
                Err(end) => break end,
            }
        };
        tracing::debug!("opencode event stream ended: {end}");
        let mut guard = lock(&shared);
        guard.ended = Some(end);
        // Dropping the senders ends every subscription.
        guard.subscribers.clear();
    });
    Ok(Feed {
        client: client.clone(),
        state,
        reader,
    })
}

fn parse(data: &str) -> Option<Value> {
    serde_json::from_str(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A stand-in server: every `GET` gets an event stream that greets, then sends whatever
    /// the test pushes into `lines`; counts the connections.
    async fn serve() -> (
        String,
        Arc<std::sync::atomic::AtomicUsize>,
        tokio::sync::broadcast::Sender<Option<String>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (lines, _) = tokio::sync::broadcast::channel::<Option<String>>(64);
        let counted = Arc::clone(&connections);
        let feed = lines.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut rx = feed.subscribe();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                    let chunk = |data: &str| {
                        let body = format!("data: {data}\n\n");
                        format!("{:x}\r\n{body}\r\n", body.len())
                    };
                    let greeting = chunk(r#"{"type":"server.connected","properties":{}}"#);
                    if socket
                        .write_all(format!("{head}{greeting}").as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    while let Ok(line) = rx.recv().await {
                        let Some(line) = line else {
                            // End of the stream: close the connection.
                            let _ = socket.write_all(b"0\r\n\r\n").await;
                            return;
                        };
                        if socket.write_all(chunk(&line).as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, connections, lines)
    }

    #[tokio::test]
    async fn turns_share_one_stream_and_each_sees_events_from_when_it_joined() {
        let (url, connections, lines) = serve().await;
        let client = ServerClient::new(&url, "pw");
        let hub = EventHub::default();
        let timeout = Duration::from_secs(30);
        let mut first = hub.subscribe(&client, "/event", timeout).await.unwrap();
        lines.send(Some(r#"{"type":"a"}"#.into())).unwrap();
        assert_eq!(first.next().await.unwrap()["type"], "a");
        let mut second = hub.subscribe(&client, "/event", timeout).await.unwrap();
        lines.send(Some("not json".into())).unwrap();
        lines.send(Some(r#"{"type":"b"}"#.into())).unwrap();
        assert_eq!(first.next().await.unwrap()["type"], "b");
        assert_eq!(second.next().await.unwrap()["type"], "b");
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(hub.open_feeds().await, 1);

        // Another directory is another stream.
        let _other = hub
            .subscribe(&client, "/event?directory=%2Fx", timeout)
            .await
            .unwrap();
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);

        // A dropped subscription is forgotten; the others keep going.
        drop(first);
        lines.send(Some(r#"{"type":"c"}"#.into())).unwrap();
        assert_eq!(second.next().await.unwrap()["type"], "c");

        // The end reaches every subscriber, and the next subscription opens a new stream.
        lines.send(None).unwrap();
        assert!(matches!(second.next().await, Err(StreamEnd::Closed)));
        let deadline = tokio::time::Instant::now() + timeout;
        while hub.open_feeds().await > 0 {
            assert!(tokio::time::Instant::now() < deadline, "feeds never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut third = hub.subscribe(&client, "/event", timeout).await.unwrap();
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3);
        lines.send(Some(r#"{"type":"d"}"#.into())).unwrap();
        assert_eq!(third.next().await.unwrap()["type"], "d");

        // A new server start (another password) never joins the old feed.
        let restarted = ServerClient::new(&url, "new-pw");
        hub.subscribe(&restarted, "/event", timeout).await.unwrap();
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_refused_or_dead_server_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\nno")
                    .await;
            }
        });
        let hub = EventHub::default();
        let refused = hub
            .subscribe(
                &ServerClient::new(&url, "pw"),
                "/event",
                Duration::from_secs(30),
            )
            .await;
        assert!(matches!(refused, Err(SubscribeError::Refused(r)) if r.status == 401));
        let dead = hub
            .subscribe(
                &ServerClient::new("http://127.0.0.1:9", "pw"),
                "/event",
                Duration::from_secs(30),
            )
            .await;
        assert!(matches!(dead, Err(SubscribeError::Failed(_))));
    }
}
