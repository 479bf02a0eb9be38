//! Following one turn on OpenCode's event stream: which events belong to it, the reply text
//! assembled in order, progress events, usage, and how the turn ends.
//!
//! [`TurnTracker`] is a pure state machine (no I/O): the backend feeds it every event of
//! `GET /event` and acts on the [`Step`] it returns. It keeps to the turn's session and the
//! sub-agent sessions started from it (a `session.created` whose `parentID` is in the family):
//! - reply text comes only from the turn session's assistant text parts (the prompt's own text
//!   part and synthetic parts are skipped), in the order the parts first appeared;
//!   `message.part.delta` appends (and is reported as [`AgentEvent::TextDelta`]), a later
//!   `message.part.updated` with the full text is authoritative (any missing tail is reported
//!   too); deltas that arrive before their part is known wait for it;
//! - each tool part is reported once as [`AgentEvent::ToolCall`] (sub-agents' too, which keeps
//!   the typing indicator alive), a finished reasoning part as [`AgentEvent::Thinking`];
//! - `step-finish` parts add tokens and cost;
//! - `session.status` `idle` (after the turn was seen busy) ends the turn; a `session.error` of
//!   the turn session ends it with the error's class, except an unknown error, which only fails
//!   the turn when it produced no text;
//! - `permission.asked` / `question.asked` of the family are handed back to the backend;
//! - with [`TurnTracker::not_before`], messages created before the turn's prompt was sent
//!   (late updates of the previous turn on the shared stream, e.g. its user message getting
//!   its summary) neither set the turn's timing nor contribute parts.

use std::collections::{HashMap, HashSet};

use acg_core::user_messages::EMPTY_RESPONSE;
use acg_core::{AgentError, AgentEvent, AgentResponse, EventSink, PermissionDenial, Usage};
use serde_json::Value;

use crate::http::status_error;
use crate::permission::PermissionAsked;

/// A thinking excerpt is cut to this many characters.
const THINKING_EXCERPT_CHARS: usize = 80;

/// What the backend should do after an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Keep reading.
    Continue,
    /// A tool call waits for approval: answer it.
    Permission(PermissionAsked),
    /// The agent asks the user a question nobody in chat can answer: reject it (by id).
    Question(String),
    /// The turn is over.
    Done(Result<AgentResponse, AgentError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Text,
    Other,
}

/// The state of one turn, fed event by event.
#[derive(Debug)]
pub struct TurnTracker {
    session_id: String,
    watcher: Option<String>,
    family: HashSet<String>,
    user_messages: HashSet<String>,
    parts: HashMap<String, PartKind>,
    text_order: Vec<String>,
    texts: HashMap<String, String>,
    early_deltas: HashMap<String, String>,
    announced: HashSet<String>,
    step_finishes: HashSet<String>,
    usage: Usage,
    cost: f64,
    steps: u32,
    busy_seen: bool,
    deferred_error: Option<String>,
    user_created_ms: Option<i64>,
    not_before_ms: Option<i64>,
    stale_messages: HashSet<String>,
    assistant_completed_ms: Option<i64>,
    denials: Vec<PermissionDenial>,
    events_seen: usize,
}

impl TurnTracker {
    /// A tracker for a turn in `session_id` (`watcher` is passed on to permission requests).
    pub fn new(session_id: &str, watcher: Option<&str>) -> Self {
        TurnTracker {
            session_id: session_id.to_owned(),
            watcher: watcher.map(str::to_owned),
            family: HashSet::from([session_id.to_owned()]),
            user_messages: HashSet::new(),
            parts: HashMap::new(),
            text_order: Vec::new(),
            texts: HashMap::new(),
            early_deltas: HashMap::new(),
            announced: HashSet::new(),
            step_finishes: HashSet::new(),
            usage: Usage::default(),
            cost: 0.0,
            steps: 0,
            busy_seen: false,
            deferred_error: None,
            user_created_ms: None,
            not_before_ms: None,
            stale_messages: HashSet::new(),
            assistant_completed_ms: None,
            denials: Vec::new(),
            events_seen: 0,
        }
    }

