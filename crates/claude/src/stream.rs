//! Parsing the CLI's output: `--output-format stream-json` (one JSON event per line) and
//! `--output-format json` (one `result` object), which share the `result` shape.
//!
//! Everything is read by key, so new fields, reordered keys, unknown event types and stray
//! non-JSON lines (warnings some versions print to stdout) are tolerated. What is used:
//! - `assistant` events: `message.content[]` blocks — `text` (collected for the reply and
//!   reported as [`AgentEvent::Text`]), `tool_use` ([`AgentEvent::ToolCall`]) and `thinking`
//!   ([`AgentEvent::Thinking`], a short excerpt). Messages of sub-agents (`parent_tool_use_id`
//!   set) and the CLI's synthetic API-error messages report tool calls but add no reply text.
//! - `stream_event` events (with `--include-partial-messages`): `text_delta`s become
//!   [`AgentEvent::TextDelta`].
//! - the `result` event: error flag, session id, cost, duration, turn count, usage, permission
//!   denials, API error status and the result text (the reply when no assistant text was seen).

use std::collections::VecDeque;

use acg_core::{AgentEvent, EventSink, PermissionDenial, Usage};
use serde_json::Value;

/// How many characters of a thinking block an [`AgentEvent::Thinking`] carries.
pub const THINKING_EXCERPT_CHARS: usize = 80;
/// How many recent stdout lines are kept for error diagnostics.
const KEPT_LINES: usize = 20;

/// The `result` event of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    /// `subtype` (`success`, `error_during_execution`, `error_max_turns`, …).
    pub subtype: String,
    /// `is_error`.
    pub is_error: bool,
    /// `result`: the final text, or an error description.
    pub result: Option<String>,
    /// `session_id`.
    pub session_id: Option<String>,
    /// `total_cost_usd` (the session's running total in CLI 2.1.330).
    pub cost_usd: Option<f64>,
    /// `duration_ms`.
    pub duration_ms: Option<u64>,
    /// `num_turns`.
    pub num_turns: Option<u32>,
    /// `usage`, mapped to the gateway's names.
    pub usage: Usage,
    /// `permission_denials`.
    pub permission_denials: Vec<PermissionDenial>,
    /// `api_error_status`: the HTTP status of a failed model request.
    pub api_error_status: Option<u16>,
    /// `terminal_reason` (`completed`, `api_error`, …).
    pub terminal_reason: Option<String>,
    /// `errors`: messages of a run that failed before or outside the model.
    pub errors: Vec<String>,
}

/// What one run printed, once its output ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedRun {
    /// Assistant text blocks of the main agent, in order.
    pub text_parts: Vec<String>,
    /// The `result` event, if one arrived.
    pub result: Option<RunResult>,
    /// The first session id seen in any event (the `result` one wins when present).
    pub session_id: Option<String>,
    /// The last stdout lines, for error diagnostics.
    pub last_lines: Vec<String>,
    /// How many lines were not JSON.
    pub non_json_lines: usize,
}

