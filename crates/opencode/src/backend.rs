//! [`OpencodeBackend`]: the [`AgentBackend`] that drives OpenCode through its `serve` sidecar.
//!
//! - **Sessions**: `POST /session {title, permission}` creates one (the agent's question tools
//!   are denied: nobody in chat can answer them); a turn continues it by id. A session the
//!   server does not know is [`AgentError::SessionNotFound`] — never silently replaced by a new
//!   one, which would lose the conversation without anyone noticing.
//! - **Turns**: subscribe to the server's event stream — one long-lived `GET /event` shared
//!   by every turn ([`EventHub`]; opened, and its `server.connected` awaited, by the first
//!   turn after a server start) — *then* `POST /session/{id}/prompt_async` (so no event of the
//!   turn can be missed), then follow the stream with a [`TurnTracker`] until the session is
//!   idle. The durable system prompt file's
//!   content goes in the request's `system` field, read afresh each turn. Attachments become
//!   file parts or path notes ([`crate::attachments`]). Past the deadline the session is
//!   aborted (`POST /session/{id}/abort`) and the turn is [`AgentError::Timeout`].
//! - **Permissions**: `permission.asked` events go to the [`PermissionHandler`], or are
//!   rejected with a message when there is none; questions are rejected.
//! - Per-message `env` cannot reach a running server and is ignored.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acg_core::prompt::with_attachment_notes;
use acg_core::{AgentBackend, AgentError, AgentResponse, EventSink, NewSession, TurnRequest};
use async_trait::async_trait;
use hyper::Method;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::attachments;
use crate::config_content::{merged_config_content, ConfigContentError, CONFIG_CONTENT_VAR};
use crate::events::{EventHub, SubscribeError, Subscription};
use crate::http::{encode_component, status_error, HttpReply, ServerClient};
use crate::permission::{PermissionAsked, PermissionHandler, PermissionReply, NO_HANDLER_MESSAGE};
use crate::sidecar::{Sidecar, SidecarSpec, SidecarState};
use crate::turn::{Step, TurnTracker};

/// How long opening the event stream and its `server.connected` greeting may take (also the
/// limit of the `/doc` request).
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `prompt_async` may take to accept a prompt.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long small requests (abort, delete, permission replies) may take.
const SHORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tools that ask the chat user a question: denied in every session the gateway creates.
const QUESTION_PERMISSIONS: [&str; 3] = ["question", "plan_enter", "plan_exit"];

/// How to run OpenCode for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpencodeSettings {
    /// The agent's name (for logs).
    pub name: String,
    /// The program: a path, or a name looked up in `PATH` (config `command`, default
    /// `opencode`).
    pub command: String,
    /// The agent's working directory: the server runs there.
    pub working_directory: PathBuf,
    /// Extra `serve` arguments (config `new_session_args`: with a shared server these are
    /// server flags, e.g. `--log-level DEBUG`).
    pub serve_args: Vec<String>,
    /// Variables added to the server's environment, on top of the gateway's own. An
    /// `OPENCODE_CONFIG_CONTENT` here replaces the gateway's before the merge. Tests use it for
    /// the offline environment.
    pub extra_env: Vec<(String, String)>,
    /// How long the server may take to start (default 60 s: 1.4–2 s is usual, a loaded machine
    /// can be much slower).
    pub ready_timeout: Duration,
    /// How long a stopping server gets before `SIGKILL` (default 5 s).
    pub stop_grace: Duration,
    /// Make every tool in the sessions it creates ask for permission (a session rule
    /// `{"permission": "*", "pattern": "*", "action": "ask"}` ahead of the question denials;
    /// session rules come last, so they win over OpenCode's own config). Then the
    /// [`PermissionHandler`] decides every call, as the Claude hook does for every tool. The
    /// gateway sets it for agents with `permissions.enabled`; default off (OpenCode's
    /// defaults plus the bash rules of `OPENCODE_CONFIG_CONTENT`).
    pub gate_every_tool: bool,
}

impl OpencodeSettings {
    /// Settings for this program in this directory, with the defaults.
    pub fn new(command: impl Into<String>, working_directory: impl Into<PathBuf>) -> Self {
        OpencodeSettings {
            name: "opencode".to_owned(),
            command: command.into(),
            working_directory: working_directory.into(),
            serve_args: Vec::new(),
            extra_env: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(5),
            gate_every_tool: false,
        }
    }
}