    /// Ignores messages created before `unix_ms` (when the turn's prompt was sent): on a
    /// stream shared by turns, the previous turn's messages may still be updated after this
    /// turn began.
    pub fn not_before(mut self, unix_ms: i64) -> Self {
        self.not_before_ms = Some(unix_ms);
        self
    }

    /// How many events of the turn's family were handled.
    pub fn events_seen(&self) -> usize {
        self.events_seen
    }

    /// OpenCode's own time for the turn: from the prompt message's creation to the last
    /// assistant message's completion (milliseconds), when both were seen.
    pub fn agent_duration_ms(&self) -> Option<u64> {
        let (start, end) = (self.user_created_ms?, self.assistant_completed_ms?);
        u64::try_from(end - start).ok()
    }

    /// Records a permission request the backend refused on its own (shown in the response).
    pub fn record_denial(&mut self, ask: &PermissionAsked) {
        self.denials.push(PermissionDenial {
            tool_name: ask.permission.clone(),
            tool_use_id: ask.call_id.clone().unwrap_or_default(),
            tool_input: ask.metadata.clone(),
        });
    }

    /// The reply text so far: the turn session's text parts in order, joined with `\n`.
    pub fn text(&self) -> String {
        self.text_order
            .iter()
            .filter_map(|id| self.texts.get(id))
            .map(String::as_str)
            .filter(|t| !t.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned()
    }

    /// Handles one event (the parsed JSON of a `data:` line).
    pub fn on_event(&mut self, event: &Value, sink: &EventSink) -> Step {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let props = event.get("properties").unwrap_or(&Value::Null);
        if kind == "session.created" {
            self.adopt_child(props);
        }
        let session = props
            .get("sessionID")
            .or_else(|| props.pointer("/part/sessionID"))
            .or_else(|| props.pointer("/info/sessionID"))
            .and_then(Value::as_str);
        let Some(session) = session.filter(|s| self.family.contains(*s)) else {
            return Step::Continue;
        };
        let own = session == self.session_id;
        self.events_seen += 1;
        match kind {
            "message.updated" => self.on_message(props, own),
            "message.part.updated" => self.on_part(props, own, sink),
            "message.part.delta" if own => self.on_delta(props, sink),
            "session.status" if own => return self.on_status(props),
            "session.error" => return self.on_error(props, own),
            "permission.asked" => {
                if let Some(ask) =
                    PermissionAsked::from_event(props, &self.session_id, self.watcher.as_deref())
                {
                    return Step::Permission(ask);
                }
            }
            "question.asked" => {
                if let Some(id) = props.get("id").and_then(Value::as_str) {
                    return Step::Question(id.to_owned());
                }
            }
            _ => {}
        }
        Step::Continue
    }

    fn adopt_child(&mut self, props: &Value) {
        let parent = props.pointer("/info/parentID").and_then(Value::as_str);
        let child = props.pointer("/info/id").and_then(Value::as_str);
        if let (Some(parent), Some(child)) = (parent, child) {
            if self.family.contains(parent) {
                self.family.insert(child.to_owned());
            }
        }
    }

    fn on_message(&mut self, props: &Value, own: bool) {
        let Some(info) = props.get("info") else {
            return;
        };
        let id = info.get("id").and_then(Value::as_str).unwrap_or_default();
        let created = info.pointer("/time/created").and_then(Value::as_i64);
        let completed = info.pointer("/time/completed").and_then(Value::as_i64);
        let stale = matches!((self.not_before_ms, created), (Some(since), Some(c)) if c < since);
        if stale {
            self.stale_messages.insert(id.to_owned());
        }
        match info.get("role").and_then(Value::as_str) {
            Some("user") => {
                self.user_messages.insert(id.to_owned());
                if own && !stale && self.user_created_ms.is_none() {
                    self.user_created_ms = created;
                }
            }
            Some("assistant") if own && !stale => {
                if let Some(done) = completed {
                    self.assistant_completed_ms = Some(
                        self.assistant_completed_ms
                            .map_or(done, |prev| prev.max(done)),
                    );
                }
            }
            _ => {}
        }
    }

    fn on_part(&mut self, props: &Value, own: bool, sink: &EventSink) {
        let Some(part) = props.get("part") else {
            return;
        };
        let id = part.get("id").and_then(Value::as_str).unwrap_or_default();
        let message = part
            .get("messageID")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if self.stale_messages.contains(message) {
            self.parts.insert(id.to_owned(), PartKind::Other);
            self.early_deltas.remove(id);
            return;
        }
        match part.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => {
                let from_user = self.user_messages.contains(message);
                let synthetic = part.get("synthetic").and_then(Value::as_bool) == Some(true);
                if !own || from_user || synthetic || id.is_empty() {
                    self.parts.insert(id.to_owned(), PartKind::Other);
                    self.early_deltas.remove(id);
                    return;
                }
                let full = part.get("text").and_then(Value::as_str).unwrap_or_default();
                self.register_text(id, sink);
                let current = self.texts.entry(id.to_owned()).or_default();
                if let Some(tail) = full.strip_prefix(current.as_str()) {
                    if !tail.is_empty() {
                        sink.emit(AgentEvent::TextDelta(tail.to_owned()));
                    }
                }
                if full.len() >= current.len() || !current.starts_with(full) {
                    *current = full.to_owned();
                }
            }
            "tool" => {
                self.parts.insert(id.to_owned(), PartKind::Other);
                if self.announced.insert(id.to_owned()) {
                    let name = part.get("tool").and_then(Value::as_str).unwrap_or("tool");
                    sink.emit(AgentEvent::ToolCall {
                        name: name.to_owned(),
                    });
                }
            }
            "reasoning" => {
                self.parts.insert(id.to_owned(), PartKind::Other);
                let text = part
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim();
                if !text.is_empty() && self.announced.insert(id.to_owned()) {
                    let excerpt: String = text.chars().take(THINKING_EXCERPT_CHARS).collect();
                    sink.emit(AgentEvent::Thinking(excerpt));
                }
            }
            "step-finish" => {
                self.parts.insert(id.to_owned(), PartKind::Other);
                if self.step_finishes.insert(id.to_owned()) {
                    self.add_step(part, own);
                }
            }
            _ => {
                self.parts.insert(id.to_owned(), PartKind::Other);
            }
        }
        self.early_deltas
            .retain(|part_id, _| self.parts.get(part_id) != Some(&PartKind::Other));
    }

