//! Watchers whose connector could not reach its server at start: the start is degraded, they
//! are listed as waiting, and they start (and answer) once the connector says it is connected.
//! Also: a failing room lookup of another kind is not retried, a shutdown stops the waiting.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acg_core::gateway::{start_when_connected, ConnectorSetup, Gateway, WaitingRetry};
use acg_core::ports::{Connector, Delivery, InboundHandler};
use acg_core::types::*;
use async_trait::async_trait;
use common::*;
use tokio_util::sync::CancellationToken;

/// A connector whose server is down until `bring_up`: room lookups say "not connected" and
/// the link state is `Reconnecting` meanwhile.
struct FlakyServer {
    up: AtomicBool,
    lookups: AtomicUsize,
    inbound: Mutex<Option<Arc<dyn InboundHandler>>>,
    sent: Mutex<Vec<(String, String)>>,
}

impl FlakyServer {
    fn new() -> Arc<Self> {
        Arc::new(FlakyServer {
            up: AtomicBool::new(false),
            lookups: AtomicUsize::new(0),
            inbound: Mutex::new(None),
            sent: Mutex::new(Vec::new()),
        })
    }

    fn bring_up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    fn texts(&self, room: &str) -> Vec<String> {
        let id = FakeConnector::room(room).id;
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| *r == id)
            .map(|(_, t)| t.clone())
            .collect()
    }

    async fn post(&self, m: IncomingMessage) -> Delivery {
        let inbound = self.inbound.lock().unwrap().clone().unwrap();
        inbound.deliver(m).await
    }
}

#[async_trait]
impl Connector for FlakyServer {
    fn name(&self) -> &str {
        "flaky"
    }
    fn platform(&self) -> &str {
        "Fake"
    }
    async fn connect(&self, inbound: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
        *self.inbound.lock().unwrap() = Some(inbound);
        Ok(())
    }
    async fn disconnect(&self) {}
    async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if room.starts_with("missing") {
            return Err(ConnectorError::RoomNotFound(room.into()));
        }
        if !self.up.load(Ordering::SeqCst) {
            return Err(ConnectorError::NotConnected("connection refused".into()));
        }
        Ok(FakeConnector::room(room))
    }
    async fn subscribe(&self, _: &Room, _: Option<i64>) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn unsubscribe(&self, _: &Room) {}
    async fn send(&self, room: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError> {
        self.sent.lock().unwrap().push((room.id.clone(), msg.text));
        Ok(())
    }
    fn connection_state(&self) -> ConnectionState {
        if self.up.load(Ordering::SeqCst) {
            ConnectionState::Connected
        } else {
            ConnectionState::Reconnecting {
                since_ms: 1,
                last_error: Some("connection refused".into()),
            }
        }
    }
}

#[tokio::test]
async fn watchers_wait_for_a_down_server_and_start_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let server = FlakyServer::new();
    let (gw, report) = Gateway::start(
        options(dir.path()),
        vec![backend.as_setup("a")],
        vec![ConnectorSetup {
            connector: server.clone(),
            connector_type: "fake".into(),
            watchers: vec![
                spec("w-general", "flaky", "general", "a", dir.path()),
                spec("w-missing", "flaky", "missing-room", "a", dir.path()),
            ],
        }],
    )
    .await;
    // Degraded, with the reasons.
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("'flaky' (fake) is not connected yet (connection refused)")),
        "{report:?}"
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("'w-general' is waiting for connector 'flaky'")),
        "{report:?}"
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("'w-missing' failed to start")),
        "{report:?}"
    );
    let list = gw.list(None).unwrap();
    assert!(list[0].waiting && !list[0].active, "{list:?}");
    assert!(!list[1].waiting && !list[1].active, "{list:?}");

    // Nothing is tried while the server is down (no busy loop of lookups).
    let lookups = server.lookups.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(server.lookups.load(Ordering::SeqCst), lookups);

    server.bring_up();
    wait_until("the waiting watcher started", || {
        gw.list(None).unwrap()[0].active
    })
    .await;
    let list = gw.list(None).unwrap();
    assert!(!list[0].waiting, "{list:?}");
    assert!(!list[1].active && !list[1].waiting, "not retried: {list:?}");

    assert_eq!(
        server.post(msg("general", "m1", "hello", 10)).await,
        Delivery::Accepted
    );
    wait_until("answered", || !server.texts("general").is_empty()).await;
    assert_eq!(server.texts("general"), vec!["echo: hello".to_string()]);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_waiting_ends_with_the_cancel_token() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let server = FlakyServer::new();
    let (gw, _) = Gateway::start(
        options(dir.path()),
        vec![backend.as_setup("a")],
        vec![ConnectorSetup {
            connector: server.clone(),
            connector_type: "fake".into(),
            watchers: vec![spec("w", "flaky", "general", "a", dir.path())],
        }],
    )
    .await;
    assert!(gw.list(None).unwrap()[0].waiting);
    gw.shutdown().await;
    // After shutdown nothing starts, even when the server comes back.
    server.bring_up();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let info = &gw.list(None).unwrap()[0];
    assert!(!info.active, "{info:?}");
}