/// Where the time of the most recent turn went, to tell the gateway's overhead from the
/// agent's own time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TurnTimings {
    /// Getting a client for the sidecar (a restart, if one was needed).
    pub sidecar: Duration,
    /// Joining the shared event stream (opening it and waiting for `server.connected` when
    /// this is the first turn on the server).
    pub subscribe: Duration,
    /// The `prompt_async` round trip.
    pub post: Duration,
    /// Time spent handling events (parsing JSON, tracking, emitting).
    pub handling: Duration,
    /// Events of the turn's sessions handled.
    pub events: usize,
    /// OpenCode's own time (prompt message created → last assistant message completed).
    pub agent: Option<Duration>,
    /// The whole `turn` call.
    pub total: Duration,
}

impl TurnTimings {
    /// The gateway's share: total minus OpenCode's own time (when known).
    pub fn overhead(&self) -> Option<Duration> {
        self.agent.map(|agent| self.total.saturating_sub(agent))
    }
}

/// OpenCode as an agent backend: one supervised `opencode serve` per agent.
pub struct OpencodeBackend {
    settings: OpencodeSettings,
    sidecar: Sidecar,
    permission_handler: Option<Arc<dyn PermissionHandler>>,
    events: EventHub,
    last_timings: Mutex<Option<TurnTimings>>,
    /// Whether the server (by URL) accepts file parts, from its `/doc`.
    file_parts: Mutex<Option<(String, bool)>>,
}

impl std::fmt::Debug for OpencodeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpencodeBackend")
            .field("name", &self.settings.name)
            .field("sidecar", &self.sidecar)
            .field("permission_handler", &self.permission_handler.is_some())
            .finish_non_exhaustive()
    }
}

