//! The Claude permission broker: the daemon's one local HTTP server (`127.0.0.1:<random
//! port>`), whose `POST /hook` is the `PreToolUse` hook of every `claude` the gateway runs for
//! an agent with `permissions.enabled` (digest §4.4, §6).
//!
//! Each such agent's `claude` gets `--dangerously-skip-permissions --settings <file>`; the file
//! ([`hook_settings`], mode 0600 in the runtime directory, removed on stop) names this
//! endpoint, blocks the tool when the hook fails (`onFailure: block`), and sends
//! `Authorization: Bearer $ACG_HOOK_TOKEN`. The token ([`new_token`], 32 random bytes) is in
//! the agent child's environment only; a request without it gets `401` and a denial.
//!
//! An authenticated request is decided by the daemon's [`ToolGate`] (see [`crate::decision`]
//! for the order: `ToolSearch`, guests by their rules, owners by rules, `skip_owner_approval`,
//! then the owners in chat), the same gate OpenCode's permission requests go through; every
//! decision lands in the audit trail. [`start_permissions`] sets up that gate for every agent
//! whose calls the gateway judges, and this server for the Claude agents among them.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acg_core::approval::ApprovalRegistry;
use acg_policy::audit::AuditLog;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use crate::decision::{
    reason_denied, reason_guest, reason_not_asked, reason_timed_out, AgentPermissions,
};
use crate::decision::{CallParams, ToolCall, ToolGate, Verdict};

/// The environment variable that carries the hook secret to the agent process.
pub const TOKEN_ENV: &str = "ACG_HOOK_TOKEN";
/// The endpoint path.
pub const HOOK_PATH: &str = "/hook";
/// The largest hook body read (a `Write` of a big file carries the whole content).
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The hook's own timeout is the approval timeout plus this much, so a request that times
/// out in chat is answered (denied) before the CLI gives up on the hook.
pub const HOOK_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);
/// How long in-flight hook requests may finish when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the model reads when a request is not authenticated.
pub const REASON_UNAUTHENTICATED: &str = "Blocked by the gateway: the permission check request \
was not authenticated, so the tool call was refused as a safe default.";
/// What the model reads when the hook body cannot be understood.
pub const REASON_MALFORMED: &str = "Blocked by the gateway: the permission check request could \
not be read (malformed hook body), so the tool call was refused as a safe default.";

/// The Claude hook's decision logic, independent of HTTP: authentication, then the shared
/// [`ToolGate`].
pub struct Broker {
    token: String,
    gate: Arc<ToolGate>,
}

/// The hook's answer: the shared [`Verdict`].
pub type HookAnswer = Verdict;

/// The JSON body Claude Code reads from the hook.
pub fn hook_answer_json(answer: &HookAnswer) -> Value {
    json!({"hookSpecificOutput": {
        "hookEventName": "PreToolUse",
        "permissionDecision": if answer.allow { "allow" } else { "deny" },
        "permissionDecisionReason": answer.reason,
    }})
}

/// The fields of the `PreToolUse` hook body the broker uses.
#[derive(Debug, Deserialize)]
pub struct HookInput {
    /// The agent session.
    #[serde(default)]
    pub session_id: String,
    /// The tool.
    pub tool_name: String,
    /// Its input, in the agent's key order.
    #[serde(default)]
    pub tool_input: acg_policy::ToolInput,
    /// The agent's working directory.
    #[serde(default)]
    pub cwd: Option<String>,
}

impl HookInput {
    /// The call as the shared gate judges it.
    pub fn into_tool_call(self) -> ToolCall {
        ToolCall {
            session_id: self.session_id,
            shown: object_fields(&self.tool_input),
            audit_input: self.tool_input.to_python_json(),
            tool: self.tool_name,
            params: CallParams::Input {
                input: self.tool_input,
                cwd: PathBuf::from(self.cwd.unwrap_or_else(|| "/".into())),
            },
        }
    }
}

impl Broker {
    /// A broker answering requests that carry `token`, for the given agents (by name), with a
    /// gate of its own. Sessions no watcher ran are judged by the built-in guest rules alone.
    pub fn new(
        token: String,
        approvals: Arc<ApprovalRegistry>,
        agents: HashMap<String, AgentPermissions>,
        audit: AuditLog,
    ) -> Result<Self, acg_policy::PolicyError> {
        Ok(Broker::with_gate(
            token,
            Arc::new(ToolGate::new(approvals, agents, audit)?),
        ))
    }