    /// Makes `id` a known text part (first-seen order), applying deltas that came early.
    fn register_text(&mut self, id: &str, sink: &EventSink) {
        if self.parts.insert(id.to_owned(), PartKind::Text) == Some(PartKind::Text) {
            return;
        }
        self.text_order.push(id.to_owned());
        if let Some(early) = self.early_deltas.remove(id) {
            sink.emit(AgentEvent::TextDelta(early.clone()));
            self.texts
                .entry(id.to_owned())
                .or_default()
                .push_str(&early);
        }
    }

    fn on_delta(&mut self, props: &Value, sink: &EventSink) {
        if props.get("field").and_then(Value::as_str) != Some("text") {
            return;
        }
        let (Some(id), Some(delta)) = (
            props.get("partID").and_then(Value::as_str),
            props.get("delta").and_then(Value::as_str),
        ) else {
            return;
        };
        if delta.is_empty() {
            return;
        }
        match self.parts.get(id) {
            Some(PartKind::Text) => {
                self.texts.entry(id.to_owned()).or_default().push_str(delta);
                sink.emit(AgentEvent::TextDelta(delta.to_owned()));
            }
            Some(PartKind::Other) => {}
            None => self
                .early_deltas
                .entry(id.to_owned())
                .or_default()
                .push_str(delta),
        }
    }

