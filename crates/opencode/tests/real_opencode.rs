//! The backend against the real `opencode serve` (pinned 1.18.33) and the mock OpenAI API:
//! sidecar start and password, sessions, streaming, system prompt, attachments, error classes,
//! unknown sessions, deadlines and permission requests.

mod common;

use std::sync::Arc;
use std::time::Duration;

use acg_core::{AgentBackend, AgentError, AgentEvent};
use acg_opencode::{PermissionAsked, PermissionReply, SidecarState};
use acg_testkit::openai::Reply;
use common::Harness;
use hyper::Method;
use serde_json::json;

#[tokio::test]
async fn sidecar_starts_on_its_listening_line_and_refuses_requests_without_the_password() {
    let h = Harness::new().await;
    assert_eq!(h.backend.sidecar_state(), SidecarState::Stopped);
    h.backend.start().await.expect("sidecar starts");
    let SidecarState::Running { pid, url, .. } = h.backend.sidecar_state() else {
        panic!("not running: {:?}", h.backend.sidecar_state());
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(h.backend.sidecar().pid(), Some(pid));
    println!(
        "sidecar start (spawn → listening line): {:?}",
        h.backend.sidecar().last_start_duration().unwrap()
    );

    let client = h.backend.sidecar().client().await.unwrap();
    let anonymous = client
        .call_without_auth(Method::GET, "/session", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401, "{}", anonymous.text_excerpt());
    let wrong = acg_opencode::http::ServerClient::new(client.base_url(), "not-the-password")
        .call(Method::GET, "/session", None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    let authorized = client
        .call(Method::GET, "/session", None, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(authorized.status, 200, "{}", authorized.text_excerpt());

    // The gateway's permission defaults were merged into the provider config it was given.
    let config = client
        .call(Method::GET, "/config", None, Duration::from_secs(30))
        .await
        .unwrap()
        .json();
    assert_eq!(config["model"], "mock/mock-model");
    assert_eq!(config["permission"]["bash"]["*"], "ask", "{config}");
    assert_eq!(config["permission"]["bash"]["git status *"], "allow");

    // Nothing ran npm: the seeded config directory is untouched.
    assert!(!h.home.config_dir().join("bun.lock").exists());

    h.backend.stop().await;
    assert_eq!(h.backend.sidecar_state(), SidecarState::Stopped);
    assert!(acg_opencode::proctree::read_proc(pid as i32).is_none_or(|p| p.state == 'Z'));
}

#[tokio::test]
async fn create_and_continue_a_session() {
    let h = Harness::started().await;
    let sid = h.session().await;
    assert!(sid.starts_with("ses_"), "{sid}");
    assert!(h.server_sessions().await.contains(&sid));

    h.mock.push(Reply::text("The first answer."));
    let (first, _) = h.run(&h.turn(&sid, "first question")).await;
    let first = first.expect("first turn");
    assert_eq!(first.text, "The first answer.");
    assert_eq!(first.session_id.as_deref(), Some(sid.as_str()));
    assert!(!first.is_error);
    assert_eq!(first.num_turns, Some(1));
    assert_eq!(first.usage.input_tokens, 10);
    assert_eq!(first.usage.output_tokens, 5);

    h.mock.push(Reply::text("The second answer."));
    let (second, _) = h.run(&h.turn(&sid, "second question")).await;
    assert_eq!(second.expect("second turn").text, "The second answer.");
    let request = h.mock.last_turn_request().unwrap();
    assert_eq!(
        request.user_texts(),
        vec!["first question".to_owned(), "second question".to_owned()]
    );
    assert_eq!(
        request.assistant_texts(),
        vec!["The first answer.".to_owned()]
    );
    // The title was given: OpenCode asked for none.
    assert!(h.mock.title_requests().is_empty());
}

#[tokio::test]
async fn a_streamed_multi_part_reply_is_assembled_in_order() {
    let h = Harness::started().await;
    let sid = h.session().await;
    std::fs::write(h.home.work().join("notes.txt"), "a note\n").unwrap();
    h.mock.push_all([
        Reply::text("First part, streamed in several pieces over the wire.")
            .then_tool_call(
                "read",
                json!({"filePath": h.home.work().join("notes.txt").to_string_lossy()}),
            )
            .with_reasoning("I should read the notes first."),
        Reply::text("Second part, after the tool ran.").with_usage(20, 7),
    ]);
    let (result, events) = h.run(&h.turn(&sid, "read the notes")).await;
    let response = result.expect("turn");
    assert_eq!(
        response.text,
        "First part, streamed in several pieces over the wire.\nSecond part, after the tool ran."
    );
    assert_eq!(response.num_turns, Some(2));
    assert_eq!(response.usage.input_tokens, 30);
    assert_eq!(response.usage.output_tokens, 12);
    assert_eq!(response.cost_usd, Some(0.0));
    assert!(response.duration_ms.is_some());

    let deltas: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta(d) => Some(d.as_str()),
            _ => None,
        })
        .collect();
    assert!(deltas.len() > 2, "streamed in pieces: {deltas:?}");
    assert_eq!(
        deltas.concat(),
        "First part, streamed in several pieces over the wire.Second part, after the tool ran."
    );
    let position = |wanted: &dyn Fn(&AgentEvent) -> bool| events.iter().position(wanted);
    let tool = position(&|e| matches!(e, AgentEvent::ToolCall { name } if name == "read"))
        .expect("tool call reported");
    let second = position(&|e| matches!(e, AgentEvent::TextDelta(d) if d.starts_with("Second")))
        .expect("second part streamed");
    assert!(tool < second, "{events:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::Thinking(t) if t.contains("read the notes"))));
    // The tool really ran: its output went back to the model.
    let results = h.mock.last_turn_request().unwrap().tool_results();
    assert!(
        results.iter().any(|r| r.text.contains("a note")),
        "{results:?}"
    );
}

#[tokio::test]
async fn system_prompt_and_attachments_reach_the_model() {
    let h = Harness::started().await;
    let sid = h.session().await;
    let system_file = h.home.root().join("system-prompt.md");
    std::fs::write(&system_file, "DURABLE-CONTEXT-7f3a: you answer in chat.").unwrap();
    let attached = h.home.work().join("report with space.txt");
    std::fs::write(&attached, "ATTACHED-CONTENT-91bc\n").unwrap();
    let binary = h.home.root().join("blob.bin");
    std::fs::write(&binary, [0u8, 1, 2, 255]).unwrap();

    let mut req = h.turn(&sid, "look at this");
    req.system_prompt_file = Some(system_file.clone());
    req.attachments = vec![attached, binary.clone()];
    let (result, _) = h.run(&req).await;
    result.expect("turn");
    let request = h.mock.last_turn_request().unwrap();
    assert!(
        request.system_text().contains("DURABLE-CONTEXT-7f3a"),
        "{}",
        request.system_text()
    );
    let body = request.body.to_string();
    // The text file went as a native file part: OpenCode read it into the conversation.
    assert!(body.contains("ATTACHED-CONTENT-91bc"), "{body}");
    // The binary file went as a path note in the prompt.
    let user = request.last_user_text().unwrap_or_default();
    assert!(
        body.contains(&format!(
            "[Attached: blob.bin → {} — use the Read tool to view it]",
            binary.display()
        )),
        "{user}"
    );

    // The file is read afresh every turn.
    std::fs::write(&system_file, "DURABLE-CONTEXT-second-version").unwrap();
    let mut req = h.turn(&sid, "again");
    req.system_prompt_file = Some(system_file);
    h.run(&req).await.0.expect("turn");
    let system = h.mock.system_text().unwrap();
    assert!(
        system.contains("DURABLE-CONTEXT-second-version"),
        "{system}"
    );
    assert!(!system.contains("7f3a"), "{system}");
}

#[tokio::test]
async fn provider_errors_map_to_error_classes() {
    let h = Harness::started().await;
    let sid = h.session().await;

    // 401 is not retried: a permission error at once.
    h.mock.push(Reply::error(401, "invalid api key"));
    let (result, _) = h.run(&h.turn(&sid, "hello")).await;
    let err = result.unwrap_err();
    assert!(matches!(err, AgentError::Permission(_)), "{err:?}");
    assert!(err.to_string().contains("invalid api key"), "{err}");
    assert_eq!(h.mock.turn_requests().len(), 1);

    // 429 is retried (6 times) — quickly, thanks to retry-after-ms — then rate limited.
    h.mock.clear_requests();
    h.mock
        .set_default(Reply::error(429, "slow down").with_retry_after_ms(50));
    let (result, _) = h.run(&h.turn(&sid, "hello again")).await;
    let err = result.unwrap_err();
    assert!(matches!(err, AgentError::RateLimited(_)), "{err:?}");
    assert!(h.mock.turn_requests().len() > 1, "retried");

    // The session still works afterwards.
    h.mock.set_default(Reply::text("fine now"));
    let (result, _) = h.run(&h.turn(&sid, "third")).await;
    assert_eq!(result.expect("turn").text, "fine now");
}

#[tokio::test]
async fn an_unknown_session_is_not_found_and_never_recreated() {
    let h = Harness::started().await;
    let known = h.session().await;
    let before = h.server_sessions().await;
    let (result, _) = h
        .run(&h.turn("ses_0000000000000000000000000", "hello"))
        .await;
    let err = result.unwrap_err();
    assert!(matches!(err, AgentError::SessionNotFound(_)), "{err:?}");
    assert_eq!(h.server_sessions().await, before);
    assert!(before.contains(&known));
    assert!(h.mock.turn_requests().is_empty());

    // A deleted session is unknown too.
    h.backend.delete_session(&known, &h.home.work()).await;
    assert!(!h.server_sessions().await.contains(&known));
    let (result, _) = h.run(&h.turn(&known, "hello")).await;
    assert!(matches!(result, Err(AgentError::SessionNotFound(_))));
    assert!(h.backend.sidecar().orphans().is_empty());
}

#[tokio::test]
async fn the_deadline_aborts_the_turn_and_the_session_stays_usable() {
    let h = Harness::started().await;
    let sid = h.session().await;
    // Keyed on the prompt, not the FIFO: however slow the machine, only this turn's request
    // gets the late answer.
    h.mock.respond_with(|r| {
        (r.last_user_text().as_deref() == Some("take your time"))
            .then(|| Reply::text("far too late").with_delay(Duration::from_secs(600)))
    });
    let mut req = h.turn(&sid, "take your time");
    req.timeout = Duration::from_secs(8);
    let (result, _) = h.run(&req).await;
    assert_eq!(result.unwrap_err(), AgentError::Timeout);

    // The abort freed the session: the next turn runs at once.
    h.mock.push(Reply::text("back again"));
    let (result, _) = h.run(&h.turn(&sid, "are you there")).await;
    assert_eq!(result.expect("turn after abort").text, "back again");
}

fn bash_call(h: &Harness) -> Reply {
    Reply::tool_call(
        "bash",
        json!({"command": format!("echo hi > {}", h.home.work().join("out.txt").display()),
               "description": "write a file"}),
    )
}

#[tokio::test]
async fn without_a_handler_permission_requests_are_rejected_with_a_message() {
    let h = Harness::started().await;
    let sid = h.session().await;
    h.mock
        .push_all([bash_call(&h), Reply::text("I could not run it.")]);
    let (result, events) = h.run(&h.turn(&sid, "write the file")).await;
    let response = result.expect("the turn goes on after the reject");
    assert_eq!(response.text, "I could not run it.");
    assert!(!h.home.work().join("out.txt").exists());
    assert_eq!(response.permission_denials.len(), 1);
    assert_eq!(response.permission_denials[0].tool_name, "bash");
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::ToolCall { name } if name == "bash")));
    // The model was told why.
    let results = h.mock.last_turn_request().unwrap().tool_results();
    assert!(
        results
            .iter()
            .any(|r| r.text.contains("nobody can approve")),
        "{results:?}"
    );
}