impl ParsedRun {
    /// The reply: assistant text joined with `\n` and trimmed; else the result text; else
    /// `None`.
    pub fn reply_text(&self) -> Option<String> {
        let joined = self.text_parts.join("\n");
        let joined = joined.trim();
        if !joined.is_empty() {
            return Some(joined.to_owned());
        }
        self.result
            .as_ref()
            .and_then(|r| r.result.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    /// The session id the run reported.
    pub fn session_id(&self) -> Option<&str> {
        self.result
            .as_ref()
            .and_then(|r| r.session_id.as_deref())
            .or(self.session_id.as_deref())
    }
}

/// Incremental parser: feed it stdout lines as they arrive, then take the [`ParsedRun`].
#[derive(Debug, Default)]
pub struct StreamParser {
    run: ParsedRun,
    recent: VecDeque<String>,
}

impl StreamParser {
    /// A parser that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one stdout line, reporting progress to `events`.
    pub fn feed_line(&mut self, line: &str, events: &EventSink) {
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if self.recent.len() == KEPT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(truncate_chars(line, 2_000));
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            self.run.non_json_lines += 1;
            return;
        };
        self.feed_event(&event, events);
    }

    /// Parses one already-decoded event.
    pub fn feed_event(&mut self, event: &Value, events: &EventSink) {
        if self.run.session_id.is_none() {
            if let Some(id) = str_field(event, "session_id") {
                self.run.session_id = Some(id.to_owned());
            }
        }
        match str_field(event, "type") {
            Some("assistant") => self.on_assistant(event, events),
            Some("stream_event") => on_stream_event(event, events),
            Some("result") => self.run.result = Some(parse_result(event)),
            _ => {}
        }
    }

    /// Ends the run and returns what was collected.
    pub fn finish(mut self) -> ParsedRun {
        self.run.last_lines = self.recent.into_iter().collect();
        self.run
    }

    fn on_assistant(&mut self, event: &Value, events: &EventSink) {
        let main_agent = event.get("parent_tool_use_id").is_none_or(Value::is_null);
        let api_error = event.get("is_api_error_message").and_then(Value::as_bool) == Some(true);
        let Some(blocks) = event
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
        else {
            return;
        };
        for block in blocks {
            match str_field(block, "type") {
                Some("text") if main_agent && !api_error => {
                    if let Some(text) = str_field(block, "text") {
                        self.run.text_parts.push(text.to_owned());
                        events.emit(AgentEvent::Text(text.to_owned()));
                    }
                }
                Some("tool_use") => {
                    let name = str_field(block, "name").unwrap_or("tool");
                    events.emit(AgentEvent::ToolCall {
                        name: name.to_owned(),
                    });
                }
                Some("thinking") if main_agent => {
                    let thinking = str_field(block, "thinking").unwrap_or("").trim();
                    if !thinking.is_empty() {
                        events.emit(AgentEvent::Thinking(excerpt(thinking)));
                    }
                }
                _ => {}
            }
        }
    }
}

fn on_stream_event(event: &Value, events: &EventSink) {
    if !event.get("parent_tool_use_id").is_none_or(Value::is_null) {
        return;
    }
    let Some(inner) = event.get("event") else {
        return;
    };
    if str_field(inner, "type") != Some("content_block_delta") {
        return;
    }
    let Some(delta) = inner.get("delta") else {
        return;
    };
    if str_field(delta, "type") == Some("text_delta") {
        if let Some(text) = str_field(delta, "text") {
            if !text.is_empty() {
                events.emit(AgentEvent::TextDelta(text.to_owned()));
            }
        }
    }
}

/// Parses a `result` event (also the whole output of `--output-format json`).
pub fn parse_result(event: &Value) -> RunResult {
    let usage = event.get("usage");
    let usage_field = |key: &str| usage.and_then(|u| u.get(key)).and_then(as_u64).unwrap_or(0);
    RunResult {
        subtype: str_field(event, "subtype").unwrap_or_default().to_owned(),
        is_error: event
            .get("is_error")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        result: str_field(event, "result").map(str::to_owned),
        session_id: str_field(event, "session_id").map(str::to_owned),
        cost_usd: event.get("total_cost_usd").and_then(Value::as_f64),
        duration_ms: event.get("duration_ms").and_then(as_u64),
        num_turns: event
            .get("num_turns")
            .and_then(as_u64)
            .and_then(|n| u32::try_from(n).ok()),
        usage: Usage {
            input_tokens: usage_field("input_tokens"),
            output_tokens: usage_field("output_tokens"),
            cache_read: usage_field("cache_read_input_tokens"),
            cache_write: usage_field("cache_creation_input_tokens"),
        },
        permission_denials: event
            .get("permission_denials")
            .and_then(Value::as_array)
            .map(|denials| denials.iter().map(parse_denial).collect())
            .unwrap_or_default(),
        api_error_status: event
            .get("api_error_status")
            .and_then(as_u64)
            .and_then(|s| u16::try_from(s).ok()),
        terminal_reason: str_field(event, "terminal_reason").map(str::to_owned),
        errors: event
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| match e {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn parse_denial(denial: &Value) -> PermissionDenial {
    PermissionDenial {
        tool_name: str_field(denial, "tool_name")
            .unwrap_or_default()
            .to_owned(),
        tool_use_id: str_field(denial, "tool_use_id")
            .unwrap_or_default()
            .to_owned(),
        tool_input: denial.get("tool_input").cloned().unwrap_or(Value::Null),
    }
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A non-negative integer, also when written as a float (`12.0`).
fn as_u64(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// The first [`THINKING_EXCERPT_CHARS`] characters, with `…` when cut.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(THINKING_EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as CLI 2.1.330 printed them against the test kit's mock (trimmed of noise keys),
    /// plus lines of unknown types and garbage.
    const RECORDED: &str = r#"
{"type":"system","subtype":"session_title_changed","title":"agent-chat:general","session_id":"s-1"}
{"type":"system","subtype":"init","cwd":"/tmp/w","session_id":"s-1","tools":["Bash","Write"],"model":"claude-opus-5-5"}
{"type":"system","subtype":"status","status":"requesting","session_id":"s-1"}
{"type":"stream_event","event":{"type":"message_start","message":{"content":[]}},"session_id":"s-1","parent_tool_use_id":null}
{"type":"stream_event","event":{"delta":{"text":"Let me ","type":"text_delta"},"index":0,"type":"content_block_delta"},"session_id":"s-1","parent_tool_use_id":null}
{"type":"stream_event","event":{"delta":{"text":"check.","type":"text_delta"},"index":0,"type":"content_block_delta"},"session_id":"s-1","parent_tool_use_id":null}
{"type":"stream_event","event":{"delta":{"partial_json":"{\"a\"","type":"input_json_delta"},"index":1,"type":"content_block_delta"},"session_id":"s-1","parent_tool_use_id":null}
{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"I should look at the repository layout before answering the question about it, carefully."},{"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"ls"}}]},"parent_tool_use_id":null,"session_id":"s-1"}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"a\nb","is_error":false}]},"session_id":"s-1"}
{"type":"assistant","message":{"content":[{"type":"text","text":"sub-agent chatter"},{"type":"tool_use","id":"toolu_2","name":"Read","input":{}}]},"parent_tool_use_id":"toolu_9","session_id":"s-1"}
this line is not JSON at all
{"type":"brand_new_event","payload":{"x":1}}
[1,2,3]
{"no_type":true}
{"type":"assistant","message":{"content":[{"type":"text","text":"  There are two files.  "},{"type":"mystery_block","x":1}],"usage":{"input_tokens":1}},"parent_tool_use_id":null,"session_id":"s-1","new_field":{"nested":[1]}}
{"type":"result","subtype":"success","is_error":false,"duration_ms":1234,"num_turns":2,"result":"There are two files.","session_id":"s-1","total_cost_usd":0.0123,"usage":{"input_tokens":100,"cache_creation_input_tokens":7,"cache_read_input_tokens":40,"output_tokens":20,"server_tool_use":{"web_search_requests":0}},"permission_denials":[{"tool_name":"Write","tool_use_id":"toolu_3","tool_input":{"file_path":"/x","content":"y"}}],"api_error_status":null,"terminal_reason":"completed","extra":"ignored"}
"#;

    fn parse_all(text: &str) -> (ParsedRun, Vec<AgentEvent>) {
        let (sink, mut rx) = EventSink::channel(1024);
        let mut parser = StreamParser::new();
        for line in text.lines() {
            parser.feed_line(line, &sink);
        }
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (parser.finish(), events)
    }

    #[test]
    fn parses_recorded_stream_by_key() {
        let (run, events) = parse_all(RECORDED);
        assert_eq!(
            run.text_parts,
            vec!["Let me check.", "  There are two files.  "]
        );
        assert_eq!(
            run.reply_text().as_deref(),
            Some("Let me check.\n  There are two files.")
        );
        assert_eq!(run.session_id(), Some("s-1"));
        assert_eq!(
            run.non_json_lines, 1,
            "`[1,2,3]` is JSON, the prose line is not"
        );
        let result = run.result.as_ref().unwrap();
        assert_eq!(result.subtype, "success");
        assert!(!result.is_error);
        assert_eq!(result.num_turns, Some(2));
        assert_eq!(result.duration_ms, Some(1234));
        assert_eq!(result.cost_usd, Some(0.0123));
        assert_eq!(
            result.usage,
            Usage {
                input_tokens: 100,
                output_tokens: 20,
                cache_read: 40,
                cache_write: 7
            }
        );
        assert_eq!(result.permission_denials.len(), 1);
        assert_eq!(result.permission_denials[0].tool_name, "Write");
        assert_eq!(result.permission_denials[0].tool_use_id, "toolu_3");
        assert_eq!(result.permission_denials[0].tool_input["file_path"], "/x");
        assert_eq!(result.api_error_status, None);
        assert_eq!(result.terminal_reason.as_deref(), Some("completed"));

        assert_eq!(
            events,
            vec![
                AgentEvent::TextDelta("Let me ".into()),
                AgentEvent::TextDelta("check.".into()),
                AgentEvent::Thinking(
                    "I should look at the repository layout before answering the question about it, c…"
                        .into()
                ),
                AgentEvent::Text("Let me check.".into()),
                AgentEvent::ToolCall { name: "Bash".into() },
                AgentEvent::ToolCall { name: "Read".into() },
                AgentEvent::Text("  There are two files.  ".into()),
            ]
        );
        assert_eq!(run.last_lines.len(), 16);
    }

    #[test]
    fn result_text_is_the_reply_when_no_assistant_text() {
        let (run, _) = parse_all(
            r#"{"type":"result","subtype":"success","is_error":false,"result":"  only here ","session_id":"s"}"#,
        );
        assert_eq!(run.reply_text().as_deref(), Some("only here"));
        let (run, _) = parse_all("{\"type\":\"result\",\"result\":\"   \"}\n");
        assert_eq!(run.reply_text(), None);
        let (run, _) = parse_all("");
        assert_eq!(run.reply_text(), None);
        assert_eq!(run.result, None);
    }

    #[test]
    fn api_error_messages_add_no_reply_text() {
        let (run, events) = parse_all(concat!(
            r#"{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error: Request rejected (429) · slow down"}]},"parent_tool_use_id":null,"session_id":"s","is_api_error_message":true,"api_error_status":429}"#,
            "\n",
            r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"API Error: Request rejected (429) · slow down","terminal_reason":"api_error","session_id":"s","num_turns":1}"#,
        ));
        assert!(run.text_parts.is_empty());
        assert!(events.is_empty());
        let result = run.result.unwrap();
        assert!(result.is_error);
        assert_eq!(result.api_error_status, Some(429));
    }

    #[test]
    fn tolerates_odd_values() {
        let (run, events) = parse_all(concat!(
            r#"{"type":"assistant","message":{"content":"not a list"}}"#,
            "\n",
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use"},{"type":"thinking","thinking":"   "},{"type":"text"}]}}"#,
            "\n",
            r#"{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"text_delta","text":"sub"}},"parent_tool_use_id":"toolu_x"}"#,
            "\n",
            r#"{"type":"result","num_turns":-3,"duration_ms":12.0,"total_cost_usd":"free","usage":{"input_tokens":"many"},"permission_denials":[{}],"errors":["No conversation found with session ID: x",{"code":1}]}"#,
        ));
        assert_eq!(
            events,
            vec![AgentEvent::ToolCall {
                name: "tool".into()
            }]
        );
        let result = run.result.unwrap();
        assert_eq!(result.num_turns, None);
        assert_eq!(result.duration_ms, Some(12));
        assert_eq!(result.cost_usd, None);
        assert_eq!(result.usage, Usage::default());
        assert_eq!(result.permission_denials[0].tool_name, "");
        assert_eq!(result.errors.len(), 2);
        assert!(!result.is_error);
    }

    #[test]
    fn excerpt_counts_characters_not_bytes() {
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), THINKING_EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("short"), "short");
    }
}
