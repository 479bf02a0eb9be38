//! The watcher pipeline end to end with a fake agent and a fake connector: one turn at a
//! time, catch-up batches, backpressure, chat texts for every outcome, typing, watermark.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use acg_core::dispatcher::{Dispatcher, Interceptor};
use acg_core::ports::{Delivery, InboundHandler};
use acg_core::types::{AgentError, AgentEvent, IncomingMessage, Role};
use acg_core::user_messages;
use acg_core::watcher::session_gone_notice;
use async_trait::async_trait;
use common::*;

#[tokio::test]
async fn turns_of_a_room_never_overlap_and_queued_messages_become_one_catch_up_turn() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, report) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    assert!(report.errors.is_empty(), "{report:?}");

    backend.hold();
    assert_eq!(
        connector.post(msg("general", "m1", "first", 1000)).await,
        Delivery::Accepted
    );
    wait_until("first turn started", || backend.started() == 1).await;

    // Three messages arrive while the agent works on the first one.
    let mut m2 = msg("general", "m2", "second", 2000);
    m2.prompt_header = "[H2]".into();
    m2.attachments = vec![PathBuf::from("/tmp/a.png")];
    let mut m3 = msg("general", "m3", "third", 3000);
    m3.warnings = vec!["[warn three]".into()];
    m3.attachments = vec![PathBuf::from("/tmp/a.png"), PathBuf::from("/tmp/b.txt")];
    let mut m4 = msg("general", "m4", "fourth", 4000);
    m4.prompt_header = "[H4]".into();
    m4.thread_id = Some("thread-4".into());
    m4.role = Role::Guest;
    m4.attachments = vec![PathBuf::from("/tmp/b.txt")];
    for m in [m2, m3, m4] {
        assert_eq!(connector.post(m).await, Delivery::Accepted);
    }
    assert_eq!(gw.list(None).unwrap()[0].queued, 3);

    backend.release(10);
    wait_until("two turns answered", || {
        connector.texts("general").len() == 2
    })
    .await;
    assert_eq!(backend.overlaps(), 0, "two turns of one room ran at once");

    let turns = backend.turns();
    assert_eq!(
        turns.len(),
        2,
        "the three queued messages must form ONE turn"
    );
    assert_eq!(turns[0].prompt, "first");
    assert_eq!(
        turns[1].prompt,
        "[CATCH-UP: The following messages arrived while you were processing your last response]\n  \
         [H2] second\n  third\n[END CATCH-UP]\n\nLatest message (respond to this):\n[H4] fourth\n[warn three]"
    );
    assert_eq!(
        turns[1].attachments,
        vec![PathBuf::from("/tmp/a.png"), PathBuf::from("/tmp/b.txt")],
        "attachments merged and deduplicated"
    );
    assert_eq!(
        turns[0].env.get("ACG_ROLE").map(String::as_str),
        Some("owner")
    );
    assert_eq!(
        turns[1].env.get("ACG_ROLE").map(String::as_str),
        Some("guest"),
        "the role of the last message"
    );
    assert_eq!(turns[1].session_id, "s-1");
    assert_eq!(turns[1].watcher.as_deref(), Some("w"));
    assert_eq!(turns[1].timeout, std::time::Duration::from_secs(60));
    assert!(turns[1].system_prompt_file.is_some());

    let sent = connector.sent("general");
    assert_eq!(sent[0].thread_id, None);
    assert_eq!(
        sent[1].thread_id.as_deref(),
        Some("thread-4"),
        "the catch-up reply goes to the last message's thread"
    );
    assert!(sent[1].text.starts_with("echo: [CATCH-UP"));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_rejects_and_posts_one_busy_notice() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let mut w = spec("w", "fake", "general", "a", dir.path());
    w.max_queue_depth = 1;
    let (gw, _) = start_one(dir.path(), &backend, &connector, vec![w]).await;

    backend.hold();
    assert_eq!(
        connector.post(msg("general", "m1", "a", 1)).await,
        Delivery::Accepted
    );
    wait_until("turn started", || backend.started() == 1).await;
    assert_eq!(
        connector.post(msg("general", "m2", "b", 2)).await,
        Delivery::Accepted
    );
    let mut m3 = msg("general", "m3", "c", 3);
    m3.thread_id = Some("t3".into());
    assert_eq!(connector.post(m3).await, Delivery::Rejected);
    assert_eq!(
        connector.post(msg("general", "m4", "d", 4)).await,
        Delivery::Rejected
    );
    assert_eq!(
        connector.post(msg("general", "m5", "e", 5)).await,
        Delivery::Rejected
    );

    let busy = |c: &FakeConnector| {
        c.sent("general")
            .into_iter()
            .filter(|m| m.text == user_messages::BUSY)
            .collect::<Vec<_>>()
    };
    wait_until("busy notice", || !busy(&connector).is_empty()).await;
    backend.release(10);
    wait_until("both accepted messages answered", || {
        backend.finished() == 2
    })
    .await;
    wait_until("replies posted", || connector.texts("general").len() == 3).await;

    let notices = busy(&connector);
    assert_eq!(notices.len(), 1, "at most one busy notice per 30 s");
    assert!(notices[0].is_error);
    assert_eq!(
        notices[0].thread_id.as_deref(),
        Some("t3"),
        "in the message's thread"
    );
    // The rejected messages never reached the agent.
    let prompts: Vec<String> = backend.turns().into_iter().map(|t| t.prompt).collect();
    assert_eq!(prompts, vec!["a".to_string(), "b".to_string()]);
    gw.shutdown().await;
}

