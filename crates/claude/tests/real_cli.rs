//! The backend driving the real, pinned Claude Code CLI against the mock Anthropic API:
//! sessions, prompts, system prompt, results, events and error classes.

mod common;

use std::path::PathBuf;

use acg_claude::INIT_PROMPT;
use acg_core::prompt::with_attachment_notes;
use acg_core::{AgentBackend, AgentError, AgentEvent, EventSink, Usage};
use acg_testkit::anthropic::Reply;
use common::Harness;
use serde_json::json;

#[tokio::test]
async fn create_then_resume_keeps_history() {
    let h = Harness::start().await;
    h.mock.push_all([
        Reply::text("standing by"),
        Reply::text("first answer"),
        Reply::text("second answer"),
    ]);
    let sid = h.session().await;
    assert!(!sid.is_empty());
    assert!(h.home.transcript_path(&sid).is_file(), "transcript written");
    // The init prompt went out as the first user message.
    assert_eq!(h.mock.last_user_text().as_deref(), Some(INIT_PROMPT));

    let first = h
        .backend
        .turn(&h.turn(&sid, "first question"), &EventSink::discard())
        .await
        .unwrap();
    assert_eq!(first.text, "first answer");
    assert_eq!(first.session_id.as_deref(), Some(sid.as_str()));
    assert!(!first.is_error);

    let second = h
        .backend
        .turn(&h.turn(&sid, "second question"), &EventSink::discard())
        .await
        .unwrap();
    assert_eq!(second.text, "second answer");
    assert_eq!(second.session_id.as_deref(), Some(sid.as_str()));

    let last = h.mock.last_turn_request().unwrap();
    assert_eq!(
        last.user_texts(),
        vec![INIT_PROMPT, "first question", "second question"]
    );
    assert_eq!(last.assistant_texts(), vec!["standing by", "first answer"]);
    assert_eq!(h.mock.pending_replies(), 0);
}

#[tokio::test]
async fn prompt_and_attachment_notes_reach_the_model_verbatim() {
    let h = Harness::start().await;
    let sid = h.session().await;
    let prompt = "[Rocket.Chat #general | from: alice | role: owner | to: me] héllo \"quoted\" $HOME `ticks` <b>\n  second line\twith tab\n";
    h.backend
        .turn(&h.turn(&sid, prompt), &EventSink::discard())
        .await
        .unwrap();
    assert_eq!(h.mock.last_user_text().as_deref(), Some(prompt));

    let inside = h.home.work().join("shots/a.png");
    let outside = PathBuf::from("/var/cache/acg/b.pdf");
    let mut req = h.turn(&sid, "look at these");
    req.attachments = vec![inside.clone(), outside.clone()];
    h.backend.turn(&req, &EventSink::discard()).await.unwrap();
    let expected = with_attachment_notes("look at these", &[inside, outside], h.home.work());
    assert!(expected.contains("[Attached: a.png → shots/a.png — use the Read tool to view it]"));
    assert_eq!(h.mock.last_user_text().as_deref(), Some(expected.as_str()));
}

#[tokio::test]
async fn system_prompt_file_reaches_every_turn() {
    let h = Harness::start().await;
    let sid = h.session().await;
    let file = h.home.root().join("system-prompts/w.md");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "## ACG Session Identity\n- marker-one\n").unwrap();
    let mut req = h.turn(&sid, "hi");
    req.system_prompt_file = Some(file.clone());
    h.backend.turn(&req, &EventSink::discard()).await.unwrap();
    let system = h.mock.system_text().unwrap();
    assert!(system.contains("marker-one"), "system prompt: {system}");

    // The watcher rewrites the file on restart: the next turn must carry the new content.
    std::fs::write(&file, "## ACG Session Identity\n- marker-two\n").unwrap();
    h.backend.turn(&req, &EventSink::discard()).await.unwrap();
    let system = h.mock.system_text().unwrap();
    assert!(
        system.contains("marker-two") && !system.contains("marker-one"),
        "{system}"
    );

    // Without the file, nothing of it is sent.
    h.backend
        .turn(&h.turn(&sid, "plain"), &EventSink::discard())
        .await
        .unwrap();
    assert!(!h.mock.system_text().unwrap().contains("marker-"));
}

