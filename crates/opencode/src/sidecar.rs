//! The `opencode serve` sidecar: one local server per OpenCode agent, supervised.
//!
//! Life of a sidecar:
//! - **Start**: `<command> serve <extra args> --port 0 --hostname 127.0.0.1` in the agent's
//!   working directory, with the gateway's environment plus the agent's extra variables, the
//!   merged `OPENCODE_CONFIG_CONTENT`, and a fresh random `OPENCODE_SERVER_PASSWORD` (basic
//!   auth, user `opencode`), so no other local process can drive it. It is ready only when it
//!   prints `opencode server listening on http://…` (the port accepts connections earlier, and
//!   requests sent then can hang); the URL is taken from that line.
//! - **Logs**: every stdout line goes to the log at debug level, every stderr line at warn,
//!   prefixed `[opencode stdout]` / `[opencode stderr]`; the last stderr lines also go into the
//!   error when a start fails.
//! - **Restart**: a watcher task notices the process exit at once and restarts it; a request
//!   that finds it dead (before the watcher got there) restarts it too. After
//!   [`MAX_FAILED_RESTARTS`] consecutive failed attempts the circuit opens
//!   ([`SidecarState::Broken`]) and requests fail fast until [`Sidecar::start`] resets it.
//! - **Stop**: best-effort `DELETE` of orphan sessions, `SIGTERM` to the process group, a grace
//!   period, then `SIGKILL` to the whole tree (see [`crate::proctree`]). Dropping the
//!   [`Sidecar`] without stopping it kills the tree at once.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use acg_core::AgentError;
use hyper::Method;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{watch, Mutex};

use crate::http::{encode_component, ServerClient, SERVER_USER};
use crate::proctree;

/// Consecutive failed (re)start attempts after which the sidecar is given up on.
pub const MAX_FAILED_RESTARTS: u32 = 3;
/// How many stderr lines are kept for error messages.
const STDERR_TAIL_LINES: usize = 20;
/// The stdout line that says the server is ready, up to the URL.
const READY_PREFIX: &str = "opencode server listening on ";
/// Total time allowed for deleting orphan sessions at stop.
const ORPHAN_CLEANUP_BUDGET: Duration = Duration::from_secs(10);
/// How long a killed sidecar may take to be reaped before we stop waiting.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// How to run the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarSpec {
    /// A name for logs (the agent's name).
    pub name: String,
    /// The program: a path, or a name looked up in `PATH`.
    pub program: String,
    /// Extra `serve` arguments (the agent's `new_session_args`), placed before ours.
    pub args: Vec<String>,
    /// Where the server runs (the agent's working directory).
    pub working_directory: PathBuf,
    /// Variables set on top of the gateway's own environment, in order (later wins).
    pub env: Vec<(String, String)>,
    /// How long a start may take to print its listening line.
    pub ready_timeout: Duration,
    /// How long a stopping server gets between `SIGTERM` and `SIGKILL`.
    pub stop_grace: Duration,
}

/// How the sidecar is doing, for `status` and `list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SidecarState {
    /// Not started, or stopped.
    Stopped,
    /// The first start is under way.
    Starting,
    /// Serving.
    Running {
        /// The server's process id.
        pid: u32,
        /// Its base URL.
        url: String,
        /// When it became ready (Unix milliseconds).
        since_ms: i64,
    },
    /// Exited or failed to start; it is restarted before the next request (and by the watcher).
    Restarting {
        /// Consecutive failed attempts so far.
        failures: u32,
        /// Why the last one failed, or why it went down.
        last_error: Option<String>,
        /// When it went down (Unix milliseconds).
        since_ms: i64,
    },
    /// Given up after [`MAX_FAILED_RESTARTS`] failed attempts; `start` resets it.
    Broken {
        /// When it was given up on (Unix milliseconds).
        since_ms: i64,
        /// Why the last attempt failed.
        last_error: String,
    },
}

impl SidecarState {
    /// A one-line summary for operators.
    pub fn summary(&self) -> String {
        match self {
            SidecarState::Stopped => "opencode server stopped".to_owned(),
            SidecarState::Starting => "opencode server starting".to_owned(),
            SidecarState::Running { pid, url, .. } => {
                format!("opencode server running (pid {pid}, {url})")
            }
            SidecarState::Restarting {
                failures,
                last_error,
                ..
            } => match last_error {
                Some(e) => format!("opencode server restarting ({failures} failed attempts; {e})"),
                None => format!("opencode server restarting ({failures} failed attempts)"),
            },
            SidecarState::Broken { last_error, .. } => format!(
                "opencode server unavailable after {MAX_FAILED_RESTARTS} failed restarts ({last_error}); restart the agent to retry"
            ),
        }
    }
}

