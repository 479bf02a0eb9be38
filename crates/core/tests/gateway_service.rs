//! The gateway service: start reports, state across restarts, pause/resume/reset, command
//! routing, send/inject, corrupt state files, failing connectors and agents, shutdown.

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use acg_core::gateway::{ConnectorSetup, Gateway, Injection};
use acg_core::ports::Delivery;
use acg_core::state::StateFile;
use acg_core::types::{AgentError, ConnectionState, Role};
use common::*;

#[tokio::test]
async fn sessions_and_watermarks_survive_a_restart_and_the_same_session_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    // A record of a watcher that is no longer configured is dropped on the next save.
    StateFile::for_connector(dir.path(), "fake")
        .save(&[record("gone", "old-session", "5")])
        .unwrap();

    let backend = FakeBackend::new("first");
    let connector = FakeConnector::new("fake");
    let mut w = spec("w", "fake", "general", "a", dir.path());
    w.session_prefix = "team".into();
    let (gw, _) = start_one(dir.path(), &backend, &connector, vec![w.clone()]).await;
    let created = backend.created();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].title.as_deref(), Some("team:general"));
    assert_eq!(created[0].working_directory, dir.path());
    connector.post(msg("general", "m1", "hi", 4242)).await;
    wait_until("reply", || !connector.texts("general").is_empty()).await;
    gw.shutdown().await;

    let records = saved(dir.path(), "fake");
    assert_eq!(
        records.len(),
        1,
        "unconfigured watchers are dropped: {records:?}"
    );
    assert_eq!(records[0].session_id, "first-1");
    assert_eq!(records[0].last_processed_ts, "4242");

    // Restart with a fresh backend: no new session, the old one continues.
    let backend2 = FakeBackend::new("second");
    let connector2 = FakeConnector::new("fake");
    let (gw2, report) = start_one(dir.path(), &backend2, &connector2, vec![w]).await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(
        backend2.created().is_empty(),
        "the persisted session must be reused"
    );
    assert!(connector2.seen().contains(&Seen::Subscribed {
        room: "id-general".into(),
        replay_after: Some(4242)
    }));
    connector2.post(msg("general", "m2", "again", 5000)).await;
    wait_until("reply", || !connector2.texts("general").is_empty()).await;
    assert_eq!(backend2.turns()[0].session_id, "first-1");
    gw2.shutdown().await;
}

#[tokio::test]
async fn no_session_title_when_the_prefix_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let mut w = spec("w", "fake", "general", "a", dir.path());
    w.session_prefix = String::new();
    w.new_session_args = vec!["--agent".into(), "x".into()];
    let (gw, _) = start_one(dir.path(), &backend, &connector, vec![w]).await;
    let created = backend.created();
    assert_eq!(created[0].title, None);
    assert_eq!(
        created[0].extra_args,
        vec!["--agent".to_string(), "x".to_string()]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn reset_keeps_a_pinned_session_and_replaces_an_automatic_one() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("auto");
    let connector = FakeConnector::new("fake");
    let mut pinned = spec("pinned", "fake", "ops", "a", dir.path());
    pinned.pinned_session_id = Some("pinned-id".into());
    let auto = spec("auto", "fake", "general", "a", dir.path());
    let (gw, _) = start_one(dir.path(), &backend, &connector, vec![pinned, auto]).await;
    assert_eq!(
        backend.created().len(),
        1,
        "a pinned watcher never creates a session"
    );
    assert_eq!(
        saved_record(dir.path(), "fake", "pinned")
            .unwrap()
            .session_id,
        "pinned-id"
    );
    assert_eq!(
        saved_record(dir.path(), "fake", "auto").unwrap().session_id,
        "auto-1"
    );

    gw.reset("pinned", None).await.unwrap();
    gw.reset("auto", None).await.unwrap();
    let list = gw.list(None).unwrap();
    assert_eq!(list[0].session_id, "pinned-id");
    assert_eq!(list[1].session_id, "auto-2");
    assert!(list.iter().all(|w| w.active && !w.paused));
    assert_eq!(
        saved_record(dir.path(), "fake", "pinned")
            .unwrap()
            .session_id,
        "pinned-id"
    );
    assert_eq!(
        saved_record(dir.path(), "fake", "auto").unwrap().session_id,
        "auto-2"
    );

    connector.post(msg("ops", "m1", "status?", 1)).await;
    wait_until("reply", || !connector.texts("ops").is_empty()).await;
    assert_eq!(backend.turns()[0].session_id, "pinned-id");
    gw.shutdown().await;
}