#[tokio::test]
async fn empty_replies_get_a_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    backend.push(Step::Reply("  \n ".into()));
    connector.post(msg("general", "m1", "hi", 1)).await;
    wait_until("reply", || !connector.texts("general").is_empty()).await;
    let sent = connector.sent("general");
    assert_eq!(sent[0].text, user_messages::EMPTY_RESPONSE);
    assert!(!sent[0].is_error);
    gw.shutdown().await;
}

#[tokio::test]
async fn every_agent_error_becomes_its_chat_message_without_internals() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("sess0001abcdef");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    let secret = "SECRET /home/op/.claude token=xyz";
    let errors = [
        AgentError::RateLimited(secret.into()),
        AgentError::Permission(secret.into()),
        AgentError::Unavailable(secret.into()),
        AgentError::Protocol(secret.into()),
        AgentError::Other(secret.into()),
        AgentError::Timeout,
    ];
    let session = "sess0001abcdef-1";
    for (i, e) in errors.iter().enumerate() {
        backend.push(Step::Fail(e.clone()));
        let mut m = msg("general", &format!("m{i}"), "do it", 10 + i as i64);
        m.thread_id = Some(format!("t{i}"));
        connector.post(m).await;
        wait_until("error posted", || connector.texts("general").len() == i + 1).await;
        let posted = connector.sent("general").pop().unwrap();
        assert_eq!(posted.text, user_messages::agent_failure(e, Some(session)));
        assert!(posted.is_error, "{e:?} is posted as an error");
        assert_eq!(posted.thread_id, Some(format!("t{i}")));
        assert!(
            !posted.text.contains("SECRET"),
            "internals leaked: {}",
            posted.text
        );
    }
    let texts = connector.texts("general");
    assert_eq!(texts[5], user_messages::TIMED_OUT);
    assert_eq!(
        texts[0],
        format!("{} (ref: sess0001)", user_messages::RATE_LIMITED)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_lost_session_is_reported_and_not_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    backend.push(Step::Fail(AgentError::SessionNotFound(
        "No conversation found with session ID: s-1".into(),
    )));
    connector.post(msg("general", "m1", "hello", 1)).await;
    wait_until("notice", || !connector.texts("general").is_empty()).await;
    let posted = connector.sent("general").remove(0);
    assert_eq!(posted.text, session_gone_notice("w"));
    assert!(posted.is_error);
    assert!(!posted.text.contains("s-1"));

    // The next message still goes to the same session: nothing was created behind the room's back.
    connector.post(msg("general", "m2", "again", 2)).await;
    wait_until("second reply", || connector.texts("general").len() == 2).await;
    assert_eq!(backend.created().len(), 1);
    assert_eq!(backend.turns()[1].session_id, "s-1");
    assert_eq!(gw.list(None).unwrap()[0].session_id, "s-1");
    gw.shutdown().await;
}

