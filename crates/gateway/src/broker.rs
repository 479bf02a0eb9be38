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
//! A decision, in this order (fail closed at every step):
//! 1. `ToolSearch` is always allowed (it only loads tool descriptions);
//! 2. the session's turn is looked up in the [`ApprovalRegistry`]; an unknown session counts as
//!    a guest of no agent (built-in guest rules only);
//! 3. guest: allowed when the agent's guest rules cover every param, else denied — the chat is
//!    not asked;
//! 4. owner with `skip_owner_approval`: allowed;
//! 5. owner: allowed when the owner rules cover every param;
//! 6. otherwise the owners are asked in the room ([`ApprovalRegistry::ask`]).
//!
//! Every decision is appended to the audit trail (`<runtime>/audit.jsonl`); an allow that
//! cannot be recorded is turned into a denial. A denial's reason is what the model reads as
//! the tool's result, so it says in plain words what happened.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acg_core::approval::{ApprovalRegistry, Ask, Decision, TurnContext};
use acg_core::Role;
use acg_policy::audit::{AuditDecision, AuditLog, AuditRecord};
use acg_policy::{Role as PolicyRole, ToolPolicy};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use jiff::Timestamp;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

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

/// One agent's permission settings and policy.
pub struct AgentPermissions {
    /// `permissions:` of the agent.
    pub settings: acg_config::PermissionSettings,
    /// Its allow-lists (built-in rules first).
    pub policy: ToolPolicy,
}

/// The broker's decision logic, independent of HTTP.
pub struct Broker {
    token: String,
    approvals: Arc<ApprovalRegistry>,
    agents: HashMap<String, AgentPermissions>,
    fallback: ToolPolicy,
    audit: AuditLog,
}

/// The hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    /// Allow or deny.
    pub allow: bool,
    /// The reason (shown to the model on deny).
    pub reason: String,
}

impl HookAnswer {
    fn allow(reason: impl Into<String>) -> Self {
        HookAnswer {
            allow: true,
            reason: reason.into(),
        }
    }

    fn deny(reason: impl Into<String>) -> Self {
        HookAnswer {
            allow: false,
            reason: reason.into(),
        }
    }

    /// The JSON body Claude Code reads.
    pub fn to_json(&self) -> Value {
        json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": if self.allow { "allow" } else { "deny" },
            "permissionDecisionReason": self.reason,
        }})
    }
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

