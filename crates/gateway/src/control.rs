//! The control socket `<runtime>/control.sock` (digest §8.3): one JSON request line in, one
//! JSON response line out, per connection. The server side runs in the daemon and drives the
//! [`ControlTarget`] (the running `Gateway`); the client side is the blocking [`call`] the CLI
//! uses, so CLI commands need no async runtime.
//!
//! Requests: `list` (plus our `connectors` field: each connector's link state), `pause`,
//! `resume`, `reset`, `send` (reference wire format and error texts), plus our `inject` (a message into a watcher, as if a user had posted it) and
//! `status` (pid, uptime, connectors with their link state, watcher count, permission
//! requests waiting for an owner). `list` and `status` also carry our `agents` field: every
//! configured agent with its state (`ready` / `failed` / `unavailable`), a one-line health
//! (an OpenCode sidecar running, restarting or given up on, with its last error) and, for
//! OpenCode, the sidecar's state as an object.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acg_core::approval::PermissionRequest;
use acg_core::gateway::{ConnectorInfo, Gateway, GatewayError, Injection};
use acg_core::watcher::WatcherInfo;
use acg_core::Role;

use crate::agents::AgentStatus;
use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long the server waits for a client's request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest request line accepted.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// How long the CLI waits for most answers.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the CLI waits for `reset` (it restarts a watcher).
pub const RESET_TIMEOUT: Duration = Duration::from_secs(300);