/// Why the sidecar could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    /// The program could not be started at all.
    #[error("cannot start `{program} serve`: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        reason: String,
    },
    /// It exited before printing its listening line.
    #[error("`opencode serve` exited ({status}) before it was ready{stderr}")]
    ExitedEarly {
        /// How it exited.
        status: String,
        /// `; stderr: …` with its last lines, or empty.
        stderr: String,
    },
    /// It did not print its listening line in time.
    #[error("`opencode serve` printed no listening line within {timeout:?}{stderr}")]
    NotReady {
        /// The limit.
        timeout: Duration,
        /// `; stderr: …` with its last lines, or empty.
        stderr: String,
    },
    /// The circuit is open.
    #[error("the opencode server is unavailable after {MAX_FAILED_RESTARTS} consecutive failed restarts (last error: {last_error}); restart the agent to try again")]
    Broken {
        /// Why the last attempt failed.
        last_error: String,
    },
    /// `stop` was called; it is not restarted until `start`.
    #[error("the opencode server was stopped")]
    Stopped,
}

impl From<SidecarError> for AgentError {
    fn from(e: SidecarError) -> Self {
        AgentError::Unavailable(e.to_string())
    }
}

/// The URL in a `opencode server listening on http://host:port` line.
pub fn parse_ready_line(line: &str) -> Option<String> {
    let url = line.trim().strip_prefix(READY_PREFIX)?.trim();
    let authority = url.strip_prefix("http://")?;
    let (host, port) = authority.trim_end_matches('/').rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| format!("http://{host}:{port}"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A running server process.
struct Process {
    pid: i32,
    client: ServerClient,
    /// Becomes `Some(exit description)` when the process has exited.
    exited: watch::Receiver<Option<String>>,
    generation: u64,
}

impl Process {
    fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
            && proctree::read_proc(self.pid).is_some_and(|p| p.state != 'Z')
    }
}

/// What (re)starts and stops are serialized on.
#[derive(Default)]
struct Slot {
    running: Option<Process>,
    failures: u32,
    broken: Option<String>,
    generation: u64,
}

struct Shared {
    spec: SidecarSpec,
    slot: Mutex<Slot>,
    state: StdMutex<SidecarState>,
    /// False after `stop` (and on drop): no restarts, no lazy starts.
    enabled: AtomicBool,
    /// The live process, for the synchronous kill on drop.
    live_pid: StdMutex<Option<i32>>,
    orphans: StdMutex<Vec<String>>,
    last_start: StdMutex<Option<Duration>>,
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn set_state(&self, state: SidecarState) {
        *lock(&self.state) = state;
    }
}

/// One supervised `opencode serve`. Cheap to query; (re)starts are serialized.
pub struct Sidecar {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("name", &self.shared.spec.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// A sidecar that will run as `spec` says; nothing starts until [`Self::start`] or the first
    /// request.
    pub fn new(spec: SidecarSpec) -> Self {
        Sidecar {
            shared: Arc::new(Shared {
                spec,
                slot: Mutex::new(Slot::default()),
                state: StdMutex::new(SidecarState::Stopped),
                enabled: AtomicBool::new(true),
                live_pid: StdMutex::new(None),
                orphans: StdMutex::new(Vec::new()),
                last_start: StdMutex::new(None),
            }),
        }
    }

    /// How it is doing right now.
    pub fn state(&self) -> SidecarState {
        lock(&self.shared.state).clone()
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.shared.live_pid).map(|p| p as u32)
    }

    /// How long the most recent successful start took (spawn to listening line).
    pub fn last_start_duration(&self) -> Option<Duration> {
        *lock(&self.shared.last_start)
    }

    /// The spec it runs with.
    pub fn spec(&self) -> &SidecarSpec {
        &self.shared.spec
    }

    /// Starts the server if it is not running, after resetting the circuit breaker and
    /// re-enabling restarts (so `stop` then `start` recovers a broken sidecar).
    pub async fn start(&self) -> Result<(), SidecarError> {
        let mut slot = self.shared.slot.lock().await;
        self.shared.enabled.store(true, Ordering::SeqCst);
        slot.failures = 0;
        slot.broken = None;
        if let Some(process) = slot.running.as_ref().filter(|p| p.is_alive()) {
            self.shared.set_state(SidecarState::Running {
                pid: process.pid as u32,
                url: process.client.base_url().to_owned(),
                since_ms: now_ms(),
            });
            return Ok(());
        }
        self.shared.set_state(SidecarState::Starting);
        spawn_locked(&self.shared, &mut slot).await
    }

    /// A client for the running server, (re)starting it first when it is down. Fails fast when
    /// the circuit is open or the sidecar was stopped.
    pub async fn client(&self) -> Result<ServerClient, SidecarError> {
        let mut slot = self.shared.slot.lock().await;
        if let Some(process) = slot.running.as_ref().filter(|p| p.is_alive()) {
            return Ok(process.client.clone());
        }
        if let Some(last_error) = &slot.broken {
            return Err(SidecarError::Broken {
                last_error: last_error.clone(),
            });
        }
        if !self.shared.enabled.load(Ordering::SeqCst) {
            return Err(SidecarError::Stopped);
        }
        if slot.running.is_some() {
            tracing::warn!(agent = %self.shared.spec.name, "opencode server is down: restarting it before the request");
        }
        spawn_locked(&self.shared, &mut slot).await?;
        slot.running
            .as_ref()
            .map(|p| p.client.clone())
            .ok_or(SidecarError::Stopped)
    }

    /// True when this client belongs to a server that has exited since.
    pub fn is_current(&self, client: &ServerClient) -> bool {
        // try_lock: a restart in progress means the client is stale anyway.
        match self.shared.slot.try_lock() {
            Ok(slot) => slot
                .running
                .as_ref()
                .is_some_and(|p| p.is_alive() && p.client.base_url() == client.base_url()),
            Err(_) => false,
        }
    }

    /// Remembers a session to delete at stop (a delete that could not be done now).
    pub fn remember_orphan(&self, session_id: &str) {
        let mut orphans = lock(&self.shared.orphans);
        if !orphans.iter().any(|s| s == session_id) {
            orphans.push(session_id.to_owned());
        }
    }

    /// Sessions waiting to be deleted at stop.
    pub fn orphans(&self) -> Vec<String> {
        lock(&self.shared.orphans).clone()
    }

    /// Stops the server: best-effort deletion of orphan sessions, then `SIGTERM`, the grace
    /// period, and `SIGKILL` to the whole tree. No restarts until [`Self::start`].
    pub async fn stop(&self) {
        self.shared.enabled.store(false, Ordering::SeqCst);
        let mut slot = self.shared.slot.lock().await;
        if let Some(mut process) = slot.running.take() {
            if process.is_alive() {
                delete_orphans(&self.shared, &process.client).await;
            }
            terminate(&mut process, self.shared.spec.stop_grace).await;
            tracing::info!(agent = %self.shared.spec.name, pid = process.pid, "opencode server stopped");
        }
        *lock(&self.shared.live_pid) = None;
        self.shared.set_state(SidecarState::Stopped);
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.shared.enabled.store(false, Ordering::SeqCst);
        if let Some(pid) = lock(&self.shared.live_pid).take() {
            tracing::debug!(
                pid,
                "opencode sidecar dropped while running: killing its tree"
            );
            proctree::kill_tree(&proctree::snapshot_with_group(pid, pid), pid);
        }
    }
}

async fn delete_orphans(shared: &Shared, client: &ServerClient) {
    let orphans = std::mem::take(&mut *lock(&shared.orphans));
    if orphans.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + ORPHAN_CLEANUP_BUDGET;
    for (i, id) in orphans.iter().enumerate() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            tracing::warn!(agent = %shared.spec.name, left = orphans.len() - i, "no time left to delete orphan opencode sessions");
            return;
        }
        let path = format!("/session/{}", encode_component(id));
        match client.call(Method::DELETE, &path, None, left).await {
            Ok(reply) if reply.is_success() || reply.status == 404 => {
                tracing::debug!(session = %id, "deleted orphan opencode session");
            }
            Ok(reply) => {
                tracing::warn!(session = %id, status = reply.status, "could not delete orphan opencode session")
            }
            Err(e) => {
                tracing::warn!(session = %id, "could not delete orphan opencode session: {e}")
            }
        }
    }
}