#[tokio::test]
async fn usage_cost_and_turn_count_are_parsed() {
    let h = Harness::start().await;
    let sid = h.session().await;
    h.mock.push(
        Reply::text("counted")
            .with_usage(1234, 56)
            .with_cache_usage(700, 80),
    );
    let response = h
        .backend
        .turn(&h.turn(&sid, "count"), &EventSink::discard())
        .await
        .unwrap();
    assert_eq!(response.text, "counted");
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 1234,
            output_tokens: 56,
            cache_read: 700,
            cache_write: 80
        }
    );
    assert!(
        response.cost_usd.is_some_and(|c| c > 0.0),
        "{:?}",
        response.cost_usd
    );
    assert_eq!(response.num_turns, Some(1));
    assert!(response.duration_ms.is_some());
    let timings = h.backend.last_timings().unwrap();
    assert!(timings.lines >= 3 && timings.first_output.is_some());
}

#[tokio::test]
async fn events_report_thinking_tools_and_text() {
    let h = Harness::start().await;
    let sid = h.session().await;
    let thinking =
        "The user wants a listing of the working directory; I will run a harmless command first.";
    h.mock.push_all([
        Reply::text("Let me look.")
            .with_thinking(thinking)
            .then_tool_use(
                "Bash",
                json!({"command": "echo hello", "description": "say hello"}),
            ),
        Reply::text("All done here."),
    ]);
    let (sink, mut rx) = EventSink::channel(1024);
    let response = h
        .backend
        .turn(&h.turn(&sid, "list files"), &sink)
        .await
        .unwrap();
    assert_eq!(response.text, "Let me look.\nAll done here.");
    assert_eq!(response.num_turns, Some(2));
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    let excerpt: String = thinking.chars().take(80).collect();
    assert!(
        events.contains(&AgentEvent::Thinking(format!("{excerpt}…"))),
        "{events:?}"
    );
    assert!(
        events.contains(&AgentEvent::ToolCall {
            name: "Bash".into()
        }),
        "{events:?}"
    );
    assert!(
        events.contains(&AgentEvent::Text("All done here.".into())),
        "{events:?}"
    );
    let streamed: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, "Let me look.All done here.");
}

#[tokio::test]
async fn a_denied_write_is_reported() {
    let h = Harness::start().await;
    let sid = h.session().await;
    let target = h.home.work().join("denied.txt");
    h.mock.push_all([
        Reply::tool_use(
            "Write",
            json!({"file_path": target.to_string_lossy(), "content": "should not be written"}),
        ),
        Reply::text("I could not write it."),
    ]);
    let response = h
        .backend
        .turn(&h.turn(&sid, "write a file"), &EventSink::discard())
        .await
        .unwrap();
    assert_eq!(response.text, "I could not write it.");
    assert_eq!(
        response.permission_denials.len(),
        1,
        "{:?}",
        response.permission_denials
    );
    let denial = &response.permission_denials[0];
    assert_eq!(denial.tool_name, "Write");
    assert!(denial.tool_use_id.starts_with("toolu_"));
    assert_eq!(
        denial.tool_input["file_path"],
        target.to_string_lossy().as_ref()
    );
    assert!(!target.exists());
    // The model was told the call was refused.
    let result = &h.mock.last_turn_request().unwrap().tool_results()[0];
    assert!(result.is_error, "{result:?}");
}