#[tokio::test]
async fn pause_stops_taking_messages_resume_restarts_reset_unpauses() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let w = spec("w", "fake", "general", "a", dir.path());
    let (gw, _) = start_one(dir.path(), &backend, &connector, vec![w.clone()]).await;

    gw.pause("w", None).await.unwrap();
    let info = &gw.list(None).unwrap()[0];
    assert!(info.paused && !info.active);
    assert_eq!(info.session_id, "s-1", "pause keeps the session");
    assert!(connector.seen().contains(&Seen::Unsubscribed {
        room: "id-general".into()
    }));
    assert_eq!(
        connector.post(msg("general", "m1", "hi", 1)).await,
        Delivery::NoWatcher
    );
    assert!(saved_record(dir.path(), "fake", "w").unwrap().paused);
    gw.shutdown().await;

    // Still paused after a restart: not started, reported.
    let connector2 = FakeConnector::new("fake");
    let (gw2, report) = start_one(dir.path(), &backend, &connector2, vec![w.clone()]).await;
    assert!(
        report.info.iter().any(|l| l.contains("'w' is paused")),
        "{report:?}"
    );
    assert!(!gw2.list(None).unwrap()[0].active);

    gw2.resume("w", None).await.unwrap();
    let info = &gw2.list(None).unwrap()[0];
    assert!(!info.paused && info.active);
    assert_eq!(info.session_id, "s-1", "resume keeps the session");
    assert!(!saved_record(dir.path(), "fake", "w").unwrap().paused);
    connector2.post(msg("general", "m2", "back", 2)).await;
    wait_until("reply", || !connector2.texts("general").is_empty()).await;

    // Reset of a paused watcher: new session, unpaused, running.
    gw2.pause("w", None).await.unwrap();
    gw2.reset("w", None).await.unwrap();
    let info = &gw2.list(None).unwrap()[0];
    assert!(!info.paused && info.active);
    assert_eq!(info.session_id, "s-2");
    assert_eq!(info.context_injection_state, "injected");
    let rec = saved_record(dir.path(), "fake", "w").unwrap();
    assert!(!rec.paused);
    assert!(rec.context_injected);
    assert_eq!(rec.session_id, "s-2");
    assert_eq!(backend.overlaps(), 0);
    gw2.shutdown().await;
}

#[tokio::test]
async fn a_corrupt_state_file_is_reported_moved_aside_and_the_gateway_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = StateFile::for_connector(dir.path(), "fake")
        .path()
        .to_path_buf();
    std::fs::write(&path, b"{\"watchers\": [ this is not json").unwrap();

    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let (gw, report) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].contains("corrupt"), "{report:?}");

    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("state.fake.json.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        b"{\"watchers\": [ this is not json",
        "the corrupt file is kept as it was"
    );
    assert!(report.errors[0].contains(&aside[0].display().to_string()));

    connector.post(msg("general", "m1", "hi", 1)).await;
    wait_until("reply", || !connector.texts("general").is_empty()).await;
    gw.shutdown().await;
    assert_eq!(
        saved_record(dir.path(), "fake", "w").unwrap().session_id,
        "s-1"
    );
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        b"{\"watchers\": [ this is not json"
    );
}