/// `SIGTERM` to the group, up to `grace` for the exit, then `SIGKILL` to the tree as it was
/// before the `SIGTERM` plus anything still in the group.
async fn terminate(process: &mut Process, grace: Duration) {
    let pid = process.pid;
    if process.exited.borrow().is_some() {
        // Already reaped: the pid may be someone else's now, but a group with members left
        // is still ours (a group id is not reused while it has members).
        proctree::signal_group(pid, libc::SIGKILL);
        return;
    }
    let tree = proctree::snapshot_with_group(pid, pid);
    proctree::signal_group(pid, libc::SIGTERM);
    let _ = tokio::time::timeout(grace, process.exited.wait_for(Option::is_some)).await;
    proctree::kill_tree(&tree, pid);
    if tokio::time::timeout(REAP_TIMEOUT, process.exited.wait_for(Option::is_some))
        .await
        .is_err()
    {
        tracing::warn!(pid, "opencode server did not exit after SIGKILL");
    }
}

/// One start attempt, with the slot locked: on success the slot holds the new process and a
/// watcher task follows it; on failure the failure is counted and the circuit may open.
async fn spawn_locked(shared: &Arc<Shared>, slot: &mut Slot) -> Result<(), SidecarError> {
    if let Some(mut old) = slot.running.take() {
        // Leftovers of a dead server (its tools) must not outlive it.
        terminate(&mut old, Duration::ZERO).await;
    }
    *lock(&shared.live_pid) = None;
    match spawn(&shared.spec).await {
        Ok(started) => {
            slot.generation += 1;
            slot.failures = 0;
            let generation = slot.generation;
            let (tx, rx) = watch::channel(None);
            *lock(&shared.live_pid) = Some(started.pid);
            *lock(&shared.last_start) = Some(started.startup);
            shared.set_state(SidecarState::Running {
                pid: started.pid as u32,
                url: started.client.base_url().to_owned(),
                since_ms: now_ms(),
            });
            tracing::info!(
                agent = %shared.spec.name,
                pid = started.pid,
                url = %started.client.base_url(),
                startup_ms = started.startup.as_millis() as u64,
                "opencode server ready"
            );
            slot.running = Some(Process {
                pid: started.pid,
                client: started.client,
                exited: rx,
                generation,
            });
            let mut child = started.child;
            let watcher_shared = Arc::clone(shared);
            tokio::spawn(async move {
                let status = match child.wait().await {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("unknown exit ({e})"),
                };
                let _ = tx.send(Some(status.clone()));
                restart_after_exit(watcher_shared, generation, status).await;
            });
            Ok(())
        }
        Err(error) => {
            slot.failures += 1;
            let message = error.to_string();
            tracing::warn!(agent = %shared.spec.name, failures = slot.failures, "opencode server start failed: {message}");
            if slot.failures >= MAX_FAILED_RESTARTS {
                slot.broken = Some(message.clone());
                shared.set_state(SidecarState::Broken {
                    since_ms: now_ms(),
                    last_error: message,
                });
                tracing::error!(agent = %shared.spec.name, "opencode server given up after {MAX_FAILED_RESTARTS} consecutive failed starts");
            } else {
                shared.set_state(SidecarState::Restarting {
                    failures: slot.failures,
                    last_error: Some(message),
                    since_ms: now_ms(),
                });
            }
            Err(error)
        }
    }
}