    fn add_step(&mut self, part: &Value, own: bool) {
        let tokens = |path: &str| {
            part.pointer(path)
                .and_then(Value::as_f64)
                .filter(|n| n.is_finite() && *n > 0.0)
                .map_or(0, |n| n as u64)
        };
        self.usage.input_tokens += tokens("/tokens/input");
        // Reasoning tokens are billed as output; OpenCode counts them apart.
        self.usage.output_tokens += tokens("/tokens/output") + tokens("/tokens/reasoning");
        self.usage.cache_read += tokens("/tokens/cache/read");
        self.usage.cache_write += tokens("/tokens/cache/write");
        if let Some(cost) = part.get("cost").and_then(Value::as_f64) {
            if cost.is_finite() {
                self.cost += cost;
            }
        }
        if own {
            self.steps += 1;
        }
    }

    fn on_status(&mut self, props: &Value) -> Step {
        let status = props.get("status").unwrap_or(&Value::Null);
        match status.get("type").and_then(Value::as_str) {
            Some("busy") => self.busy_seen = true,
            Some("retry") => {
                self.busy_seen = true;
                let attempt = status.get("attempt").and_then(Value::as_u64);
                let message = status.get("message").and_then(Value::as_str).unwrap_or("");
                tracing::info!(
                    session = %self.session_id,
                    attempt,
                    message,
                    "opencode is retrying the model request"
                );
            }
            Some("idle") if self.busy_seen => return Step::Done(self.finish()),
            _ => {}
        }
        Step::Continue
    }

    fn on_error(&mut self, props: &Value, own: bool) -> Step {
        let error = props.get("error").unwrap_or(&Value::Null);
        let name = error.get("name").and_then(Value::as_str).unwrap_or("");
        if !own {
            tracing::warn!(session = %self.session_id, error = %error, "an opencode sub-agent session failed");
            return Step::Continue;
        }
        if name == "UnknownError" || name.is_empty() {
            // Also raised for recoverable trouble (a file part that could not be read); the
            // turn goes on, and only fails if it ends without a reply.
            let message = error_message(error);
            tracing::warn!(session = %self.session_id, "opencode reported an error: {message}");
            self.deferred_error = Some(message);
            return Step::Continue;
        }
        Step::Done(Err(classify_session_error(error)))
    }

    /// The response at the end of the turn.
    pub fn finish(&self) -> Result<AgentResponse, AgentError> {
        let text = self.text();
        let finished_step = !self.step_finishes.is_empty();
        if text.is_empty() {
            if let Some(message) = &self.deferred_error {
                return Err(AgentError::Other(format!(
                    "OpenCode session error: {message}"
                )));
            }
        }
        Ok(AgentResponse {
            is_error: text.is_empty() && !finished_step,
            text: if text.is_empty() {
                EMPTY_RESPONSE.to_owned()
            } else {
                text
            },
            session_id: Some(self.session_id.clone()),
            usage: self.usage,
            cost_usd: finished_step.then_some(self.cost),
            num_turns: finished_step.then_some(self.steps),
            duration_ms: self.agent_duration_ms(),
            permission_denials: self.denials.clone(),
        })
    }
}

fn error_message(error: &Value) -> String {
    error
        .pointer("/data/message")
        .and_then(Value::as_str)
        .or_else(|| error.get("message").and_then(Value::as_str))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if error.is_null() {
                "unknown error".to_owned()
            } else {
                error.to_string()
            }
        })
}

/// The error class of a `session.error`'s `error` object.
pub fn classify_session_error(error: &Value) -> AgentError {
    let name = error.get("name").and_then(Value::as_str).unwrap_or("");
    let message = error_message(error);
    let detail = format!("OpenCode session error ({name}): {message}");
    match name {
        "ProviderAuthError" => AgentError::Permission(detail),
        "APIError" => match error.pointer("/data/statusCode").and_then(Value::as_u64) {
            Some(status) => status_error(u16::try_from(status).unwrap_or(0), detail),
            // No status: the provider could not be reached at all.
            None if is_connection_failure(&message) => AgentError::Unavailable(detail),
            None => AgentError::Other(detail),
        },
        _ => AgentError::Other(detail),
    }
}