#[tokio::test]
async fn a_connector_that_fails_to_connect_keeps_its_saved_sessions_and_others_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut kept = record("down-w", "keep-me", "123");
    kept.room_id = "RID1".into();
    StateFile::for_connector(dir.path(), "down")
        .save(&[kept.clone()])
        .unwrap();

    let backend = FakeBackend::new("s");
    let down = FakeConnector::failing("down");
    let up = FakeConnector::new("up");
    let (gw, report) = Gateway::start(
        options(dir.path()),
        vec![backend.as_setup("a")],
        vec![
            ConnectorSetup {
                connector: down.clone(),
                connector_type: "fake".into(),
                watchers: vec![
                    spec("down-w", "down", "general", "a", dir.path()),
                    spec("down-new", "down", "other", "a", dir.path()),
                ],
            },
            ConnectorSetup {
                connector: up.clone(),
                connector_type: "fake".into(),
                watchers: vec![spec("up-w", "up", "general", "a", dir.path())],
            },
        ],
    )
    .await;
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("'down' failed to connect")),
        "{report:?}"
    );
    let infos = gw.list(Some("down")).unwrap();
    assert!(infos.iter().all(|w| !w.active));
    assert_eq!(infos[0].session_id, "keep-me");
    assert_eq!(gw.connectors()[0].state, ConnectionState::Disconnected);

    // The other connector is unaffected.
    up.post(msg("general", "m1", "hi", 1)).await;
    wait_until("reply on the working connector", || {
        !up.texts("general").is_empty()
    })
    .await;

    // Resuming a watcher of the broken connector says why it cannot run.
    let err = gw.resume("down-w", None).await.unwrap_err();
    assert!(err.0.contains("not connected"), "{err}");

    gw.shutdown().await;
    assert_eq!(
        saved(dir.path(), "down"),
        vec![kept],
        "saved sessions are never wiped"
    );
    assert!(!down.disconnected.load(Ordering::SeqCst));
    assert!(up.disconnected.load(Ordering::SeqCst));
}

#[tokio::test]
async fn watchers_of_an_agent_that_failed_to_start_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let good = FakeBackend::new("g");
    let bad = FakeBackend::new("b");
    *bad.fail_start.lock().unwrap() = Some(AgentError::Unavailable("no binary".into()));
    let connector = FakeConnector::new("fake");
    let (gw, report) = Gateway::start(
        options(dir.path()),
        vec![good.as_setup("good"), bad.as_setup("bad")],
        vec![ConnectorSetup {
            connector: connector.clone(),
            connector_type: "fake".into(),
            watchers: vec![
                spec("w-good", "fake", "general", "good", dir.path()),
                spec("w-bad", "fake", "other", "bad", dir.path()),
            ],
        }],
    )
    .await;
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("Agent 'bad' failed to start")),
        "{report:?}"
    );
    assert!(
        report.errors.iter().any(|e| e.contains("'w-bad' skipped")),
        "{report:?}"
    );
    let list = gw.list(None).unwrap();
    assert!(list[0].active);
    assert!(!list[1].active);
    assert!(bad.created().is_empty());
    gw.shutdown().await;
    assert!(good.stopped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_missing_context_file_fails_that_watcher_only() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let mut broken = spec("broken", "fake", "general", "a", dir.path());
    broken.context.files = vec![dir.path().join("no-such-context.md")];
    let ctx_file = dir.path().join("rules.md");
    std::fs::write(&ctx_file, "Always answer in haiku.").unwrap();
    let mut fine = spec("fine", "fake", "other", "a", dir.path());
    fine.context.files = vec![ctx_file];
    let (gw, report) = start_one(dir.path(), &backend, &connector, vec![broken, fine]).await;
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].contains("'broken' failed to start"));
    assert!(report.errors[0].contains("no-such-context.md"));
    let list = gw.list(None).unwrap();
    assert!(!list[0].active && list[1].active);

    connector.post(msg("other", "m1", "hi", 1)).await;
    wait_until("reply", || !connector.texts("other").is_empty()).await;
    let turn = &backend.turns()[0];
    let prompt_file = turn.system_prompt_file.clone().unwrap();
    let text = std::fs::read_to_string(&prompt_file).unwrap();
    assert!(text.contains("Always answer in haiku."));
    assert!(text.contains("`fine`"));
    assert!(prompt_file.starts_with(dir.path()));
    gw.shutdown().await;
}