#[tokio::test]
async fn a_permission_handler_decides() {
    let asked: Arc<std::sync::Mutex<Vec<PermissionAsked>>> = Arc::default();
    let seen = Arc::clone(&asked);
    let h = Harness::new().await;
    let Harness {
        mock,
        home,
        backend,
    } = h;
    let backend = backend.with_permission_handler(Arc::new(move |ask: PermissionAsked| {
        seen.lock().unwrap().push(ask);
        async { PermissionReply::Once }
    }));
    let h = Harness {
        mock,
        home,
        backend,
    };
    h.backend.start().await.unwrap();
    let sid = h.session().await;
    h.mock.push_all([bash_call(&h), Reply::text("Done.")]);
    let (result, _) = h.run(&h.turn(&sid, "write the file")).await;
    assert_eq!(result.expect("turn").text, "Done.");
    assert_eq!(
        std::fs::read_to_string(h.home.work().join("out.txt")).unwrap(),
        "hi\n"
    );
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].permission, "bash");
    assert_eq!(asked[0].turn_session_id, sid);
    assert_eq!(asked[0].watcher.as_deref(), Some("test-watcher"));
    assert!(asked[0].metadata["command"]
        .as_str()
        .unwrap_or_default()
        .starts_with("echo hi"));
}

#[tokio::test]
async fn read_only_git_commands_run_without_asking() {
    let h = Harness::started().await;
    let sid = h.session().await;
    h.mock.push_all([
        Reply::tool_call(
            "bash",
            json!({"command": "git status --short", "description": "status"}),
        ),
        Reply::text("Looked."),
    ]);
    let (result, _) = h.run(&h.turn(&sid, "status?")).await;
    let response = result.expect("turn");
    assert_eq!(response.text, "Looked.");
    assert!(response.permission_denials.is_empty());
}