    /// A broker answering requests that carry `token` through a gate shared with the other
    /// permission paths of the daemon.
    pub fn with_gate(token: String, gate: Arc<ToolGate>) -> Self {
        Broker { token, gate }
    }

    /// True when the `Authorization` header carries the token (constant-time comparison).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(presented) = value.strip_prefix("Bearer ") else {
            return false;
        };
        constant_time_eq(presented.trim().as_bytes(), self.token.as_bytes())
    }

    /// Decides on one tool call.
    pub async fn decide(&self, input: HookInput) -> HookAnswer {
        self.gate.decide(input.into_tool_call()).await
    }

    /// Records a request that never got to a decision (unauthenticated or malformed).
    async fn record_rejected(&self, reason: String) {
        self.gate.record_rejected(reason).await;
    }
}

/// Compares two secrets without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh hook secret: 32 bytes from the OS CSPRNG, hex-encoded.
pub fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| io::Error::other(format!("no randomness for the hook secret: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The top-level fields of a tool input, in order (a non-object input has none).
pub fn object_fields(input: &acg_policy::ToolInput) -> Vec<(String, Value)> {
    match input {
        acg_policy::ToolInput::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// A tool input as a `serde_json::Value` (for the audit trail).
pub fn to_value(input: &acg_policy::ToolInput) -> Value {
    use acg_policy::ToolInput as T;
    match input {
        T::Null => Value::Null,
        T::Bool(b) => Value::Bool(*b),
        T::Number(n) => Value::Number(n.clone()),
        T::String(s) => Value::String(s.clone()),
        T::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        T::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect(),
        ),
    }
}

/// The settings Claude Code reads to call the hook (`--settings <file>`).
pub fn hook_settings(url: &str, hook_timeout: Duration) -> Value {
    json!({"hooks": {"PreToolUse": [{"matcher": ".*", "hooks": [{
        "type": "http",
        "url": url,
        "timeout": hook_timeout.as_secs(),
        "headers": {"Authorization": format!("Bearer ${TOKEN_ENV}")},
        "allowedEnvVars": [TOKEN_ENV],
        "onFailure": "block",
    }]}]}})
}

/// Writes the hook settings to `path`, readable by the owner only.
pub fn write_hook_settings(path: &Path, url: &str, hook_timeout: Duration) -> io::Result<()> {
    let text = serde_json::to_string_pretty(&hook_settings(url, hook_timeout))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// The running HTTP server.
pub struct BrokerServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
    files: Mutex<Vec<PathBuf>>,
}

impl BrokerServer {
    /// Binds `127.0.0.1:0` and serves `POST /hook`.
    pub async fn start(broker: Arc<Broker>) -> io::Result<BrokerServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(HOOK_PATH, post(hook))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(broker);
        let stop = CancellationToken::new();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                error!(error = %e, "permission broker stopped with an error");
            }
        });
        info!(%addr, "permission broker listening");
        Ok(BrokerServer {
            addr,
            stop,
            task,
            files: Mutex::new(Vec::new()),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>/hook`.
    pub fn hook_url(&self) -> String {
        format!("http://{}{HOOK_PATH}", self.addr)
    }

    /// Writes a settings file for an agent whose owners have `approval_timeout` to answer;
    /// the file is removed when the server stops.
    pub fn write_settings(&self, path: &Path, approval_timeout: Duration) -> io::Result<()> {
        write_hook_settings(
            path,
            &self.hook_url(),
            approval_timeout.saturating_add(HOOK_TIMEOUT_MARGIN),
        )?;
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.to_path_buf());
        Ok(())
    }

    /// Stops serving (requests in flight get a short grace) and removes the settings files.
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            warn!("permission broker requests still running at stop were abandoned");
            task.abort();
        }
        let files = std::mem::take(&mut *self.files.lock().unwrap_or_else(|p| p.into_inner()));
        for file in files {
            if let Err(e) = std::fs::remove_file(&file) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(file = %file.display(), error = %e, "cannot remove a hook settings file");
                }
            }
        }
        debug!("permission broker stopped");
    }
}

async fn hook(State(broker): State<Arc<Broker>>, headers: HeaderMap, body: Bytes) -> Response {
    if !broker.authorized(&headers) {
        warn!("hook request without the right secret refused");
        broker
            .record_rejected("unauthenticated hook request".to_string())
            .await;
        let answer = HookAnswer::deny(REASON_UNAUTHENTICATED);
        return (StatusCode::UNAUTHORIZED, Json(hook_answer_json(&answer))).into_response();
    }
    let answer = match serde_json::from_slice::<HookInput>(&body) {
        Ok(input) => broker.decide(input).await,
        Err(e) => {
            warn!(error = %e, "malformed hook body");
            broker
                .record_rejected(format!("malformed hook body: {e}"))
                .await;
            HookAnswer::deny(REASON_MALFORMED)
        }
    };
    (StatusCode::OK, Json(hook_answer_json(&answer))).into_response()
}

/// The hook of one agent: what its `claude` processes get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHook {
    /// `--settings <file>`.
    pub settings_file: PathBuf,
    /// The value of [`TOKEN_ENV`] in the agent's environment.
    pub token: String,
}

/// The permission handling of a daemon, set up from its config.
pub struct Permissions {
    /// The gate every judged agent's tool calls go through (`None` when no agent needs one,
    /// or it could not be set up).
    pub gate: Option<Arc<ToolGate>>,
    /// The Claude hook server (`None` when no Claude agent has `permissions.enabled`, or it
    /// could not start).
    pub server: Option<BrokerServer>,
    /// The hook of every Claude agent whose tool calls go through the broker, by agent name.
    pub hooks: HashMap<String, AgentHook>,
    /// One operator line per agent left without its permission handling (its watchers must
    /// not start).
    pub errors: Vec<String>,
}

impl Permissions {
    /// The gate for `agent`, when its tool calls can be judged.
    pub fn gate_for(&self, agent: &str) -> Option<Arc<ToolGate>> {
        self.gate.as_ref().filter(|g| g.covers(agent)).cloned()
    }

    /// Stops the server and removes the settings files.
    pub async fn stop(self) {
        if let Some(server) = self.server {
            server.stop().await;
        }
    }
}

/// Whether the gateway judges `agent`'s tool calls: Claude agents with `permissions.enabled`
/// (through the hook), and every OpenCode agent (its sidecar asks the gateway; with
/// `permissions.enabled: false` the answer comes from the rules alone, nobody is asked).
pub fn judged_by_gateway(agent: &acg_config::AgentConfig) -> bool {
    match agent.kind {
        acg_config::AgentKind::Claude => agent.permissions.enabled,
        acg_config::AgentKind::Opencode => true,
    }
}

/// The settings file of an agent's hook in the runtime directory:
/// `claude-hook-<agent>.json` (characters outside `[A-Za-z0-9._-]` become `_`).
pub fn settings_file_for(runtime_dir: &Path, agent: &str) -> PathBuf {
    let safe: String = agent
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    runtime_dir.join(format!("claude-hook-{safe}.json"))
}

/// Sets up the [`ToolGate`] for every agent the gateway judges ([`judged_by_gateway`]), then
/// the hook server for the Claude agents among them, and writes their settings files. An agent
/// whose rules do not compile, or every judged agent when the audit trail cannot be opened,
/// or every Claude agent when the hook server cannot start, is left out with an error line
/// (fail closed: an agent whose calls cannot be judged must not run).
pub async fn start_permissions(
    config: &acg_config::Config,
    runtime_dir: &Path,
    approvals: Arc<ApprovalRegistry>,
) -> Permissions {
    let mut errors = Vec::new();
    let mut agents = HashMap::new();
    // Claude agents that need the hook, with their approval timeouts.
    let mut hooked: Vec<(String, Duration)> = Vec::new();
    for agent in config.agents.iter().filter(|a| judged_by_gateway(a)) {
        match AgentPermissions::from_config(agent) {
            Ok(permissions) => {
                if agent.kind == acg_config::AgentKind::Claude {
                    hooked.push((agent.name.clone(), agent.permissions.timeout));
                }
                agents.insert(agent.name.clone(), permissions);
            }
            Err(e) => errors.push(format!(
                "Agent '{}': its tool rules cannot be used ({e}); its watchers are not started",
                agent.name
            )),
        }
    }
    let mut permissions = Permissions {
        gate: None,
        server: None,
        hooks: HashMap::new(),
        errors,
    };
    if agents.is_empty() {
        return permissions;
    }
    let fail = |permissions: &mut Permissions, names: &mut dyn Iterator<Item = &str>, why: &str| {
        for name in names {
            permissions.errors.push(format!(
                "Agent '{name}': the permission broker is not available ({why}); its watchers \
                 are not started"
            ));
        }
    };
    // Every decision is recorded; without the trail no tool call may be decided.
    let audit = match AuditLog::open(&acg_policy::audit::default_audit_path(runtime_dir)) {
        Ok(audit) => audit,
        Err(e) => {
            fail(
                &mut permissions,
                &mut agents.keys().map(String::as_str),
                &e.to_string(),
            );
            return permissions;
        }
    };
    let gate = match ToolGate::new(approvals, agents, audit) {
        Ok(gate) => Arc::new(gate),
        Err(e) => {
            permissions
                .errors
                .push(format!("The permission broker cannot start: {e}"));
            return permissions;
        }
    };
    permissions.gate = Some(gate.clone());
    if hooked.is_empty() {
        return permissions;
    }
    let failed_hooks = |permissions: &mut Permissions, why: &str| {
        fail(
            permissions,
            &mut hooked.iter().map(|(n, _)| n.as_str()),
            why,
        );
    };
    let token = match new_token() {
        Ok(token) => token,
        Err(e) => {
            failed_hooks(&mut permissions, &e.to_string());
            return permissions;
        }
    };
    let broker = Arc::new(Broker::with_gate(token.clone(), gate));
    let server = match BrokerServer::start(broker).await {
        Ok(server) => server,
        Err(e) => {
            failed_hooks(&mut permissions, &e.to_string());
            return permissions;
        }
    };
    let mut used = std::collections::HashSet::new();
    for (name, timeout) in &hooked {
        let mut path = settings_file_for(runtime_dir, name);
        let mut n = 2;
        while !used.insert(path.clone()) {
            path = settings_file_for(runtime_dir, &format!("{name}-{n}"));
            n += 1;
        }
        match server.write_settings(&path, *timeout) {
            Ok(()) => {
                permissions.hooks.insert(
                    name.clone(),
                    AgentHook {
                        settings_file: path,
                        token: token.clone(),
                    },
                );
            }
            Err(e) => permissions.errors.push(format!(
                "Agent '{name}': cannot write the hook settings file {} ({e}); its watchers are \
                 not started",
                path.display()
            )),
        }
    }
    permissions.server = Some(server);
    permissions
}

#[cfg(test)]
mod tests {
    use super::*;
    use acg_core::approval::TurnContext;
    use acg_core::Role;
    use acg_policy::audit::AuditDecision;
    use acg_policy::audit::AuditFilter;
    use acg_policy::ToolPolicy;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::test_chat::{room_named, Chat};

    struct Setup {
        _dir: tempfile::TempDir,
        audit_path: PathBuf,
        chat: Arc<Chat>,
        approvals: Arc<ApprovalRegistry>,
        broker: Arc<Broker>,
    }

    fn rule(tool: &str, params: Option<&str>) -> acg_config::ToolRule {
        acg_config::ToolRule {
            tool: tool.into(),
            params: params.map(str::to_string),
        }
    }

    fn settings(timeout_ms: u64, skip: bool) -> acg_config::PermissionSettings {
        acg_config::PermissionSettings {
            enabled: true,
            timeout: Duration::from_millis(timeout_ms),
            skip_owner_approval: skip,
            require_other_owner: false,
        }
    }

    fn setup(skip_owner_approval: bool) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let audit_path = dir.path().join("audit.jsonl");
        let chat = Arc::new(Chat::default());
        let approvals = Arc::new(ApprovalRegistry::new());
        let mut agents = HashMap::new();
        agents.insert(
            "claude".to_string(),
            AgentPermissions {
                settings: settings(60_000, skip_owner_approval),
                policy: ToolPolicy::new(&[rule("Bash", Some(r"ls(\s.*)?"))], &[rule("Read", None)])
                    .unwrap(),
            },
        );
        agents.insert(
            "hasty".to_string(),
            AgentPermissions {
                settings: settings(200, false),
                policy: ToolPolicy::new(&[], &[]).unwrap(),
            },
        );
        let broker = Arc::new(
            Broker::new(
                "s3cret".into(),
                approvals.clone(),
                agents,
                AuditLog::open(&audit_path).unwrap(),
            )
            .unwrap(),
        );
        Setup {
            _dir: dir,
            audit_path,
            chat,
            approvals,
            broker,
        }
    }

    impl Setup {
        fn session(&self, session: &str, agent: &str, role: Role) {
            self.approvals.register_turn(
                session,
                TurnContext {
                    watcher: format!("w-{session}"),
                    agent: agent.into(),
                    connector: self.chat.clone(),
                    room: room_named("desk"),
                    thread: None,
                    requester: "alice".into(),
                    role,
                },
            );
        }

        fn audit(&self) -> Vec<acg_policy::audit::AuditRecord> {
            AuditLog::read(&self.audit_path, &AuditFilter::default())
                .unwrap()
                .entries
                .into_iter()
                .map(|e| e.record)
                .collect()
        }
    }

    fn call(session: &str, tool: &str, input: &str) -> HookInput {
        serde_json::from_str(&format!(
            r#"{{"session_id":"{session}","tool_name":"{tool}","tool_input":{input},"cwd":"/w","hook_event_name":"PreToolUse"}}"#
        ))
        .unwrap()
    }

    async fn pending_id(approvals: &ApprovalRegistry) -> String {
        for _ in 0..3000 {
            if let Some(r) = approvals.pending().first() {
                return r.id.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no pending request");
    }

    fn command(from: &str, text: &str) -> acg_core::IncomingMessage {
        acg_core::IncomingMessage {
            id: "m".into(),
            room: room_named("desk"),
            sender: acg_core::Sender {
                id: from.into(),
                username: from.into(),
                display_name: None,
            },
            role: Role::Owner,
            text: text.into(),
            timestamp_ms: None,
            thread_id: None,
            permission_thread_id: None,
            mentions: vec![],
            attachments: vec![],
            warnings: vec![],
            prompt_header: String::new(),
        }
    }

    #[test]
    fn settings_file_has_the_exact_shape_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = settings_file_for(dir.path(), "my agent/x");
        assert_eq!(path, dir.path().join("claude-hook-my_agent_x.json"));
        write_hook_settings(
            &path,
            "http://127.0.0.1:4321/hook",
            Duration::from_secs(310),
        )
        .unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            written,
            json!({"hooks":{"PreToolUse":[{"matcher":".*","hooks":[{"type":"http",
                "url":"http://127.0.0.1:4321/hook","timeout":310,
                "headers":{"Authorization":"Bearer $ACG_HOOK_TOKEN"},
                "allowedEnvVars":["ACG_HOOK_TOKEN"],"onFailure":"block"}]}]}})
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Rewriting keeps it private and leaves no temp file behind.
        write_hook_settings(&path, "http://127.0.0.1:1/hook", Duration::from_secs(20)).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn tokens_are_long_random_hex_and_compared_exactly() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(constant_time_eq(a.as_bytes(), a.clone().as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), b.as_bytes()));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[tokio::test]
    async fn toolsearch_and_owner_rules_allow_with_the_rule_audited() {
        let s = setup(false);
        s.session("s1", "claude", Role::Owner);
        assert!(s.broker.decide(call("s1", "ToolSearch", "{}")).await.allow);
        let answer = s
            .broker
            .decide(call("s1", "Bash", r#"{"command":"ls -la && date"}"#))
            .await;
        assert!(answer.allow, "{answer:?}");
        assert!(s.chat.texts().is_empty(), "nobody was asked");
        let audit = s.audit();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[1].decision, AuditDecision::AutoAllowed);
        assert_eq!(audit[1].params, ["ls -la", "date"]);
        let rule = audit[1].rule.clone().unwrap();
        assert!(rule.contains("owner rule #1"), "{rule}");
        assert!(rule.contains("built-in"), "{rule}");
        assert_eq!(audit[1].watcher, "w-s1");
        assert_eq!(audit[1].connector, "chat");
        assert_eq!(audit[1].requester, "alice");
        assert_eq!(audit[1].input, r#"{"command": "ls -la && date"}"#);
    }

    #[tokio::test]
    async fn guests_and_unknown_sessions_never_ask_the_chat() {
        let s = setup(false);
        s.session("g1", "claude", Role::Guest);
        // The agent's guest rule allows Read.
        let read = s
            .broker
            .decide(call("g1", "Read", r#"{"file_path":"notes.txt"}"#))
            .await;
        assert!(read.allow);
        let bash = s
            .broker
            .decide(call("g1", "Bash", r#"{"command":"ls"}"#))
            .await;
        assert!(!bash.allow);
        assert!(bash.reason.contains("not permitted for guests"), "{bash:?}");
        // An unknown session: built-in guest rules only.
        let unknown = s
            .broker
            .decide(call("nobody", "Read", r#"{"file_path":"/etc/passwd"}"#))
            .await;
        assert!(!unknown.allow);
        let builtin = s
            .broker
            .decide(call(
                "nobody",
                "Bash",
                r#"{"command":"agent-chat-gateway instructions scheduling"}"#,
            ))
            .await;
        assert!(builtin.allow, "{builtin:?}");
        assert!(s.chat.texts().is_empty());
        let decisions: Vec<AuditDecision> = s.audit().into_iter().map(|r| r.decision).collect();
        assert_eq!(
            decisions,
            [
                AuditDecision::AutoAllowed,
                AuditDecision::GuestDenied,
                AuditDecision::GuestDenied,
                AuditDecision::AutoAllowed
            ]
        );
        assert_eq!(s.audit()[1].params, ["ls"]);
        assert_eq!(s.audit()[0].params, ["/w/notes.txt"]);
    }

    #[tokio::test]
    async fn skip_owner_approval_allows_owners_only() {
        let s = setup(true);
        s.session("o1", "claude", Role::Owner);
        s.session("g1", "claude", Role::Guest);
        let owner = s
            .broker
            .decide(call("o1", "Write", r#"{"file_path":"x","content":"y"}"#))
            .await;
        assert!(owner.allow);
        let guest = s
            .broker
            .decide(call("g1", "Write", r#"{"file_path":"x","content":"y"}"#))
            .await;
        assert!(!guest.allow);
        let audit = s.audit();
        assert_eq!(audit[0].decision, AuditDecision::SkipOwnerApproval);
        assert_eq!(audit[1].decision, AuditDecision::GuestDenied);
    }

    #[tokio::test]
    async fn owners_are_asked_and_their_answer_decides() {
        let s = setup(false);
        s.session("o1", "claude", Role::Owner);
        let broker = s.broker.clone();
        let asking = tokio::spawn(async move {
            broker
                .decide(call(
                    "o1",
                    "Bash",
                    r#"{"command":"rm -rf build","description":"clean"}"#,
                ))
                .await
        });
        let id = pending_id(&s.approvals).await;
        assert_eq!(
            s.chat.texts()[0],
            format!(
                "🔐 **Permission required** `[{id}]`\n**Tool:** `Bash`\n**Params:** `command='rm -rf build', description='clean'`\nReply `approve {id}` or `deny {id}`"
            )
        );
        let cmd = acg_core::approval::parse_command(&format!("approve {id}")).unwrap();
        s.approvals.apply("chat", &command("bob", ""), &cmd);
        let answer = asking.await.unwrap();
        assert!(answer.allow, "{answer:?}");

        let broker = s.broker.clone();
        let asking = tokio::spawn(async move {
            broker
                .decide(call("o1", "Bash", r#"{"command":"rm -rf /"}"#))
                .await
        });
        let id2 = pending_id(&s.approvals).await;
        let cmd = acg_core::approval::parse_command(&format!("deny {id2}")).unwrap();
        s.approvals.apply("chat", &command("carol", ""), &cmd);
        let answer = asking.await.unwrap();
        assert!(!answer.allow);
        assert_eq!(answer.reason, reason_denied("carol", &id2));
        assert!(answer.reason.contains("carol denied"), "{}", answer.reason);

        let audit = s.audit();
        let decisions: Vec<AuditDecision> = audit.iter().map(|r| r.decision.clone()).collect();
        assert_eq!(
            decisions,
            [
                AuditDecision::Asked,
                AuditDecision::Approved,
                AuditDecision::Asked,
                AuditDecision::Denied
            ]
        );
        assert!(audit[0].reason.contains(&id), "{}", audit[0].reason);
        assert_eq!(audit[0].approver, None);
        assert_eq!(audit[1].approver.as_deref(), Some("bob"));
        assert_eq!(audit[1].params, ["rm -rf build"]);
        assert_eq!(audit[3].approver.as_deref(), Some("carol"));
    }

    #[tokio::test]
    async fn nobody_answering_times_out_with_a_plain_reason() {
        let s = setup(false);
        s.session("h1", "hasty", Role::Owner);
        let answer = s
            .broker
            .decide(call("h1", "Bash", r#"{"command":"make"}"#))
            .await;
        assert!(!answer.allow);
        assert!(
            answer.reason.contains("nobody answered"),
            "{}",
            answer.reason
        );
        assert!(answer.reason.contains("timed out"), "{}", answer.reason);
        assert!(!answer.reason.contains("denied this tool call in chat"));
        let texts = s.chat.texts();
        assert!(
            texts[1].contains("timed out — **auto-denied**"),
            "{texts:?}"
        );
        assert_eq!(s.audit()[0].decision, AuditDecision::Asked);
        assert_eq!(s.audit()[1].decision, AuditDecision::TimedOut);
        assert_eq!(s.audit()[1].approver, None);
    }

    /// One raw HTTP/1.1 request; returns (status, body).
    async fn http(addr: SocketAddr, auth: Option<&str>, body: &str) -> (u16, Value) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST /hook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let (_, payload) = response.split_once("\r\n\r\n").unwrap();
        (status, serde_json::from_str(payload).unwrap_or(Value::Null))
    }

    fn decision_of(body: &Value) -> &str {
        body["hookSpecificOutput"]["permissionDecision"]
            .as_str()
            .unwrap_or("")
    }

    /// Measurement, not a check: `cargo test -p agent-chat-gateway --lib -- --ignored
    /// measure_hook_round_trip --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn measure_hook_round_trip() {
        let s = setup(false);
        s.session("o1", "claude", Role::Owner);
        let server = BrokerServer::start(s.broker.clone()).await.unwrap();
        let body =
            r#"{"session_id":"o1","tool_name":"Bash","tool_input":{"command":"ls -la && date"}}"#;
        let mut times = Vec::new();
        for _ in 0..200 {
            let start = std::time::Instant::now();
            let (status, _) = http(server.addr(), Some("Bearer s3cret"), body).await;
            times.push(start.elapsed());
            assert_eq!(status, 200);
        }
        times.sort();
        println!(
            "auto-allowed hook round trip (new connection, audit synced): median {:?}, p90 {:?}, max {:?}",
            times[100], times[180], times[199]
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn the_http_endpoint_requires_the_secret_and_fails_closed() {
        let s = setup(false);
        s.session("o1", "claude", Role::Owner);
        let server = BrokerServer::start(s.broker.clone()).await.unwrap();
        let addr = server.addr();
        assert!(addr.ip().is_loopback());
        assert_eq!(server.hook_url(), format!("http://{addr}/hook"));
        let ls = r#"{"session_id":"o1","tool_name":"Bash","tool_input":{"command":"ls"}}"#;

        for auth in [
            None,
            Some("Bearer nope"),
            Some("Basic s3cret"),
            Some("Bearer s3cret0"),
        ] {
            let (status, body) = http(addr, auth, ls).await;
            assert_eq!(status, 401, "{auth:?}");
            assert_eq!(decision_of(&body), "deny");
            assert_eq!(
                body["hookSpecificOutput"]["permissionDecisionReason"],
                REASON_UNAUTHENTICATED
            );
        }
        let (status, body) = http(addr, Some("Bearer s3cret"), ls).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"hookSpecificOutput":{"hookEventName":"PreToolUse",
                "permissionDecision":"allow","permissionDecisionReason":"allowed by the owner rules"}})
        );
        for bad in ["{not json", r#"{"session_id":"o1"}"#, "[]", ""] {
            let (status, body) = http(addr, Some("Bearer s3cret"), bad).await;
            assert_eq!(status, 200, "{bad}");
            assert_eq!(decision_of(&body), "deny", "{bad}");
            assert_eq!(
                body["hookSpecificOutput"]["permissionDecisionReason"],
                REASON_MALFORMED
            );
        }
        let decisions: Vec<AuditDecision> = s.audit().into_iter().map(|r| r.decision).collect();
        assert_eq!(decisions.len(), 9);
        assert_eq!(
            decisions
                .iter()
                .filter(|d| **d == AuditDecision::HookRejected)
                .count(),
            8
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("claude-hook-claude.json");
        server
            .write_settings(&file, Duration::from_secs(300))
            .unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            written["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"],
            310
        );
        assert_eq!(
            written["hooks"]["PreToolUse"][0]["hooks"][0]["url"],
            format!("http://{addr}/hook")
        );
        server.stop().await;
        assert!(!file.exists(), "settings file removed on stop");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