#[tokio::test]
async fn command_routing_errors_and_send() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let one = FakeConnector::new("one");
    let (gw, _) = start_one(dir.path(), &backend, &one, vec![]).await;
    // A single connector is used without naming it.
    gw.send("general", Some("hello".into()), None, None)
        .await
        .unwrap();
    let attachment = dir.path().join("report.pdf");
    gw.send("general", None, Some(attachment.clone()), None)
        .await
        .unwrap();
    // A room the server does not know is taken as a raw room id.
    gw.send("missing-RID9", Some("raw".into()), None, None)
        .await
        .unwrap();
    let sent = one.sent("general");
    assert_eq!(sent[0].text, "hello");
    assert_eq!(sent[1].attachment.as_ref(), Some(&attachment));
    assert!(one
        .seen()
        .iter()
        .any(|s| matches!(s, Seen::Sent { room, .. } if room == "missing-RID9")));
    assert_eq!(
        gw.send("general", None, None, None).await.unwrap_err().0,
        "Nothing to send: provide 'text' or 'attachment_path'"
    );
    assert_eq!(
        gw.send("", Some("x".into()), None, None)
            .await
            .unwrap_err()
            .0,
        "Missing 'room' field in send command"
    );
    assert_eq!(
        gw.send("general", Some("x".into()), None, Some("nope"))
            .await
            .unwrap_err()
            .0,
        "Unknown connector: 'nope'"
    );
    assert_eq!(
        gw.pause("ghost", None).await.unwrap_err().0,
        "Unknown watcher: 'ghost'"
    );
    assert_eq!(
        gw.list(Some("nope")).unwrap_err().0,
        "Unknown connector: 'nope'"
    );
    gw.shutdown().await;

    let a = FakeConnector::new("a");
    let b = FakeConnector::new("b");
    let (gw, _) = Gateway::start(
        options(dir.path()),
        vec![backend.as_setup("a")],
        vec![
            ConnectorSetup {
                connector: a.clone(),
                connector_type: "fake".into(),
                watchers: vec![spec("wa", "a", "general", "a", dir.path())],
            },
            ConnectorSetup {
                connector: b.clone(),
                connector_type: "fake".into(),
                watchers: vec![spec("wb", "b", "general", "a", dir.path())],
            },
        ],
    )
    .await;
    assert_eq!(
        gw.send("general", Some("x".into()), None, None)
            .await
            .unwrap_err()
            .0,
        "Multiple connectors configured ('a', 'b'). Please specify --connector <name>."
    );
    gw.send("general", Some("to b".into()), None, Some("b"))
        .await
        .unwrap();
    assert_eq!(b.texts("general"), vec!["to b".to_string()]);
    assert!(a.texts("general").is_empty());
    // Watcher names are unique, so a watcher command finds its connector by itself …
    gw.pause("wb", None).await.unwrap();
    // … and a named connector must hold the watcher.
    assert_eq!(
        gw.resume("wb", Some("a")).await.unwrap_err().0,
        "Unknown watcher: 'wb'"
    );
    assert_eq!(gw.list(None).unwrap().len(), 2);
    assert_eq!(gw.list(Some("a")).unwrap().len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn inject_delivers_through_the_dispatcher_with_sender_role_and_connector_header() {
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
    gw.inject(Injection {
        watcher: "w".into(),
        text: "run the nightly report".into(),
        sender: "cron".into(),
        role: Role::Guest,
    })
    .await
    .unwrap();
    wait_until("reply", || !connector.texts("general").is_empty()).await;
    let turn = &backend.turns()[0];
    assert_eq!(
        turn.prompt, "run the nightly report",
        "no header by default"
    );
    assert_eq!(turn.env.get("ACG_ROLE").map(String::as_str), Some("guest"));
    assert_eq!(
        connector.texts("general")[0],
        "echo: run the nightly report"
    );
    // The watermark is saved just after the reply is posted.
    wait_until("injected messages carry a timestamp (now)", || {
        saved_record(dir.path(), "fake", "w")
            .and_then(|r| r.last_processed_ts.parse::<i64>().ok())
            .is_some_and(|ts| ts > 0)
    })
    .await;

    assert_eq!(
        gw.inject(Injection::new("ghost", "x")).await.unwrap_err().0,
        "Unknown watcher: 'ghost'"
    );
    gw.pause("w", None).await.unwrap();
    assert_eq!(
        gw.inject(Injection::new("w", "x")).await.unwrap_err().0,
        "Watcher 'w' is not running"
    );
    gw.shutdown().await;

    // A connector that builds headers gets to build one for injected messages.
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::with_header("fake", "[Fake #general |");
    let (gw, _) = start_one(
        dir.path(),
        &backend,
        &connector,
        vec![spec("w", "fake", "general", "a", dir.path())],
    )
    .await;
    gw.inject(Injection::new("w", "hello")).await.unwrap();
    wait_until("turn", || backend.finished() == 1).await;
    assert_eq!(
        backend.turns()[0].prompt,
        "[Fake #general | from: script hello"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_the_queue_then_posts_the_offline_notice() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let mut w = spec("w", "fake", "general", "a", dir.path());
    w.online_notification = Some("✅ online".into());
    w.offline_notification = Some("❌ offline".into());
    let (gw, _) = start_one(dir.path(), &backend, &connector, vec![w]).await;
    wait_until("online notice", || {
        connector.texts("general") == vec!["✅ online".to_string()]
    })
    .await;

    backend.hold();
    connector.post(msg("general", "m1", "one", 1)).await;
    wait_until("turn started", || backend.started() == 1).await;
    connector.post(msg("general", "m2", "two", 2)).await;

    let stopping = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.shutdown().await })
    };
    // New messages are refused as soon as shutdown begins.
    wait_until("stopped accepting", || {
        connector.seen().contains(&Seen::Unsubscribed {
            room: "id-general".into(),
        })
    })
    .await;
    assert_ne!(
        connector.post(msg("general", "m3", "late", 3)).await,
        Delivery::Accepted
    );

    backend.release(10);
    tokio::time::timeout(Duration::from_secs(60), stopping)
        .await
        .unwrap()
        .unwrap();
    let texts = connector.texts("general");
    assert_eq!(
        texts,
        vec![
            "✅ online".to_string(),
            "echo: one".to_string(),
            "echo: two".to_string(),
            "❌ offline".to_string()
        ]
    );
    assert_eq!(
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts,
        "2"
    );
    assert!(connector.disconnected.load(Ordering::SeqCst));
    assert!(backend.stopped.load(Ordering::SeqCst));
    // Shutdown is idempotent and later commands are refused.
    gw.shutdown().await;
    assert!(gw.pause("w", None).await.is_err());
}