#[tokio::test]
async fn a_retry_that_still_fails_backs_off() {
    // A connector that claims to be connected while lookups keep failing: retries are
    // spaced by the doubling delay (1 s, 2 s, …), not by the 500 ms poll.
    struct Liar(FlakyServer);
    #[async_trait]
    impl Connector for Liar {
        fn name(&self) -> &str {
            "liar"
        }
        fn platform(&self) -> &str {
            "Fake"
        }
        async fn connect(&self, i: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
            self.0.connect(i).await
        }
        async fn disconnect(&self) {}
        async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
            self.0.resolve_room(room).await
        }
        async fn subscribe(&self, _: &Room, _: Option<i64>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn unsubscribe(&self, _: &Room) {}
        async fn send(&self, _: &Room, _: OutgoingMessage) -> Result<(), ConnectorError> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let liar = Arc::new(Liar(Arc::into_inner(FlakyServer::new()).unwrap()));
    let (gw, _) = Gateway::start(
        options(dir.path()),
        vec![backend.as_setup("a")],
        vec![ConnectorSetup {
            connector: liar.clone(),
            connector_type: "fake".into(),
            watchers: vec![spec("w", "liar", "general", "a", dir.path())],
        }],
    )
    .await;
    assert!(gw.list(None).unwrap()[0].waiting);
    let at_start = liar.0.lookups.load(Ordering::SeqCst);
    wait_until("a first retry", || {
        liar.0.lookups.load(Ordering::SeqCst) > at_start
    })
    .await;
    let first = liar.0.lookups.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Without backoff there would be 6 more; with it (1 s, then 2 s) at most 2.
    let more = liar.0.lookups.load(Ordering::SeqCst) - first;
    assert!(more <= 2, "{more} retries within 3 s");
    assert!(gw.list(None).unwrap()[0].waiting);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_watcher_paused_while_waiting_stops_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let server = FlakyServer::new();
    let (gw, _) = Gateway::start(
        options(dir.path()),
        vec![backend.as_setup("a")],
        vec![ConnectorSetup {
            connector: server.clone(),
            connector_type: "fake".into(),
            watchers: vec![spec("w", "flaky", "general", "a", dir.path())],
        }],
    )
    .await;
    assert!(gw.list(None).unwrap()[0].waiting);
    gw.pause("w", None).await.unwrap();
    server.bring_up();
    wait_until("the paused watcher no longer waits", || {
        !gw.list(None).unwrap()[0].waiting
    })
    .await;
    let info = &gw.list(None).unwrap()[0];
    assert!(info.paused && !info.active, "{info:?}");
    // resume starts it as usual.
    gw.resume("w", None).await.unwrap();
    assert!(gw.list(None).unwrap()[0].active);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_retry_loop_ends_when_nobody_waits() {
    let server = FlakyServer::new();
    let finished = tokio::time::timeout(
        Duration::from_secs(30),
        start_when_connected(
            server,
            Vec::new(),
            WaitingRetry::default(),
            CancellationToken::new(),
        ),
    )
    .await;
    assert!(finished.is_ok());
}