impl Broker {
    /// A broker answering requests that carry `token`, for the given agents (by name).
    /// Sessions no watcher ran are judged by the built-in guest rules alone.
    pub fn new(
        token: String,
        approvals: Arc<ApprovalRegistry>,
        agents: HashMap<String, AgentPermissions>,
        audit: AuditLog,
    ) -> Result<Self, acg_policy::PolicyError> {
        Ok(Broker {
            token,
            approvals,
            agents,
            fallback: ToolPolicy::new(&[], &[])?,
            audit,
        })
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
        let tool = input.tool_name.clone();
        let context = self.approvals.turn_context(&input.session_id);
        let mut record = AuditRecord {
            time: Timestamp::now(),
            connector: context
                .as_ref()
                .map(|c| c.connector.name().to_string())
                .unwrap_or_default(),
            watcher: context
                .as_ref()
                .map(|c| c.watcher.clone())
                .unwrap_or_default(),
            session: input.session_id.clone(),
            requester: context
                .as_ref()
                .map(|c| c.requester.clone())
                .unwrap_or_default(),
            approver: None,
            tool: tool.clone(),
            params: Vec::new(),
            input: input.tool_input.to_python_json(),
            decision: AuditDecision::AutoAllowed,
            rule: None,
            reason: String::new(),
        };

        if tool == "ToolSearch" {
            record.reason = "ToolSearch only loads tool descriptions".into();
            return self
                .finish(record, HookAnswer::allow("ToolSearch is always allowed"))
                .await;
        }

        let agent = context.as_ref().and_then(|c| self.agents.get(&c.agent));
        if context.is_some() && agent.is_none() {
            warn!(session = %input.session_id,
                "hook call for an agent without permission settings; judged as a guest");
        }
        // An unknown session, or one whose agent is not configured here, is a guest's.
        let owner = match (agent, &context) {
            (Some(agent), Some(context)) if context.role == Role::Owner => Some((agent, context)),
            _ => None,
        };
        let role = if owner.is_some() {
            PolicyRole::Owner
        } else {
            PolicyRole::Guest
        };
        let policy = agent.map_or(&self.fallback, |a| &a.policy);
        let cwd = PathBuf::from(input.cwd.clone().unwrap_or_else(|| "/".into()));
        let explanation = policy.explain(role, &tool, &input.tool_input, &cwd);
        record.params = explanation.param_strings();
        let rules = explanation.approving_rules();
        let covered = explanation.is_auto_allowed();

        let Some((agent, context)) = owner else {
            if covered {
                record.rule = (!rules.is_empty()).then(|| rules.join("; "));
                record.reason = "guest rules allow every param".into();
                return self
                    .finish(record, HookAnswer::allow("allowed by the guest rules"))
                    .await;
            }
            record.decision = AuditDecision::GuestDenied;
            record.reason = explanation.reason.clone();
            return self
                .finish(record, HookAnswer::deny(reason_guest(&tool)))
                .await;
        };

        if covered {
            record.rule = (!rules.is_empty()).then(|| rules.join("; "));
            record.reason = "owner rules allow every param".into();
            return self
                .finish(record, HookAnswer::allow("allowed by the owner rules"))
                .await;
        }
        if agent.settings.skip_owner_approval {
            record.decision = AuditDecision::SkipOwnerApproval;
            record.reason = "skip_owner_approval: owners' calls run without asking".into();
            return self
                .finish(
                    record,
                    HookAnswer::allow("owners' tool calls need no approval"),
                )
                .await;
        }
        self.ask_owners(record, agent, context, &input).await
    }

    async fn ask_owners(
        &self,
        mut record: AuditRecord,
        agent: &AgentPermissions,
        context: &TurnContext,
        input: &HookInput,
    ) -> HookAnswer {
        let ask = Ask {
            session_id: input.session_id.clone(),
            tool: input.tool_name.clone(),
            input: object_fields(&input.tool_input),
            timeout: agent.settings.timeout,
            require_other_owner: agent.settings.require_other_owner,
        };
        // The trail shows the question as soon as it is in the room, then the answer.
        let asked = record.clone();
        let outcome = self
            .approvals
            .ask_then(ask, |request| async move {
                let mut asked = asked;
                asked.time = Timestamp::now();
                asked.decision = AuditDecision::Asked;
                asked.reason = format!(
                    "owners asked in chat (request {}, {} s to answer)",
                    request.id,
                    request.timeout.as_secs()
                );
                if let Err(e) = self.append(asked).await {
                    error!(error = %e, "cannot write the audit trail");
                }
            })
            .await;
        let id = outcome.id.unwrap_or_else(|| "-".into());
        record.time = Timestamp::now();
        record.approver = outcome.decision.decided_by().map(str::to_string);
        let answer = match &outcome.decision {
            Decision::Approved { by } => {
                record.decision = AuditDecision::Approved;
                record.reason = format!("approved by {by} in chat (request {id})");
                HookAnswer::allow(format!("approved by {by} in chat"))
            }
            Decision::Denied { by } => {
                record.decision = AuditDecision::Denied;
                record.reason = format!("denied by {by} in chat (request {id})");
                HookAnswer::deny(reason_denied(by, &id))
            }
            Decision::TimedOut { after } => {
                record.decision = AuditDecision::TimedOut;
                record.reason =
                    format!("nobody answered request {id} within {} s", after.as_secs());
                HookAnswer::deny(reason_timed_out(&id, *after))
            }
            Decision::Cancelled => {
                record.decision = AuditDecision::Denied;
                record.reason =
                    format!("request {id} withdrawn: the watcher was paused, reset or stopped");
                HookAnswer::deny(
                    "This tool call was denied because the chat watcher was paused, reset or \
                     stopped while the owners were being asked.",
                )
            }
            Decision::Undeliverable | Decision::NoRoom => {
                record.decision = AuditDecision::Undeliverable;
                record.reason = "the owners could not be asked in chat".into();
                HookAnswer::deny(reason_not_asked(&context.room.name))
            }
        };
        self.finish(record, answer).await
    }

