//! The environment of the CLI: per-message variables (`ACG_ROLE`) reach it and its tools; the
//! gateway's `CLAUDECODE` does not reach it. One test per binary: it sets a process variable.

mod common;

use std::collections::BTreeMap;

use acg_core::{AgentBackend, EventSink};
use acg_testkit::anthropic::Reply;
use common::Harness;
use serde_json::json;

#[tokio::test]
async fn per_message_env_reaches_the_agent_and_claudecode_does_not() {
    // As if the gateway itself were started from inside Claude Code.
    std::env::set_var("CLAUDECODE", "1");
    let h = Harness::start().await;
    h.home.allow_tools(&["Bash"]).unwrap();
    let sid = h.session().await;
    // The tool prints the role it sees, and the CLI's own start-up environment (the CLI sets
    // CLAUDECODE=1 for its tools itself, so only /proc/<cli>/environ tells what we passed).
    let command = "echo role=$ACG_ROLE; tr '\\0' '\\n' < /proc/$CLAUDE_PID/environ | grep -E '^(CLAUDECODE|ACG_ROLE)=' | sed 's/^/cli-env:/'";
    h.mock.push_all([
        Reply::tool_use(
            "Bash",
            json!({"command": command, "description": "show env"}),
        ),
        Reply::text("done"),
    ]);
    let mut req = h.turn(&sid, "show the environment");
    req.env = BTreeMap::from([("ACG_ROLE".to_owned(), "guest".to_owned())]);
    let response = h.backend.turn(&req, &EventSink::discard()).await.unwrap();
    assert_eq!(response.text, "done");
    let results = h.mock.last_turn_request().unwrap().tool_results();
    assert_eq!(results.len(), 1, "{results:?}");
    let output = &results[0].text;
    assert!(!results[0].is_error, "{output}");
    assert!(output.contains("role=guest"), "{output}");
    assert!(output.contains("cli-env:ACG_ROLE=guest"), "{output}");
    assert!(!output.contains("cli-env:CLAUDECODE"), "{output}");
}
