//! The scripting API over a fake agent: explicit start/stop, one session for many sends,
//! piping one session's reply into another.

mod common;

use std::time::Duration;

use acg_core::session::{AgentSession, SessionError};
use acg_core::types::AgentError;
use acg_core::user_messages;
use common::*;

#[tokio::test]
async fn send_before_start_or_after_stop_fails_with_a_typed_error() {
    let backend = FakeBackend::new("s");
    let session = AgentSession::new(backend.clone(), "/work");
    assert_eq!(
        session.send("hi").await.unwrap_err(),
        SessionError::NotStarted
    );
    assert!(backend.turns().is_empty());
    assert_eq!(session.session_id().await, None);

    session.start().await.unwrap();
    session.send("hi").await.unwrap();
    session.stop().await;
    assert_eq!(
        session.send("again").await.unwrap_err(),
        SessionError::NotStarted
    );
    assert_eq!(session.session_id().await, None);
}

#[tokio::test]
async fn sends_reuse_one_session_with_the_builder_options() {
    let backend = FakeBackend::new("s");
    let session = AgentSession::new(backend.clone(), "/work/project")
        .with_timeout(Duration::from_secs(42))
        .with_new_session_args(vec!["--agent".into(), "reviewer".into()])
        .with_title("script:review")
        .with_system_prompt_file("/work/rules.md")
        .with_env("ACG_ROLE", "owner");
    let id = session.start().await.unwrap();
    assert_eq!(id, "s-1");
    assert_eq!(
        session.start().await.unwrap(),
        "s-1",
        "start twice keeps the session"
    );

    let first = session.send("one").await.unwrap();
    let second = session.send("two").await.unwrap();
    assert_eq!(first.text, "echo: one");
    assert_eq!(second.text, "echo: two");

    let created = backend.created();
    assert_eq!(created.len(), 1, "one session for every send");
    assert_eq!(created[0].title.as_deref(), Some("script:review"));
    assert_eq!(
        created[0].extra_args,
        vec!["--agent".to_string(), "reviewer".to_string()]
    );
    assert_eq!(created[0].timeout, Duration::from_secs(42));
    let turns = backend.turns();
    assert!(turns.iter().all(|t| t.session_id == "s-1"));
    assert_eq!(
        turns[0].working_directory,
        std::path::Path::new("/work/project")
    );
    assert_eq!(turns[0].timeout, Duration::from_secs(42));
    assert_eq!(
        turns[0].env.get("ACG_ROLE").map(String::as_str),
        Some("owner")
    );
    assert_eq!(
        turns[0].system_prompt_file.as_deref(),
        Some(std::path::Path::new("/work/rules.md"))
    );
    assert_eq!(session.session_id().await.as_deref(), Some("s-1"));
}

#[tokio::test]
async fn one_sessions_reply_pipes_into_another() {
    let backend = FakeBackend::new("s");
    let a = AgentSession::new(backend.clone(), "/work");
    let b = AgentSession::new(backend.clone(), "/work");
    a.start().await.unwrap();
    b.start().await.unwrap();
    backend.push(Step::Reply("a haiku".into()));
    let review = b
        .send(&a.send("write a haiku").await.unwrap().text)
        .await
        .unwrap();
    assert_eq!(review.text, "echo: a haiku");
    let turns = backend.turns();
    assert_eq!(
        (turns[0].session_id.as_str(), turns[0].prompt.as_str()),
        ("s-1", "write a haiku")
    );
    assert_eq!(
        (turns[1].session_id.as_str(), turns[1].prompt.as_str()),
        ("s-2", "a haiku")
    );
}

#[tokio::test]
async fn resume_attaches_to_an_existing_session_and_errors_pass_through() {
    let backend = FakeBackend::new("s");
    let session = AgentSession::new(backend.clone(), "/work");
    session.resume("existing-7").await;
    backend.push(Step::Reply(String::new()));
    let reply = session.send("hi").await.unwrap();
    assert_eq!(reply.text, user_messages::EMPTY_RESPONSE);
    assert!(backend.created().is_empty());
    assert_eq!(backend.turns()[0].session_id, "existing-7");

    backend.push(Step::Fail(AgentError::RateLimited("quota".into())));
    assert_eq!(
        session.send("again").await.unwrap_err(),
        SessionError::Agent(AgentError::RateLimited("quota".into()))
    );
}