    /// Records the decision; an allow that cannot be recorded becomes a denial.
    async fn finish(&self, record: AuditRecord, answer: HookAnswer) -> HookAnswer {
        info!(tool = %record.tool, watcher = %record.watcher, decision = %record.decision,
            rule = ?record.rule, approver = ?record.approver, "tool call decided");
        match self.append(record).await {
            Ok(()) => answer,
            Err(e) => {
                error!(error = %e, "cannot write the audit trail");
                if answer.allow {
                    HookAnswer::deny(
                        "Blocked by the gateway: the decision could not be recorded in the \
                         audit trail, so the tool call was refused as a safe default.",
                    )
                } else {
                    answer
                }
            }
        }
    }

    /// Appends off the async threads (the audit log syncs every record).
    async fn append(&self, record: AuditRecord) -> Result<(), String> {
        let audit = self.audit.clone();
        match tokio::task::spawn_blocking(move || audit.append(&record)).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Records a request that never got to a decision (unauthenticated or malformed).
    async fn record_rejected(&self, reason: String) {
        let record = AuditRecord {
            time: Timestamp::now(),
            connector: String::new(),
            watcher: String::new(),
            session: String::new(),
            requester: String::new(),
            approver: None,
            tool: String::new(),
            params: Vec::new(),
            input: String::new(),
            decision: AuditDecision::HookRejected,
            rule: None,
            reason,
        };
        if let Err(e) = self.append(record).await {
            error!(error = %e, "cannot write the audit trail");
        }
    }
}

/// What the model reads when an owner denied the call in chat.
pub fn reason_denied(owner: &str, id: &str) -> String {
    format!(
        "The owner {owner} denied this tool call in chat (they replied `deny {id}`). Do not \
         retry it unless they ask you to."
    )
}

/// What the model reads when nobody answered in time.
pub fn reason_timed_out(id: &str, after: Duration) -> String {
    format!(
        "This tool call was denied because nobody answered the permission request `{id}` in \
         chat within {} s (it timed out; no owner denied it). The user may ask again when an \
         owner is available.",
        after.as_secs()
    )
}

/// What the model reads when the owners could not be asked at all.
pub fn reason_not_asked(room: &str) -> String {
    format!(
        "Blocked by the gateway: the owners of {room} could not be asked in chat (the \
         permission request could not be posted), so the tool call was refused as a safe \
         default. Please retry later."
    )
}

/// What the model reads when a guest may not use a tool.
pub fn reason_guest(tool: &str) -> String {
    format!(
        "The tool '{tool}' is not permitted for guests in this chat, so the call was denied. \
         Answer without it, or ask an owner to run it."
    )
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
        return (StatusCode::UNAUTHORIZED, Json(answer.to_json())).into_response();
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
    (StatusCode::OK, Json(answer.to_json())).into_response()
}

/// The hook of one agent: what its `claude` processes get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHook {
    /// `--settings <file>`.
    pub settings_file: PathBuf,
    /// The value of [`TOKEN_ENV`] in the agent's environment.
    pub token: String,
}

/// The broker of a daemon, set up from its config.
pub struct Permissions {
    /// The server (`None` when no agent has `permissions.enabled`, or it could not start).
    pub server: Option<BrokerServer>,
    /// The hook of every agent whose tool calls go through the broker, by agent name.
    pub hooks: HashMap<String, AgentHook>,
    /// One operator line per agent left without its broker (its watchers must not start).
    pub errors: Vec<String>,
}