#[tokio::test]
async fn shutdown_cancels_a_turn_that_outlives_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FakeBackend::new("s");
    let connector = FakeConnector::new("fake");
    let mut w = spec("w", "fake", "general", "a", dir.path());
    w.offline_notification = Some("❌ offline".into());
    let mut opts = options(dir.path());
    opts.drain_timeout = Duration::from_millis(300);
    let (gw, _) = Gateway::start(
        opts,
        vec![backend.as_setup("a")],
        vec![ConnectorSetup {
            connector: connector.clone(),
            connector_type: "fake".into(),
            watchers: vec![w],
        }],
    )
    .await;
    backend.push(Step::Hang);
    connector.post(msg("general", "m1", "forever", 77)).await;
    wait_until("turn started", || backend.started() == 1).await;
    tokio::time::timeout(Duration::from_secs(60), gw.shutdown())
        .await
        .unwrap();

    assert_eq!(connector.texts("general"), vec!["❌ offline".to_string()]);
    assert_eq!(
        connector.typing("general").last(),
        Some(&false),
        "typing cleared"
    );
    assert_eq!(
        saved_record(dir.path(), "fake", "w")
            .unwrap()
            .last_processed_ts,
        "",
        "an unanswered message is not passed by the watermark (it is replayed)"
    );
}
