//! Micro-benchmarks of the `stream-json` parser: every line the Claude CLI prints during a
//! turn goes through [`StreamParser::feed_line`].
//!
//! Run with `cargo bench -p acg-claude`; `docs/performance.md` records the results.

use acg_claude::stream::{parse_result, StreamParser};
use acg_core::EventSink;

fn main() {
    divan::main();
}

/// A short turn as CLI 2.1.330 prints it: init, one text answer, the result.
const SHORT_TURN: &[&str] = &[
    r#"{"type":"system","subtype":"init","cwd":"/work/project","session_id":"0b5c6a2e-4a55-4a4e-9d8c-1f2e3d4c5b6a","tools":["Task","Bash","Glob","Grep","LS","Read","Edit","MultiEdit","Write","NotebookEdit","WebFetch","TodoWrite","WebSearch"],"mcp_servers":[],"model":"claude-opus-5-5","permissionMode":"default","slash_commands":["compact","context","cost","init","review"],"apiKeySource":"ANTHROPIC_API_KEY","output_style":"default","uuid":"7f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"}"#,
    r#"{"type":"assistant","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"text","text":"The README describes a gateway between team chat and coding agents."}],"stop_reason":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":18}},"parent_tool_use_id":null,"session_id":"0b5c6a2e-4a55-4a4e-9d8c-1f2e3d4c5b6a","uuid":"1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"}"#,
    r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":2310,"duration_api_ms":2250,"num_turns":1,"result":"The README describes a gateway between team chat and coding agents.","session_id":"0b5c6a2e-4a55-4a4e-9d8c-1f2e3d4c5b6a","total_cost_usd":0.0123,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":18,"server_tool_use":{"web_search_requests":0}},"permission_denials":[],"terminal_reason":"completed","uuid":"9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0"}"#,
];

/// A streamed text delta (`--include-partial-messages`): the most frequent line of a long answer.
const DELTA: &str = r#"{"type":"stream_event","event":{"delta":{"text":"Let me check the repository layout. ","type":"text_delta"},"index":0,"type":"content_block_delta"},"session_id":"0b5c6a2e-4a55-4a4e-9d8c-1f2e3d4c5b6a","parent_tool_use_id":null}"#;

/// A whole short turn, line by line, then the parsed run.
#[divan::bench]
fn short_turn() -> usize {
    let sink = EventSink::discard();
    let mut parser = StreamParser::new();
    for line in divan::black_box(SHORT_TURN) {
        parser.feed_line(line, &sink);
    }
    parser.finish().text_parts.len()
}

/// One text-delta line, the bulk of a streamed answer.
#[divan::bench]
fn text_delta_line(bencher: divan::Bencher) {
    let sink = EventSink::discard();
    let mut parser = StreamParser::new();
    bencher.bench_local(|| parser.feed_line(divan::black_box(DELTA), &sink));
}

/// The `result` object alone (also the whole output of `--output-format json`).
#[divan::bench]
fn result_object(bencher: divan::Bencher) {
    let value: serde_json::Value =
        serde_json::from_str(SHORT_TURN[2]).expect("the fixture is JSON");
    bencher.bench_local(|| parse_result(divan::black_box(&value)));
}