fn is_connection_failure(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "unable to connect",
        "econnrefused",
        "connection refused",
        "fetch failed",
        "socket",
        "timed out",
        "timeout",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SID: &str = "ses_root";

    fn ev(kind: &str, props: Value) -> Value {
        json!({"id": "evt_x", "type": kind, "properties": props})
    }

    fn status(kind: &str) -> Value {
        ev(
            "session.status",
            json!({"sessionID": SID, "status": {"type": kind}}),
        )
    }

    fn part(session: &str, message: &str, part: Value) -> Value {
        let mut part = part;
        part["sessionID"] = json!(session);
        part["messageID"] = json!(message);
        ev(
            "message.part.updated",
            json!({"sessionID": session, "part": part}),
        )
    }

    fn delta(part_id: &str, text: &str) -> Value {
        ev(
            "message.part.delta",
            json!({"sessionID": SID, "messageID": "msg_a", "partID": part_id, "field": "text", "delta": text}),
        )
    }

    fn message(role: &str, id: &str, time: Value) -> Value {
        ev(
            "message.updated",
            json!({"sessionID": SID, "info": {"id": id, "role": role, "sessionID": SID, "time": time}}),
        )
    }

    fn run(tracker: &mut TurnTracker, events: &[Value]) -> (Vec<Step>, Vec<AgentEvent>) {
        let (sink, mut rx) = EventSink::channel(1000);
        let steps = events.iter().map(|e| tracker.on_event(e, &sink)).collect();
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            out.push(e);
        }
        (steps, out)
    }

    #[test]
    fn messages_of_an_earlier_turn_are_ignored() {
        let mut t = TurnTracker::new(SID, None).not_before(2000);
        let events = vec![
            // The previous turn's messages, updated late.
            message("user", "msg_old_u", json!({"created": 1000})),
            message(
                "assistant",
                "msg_old_a",
                json!({"created": 1100, "completed": 1900}),
            ),
            part(
                SID,
                "msg_old_a",
                json!({"id": "prt_old", "type": "text", "text": "old answer"}),
            ),
            part(
                SID,
                "msg_old_a",
                json!({"id": "prt_old_f", "type": "step-finish", "cost": 1.0,
                    "tokens": {"input": 100, "output": 100, "reasoning": 0,
                        "cache": {"read": 0, "write": 0}}}),
            ),
            // This turn.
            message("user", "msg_u", json!({"created": 2005})),
            status("busy"),
            message("assistant", "msg_a", json!({"created": 2010})),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_a", "type": "text", "text": "new answer"}),
            ),
            message(
                "assistant",
                "msg_a",
                json!({"created": 2010, "completed": 2300}),
            ),
            status("idle"),
        ];
        let (steps, _) = run(&mut t, &events);
        let Some(Step::Done(Ok(response))) = steps.last() else {
            panic!("{steps:?}");
        };
        assert_eq!(response.text, "new answer");
        assert_eq!(response.cost_usd, None);
        assert_eq!(response.usage.input_tokens, 0);
        assert_eq!(t.agent_duration_ms(), Some(295));
    }

    #[test]
    fn a_streamed_reply_is_assembled_in_order_without_the_prompt() {
        let mut t = TurnTracker::new(SID, None);
        let events = vec![
            ev("server.connected", json!({})),
            message("user", "msg_u", json!({"created": 1000})),
            part(
                SID,
                "msg_u",
                json!({"id": "prt_u", "type": "text", "text": "the prompt"}),
            ),
            status("busy"),
            message("assistant", "msg_a", json!({"created": 1100})),
            part(SID, "msg_a", json!({"id": "prt_s", "type": "step-start"})),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_1", "type": "text", "text": ""}),
            ),
            delta("prt_1", "Hello "),
            delta("prt_1", "world"),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_1", "type": "text", "text": "Hello world!"}),
            ),
            // A delta for a part announced only afterwards waits for it.
            delta("prt_2", "Second"),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_2", "type": "text", "text": ""}),
            ),
            delta("prt_2", " part"),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_syn", "type": "text", "text": "synthetic", "synthetic": true}),
            ),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_f", "type": "step-finish", "reason": "stop", "cost": 0.25,
                "tokens": {"input": 10, "output": 5, "reasoning": 2, "cache": {"read": 3, "write": 4}}}),
            ),
            // The same step-finish again (a re-publish) is not counted twice.
            part(
                SID,
                "msg_a",
                json!({"id": "prt_f", "type": "step-finish", "cost": 0.25,
                "tokens": {"input": 10, "output": 5, "reasoning": 2, "cache": {"read": 3, "write": 4}}}),
            ),
            message(
                "assistant",
                "msg_a",
                json!({"created": 1100, "completed": 1600}),
            ),
            // Another session's events are ignored.
            ev(
                "session.status",
                json!({"sessionID": "ses_other", "status": {"type": "idle"}}),
            ),
            status("idle"),
        ];
        let (steps, emitted) = run(&mut t, &events);
        let Some(Step::Done(Ok(response))) = steps.last() else {
            panic!("turn did not end: {steps:?}");
        };
        assert!(steps[..steps.len() - 1]
            .iter()
            .all(|s| *s == Step::Continue));
        assert_eq!(response.text, "Hello world!\nSecond part");
        assert!(!response.is_error);
        assert_eq!(
            response.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 7,
                cache_read: 3,
                cache_write: 4
            }
        );
        assert_eq!(response.cost_usd, Some(0.25));
        assert_eq!(response.num_turns, Some(1));
        assert_eq!(response.duration_ms, Some(600));
        assert_eq!(response.session_id.as_deref(), Some(SID));
        let deltas: String = emitted
            .iter()
            .filter_map(|e| match e {
                AgentEvent::TextDelta(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, "Hello world!Second part");
    }

    #[test]
    fn idle_before_busy_does_not_end_the_turn() {
        let mut t = TurnTracker::new(SID, None);
        let (steps, _) = run(&mut t, &[status("idle"), status("busy"), status("idle")]);
        assert_eq!(steps[0], Step::Continue);
        assert!(matches!(steps[2], Step::Done(Ok(_))));
        // No text and no step: the empty-response stand-in, flagged as an error.
        let Step::Done(Ok(response)) = &steps[2] else {
            unreachable!()
        };
        assert_eq!(response.text, EMPTY_RESPONSE);
        assert!(response.is_error);
    }

    #[test]
    fn tools_thinking_and_sub_agents_are_reported() {
        let mut t = TurnTracker::new(SID, Some("w1"));
        let events = vec![
            status("busy"),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_r", "type": "reasoning", "text": ""}),
            ),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_r", "type": "reasoning", "text": "  Let me think about the question at hand, which is long enough to be cut somewhere"}),
            ),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_t", "type": "tool", "tool": "bash", "state": {"status": "pending"}}),
            ),
            part(
                SID,
                "msg_a",
                json!({"id": "prt_t", "type": "tool", "tool": "bash", "state": {"status": "running"}}),
            ),
            ev(
                "session.created",
                json!({"sessionID": "ses_child", "info": {"id": "ses_child", "parentID": SID}}),
            ),
            part(
                "ses_child",
                "msg_c",
                json!({"id": "prt_ct", "type": "tool", "tool": "read", "state": {"status": "running"}}),
            ),
            part(
                "ses_child",
                "msg_c",
                json!({"id": "prt_ctext", "type": "text", "text": "child text"}),
            ),
            ev(
                "permission.asked",
                json!({"id": "per_1", "sessionID": "ses_child", "permission": "bash",
                "patterns": ["ls"], "metadata": {}, "always": ["ls *"], "tool": {"messageID": "m", "callID": "c"}}),
            ),
            ev(
                "question.asked",
                json!({"id": "que_1", "sessionID": SID, "questions": []}),
            ),
            ev(
                "permission.asked",
                json!({"id": "per_2", "sessionID": "ses_stranger", "permission": "bash"}),
            ),
            status("idle"),
        ];
        let (steps, emitted) = run(&mut t, &events);
        assert_eq!(
            emitted,
            vec![
                AgentEvent::Thinking(
                    "Let me think about the question at hand, which is long enough to be cut somewher"
                        .into()
                ),
                AgentEvent::ToolCall {
                    name: "bash".into()
                },
                AgentEvent::ToolCall {
                    name: "read".into()
                },
            ]
        );
        let Step::Permission(ask) = &steps[8] else {
            panic!("{:?}", steps[8]);
        };
        assert_eq!(ask.id, "per_1");
        assert_eq!(ask.session_id, "ses_child");
        assert_eq!(ask.turn_session_id, SID);
        assert_eq!(ask.watcher.as_deref(), Some("w1"));
        assert_eq!(steps[9], Step::Question("que_1".into()));
        assert_eq!(steps[10], Step::Continue);
        t.record_denial(ask);
        let response = t.finish().unwrap();
        // The sub-agent's text is not the reply.
        assert_eq!(response.text, EMPTY_RESPONSE);
        assert_eq!(response.permission_denials.len(), 1);
        assert_eq!(response.permission_denials[0].tool_name, "bash");
    }

    #[test]
    fn session_errors_map_to_classes() {
        let api = |status: Option<u16>, message: &str| {
            let mut data = json!({"message": message, "isRetryable": false});
            if let Some(s) = status {
                data["statusCode"] = json!(s);
            }
            json!({"name": "APIError", "data": data})
        };
        let d = std::mem::discriminant::<AgentError>;
        assert_eq!(
            d(&classify_session_error(&api(Some(429), "slow down"))),
            d(&AgentError::RateLimited(String::new()))
        );
        assert_eq!(
            d(&classify_session_error(&api(Some(401), "bad key"))),
            d(&AgentError::Permission(String::new()))
        );
        assert_eq!(
            d(&classify_session_error(&api(Some(503), "down"))),
            d(&AgentError::Unavailable(String::new()))
        );
        assert_eq!(
            d(&classify_session_error(&api(
                None,
                "Unable to connect. Is the computer able to access the url?"
            ))),
            d(&AgentError::Unavailable(String::new()))
        );
        assert_eq!(
            d(&classify_session_error(&api(Some(400), "bad request"))),
            d(&AgentError::Other(String::new()))
        );
        assert_eq!(
            d(&classify_session_error(
                &json!({"name": "ProviderAuthError", "data": {"providerID": "x", "message": "no key"}})
            )),
            d(&AgentError::Permission(String::new()))
        );
        let err = classify_session_error(&api(Some(429), "slow down"));
        assert!(err.to_string().contains("slow down"), "{err}");

        // A classified error of the turn session ends the turn at once.
        let mut t = TurnTracker::new(SID, None);
        let error = ev(
            "session.error",
            json!({"sessionID": SID, "error": api(Some(401), "bad key")}),
        );
        let (steps, _) = run(&mut t, &[status("busy"), error]);
        assert!(matches!(
            &steps[1],
            Step::Done(Err(AgentError::Permission(_)))
        ));
    }

    #[test]
    fn unknown_errors_fail_only_a_turn_without_text() {
        let unknown = ev(
            "session.error",
            json!({"sessionID": SID, "error": {"name": "UnknownError", "data": {"message": "could not read file"}}}),
        );
        let mut t = TurnTracker::new(SID, None);
        let (steps, _) = run(&mut t, &[status("busy"), unknown.clone(), status("idle")]);
        assert_eq!(steps[1], Step::Continue);
        assert!(
            matches!(&steps[2], Step::Done(Err(AgentError::Other(m))) if m.contains("could not read file"))
        );

        let mut t = TurnTracker::new(SID, None);
        let (steps, _) = run(
            &mut t,
            &[
                status("busy"),
                unknown,
                part(
                    SID,
                    "msg_a",
                    json!({"id": "prt_1", "type": "text", "text": "fine anyway"}),
                ),
                status("idle"),
            ],
        );
        assert!(matches!(&steps[3], Step::Done(Ok(r)) if r.text == "fine anyway"));
    }
}