/// The watcher's part after the process of `generation` exited: restart it unless it was
/// stopped or already replaced, retrying with a growing pause until the circuit opens.
/// (Boxed: it starts new watchers itself, so its future type would be recursive.)
fn restart_after_exit(
    shared: Arc<Shared>,
    generation: u64,
    status: String,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(restart_after_exit_inner(shared, generation, status))
}

async fn restart_after_exit_inner(shared: Arc<Shared>, generation: u64, status: String) {
    {
        let slot = shared.slot.lock().await;
        let current = slot.running.as_ref().map(|p| p.generation);
        if !shared.enabled.load(Ordering::SeqCst) || current != Some(generation) {
            return;
        }
        tracing::warn!(agent = %shared.spec.name, %status, "opencode server exited unexpectedly: restarting it");
        *lock(&shared.live_pid) = None;
        shared.set_state(SidecarState::Restarting {
            failures: slot.failures,
            last_error: Some(format!("exited: {status}")),
            since_ms: now_ms(),
        });
    }
    loop {
        let mut slot = shared.slot.lock().await;
        if !shared.enabled.load(Ordering::SeqCst)
            || slot.broken.is_some()
            || slot.generation != generation
        {
            return;
        }
        if spawn_locked(&shared, &mut slot).await.is_ok() {
            return;
        }
        let pause = Duration::from_secs(u64::from(slot.failures));
        drop(slot);
        tokio::time::sleep(pause).await;
    }
}