#[tokio::test]
async fn concurrent_turns_in_two_sessions_stay_apart() {
    let h = Harness::started().await;
    // Untitled sessions: OpenCode asks the model for titles, which never take a scripted reply.
    let mut untitled = h.new_session();
    untitled.title = None;
    let a = h.backend.create_session(&untitled).await.unwrap();
    let b = h.backend.create_session(&untitled).await.unwrap();
    h.mock.respond_with(|r| {
        let question = r.last_user_text()?;
        Some(
            Reply::text(format!("Answer to {question}, streamed in a few pieces."))
                .with_chunk_delay(Duration::from_millis(20)),
        )
    });
    let (turn_a, turn_b) = (h.turn(&a, "alpha"), h.turn(&b, "beta"));
    let (ra, rb) = tokio::join!(h.run(&turn_a), h.run(&turn_b));
    assert_eq!(
        ra.0.as_ref().expect("turn a").text,
        "Answer to alpha, streamed in a few pieces."
    );
    assert_eq!(
        rb.0.as_ref().expect("turn b").text,
        "Answer to beta, streamed in a few pieces."
    );
    // Each turn streamed only its own text.
    for ((_, events), word) in [(&ra, "alpha"), (&rb, "beta")] {
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::TextDelta(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, format!("Answer to {word}, streamed in a few pieces."));
    }
    assert!(
        !h.mock.title_requests().is_empty(),
        "untitled sessions get generated titles"
    );
}