impl OpencodeBackend {
    /// A backend for `settings`. Merges the gateway's permission defaults into
    /// `OPENCODE_CONFIG_CONTENT` (from `extra_env`, else the gateway's environment); invalid
    /// content is an error here, at construction. Nothing runs until `start` or the first
    /// request.
    pub fn new(settings: OpencodeSettings) -> Result<Self, ConfigContentError> {
        let existing = settings
            .extra_env
            .iter()
            .rev()
            .find(|(k, _)| k == CONFIG_CONTENT_VAR)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(CONFIG_CONTENT_VAR).ok());
        let content = merged_config_content(existing.as_deref())?;
        let mut env: Vec<(String, String)> = settings
            .extra_env
            .iter()
            .filter(|(k, _)| k != CONFIG_CONTENT_VAR)
            .cloned()
            .collect();
        env.push((CONFIG_CONTENT_VAR.to_owned(), content));
        let sidecar = Sidecar::new(SidecarSpec {
            name: settings.name.clone(),
            program: settings.command.clone(),
            args: settings.serve_args.clone(),
            working_directory: settings.working_directory.clone(),
            env,
            ready_timeout: settings.ready_timeout,
            stop_grace: settings.stop_grace,
        });
        Ok(OpencodeBackend {
            settings,
            sidecar,
            permission_handler: None,
            events: EventHub::default(),
            last_timings: Mutex::new(None),
            file_parts: Mutex::new(None),
        })
    }

    /// Routes `permission.asked` events to `handler` (the gateway's policy and chat approvals)
    /// instead of rejecting them.
    pub fn with_permission_handler(mut self, handler: Arc<dyn PermissionHandler>) -> Self {
        self.permission_handler = Some(handler);
        self
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &OpencodeSettings {
        &self.settings
    }

    /// The sidecar's state, for `status` and `list`.
    pub fn sidecar_state(&self) -> SidecarState {
        self.sidecar.state()
    }

    /// The sidecar itself (its pid, start time, client).
    pub fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }

    /// Where the time of the most recent finished turn went.
    pub fn last_timings(&self) -> Option<TurnTimings> {
        *self.last_timings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `?directory=<dir>` when a request concerns another directory than the server's own
    /// (OpenCode keeps one instance per directory), else nothing.
    fn directory_query(&self, working_directory: &Path) -> String {
        if working_directory == self.settings.working_directory
            || working_directory.as_os_str().is_empty()
        {
            String::new()
        } else {
            format!(
                "?directory={}",
                encode_component(&working_directory.to_string_lossy())
            )
        }
    }

    async fn client_before(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<ServerClient, AgentError> {
        match tokio::time::timeout_at(deadline, self.sidecar.client()).await {
            Ok(client) => client.map_err(AgentError::from),
            Err(_) => Err(AgentError::Timeout),
        }
    }

    /// Reads the durable system prompt file; a missing or unreadable file is logged and the
    /// turn goes on without it.
    async fn system_prompt(&self, file: Option<&Path>) -> Option<String> {
        let file = file?;
        match tokio::fs::read_to_string(file).await {
            Ok(text) if !text.trim().is_empty() => Some(text),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(path = %file.display(), "cannot read the system prompt file: {e}");
                None
            }
        }
    }

    /// Whether the running server's OpenAPI (`GET /doc`) accepts file parts in a prompt;
    /// asked once per server start. When it cannot be told, attachments go as path notes.
    async fn file_parts_supported(&self, client: &ServerClient) -> bool {
        let cached = self
            .file_parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((url, supported)) = cached {
            if url == client.base_url() {
                return supported;
            }
        }
        let supported = match client
            .call(Method::GET, "/doc", None, SUBSCRIBE_TIMEOUT)
            .await
        {
            Ok(reply) if reply.is_success() => attachments::doc_accepts_file_parts(&reply.json()),
            Ok(reply) => {
                tracing::warn!(
                    status = reply.status,
                    "opencode /doc unavailable: attachments go as path notes"
                );
                false
            }
            Err(e) => {
                tracing::warn!("opencode /doc unavailable ({e}): attachments go as path notes");
                return false;
            }
        };
        tracing::debug!(supported, "opencode file parts");
        *self.file_parts.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((client.base_url().to_owned(), supported));
        supported
    }

    /// A client and a subscription to its server's event stream. A transport failure on a
    /// server that has exited since is [`Retry::Once`]: the caller may try again with a new
    /// server.
    async fn subscribe(
        &self,
        deadline: tokio::time::Instant,
        query: &str,
        timings: &mut TurnTimings,
    ) -> Result<(ServerClient, Subscription), Retry> {
        let t = Instant::now();
        let client = self.client_before(deadline).await.map_err(Retry::No)?;
        timings.sidecar = t.elapsed();
        let t = Instant::now();
        let failure = match self
            .events
            .subscribe(&client, &format!("/event{query}"), SUBSCRIBE_TIMEOUT)
            .await
        {
            Ok(subscription) => {
                timings.subscribe = t.elapsed();
                return Ok((client, subscription));
            }
            Err(SubscribeError::Refused(reply)) => {
                return Err(Retry::No(reply_error(&reply, "opening the event stream")))
            }
            Err(SubscribeError::Failed(why)) => AgentError::Unavailable(why),
        };
        if self.server_went_away(&client).await {
            Err(Retry::Once(failure))
        } else {
            Err(Retry::No(failure))
        }
    }

    /// True when `client`'s server exits within a moment (a transport error on a dying server
    /// can arrive before its exit is visible).
    async fn server_went_away(&self, client: &ServerClient) -> bool {
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            if !self.sidecar.is_current(client) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run_turn(
        &self,
        req: &TurnRequest,
        sink: &EventSink,
        progress: &mut TurnProgress,
        timings: &mut TurnTimings,
    ) -> Result<AgentResponse, AgentError> {
        let deadline = tokio::time::Instant::now() + req.timeout;
        let query = self.directory_query(&req.working_directory);

        // Subscribe first, so no event of the turn can be missed. A server that died just
        // before (its watcher not there yet) is replaced once: nothing was sent to it.
        let (client, subscription) = match self.subscribe(deadline, &query, timings).await {
            Ok(subscribed) => subscribed,
            Err(Retry::Once(e)) => {
                tracing::info!(agent = %self.settings.name, "opencode server went away before the turn ({e}); retrying on a new one");
                self.subscribe(deadline, &query, timings)
                    .await
                    .map_err(Retry::into_error)?
            }
            Err(Retry::No(e)) => return Err(e),
        };
        // Kept in `progress`: past the deadline the abort's last events are read from it.
        let stream = progress.events.insert(subscription);

        let system = self.system_prompt(req.system_prompt_file.as_deref()).await;
        let (file_parts, notes) =
            if !req.attachments.is_empty() && self.file_parts_supported(&client).await {
                attachments::plan(&req.attachments, &req.working_directory)
            } else {
                (Vec::new(), req.attachments.clone())
            };
        let text = with_attachment_notes(&req.prompt, &notes, &req.working_directory);
        let mut parts = vec![json!({"type": "text", "text": text})];
        parts.extend(file_parts);
        let mut body = json!({"parts": parts});
        if let Some(system) = system {
            body["system"] = Value::String(system);
        }

        let session_path = format!("/session/{}", encode_component(&req.session_id));
        // The server stamps the prompt's message after this (same clock; a millisecond of
        // slack for rounding): anything older belongs to an earlier turn.
        let posted_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            - 1;
        let t = Instant::now();
        let reply = client
            .call(
                Method::POST,
                &format!("{session_path}/prompt_async{query}"),
                Some(&body),
                PROMPT_TIMEOUT,
            )
            .await
            .map_err(|e| e.into_agent_error())?;
        timings.post = t.elapsed();
        if reply.status == 404 {
            return Err(AgentError::SessionNotFound(format!(
                "{}: {}",
                req.session_id,
                reply.text_excerpt()
            )));
        }
        if !reply.is_success() {
            return Err(reply_error(&reply, "sending the prompt"));
        }
        progress.posted = Some((client.clone(), format!("{session_path}/abort{query}")));

        let mut tracker =
            TurnTracker::new(&req.session_id, req.watcher.as_deref()).not_before(posted_ms);
        let mut permissions = JoinSet::new();
        loop {
            let event = match stream.next().await {
                Ok(event) => event,
                Err(end) => {
                    let why = if self.sidecar.is_current(&client) {
                        end.to_string()
                    } else {
                        "the opencode server exited during the turn".to_owned()
                    };
                    return Err(AgentError::Unavailable(why));
                }
            };
            let t = Instant::now();
            let step = tracker.on_event(&event, sink);
            timings.handling += t.elapsed();
            timings.events = tracker.events_seen();
            match step {
                Step::Continue => {}
                Step::Permission(ask) => {
                    if self.permission_handler.is_none() {
                        tracker.record_denial(&ask);
                    }
                    permissions.spawn(answer_permission(
                        client.clone(),
                        self.permission_handler.clone(),
                        ask,
                    ));
                }
                Step::Question(id) => {
                    permissions.spawn(reject_question(client.clone(), id));
                }
                Step::Done(result) => {
                    timings.agent = tracker.agent_duration_ms().map(Duration::from_millis);
                    return result;
                }
            }
        }
    }
}

/// The permission rules of a new session: every tool asks (when `gate_every_tool`), then the
/// question tools are denied (last match wins, so the denials stand).
fn session_rules(gate_every_tool: bool) -> Vec<Value> {
    let ask_all =
        gate_every_tool.then(|| json!({"permission": "*", "action": "ask", "pattern": "*"}));
    ask_all
        .into_iter()
        .chain(
            QUESTION_PERMISSIONS
                .iter()
                .map(|p| json!({"permission": p, "action": "deny", "pattern": "*"})),
        )
        .collect()
}

/// A failed subscription, and whether trying once more on a new server makes sense.
enum Retry {
    Once(AgentError),
    No(AgentError),
}

impl Retry {
    fn into_error(self) -> AgentError {
        match self {
            Retry::Once(e) | Retry::No(e) => e,
        }
    }
}

/// What a turn had done when its deadline struck.
#[derive(Default)]
struct TurnProgress {
    /// Its subscription to the server's events.
    events: Option<Subscription>,
    /// The prompt was accepted: the client and the session's abort path.
    posted: Option<(ServerClient, String)>,
}

/// After an abort, reads the session's events until it is idle again (at most
/// [`SHORT_TIMEOUT`]), so the aborted turn's last events — its `MessageAbortedError`, the
/// final state of its parts — are consumed here and never reach the session's next turn on the
/// shared stream.
async fn settle_after_abort(events: &mut Subscription, session_id: &str) {
    let idle = async {
        while let Ok(event) = events.next().await {
            let props = &event["properties"];
            if event["type"] == "session.status"
                && props["sessionID"] == session_id
                && props["status"]["type"] == "idle"
            {
                return true;
            }
        }
        false
    };
    if !matches!(tokio::time::timeout(SHORT_TIMEOUT, idle).await, Ok(true)) {
        tracing::warn!(session = %session_id, "the aborted opencode session did not report idle");
    }
}

/// The error for a non-2xx reply of the server itself.
fn reply_error(reply: &HttpReply, doing: &str) -> AgentError {
    status_error(
        reply.status,
        format!(
            "opencode answered {} when {doing}: {}",
            reply.status,
            reply.text_excerpt()
        ),
    )
}

/// Decides one permission request (with the handler, or a reject with a message) and posts
/// the answer.
async fn answer_permission(
    client: ServerClient,
    handler: Option<Arc<dyn PermissionHandler>>,
    ask: PermissionAsked,
) {
    let id = ask.id.clone();
    let permission = ask.permission.clone();
    let reply = match handler {
        Some(handler) => handler.decide(ask).await,
        None => {
            tracing::info!(permission = %permission, request = %id, "no approval handler: rejecting the opencode permission request");
            PermissionReply::Reject {
                message: Some(NO_HANDLER_MESSAGE.to_owned()),
            }
        }
    };
    let path = format!("/permission/{}/reply", encode_component(&id));
    match client
        .call(Method::POST, &path, Some(&reply.to_body()), SHORT_TIMEOUT)
        .await
    {
        Ok(r) if r.is_success() => {}
        Ok(r) => {
            tracing::warn!(request = %id, status = r.status, body = %r.text_excerpt(), "opencode refused a permission reply")
        }
        Err(e) => tracing::warn!(request = %id, "cannot send a permission reply: {e}"),
    }
}

/// Rejects a question the agent asked (nobody in chat can answer it).
async fn reject_question(client: ServerClient, id: String) {
    let path = format!("/question/{}/reject", encode_component(&id));
    match client.call(Method::POST, &path, None, SHORT_TIMEOUT).await {
        Ok(r) if r.is_success() => tracing::info!(question = %id, "rejected an opencode question"),
        Ok(r) => {
            tracing::warn!(question = %id, status = r.status, "opencode refused a question reject")
        }
        Err(e) => tracing::warn!(question = %id, "cannot reject an opencode question: {e}"),
    }
}

#[async_trait]
impl AgentBackend for OpencodeBackend {
    fn kind(&self) -> &str {
        "opencode"
    }

    async fn start(&self) -> Result<(), AgentError> {
        self.sidecar.start().await.map_err(AgentError::from)
    }

    async fn stop(&self) {
        self.sidecar.stop().await;
    }

    fn health(&self) -> Option<String> {
        Some(self.sidecar.state().summary())
    }

    async fn create_session(&self, req: &NewSession) -> Result<String, AgentError> {
        let deadline = tokio::time::Instant::now() + req.timeout;
        let client = self.client_before(deadline).await?;
        let mut body = json!({"permission": session_rules(self.settings.gate_every_tool)});
        if let Some(title) = req.title.as_deref().filter(|t| !t.is_empty()) {
            body["title"] = json!(title);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let path = format!("/session{}", self.directory_query(&req.working_directory));
        let reply = client
            .call(Method::POST, &path, Some(&body), left)
            .await
            .map_err(|e| match e {
                crate::http::HttpError::Timeout(_) => AgentError::Timeout,
                other => other.into_agent_error(),
            })?;
        if !reply.is_success() {
            return Err(reply_error(&reply, "creating a session"));
        }
        match reply.json().get("id").and_then(Value::as_str) {
            Some(id) if id.starts_with("ses") => {
                tracing::info!(agent = %self.settings.name, session = %id, "opencode session created");
                Ok(id.to_owned())
            }
            _ => Err(AgentError::Protocol(format!(
                "opencode created a session without an id: {}",
                reply.text_excerpt()
            ))),
        }
    }

    async fn turn(
        &self,
        req: &TurnRequest,
        events: &EventSink,
    ) -> Result<AgentResponse, AgentError> {
        let started = Instant::now();
        let mut progress = TurnProgress::default();
        let mut timings = TurnTimings::default();
        let result = tokio::time::timeout(
            req.timeout,
            self.run_turn(req, events, &mut progress, &mut timings),
        )
        .await;
        let result = match result {
            Ok(result) => result,
            Err(_) => {
                if let Some((client, abort_path)) = progress.posted.take() {
                    tracing::warn!(session = %req.session_id, "opencode turn passed its deadline: aborting it");
                    match client
                        .call(Method::POST, &abort_path, None, SHORT_TIMEOUT)
                        .await
                    {
                        Ok(r) if r.is_success() => {
                            if let Some(events) = progress.events.as_mut() {
                                settle_after_abort(events, &req.session_id).await;
                            }
                        }
                        Ok(r) => tracing::warn!(
                            status = r.status,
                            "opencode refused to abort the session"
                        ),
                        Err(e) => tracing::warn!("cannot abort the opencode session: {e}"),
                    }
                }
                Err(AgentError::Timeout)
            }
        };
        timings.total = started.elapsed();
        *self.last_timings.lock().unwrap_or_else(|e| e.into_inner()) = Some(timings);
        tracing::debug!(
            session = %req.session_id,
            total_ms = timings.total.as_millis() as u64,
            agent_ms = timings.agent.map(|d| d.as_millis() as u64),
            subscribe_ms = timings.subscribe.as_millis() as u64,
            post_ms = timings.post.as_millis() as u64,
            handling_us = timings.handling.as_micros() as u64,
            events = timings.events,
            "opencode turn finished"
        );
        if let Err(e) = &result {
            tracing::warn!(agent = %self.settings.name, session = %req.session_id, "opencode turn failed: {e}");
        }
        result
    }

    async fn delete_session(&self, session_id: &str, working_directory: &Path) {
        let path = format!(
            "/session/{}{}",
            encode_component(session_id),
            self.directory_query(working_directory)
        );
        let outcome = match self.sidecar.client().await {
            Ok(client) => client
                .call(Method::DELETE, &path, None, SHORT_TIMEOUT)
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    if r.is_success() || r.status == 404 {
                        Ok(())
                    } else {
                        Err(format!("status {}: {}", r.status, r.text_excerpt()))
                    }
                }),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => tracing::info!(session = %session_id, "opencode session deleted"),
            Err(e) => {
                tracing::warn!(session = %session_id, "cannot delete the opencode session now ({e}); retrying at stop");
                self.sidecar.remember_orphan(session_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_config_content_fails_construction() {
        let mut settings = OpencodeSettings::new("opencode", "/w");
        settings
            .extra_env
            .push((CONFIG_CONTENT_VAR.into(), "{oops".into()));
        let err = OpencodeBackend::new(settings).unwrap_err();
        assert!(err.to_string().contains("OPENCODE_CONFIG_CONTENT"), "{err}");
    }

    #[test]
    fn the_sidecar_gets_the_merged_config_once() {
        let mut settings = OpencodeSettings::new("opencode", "/w");
        settings.extra_env = vec![
            ("HOME".into(), "/h".into()),
            (CONFIG_CONTENT_VAR.into(), r#"{"model":"m/x"}"#.into()),
        ];
        let backend = OpencodeBackend::new(settings).unwrap();
        let env = &backend.sidecar().spec().env;
        let contents: Vec<&String> = env
            .iter()
            .filter(|(k, _)| k == CONFIG_CONTENT_VAR)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(contents.len(), 1);
        assert!(contents[0].starts_with(r#"{"model":"m/x","permission":{"bash":{"*":"ask""#));
        assert!(env.contains(&("HOME".into(), "/h".into())));
        assert_eq!(backend.kind(), "opencode");
        assert_eq!(backend.sidecar_state(), SidecarState::Stopped);
        assert_eq!(backend.health().as_deref(), Some("opencode server stopped"));
    }

    #[test]
    fn sessions_deny_questions_and_optionally_ask_for_every_tool() {
        let plain = session_rules(false);
        assert_eq!(plain.len(), QUESTION_PERMISSIONS.len());
        assert!(plain.iter().all(|r| r["action"] == "deny"));
        let gated = session_rules(true);
        assert_eq!(
            gated[0],
            json!({"permission": "*", "action": "ask", "pattern": "*"})
        );
        assert_eq!(&gated[1..], plain.as_slice());
    }

    #[test]
    fn other_directories_are_named_in_the_query() {
        let backend = OpencodeBackend::new(OpencodeSettings::new("opencode", "/w")).unwrap();
        assert_eq!(backend.directory_query(Path::new("/w")), "");
        assert_eq!(backend.directory_query(Path::new("")), "");
        assert_eq!(
            backend.directory_query(Path::new("/other dir")),
            "?directory=%2Fother%20dir"
        );
    }

    #[test]
    fn overhead_is_total_minus_agent_time() {
        let timings = TurnTimings {
            total: Duration::from_millis(150),
            agent: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        assert_eq!(timings.overhead(), Some(Duration::from_millis(50)));
        assert_eq!(TurnTimings::default().overhead(), None);
    }
}