/// What the control socket can ask of the daemon. Implemented by the core `Gateway`; tests
/// use small stand-ins.
#[async_trait]
pub trait ControlTarget: Send + Sync + 'static {
    /// Watchers of one connector, or of all.
    fn list(&self, connector: Option<&str>) -> Result<Vec<WatcherInfo>, GatewayError>;
    /// Every connector with its link state.
    fn connectors(&self) -> Vec<ConnectorInfo>;
    /// Pauses a watcher.
    async fn pause(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError>;
    /// Resumes a watcher.
    async fn resume(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError>;
    /// Starts a fresh session for a watcher.
    async fn reset(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError>;
    /// Posts to a room directly.
    async fn send(
        &self,
        room: &str,
        text: Option<String>,
        attachment: Option<PathBuf>,
        connector: Option<&str>,
    ) -> Result<(), GatewayError>;
    /// Delivers a message to a watcher as if a user had posted it.
    async fn inject(&self, injection: Injection) -> Result<(), GatewayError>;
    /// Permission requests waiting for an owner, oldest first.
    fn pending_approvals(&self) -> Vec<PermissionRequest> {
        Vec::new()
    }
    /// Every configured agent with its state (e.g. an OpenCode sidecar's), in config order.
    fn agents(&self) -> Vec<AgentStatus> {
        Vec::new()
    }
}

#[async_trait]
impl ControlTarget for Gateway {
    fn list(&self, connector: Option<&str>) -> Result<Vec<WatcherInfo>, GatewayError> {
        Gateway::list(self, connector)
    }
    fn connectors(&self) -> Vec<ConnectorInfo> {
        Gateway::connectors(self)
    }
    async fn pause(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        Gateway::pause(self, watcher, connector).await
    }
    async fn resume(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        Gateway::resume(self, watcher, connector).await
    }
    async fn reset(&self, watcher: &str, connector: Option<&str>) -> Result<(), GatewayError> {
        Gateway::reset(self, watcher, connector).await
    }
    async fn send(
        &self,
        room: &str,
        text: Option<String>,
        attachment: Option<PathBuf>,
        connector: Option<&str>,
    ) -> Result<(), GatewayError> {
        Gateway::send(self, room, text, attachment, connector).await
    }
    async fn inject(&self, injection: Injection) -> Result<(), GatewayError> {
        Gateway::inject(self, injection).await
    }
    fn pending_approvals(&self) -> Vec<PermissionRequest> {
        self.approvals().pending()
    }
}

/// Facts about the daemon process that `status` reports.
#[derive(Debug, Clone, Copy)]
pub struct DaemonFacts {
    /// The daemon's pid.
    pub pid: u32,
    /// When it started.
    pub started: SystemTime,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Something already answers on the socket.
    #[error("Another gateway instance is already running (control socket {0} answers)")]
    InUse(PathBuf),
    /// The socket could not be created.
    #[error("cannot create control socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The running control socket server.
pub struct ControlServer {
    path: PathBuf,
    stop: CancellationToken,
    accept_loop: tokio::task::JoinHandle<()>,
    connections: TaskTracker,
}

impl ControlServer {
    /// Binds `path` (mode 0600), replacing a stale socket file, and starts serving.
    pub async fn bind(
        path: &Path,
        target: Arc<dyn ControlTarget>,
        facts: DaemonFacts,
    ) -> Result<ControlServer, BindError> {
        let io_err = |source| BindError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            let probe = tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(path));
            if let Ok(Ok(_)) = probe.await {
                return Err(BindError::InUse(path.to_path_buf()));
            }
            tracing::info!(socket = %path.display(), "removing stale control socket");
            std::fs::remove_file(path).map_err(io_err)?;
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        crate::runtime::set_owner_only(path).map_err(io_err)?;

        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            target,
            facts,
            stop.clone(),
            connections.clone(),
        ));
        Ok(ControlServer {
            path: path.to_path_buf(),
            stop,
            accept_loop,
            connections,
        })
    }

    /// Stops accepting, gives requests in progress `grace` to answer, and removes the socket
    /// file.
    pub async fn close(self, grace: Duration) {
        self.stop.cancel();
        let _ = self.accept_loop.await;
        self.connections.close();
        if tokio::time::timeout(grace, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("control requests still running at shutdown were abandoned");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn accept_loop(
    listener: UnixListener,
    target: Arc<dyn ControlTarget>,
    facts: DaemonFacts,
    stop: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let target = Arc::clone(&target);
                let stop = stop.clone();
                connections.spawn(async move {
                    serve_connection(stream, target.as_ref(), facts, &stop).await;
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request and answers it. A client still silent at shutdown is dropped; a command
/// already running is allowed to finish (within the server's close grace).
async fn serve_connection(
    stream: UnixStream,
    target: &dyn ControlTarget,
    facts: DaemonFacts,
    stop: &CancellationToken,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = TokioBufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut line = String::new();
    let read = tokio::select! {
        _ = stop.cancelled() => return,
        read = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)) => read,
    };
    let response = match read {
        Err(_) => {
            tracing::debug!("control client sent nothing in time");
            return;
        }
        Ok(Err(err)) => error_response(format!("cannot read request: {err}")),
        Ok(Ok(0)) => return,
        Ok(Ok(_)) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST_BYTES => {
            error_response(format!("request longer than {MAX_REQUEST_BYTES} bytes"))
        }
        Ok(Ok(_)) => handle_request(target, facts, &line).await,
    };
    let mut bytes = response.to_string().into_bytes();
    bytes.push(b'\n');
    // A client that stops reading must not pin this task forever.
    match tokio::time::timeout(READ_TIMEOUT, write.write_all(&bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::debug!(error = %err, "control client went away before the answer"),
        Err(_) => tracing::debug!("control client did not read its answer in time"),
    }
    let _ = write.shutdown().await;
}

fn error_response(error: impl Into<String>) -> Value {
    json!({"ok": false, "error": error.into()})
}

fn done(result: Result<(), GatewayError>) -> Value {
    match result {
        Ok(()) => json!({"ok": true}),
        Err(err) => error_response(err.0),
    }
}

/// Answers one request line: the whole protocol, without the transport.
pub async fn handle_request(target: &dyn ControlTarget, facts: DaemonFacts, line: &str) -> Value {
    let request: Value = match serde_json::from_str(line.trim()) {
        Ok(value) => value,
        Err(err) => return error_response(format!("Invalid request (not JSON): {err}")),
    };
    let Some(request) = request.as_object() else {
        return error_response("Invalid request: expected a JSON object");
    };
    let cmd = match request.get("cmd") {
        Some(Value::String(cmd)) => cmd.as_str(),
        Some(other) => return error_response(format!("Unknown command: {other}")),
        None => return error_response("Missing 'cmd'"),
    };
    let connector = str_field(request, "connector");
    tracing::debug!(cmd, "control request");
    match cmd {
        "list" => match target.list(connector) {
            // `connectors` (our addition) gives `list` each connector's link state.
            Ok(watchers) => json!({
                "ok": true,
                "data": watchers,
                "connectors": target
                    .connectors()
                    .into_iter()
                    .filter(|c| connector.is_none_or(|name| c.name == name))
                    .collect::<Vec<_>>(),
                // `agents` (our addition): the agents of the listed watchers (all of them
                // without a connector filter) with their state.
                "agents": target
                    .agents()
                    .into_iter()
                    .filter(|a| {
                        connector.is_none() || watchers.iter().any(|w| w.agent_name == a.name)
                    })
                    .collect::<Vec<_>>(),
            }),
            Err(err) => error_response(err.0),
        },
        "pause" | "resume" | "reset" => {
            let Some(watcher) = str_field(request, "watcher_name") else {
                return error_response("Missing 'watcher_name'");
            };
            let result = match cmd {
                "pause" => target.pause(watcher, connector).await,
                "resume" => target.resume(watcher, connector).await,
                _ => target.reset(watcher, connector).await,
            };
            if result.is_ok() {
                tracing::info!(watcher, "watcher {cmd} via control socket");
            }
            done(result)
        }
        "send" => {
            let Some(room) = str_field(request, "room") else {
                return error_response("Missing 'room' field in send command");
            };
            let text = str_field(request, "text").map(str::to_string);
            let attachment = str_field(request, "attachment_path").map(PathBuf::from);
            if text.is_none() && attachment.is_none() {
                return error_response("Nothing to send: provide 'text' or 'attachment_path'");
            }
            done(target.send(room, text, attachment, connector).await)
        }
        "inject" => {
            let Some(watcher) = str_field(request, "watcher_name") else {
                return error_response("Missing 'watcher_name'");
            };
            let Some(text) = str_field(request, "text") else {
                return error_response("Missing 'text' field in inject command");
            };
            let role = match str_field(request, "role").unwrap_or("owner") {
                "owner" => Role::Owner,
                "guest" => Role::Guest,
                other => {
                    return error_response(format!(
                        "Invalid 'role': '{other}' (expected 'owner' or 'guest')"
                    ))
                }
            };
            if let Some(connector) = connector {
                match target.list(Some(connector)) {
                    Ok(watchers) if watchers.iter().any(|w| w.watcher_name == watcher) => {}
                    Ok(_) => return error_response(format!("Unknown watcher: '{watcher}'")),
                    Err(err) => return error_response(err.0),
                }
            }
            let injection = Injection {
                watcher: watcher.to_string(),
                text: text.to_string(),
                sender: str_field(request, "sender").unwrap_or("script").to_string(),
                role,
            };
            done(target.inject(injection).await)
        }
        "status" => {
            let watchers = target.list(None).map(|w| w.len()).unwrap_or(0);
            let now = SystemTime::now();
            let uptime = now.duration_since(facts.started).unwrap_or_default();
            let started_ms = facts
                .started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            json!({"ok": true, "data": {
                "pid": facts.pid,
                "version": env!("CARGO_PKG_VERSION"),
                "started_at_ms": started_ms,
                "uptime_secs": uptime.as_secs(),
                "watchers": watchers,
                "connectors": target.connectors(),
                "agents": target.agents(),
                "pending_approvals": target
                    .pending_approvals()
                    .iter()
                    .map(|r| json!({
                        "id": r.id,
                        "tool": r.tool,
                        "watcher": r.watcher,
                        "room": r.room.name,
                        "requester": r.requester,
                        "age_secs": now.duration_since(r.created).unwrap_or_default().as_secs(),
                        "timeout_secs": r.timeout.as_secs(),
                    }))
                    .collect::<Vec<_>>(),
            }})
        }
        other => error_response(format!("Unknown command: {other}")),
    }
}

fn str_field<'a>(request: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    request
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Why a control request failed on the client side.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to the control socket {path}: {source}")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("the gateway did not answer within {0} s")]
    Timeout(u64),
    /// Reading or writing failed.
    #[error("control socket error: {0}")]
    Io(std::io::Error),
    /// The answer was not a JSON line.
    #[error("unreadable answer from the gateway: {0}")]
    BadResponse(String),
}

/// Sends one request and waits up to `timeout` for its answer (blocking; used by the CLI).
pub fn call(socket: &Path, request: &Value, timeout: Duration) -> Result<Value, ClientError> {
    let stream = StdUnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(ClientError::Io)?;
    let mut line = request.to_string();
    line.push('\n');
    (&stream)
        .write_all(line.as_bytes())
        .map_err(ClientError::Io)?;
    let mut answer = String::new();
    match BufReader::new(&stream).read_line(&mut answer) {
        Ok(_) => {}
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(ClientError::Timeout(timeout.as_secs()))
        }
        Err(err) => return Err(ClientError::Io(err)),
    }
    serde_json::from_str(answer.trim()).map_err(|err| {
        ClientError::BadResponse(if answer.is_empty() {
            "empty answer".to_string()
        } else {
            err.to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use acg_core::ConnectionState;
    use std::sync::Mutex;

    /// A stand-in gateway with two watchers on one connector.
    #[derive(Default)]
    struct FakeGateway {
        calls: Mutex<Vec<String>>,
        slow: bool,
    }

    fn info(name: &str, paused: bool) -> WatcherInfo {
        WatcherInfo {
            watcher_name: name.into(),
            room_name: "general".into(),
            connector: "local".into(),
            agent_name: "claude".into(),
            session_id: "s-1".into(),
            paused,
            active: !paused,
            context_injection_state: "injected".into(),
            queued: 0,
            waiting: false,
        }
    }

    impl FakeGateway {
        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
        fn check(&self, watcher: &str) -> Result<(), GatewayError> {
            if watcher == "w1" || watcher == "w2" {
                Ok(())
            } else {
                Err(GatewayError(format!("Unknown watcher: '{watcher}'")))
            }
        }
    }

    #[async_trait]
    impl ControlTarget for FakeGateway {
        fn list(&self, connector: Option<&str>) -> Result<Vec<WatcherInfo>, GatewayError> {
            match connector {
                None | Some("local") => Ok(vec![info("w1", false), info("w2", true)]),
                Some(other) => Err(GatewayError(format!("Unknown connector: '{other}'"))),
            }
        }
        fn connectors(&self) -> Vec<ConnectorInfo> {
            vec![ConnectorInfo {
                name: "local".into(),
                connector_type: "script".into(),
                state: ConnectionState::Connected,
            }]
        }
        async fn pause(&self, w: &str, _: Option<&str>) -> Result<(), GatewayError> {
            self.record(format!("pause {w}"));
            self.check(w)
        }
        async fn resume(&self, w: &str, _: Option<&str>) -> Result<(), GatewayError> {
            self.record(format!("resume {w}"));
            self.check(w)
        }
        async fn reset(&self, w: &str, _: Option<&str>) -> Result<(), GatewayError> {
            if self.slow {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            self.record(format!("reset {w}"));
            self.check(w)
        }
        async fn send(
            &self,
            room: &str,
            text: Option<String>,
            attachment: Option<PathBuf>,
            _: Option<&str>,
        ) -> Result<(), GatewayError> {
            self.record(format!("send {room} {text:?} {attachment:?}"));
            Ok(())
        }
        async fn inject(&self, injection: Injection) -> Result<(), GatewayError> {
            self.record(format!(
                "inject {} {} {} {:?}",
                injection.watcher, injection.text, injection.sender, injection.role
            ));
            self.check(&injection.watcher)
        }
    }

    fn facts() -> DaemonFacts {
        DaemonFacts {
            pid: 42,
            started: SystemTime::now() - Duration::from_secs(65),
        }
    }

    async fn ask(fake: &FakeGateway, line: &str) -> Value {
        handle_request(fake, facts(), line).await
    }

    #[tokio::test]
    async fn protocol_answers_and_error_texts() {
        let fake = FakeGateway::default();
        let list = ask(&fake, r#"{"cmd":"list"}"#).await;
        assert_eq!(list["ok"], true);
        assert_eq!(list["data"][1]["watcher_name"], "w2");
        assert_eq!(list["data"][1]["paused"], true);
        assert_eq!(list["connectors"][0]["name"], "local");
        assert_eq!(list["connectors"][0]["state"]["state"], "connected");
        assert_eq!(
            ask(&fake, r#"{"cmd":"list","connector":"nope"}"#).await,
            json!({"ok": false, "error": "Unknown connector: 'nope'"})
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"pause","watcher_name":"w1"}"#).await,
            json!({"ok": true})
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"pause"}"#).await,
            json!({"ok": false, "error": "Missing 'watcher_name'"})
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"reset","watcher_name":"zz"}"#).await,
            json!({"ok": false, "error": "Unknown watcher: 'zz'"})
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"send","text":"x"}"#).await,
            json!({"ok": false, "error": "Missing 'room' field in send command"})
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"send","room":"general"}"#).await,
            json!({"ok": false, "error": "Nothing to send: provide 'text' or 'attachment_path'"})
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"send","room":"general","text":"hi"}"#).await,
            json!({"ok": true})
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"fly"}"#).await,
            json!({"ok": false, "error": "Unknown command: fly"})
        );
        let bad = ask(&fake, "{not json").await;
        assert_eq!(bad["ok"], false);
        assert!(bad["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(ask(&fake, "[1]").await["ok"], false);
        assert_eq!(
            *fake.calls.lock().unwrap(),
            ["pause w1", "reset zz", "send general Some(\"hi\") None"]
        );
    }

    #[tokio::test]
    async fn inject_defaults_roles_and_connector_check() {
        let fake = FakeGateway::default();
        assert_eq!(
            ask(
                &fake,
                r#"{"cmd":"inject","watcher_name":"w1","text":"hello"}"#
            )
            .await,
            json!({"ok": true})
        );
        assert_eq!(
            ask(
                &fake,
                r#"{"cmd":"inject","watcher_name":"w1","text":"hi","sender":"bob","role":"guest"}"#
            )
            .await,
            json!({"ok": true})
        );
        assert_eq!(
            ask(
                &fake,
                r#"{"cmd":"inject","watcher_name":"w1","text":"x","role":"boss"}"#
            )
            .await["ok"],
            false
        );
        assert_eq!(
            ask(&fake, r#"{"cmd":"inject","watcher_name":"w1"}"#).await["error"],
            "Missing 'text' field in inject command"
        );
        assert_eq!(
            ask(
                &fake,
                r#"{"cmd":"inject","watcher_name":"w9","text":"x","connector":"local"}"#
            )
            .await["error"],
            "Unknown watcher: 'w9'"
        );
        assert_eq!(
            ask(
                &fake,
                r#"{"cmd":"inject","watcher_name":"w1","text":"x","connector":"other"}"#
            )
            .await["error"],
            "Unknown connector: 'other'"
        );
        assert_eq!(
            *fake.calls.lock().unwrap(),
            ["inject w1 hello script Owner", "inject w1 hi bob Guest"]
        );
    }

    #[tokio::test]
    async fn status_reports_pid_uptime_connectors_and_watchers() {
        let fake = FakeGateway::default();
        let status = ask(&fake, r#"{"cmd":"status"}"#).await;
        assert_eq!(status["ok"], true);
        let data = &status["data"];
        assert_eq!(data["pid"], 42);
        assert_eq!(data["watchers"], 2);
        assert!(data["uptime_secs"].as_u64().unwrap() >= 65);
        assert_eq!(data["connectors"][0]["name"], "local");
        assert_eq!(data["connectors"][0]["state"]["state"], "connected");
        assert_eq!(data["pending_approvals"], json!([]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_round_trip_mode_0600_stale_file_and_slow_clients() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        // A stale socket file (nobody listening) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let fake = Arc::new(FakeGateway {
            slow: true,
            ..Default::default()
        });
        let server = ControlServer::bind(&path, fake.clone(), facts())
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A second server on the same path is refused while the first answers.
        let second = ControlServer::bind(&path, fake.clone(), facts()).await;
        assert!(matches!(second, Err(BindError::InUse(_))));

        // A client that connects and says nothing does not block others.
        let _idle = StdUnixStream::connect(&path).unwrap();
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            call(
                &p,
                &json!({"cmd": "reset", "watcher_name": "w1"}),
                Duration::from_secs(60),
            )
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(answer, json!({"ok": true}));
        let p = path.clone();
        let list = tokio::task::spawn_blocking(move || {
            call(&p, &json!({"cmd": "list"}), Duration::from_secs(60))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(list["data"].as_array().unwrap().len(), 2);

        server.close(Duration::from_secs(5)).await;
        assert!(!path.exists());
        let err = call(&path, &json!({"cmd": "list"}), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }));
    }
}