#[tokio::test]
async fn typing_is_on_while_the_agent_works_refreshed_on_events_and_off_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    backend.hold();
    backend.push(Step::Events(
        vec![AgentEvent::ToolCall {
            name: "Bash".into(),
        }],
        "done".into(),
    ));
    connector.post(msg("general", "m1", "work", 1)).await;
    wait_until("typing refreshed by the tool call", || {
        connector.typing("general").iter().filter(|on| **on).count() >= 2
    })
    .await;
    assert!(
        connector.typing("general").iter().all(|on| *on),
        "no typing-off mid-turn"
    );
    assert!(connector.texts("general").is_empty());
    // Without events the indicator is still refreshed every few seconds.
    let before = connector.typing("general").len();
    wait_until("periodic typing refresh", || {
        connector.typing("general").len() > before
    })
    .await;

    backend.release(1);
    wait_until("reply", || !connector.texts("general").is_empty()).await;
    // Typing is cleared beside the reply (it never delays it).
    wait_until("typing off after the turn", || {
        connector.typing("general").last() == Some(&false)
    })
    .await;
    let typing = connector.typing("general");
    assert_eq!(typing.iter().filter(|on| !**on).count(), 1);

    // Also off after a failed turn.
    backend.push(Step::Fail(AgentError::Other("x".into())));
    backend.release(1);
    connector.post(msg("general", "m2", "fail", 2)).await;
    wait_until("error", || connector.texts("general").len() == 2).await;
    wait_until("typing off after the failed turn", || {
        connector.typing("general").last() == Some(&false)
            && connector
                .typing("general")
                .iter()
                .filter(|on| !**on)
                .count()
                == 2
    })
    .await;
    gw.shutdown().await;
}

/// A typing call that hangs (a slow chat server) must not hold up the agent or the reply:
/// the reply goes out while the "on" call is still stuck, and "off" follows it.
#[tokio::test]
async fn a_hanging_typing_call_delays_neither_the_turn_nor_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    connector.typing_hangs.store(true, Ordering::SeqCst);
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    backend.push(Step::Reply("done".into()));
    connector.post(msg("general", "m1", "work", 1)).await;
    wait_until("reply", || !connector.texts("general").is_empty()).await;
    wait_until("typing off", || {
        connector.typing("general").last() == Some(&false)
    })
    .await;
    let seen = connector.seen();
    let reply = seen
        .iter()
        .position(|s| matches!(s, Seen::Sent { .. }))
        .unwrap();
    let off = seen
        .iter()
        .position(|s| matches!(s, Seen::Typing { on: false, .. }))
        .unwrap();
    assert!(reply < off, "the reply waited for typing: {seen:?}");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_watermark_moves_only_after_the_answer_and_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    // The auto-created session is persisted at once, before any message.
    let rec = saved_record(dir.path(), "fake", "w").unwrap();
    assert_eq!(rec.session_id, "s-1");
    assert_eq!(rec.last_processed_ts, "");
    assert_eq!(rec.room_id, "id-general");
    assert_eq!(rec.room_type, "channel");

    backend.hold();
    connector
        .post(msg("general", "m1", "a", 1_711_234_567_890))
        .await;
    wait_until("turn started", || backend.started() == 1).await;
    assert_eq!(
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts,
        "",
        "not answered yet: the watermark must not move"
    );
    backend.release(1);
    wait_until("watermark saved", || {
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts
            == "1711234567890"
    })
    .await;
    assert_eq!(
        connector.texts("general").len(),
        1,
        "the reply came before the watermark"
    );

    // A failed turn was answered with an error: the watermark passes it too.
    backend.push(Step::Fail(AgentError::Unavailable("down".into())));
    backend.release(1);
    connector
        .post(msg("general", "m2", "b", 1_711_234_567_999))
        .await;
    wait_until("watermark after error", || {
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts
            == "1711234567999"
    })
    .await;
    gw.shutdown().await;
}