async fn turn_error(status: u16, error_type: &str) -> AgentError {
    let h = Harness::start().await;
    let sid = h.session().await;
    h.mock.push(Reply::error(
        status,
        error_type,
        format!("mock {error_type}"),
    ));
    let err = h
        .backend
        .turn(&h.turn(&sid, "hello?"), &EventSink::discard())
        .await
        .expect_err("the turn must fail");
    // With retries off the CLI asks exactly once.
    assert_eq!(h.mock.turn_requests().len(), 2, "create + one turn request");
    err
}

#[tokio::test]
async fn rate_limit_is_rate_limited() {
    let err = turn_error(429, "rate_limit_error").await;
    assert!(
        matches!(&err, AgentError::RateLimited(m) if m.contains("429")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_credentials_are_a_permission_error() {
    let err = turn_error(401, "authentication_error").await;
    assert!(
        matches!(&err, AgentError::Permission(m) if m.contains("401")),
        "{err:?}"
    );
    let err = turn_error(403, "permission_error").await;
    assert!(
        matches!(&err, AgentError::Permission(m) if m.contains("403")),
        "{err:?}"
    );
}

#[tokio::test]
async fn overload_is_unavailable() {
    let err = turn_error(529, "overloaded_error").await;
    assert!(
        matches!(&err, AgentError::Unavailable(m) if m.contains("529")),
        "{err:?}"
    );
    let err = turn_error(503, "api_error").await;
    assert!(
        matches!(&err, AgentError::Unavailable(m) if m.contains("503")),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_session_is_session_not_found() {
    let h = Harness::start().await;
    let missing = "00000000-0000-4000-8000-000000000abc";
    let err = h
        .backend
        .turn(&h.turn(missing, "hi"), &EventSink::discard())
        .await
        .unwrap_err();
    assert_eq!(err, AgentError::SessionNotFound(missing.into()));
    assert!(h.mock.turn_requests().is_empty());
}

#[tokio::test]
async fn failed_creation_is_classified() {
    let h = Harness::start().await;
    h.mock.push(Reply::error(529, "overloaded_error", "busy"));
    let err = h
        .backend
        .create_session(&h.new_session())
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn unreachable_model_is_unavailable() {
    let h = Harness::start_with(|s| {
        for (k, v) in &mut s.extra_env {
            if k == "ANTHROPIC_BASE_URL" {
                // A port nobody listens on (the mock's port, once it is closed, could be reused).
                *v = "http://127.0.0.1:9".into();
            }
        }
    })
    .await;
    let err = h
        .backend
        .create_session(&h.new_session())
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn delete_session_removes_the_transcript() {
    let h = Harness::start().await;
    let sid = h.session().await;
    let transcript = h.home.transcript_path(&sid);
    assert!(transcript.is_file());
    h.backend.delete_session(&sid, h.home.work()).await;
    assert!(!transcript.exists());
    let err = h
        .backend
        .turn(&h.turn(&sid, "still there?"), &EventSink::discard())
        .await
        .unwrap_err();
    assert_eq!(err, AgentError::SessionNotFound(sid));
}

#[tokio::test]
async fn missing_binary_and_working_directory() {
    let h = Harness::start_with(|s| s.command = "/nonexistent/claude".into()).await;
    let err = h
        .backend
        .create_session(&h.new_session())
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");

    let h = Harness::start().await;
    let mut req = h.new_session();
    req.working_directory = h.home.root().join("missing");
    let err = h.backend.create_session(&req).await.unwrap_err();
    assert!(matches!(err, AgentError::Other(_)), "{err:?}");
}

#[tokio::test]
async fn empty_reply_becomes_the_placeholder() {
    let h = Harness::start().await;
    let sid = h.session().await;
    // The CLI nudges the model once after a reply with no visible text; answer blank again.
    h.mock.set_default(Reply::text("   "));
    let response = h
        .backend
        .turn(&h.turn(&sid, "say nothing"), &EventSink::discard())
        .await
        .unwrap();
    assert_eq!(h.mock.turn_requests().len(), 3, "create, turn, one nudge");
    assert_eq!(response.text, acg_core::user_messages::EMPTY_RESPONSE);
}