/// A server that printed its listening line.
struct Started {
    child: tokio::process::Child,
    pid: i32,
    client: ServerClient,
    startup: Duration,
}

fn random_password() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// Runs the program and waits for its listening line; on any failure the process tree is
/// killed and reaped before returning.
async fn spawn(spec: &SidecarSpec) -> Result<Started, SidecarError> {
    let password = random_password();
    let mut command = Command::new(&spec.program);
    command
        .arg("serve")
        .args(&spec.args)
        .args(["--port", "0", "--hostname", "127.0.0.1"])
        .current_dir(&spec.working_directory)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("OPENCODE_SERVER_USERNAME", SERVER_USER)
        .env("OPENCODE_SERVER_PASSWORD", &password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| SidecarError::Spawn {
        program: spec.program.clone(),
        reason: e.to_string(),
    })?;
    let Some(pid) = child.id().map(|p| p as i32) else {
        return Err(SidecarError::ExitedEarly {
            status: "reaped at spawn".to_owned(),
            stderr: String::new(),
        });
    };
    let name = spec.name.clone();
    let stderr_tail = Arc::new(StdMutex::new(VecDeque::new()));
    if let Some(stderr) = child.stderr.take() {
        let tail = Arc::clone(&stderr_tail);
        let name = name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(agent = %name, pid, "[opencode stderr] {line}");
                let mut tail = lock(&tail);
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
    }
    let stderr_excerpt = |tail: &Arc<StdMutex<VecDeque<String>>>| {
        let tail = lock(tail);
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; stderr: {}",
                tail.iter().cloned().collect::<Vec<_>>().join(" | ")
            )
        }
    };
    let Some(stdout) = child.stdout.take() else {
        return Err(SidecarError::Spawn {
            program: spec.program.clone(),
            reason: "no stdout pipe".to_owned(),
        });
    };
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(spec.ready_timeout, async {
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::debug!(agent = %name, pid, "[opencode stdout] {line}");
            if let Some(url) = parse_ready_line(&line) {
                return Some(url);
            }
        }
        None
    })
    .await;
    let failure = match ready {
        Ok(Some(url)) => {
            let name = name.clone();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(agent = %name, pid, "[opencode stdout] {line}");
                }
            });
            return Ok(Started {
                child,
                pid,
                client: ServerClient::new(&url, &password),
                startup: started.elapsed(),
            });
        }
        Ok(None) => None,
        Err(_) => Some(spec.ready_timeout),
    };
    // Not ready: kill what it started, reap it, and report why.
    let tree = proctree::snapshot_with_group(pid, pid);
    proctree::kill_tree(&tree, pid);
    let status = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
    // Give the stderr reader a moment to take the last lines.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stderr = stderr_excerpt(&stderr_tail);
    Err(match failure {
        Some(timeout) => SidecarError::NotReady { timeout, stderr },
        None => SidecarError::ExitedEarly {
            status: match status {
                Ok(Ok(s)) => s.to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "still running after SIGKILL".to_owned(),
            },
            stderr,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(program: &str, args: &[&str]) -> SidecarSpec {
        SidecarSpec {
            name: "test".into(),
            program: program.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            working_directory: std::env::temp_dir(),
            env: vec![],
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
        }
    }

    #[test]
    fn ready_lines_are_parsed() {
        assert_eq!(
            parse_ready_line("opencode server listening on http://127.0.0.1:4096"),
            Some("http://127.0.0.1:4096".to_owned())
        );
        assert_eq!(
            parse_ready_line("opencode server listening on http://127.0.0.1:39123/\r"),
            Some("http://127.0.0.1:39123".to_owned())
        );
        for line in [
            "Warning: OPENCODE_SERVER_PASSWORD is not set; server is unsecured.",
            "opencode server listening on https://127.0.0.1:1",
            "opencode server listening on http://127.0.0.1:0",
            "opencode server listening on http://127.0.0.1",
        ] {
            assert_eq!(parse_ready_line(line), None, "{line}");
        }
    }

    #[test]
    fn states_have_operator_summaries_and_serialize_tagged() {
        let broken = SidecarState::Broken {
            since_ms: 1,
            last_error: "boom".into(),
        };
        assert!(broken.summary().contains("boom"));
        let json = serde_json::to_value(&broken).unwrap();
        assert_eq!(json["state"], "broken");
        assert_eq!(json["last_error"], "boom");
        assert_eq!(
            serde_json::to_value(SidecarState::Stopped).unwrap()["state"],
            "stopped"
        );
    }

    /// A stand-in `opencode`: a shell script (called as `<script> serve …`) running `body`.
    fn fake_server(body: &str) -> SidecarSpec {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap().keep();
        let path = dir.join("opencode");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        spec(&path.to_string_lossy(), &[])
    }

    #[tokio::test]
    async fn a_program_that_exits_at_once_opens_the_circuit_after_three_attempts() {
        let sidecar = Sidecar::new(fake_server("echo 'some error' >&2; exit 3"));
        let err = sidecar.start().await.unwrap_err();
        assert!(matches!(err, SidecarError::ExitedEarly { .. }), "{err}");
        assert!(err.to_string().contains("some error"), "{err}");
        assert!(matches!(
            sidecar.state(),
            SidecarState::Restarting { failures: 1, .. }
        ));
        assert!(sidecar.client().await.is_err());
        let err = sidecar.client().await.unwrap_err();
        assert!(matches!(err, SidecarError::ExitedEarly { .. }), "{err}");
        assert!(matches!(sidecar.state(), SidecarState::Broken { .. }));
        // Open circuit: fails fast, without another attempt.
        let err = sidecar.client().await.unwrap_err();
        assert!(matches!(err, SidecarError::Broken { .. }), "{err}");
        assert!(AgentError::from(err).to_string().contains("unavailable"));
        // start() resets the breaker (and tries again).
        assert!(sidecar.start().await.is_err());
        assert!(matches!(
            sidecar.state(),
            SidecarState::Restarting { failures: 1, .. }
        ));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let sidecar = Sidecar::new(spec("/nonexistent/opencode", &[]));
        let err = sidecar.start().await.unwrap_err();
        assert!(matches!(err, SidecarError::Spawn { .. }), "{err}");
    }

    #[tokio::test]
    async fn no_listening_line_in_time_is_an_error_and_leaves_nothing_behind() {
        let mut spec = fake_server("echo starting; exec sleep 600");
        spec.ready_timeout = Duration::from_millis(300);
        let sidecar = Sidecar::new(spec);
        let err = sidecar.start().await.unwrap_err();
        assert!(matches!(err, SidecarError::NotReady { .. }), "{err}");
        assert_eq!(sidecar.pid(), None);
    }

    #[tokio::test]
    async fn a_ready_server_is_watched_restarted_and_stopped() {
        // Prints a listening line for a port nothing serves: enough for the supervisor.
        let sidecar = Sidecar::new(fake_server(
            "echo 'opencode server listening on http://127.0.0.1:9'; exec sleep 600",
        ));
        sidecar.start().await.unwrap();
        let first = sidecar.pid().unwrap();
        assert!(matches!(sidecar.state(), SidecarState::Running { .. }));
        assert!(sidecar.last_start_duration().is_some());
        let client = sidecar.client().await.unwrap();
        assert_eq!(client.base_url(), "http://127.0.0.1:9");
        assert!(sidecar.is_current(&client));

        // Killed from outside: the watcher brings up a new process.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (Some(pid), SidecarState::Running { .. }) = (sidecar.pid(), sidecar.state()) {
                if pid != first {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "not restarted: {:?}",
                sidecar.state()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let second = sidecar.pid().unwrap();
        sidecar.stop().await;
        assert_eq!(sidecar.state(), SidecarState::Stopped);
        assert!(proctree::read_proc(second as i32).is_none_or(|p| p.state == 'Z'));
        assert!(matches!(sidecar.client().await, Err(SidecarError::Stopped)));
    }
}