struct ConsumeApprovals;

#[async_trait]
impl Interceptor for ConsumeApprovals {
    async fn intercept(&self, msg: &IncomingMessage) -> bool {
        msg.text.starts_with("approve ")
    }
}

#[tokio::test]
async fn the_dispatcher_routes_by_room_fans_out_and_has_an_interception_hook() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![
            spec("w1", "fake", "general", "a", dir.path()),
            spec("w2", "fake", "general", "a", dir.path()),
            spec("w3", "fake", "other", "a", dir.path()),
        ],
    )
    .await;
    assert_eq!(
        connector.post(msg("nowhere", "m0", "x", 1)).await,
        Delivery::NoWatcher
    );
    assert_eq!(
        connector.post(msg("general", "m1", "x", 2)).await,
        Delivery::Accepted
    );
    wait_until("both watchers of the room answered", || {
        connector.texts("general").len() == 2
    })
    .await;
    assert!(connector.texts("other").is_empty());
    gw.shutdown().await;

    // The hook point: a message an interceptor consumes never reaches a queue.
    let dispatcher = Dispatcher::new();
    dispatcher.set_interceptor(Arc::new(ConsumeApprovals));
    assert_eq!(
        dispatcher
            .deliver(msg("general", "m2", "approve ab12", 3))
            .await,
        Delivery::Intercepted
    );
    assert_eq!(
        dispatcher.deliver(msg("general", "m3", "hello", 4)).await,
        Delivery::NoWatcher
    );
}

#[tokio::test]
async fn a_failed_delivery_is_only_logged_and_the_turn_counts_as_answered() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    connector
        .send_fails
        .store(true, std::sync::atomic::Ordering::SeqCst);
    connector.post(msg("general", "m1", "hi", 500)).await;
    wait_until("watermark", || {
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts
            == "500"
    })
    .await;
    let sent = connector.sent("general");
    assert_eq!(
        sent.len(),
        1,
        "no second (error) post after a failed delivery: {sent:?}"
    );
    assert_eq!(sent[0].text, "echo: hi");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_session_moved_by_the_agent_is_followed_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    backend.push(Step::Moved("s-forked".into(), "ok".into()));
    connector.post(msg("general", "m1", "one", 1)).await;
    wait_until("first reply", || connector.texts("general").len() == 1).await;
    connector.post(msg("general", "m2", "two", 2)).await;
    wait_until("all answered", || {
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts
            == "2"
    })
    .await;
    assert_eq!(
        saved_record(dir.path(), "fake", "w").unwrap().session_id,
        "s-forked"
    );
    let turns = backend.turns();
    assert_eq!(turns.last().unwrap().session_id, "s-forked");
    gw.shutdown().await;
}

/// A watcher that never answered anything still has a durable watermark from the moment it
/// started listening (when its connector replays history), so a crash before its first answer
/// replays what it had accepted; a connector without replay gets none.
#[tokio::test]
async fn a_new_watcher_on_a_replaying_connector_persists_its_start_as_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    connector.replays_history.store(true, Ordering::SeqCst);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    let saved: i64 = saved_record(dir.path(), "fake", "w")
        .unwrap()
        .last_processed_ts
        .parse()
        .expect("a watermark is saved at start");
    assert!(
        saved >= before,
        "watermark {saved} predates the start {before}"
    );
    gw.shutdown().await;

    // The next start replays from that saved point (and does not reset it).
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    assert_eq!(
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts,
        saved.to_string()
    );
    gw.shutdown().await;

    let plain_dir = tempfile::tempdir().unwrap();
    let plain = FakeConnector::new("fake");
    let (gw, _) = start_one(
        plain_dir.path(),
        &backend,
        &plain,
        vec![spec("w", "fake", "general", "a", plain_dir.path())],
    )
    .await;
    assert_eq!(
        saved_record(plain_dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts,
        ""
    );
    gw.shutdown().await;
}