impl Permissions {
    /// Stops the server and removes the settings files.
    pub async fn stop(self) {
        if let Some(server) = self.server {
            server.stop().await;
        }
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

/// Starts the broker for every Claude agent with `permissions.enabled` and writes their
/// settings files. An agent whose rules do not compile, or every such agent when the server
/// cannot start, is left out with an error line (fail closed: without a hook, its watchers
/// must not run).
pub async fn start_permissions(
    config: &acg_config::Config,
    runtime_dir: &Path,
    approvals: Arc<ApprovalRegistry>,
) -> Permissions {
    let mut errors = Vec::new();
    let mut agents = HashMap::new();
    let wanted = config
        .agents
        .iter()
        .filter(|a| a.permissions.enabled && a.kind == acg_config::AgentKind::Claude);
    for agent in wanted {
        match ToolPolicy::new(&agent.owner_allowed_tools, &agent.guest_allowed_tools) {
            Ok(policy) => {
                agents.insert(
                    agent.name.clone(),
                    AgentPermissions {
                        settings: agent.permissions.clone(),
                        policy,
                    },
                );
            }
            Err(e) => errors.push(format!(
                "Agent '{}': its tool rules cannot be used ({e}); its watchers are not started",
                agent.name
            )),
        }
    }
    let mut permissions = Permissions {
        server: None,
        hooks: HashMap::new(),
        errors,
    };
    if agents.is_empty() {
        return permissions;
    }
    let fail_all =
        |permissions: &mut Permissions, agents: &HashMap<String, AgentPermissions>, why: String| {
            for name in agents.keys() {
                permissions.errors.push(format!(
                    "Agent '{name}': the permission broker is not available ({why}); its watchers \
                 are not started"
                ));
            }
        };
    let token = match new_token() {
        Ok(token) => token,
        Err(e) => {
            fail_all(&mut permissions, &agents, e.to_string());
            return permissions;
        }
    };
    // Every decision is recorded; without the trail no tool call may be decided.
    let audit = match AuditLog::open(&acg_policy::audit::default_audit_path(runtime_dir)) {
        Ok(audit) => audit,
        Err(e) => {
            fail_all(&mut permissions, &agents, e.to_string());
            return permissions;
        }
    };
    let timeouts: Vec<(String, Duration)> = agents
        .iter()
        .map(|(name, a)| (name.clone(), a.settings.timeout))
        .collect();
    let broker = match Broker::new(token.clone(), approvals, agents, audit) {
        Ok(broker) => Arc::new(broker),
        Err(e) => {
            permissions
                .errors
                .push(format!("The permission broker cannot start: {e}"));
            return permissions;
        }
    };
    let server = match BrokerServer::start(broker.clone()).await {
        Ok(server) => server,
        Err(e) => {
            fail_all(&mut permissions, &broker.agents, e.to_string());
            return permissions;
        }
    };
    let mut used = std::collections::HashSet::new();
    for (name, timeout) in timeouts {
        let mut path = settings_file_for(runtime_dir, &name);
        let mut n = 2;
        while !used.insert(path.clone()) {
            path = settings_file_for(runtime_dir, &format!("{name}-{n}"));
            n += 1;
        }
        match server.write_settings(&path, timeout) {
            Ok(()) => {
                permissions.hooks.insert(
                    name,
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
    use acg_core::ports::{Connector, InboundHandler};
    use acg_core::{ConnectorError, OutgoingMessage, Room, RoomKind};
    use acg_policy::audit::AuditFilter;
    use async_trait::async_trait;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct Chat {
        posts: Mutex<Vec<OutgoingMessage>>,
    }

    impl Chat {
        fn texts(&self) -> Vec<String> {
            self.posts
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.text.clone())
                .collect()
        }
    }

    #[async_trait]
    impl Connector for Chat {
        fn name(&self) -> &str {
            "chat"
        }
        fn platform(&self) -> &str {
            "Test"
        }
        async fn connect(&self, _: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn disconnect(&self) {}
        async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
            Ok(room_named(room))
        }
        async fn subscribe(&self, _: &Room, _: Option<i64>) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn unsubscribe(&self, _: &Room) {}
        async fn send(&self, _: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError> {
            self.posts.lock().unwrap().push(msg);
            Ok(())
        }
    }

    fn room_named(name: &str) -> Room {
        Room {
            id: format!("id-{name}"),
            name: name.into(),
            kind: RoomKind::Channel,
        }
    }

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
