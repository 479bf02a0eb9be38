//! The connector against the fake Rocket.Chat (REST + DDP on 127.0.0.1): login, rooms,
//! filters, normalization, threads, attachments, chunking, uploads per version, typing,
//! history, reconnect with replay, a server that is down at start, and re-login on 401.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use acg_core::ports::Delivery;
use acg_core::{
    ConnectionState, Connector, ConnectorError, HistoryQuery, HistoryRole, OutgoingMessage, Role,
    Room, RoomKind,
};
use acg_rocketchat::{RocketChatConnector, RocketChatOptions};
use acg_testkit::rocketchat::FakeOptions;
use common::*;
use serde_json::{json, Value};

fn text_of(doc: &Value) -> &str {
    doc.get("msg").and_then(Value::as_str).unwrap_or_default()
}

#[tokio::test]
async fn logs_in_subscribes_and_delivers_a_mention() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    assert_eq!(rc.connection_state(), ConnectionState::Connected);
    assert_eq!(rc.platform(), "Rocket.Chat");
    assert_eq!(rc.bot_username().as_deref(), Some("bot"));
    assert!(rc.builtin_context().is_some());

    let room = rc.resolve_room("dev").await.unwrap();
    assert_eq!(room.kind, RoomKind::Channel);
    assert_eq!(room.name, "dev");
    assert_eq!(Some(room.id.clone()), fake.room_id("dev"));
    assert_eq!(rc.resolve_room("#dev").await.unwrap(), room);
    let group = rc.resolve_room("secret").await.unwrap();
    assert_eq!(group.kind, RoomKind::Group);
    let by_id = rc.resolve_room(&room.id).await.unwrap();
    assert_eq!(by_id.id, room.id);
    assert!(matches!(
        rc.resolve_room("no-such-room").await,
        Err(ConnectorError::RoomNotFound(_))
    ));

    rc.subscribe(&room, None).await.unwrap();
    assert_eq!(rc.active_rooms(), vec![room.id.clone()]);
    let alice = fake.login_as("alice").unwrap();
    let posted = alice.post("dev", "@bot please summarize").await.unwrap();

    let m = rec.wait_text("please summarize").await;
    assert_eq!(m.id, posted["_id"].as_str().unwrap());
    assert_eq!(m.room, room);
    assert_eq!(m.role, Role::Owner);
    assert_eq!(m.sender.username, "alice");
    assert_eq!(m.sender.display_name.as_deref(), Some("Alice"));
    assert_eq!(m.mentions, vec!["bot".to_string()]);
    assert_eq!(m.thread_id, None);
    assert_eq!(m.permission_thread_id.as_deref(), Some(m.id.as_str()));
    assert!(m.timestamp_ms.is_some());
    assert!(
        m.prompt_header
            .starts_with("[Rocket.Chat #dev | from: alice | role: owner | day: "),
        "{}",
        m.prompt_header
    );
    assert!(
        m.prompt_header.ends_with(" | to: me]"),
        "{}",
        m.prompt_header
    );

    // The DDP login used the REST token as a resume token; the password never went on the socket.
    let frames = fake.ddp_frames();
    assert!(frames.iter().any(|f| f.text.contains("\"resume\"")));
    assert!(!frames.iter().any(|f| f.text.contains("botpw")));
    assert!(frames
        .iter()
        .any(|f| f.text.contains("stream-room-messages") && f.text.contains(&room.id)));
    rc.disconnect().await;
    assert_eq!(rc.connection_state(), ConnectionState::Disconnected);
}

#[tokio::test]
async fn direct_messages_need_no_mention() {
    let fake = fake("8.1.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let dm = rc.resolve_room("@alice").await.unwrap();
    assert_eq!(dm.kind, RoomKind::Dm);
    assert_eq!(dm.name, "@alice");
    rc.subscribe(&dm, None).await.unwrap();
    let alice = fake.login_as("alice").unwrap();
    alice.dm("bot", "  hi there @bot ").await.unwrap();
    let m = rec.wait_text("hi there @bot").await;
    assert!(m
        .prompt_header
        .starts_with("[Rocket.Chat #@alice | from: alice | role: owner"));
    assert!(m.prompt_header.ends_with("| to: me]"));
}

#[tokio::test]
async fn strangers_edits_system_messages_and_unmentioned_messages_are_ignored() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    let alice = fake.login_as("alice").unwrap();
    let eve = fake.login_as("eve").unwrap();
    let gina = fake.login_as("gina").unwrap();

    eve.post("dev", "@bot let me in").await.unwrap();
    alice.post("dev", "no mention here").await.unwrap();
    let first = alice.post("dev", "@bot first").await.unwrap();
    rec.wait_text("first").await;
    // Editing the message (even adding a mention) never starts another turn.
    alice
        .edit(first["_id"].as_str().unwrap(), "@bot first, edited")
        .await
        .unwrap();
    // A system message from an allowed user that names the bot.
    let system = json!({
        "_id": "sys1", "rid": room.id, "t": "uj", "msg": "@bot",
        "ts": {"$date": 4102444800000_i64}, "_updatedAt": {"$date": 4102444800000_i64},
        "u": {"_id": fake.user_id("alice").unwrap(), "username": "alice"},
        "mentions": [{"_id": "x", "username": "bot"}]
    });
    fake.send_raw_frames(vec![json!({
        "msg": "changed", "collection": "stream-room-messages", "id": "id",
        "fields": {"eventName": room.id, "args": [system]}
    })
    .to_string()]);
    // The bot's own post comes back on the stream too.
    rc.send(&room, OutgoingMessage::text("@bot talking to myself"))
        .await
        .unwrap();
    // A guest's message after all of that: once it is delivered, the earlier ones were
    // handled (one worker per room, in order).
    gina.post("dev", "@bot sentinel").await.unwrap();
    let m = rec.wait_text("sentinel").await;
    assert_eq!(m.role, Role::Guest);
    assert_eq!(
        rec.texts(),
        vec!["first".to_string(), "sentinel".to_string()]
    );
}

#[tokio::test]
async fn thread_replies_and_thread_policy() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    let alice = fake.login_as("alice").unwrap();
    let top = alice.post("dev", "@bot top level").await.unwrap();
    let top_id = top["_id"].as_str().unwrap().to_string();
    let m = rec.wait_text("top level").await;
    assert_eq!(m.thread_id, None);
    assert_eq!(m.permission_thread_id.as_deref(), Some(top_id.as_str()));

    alice
        .reply_in_thread("dev", &top_id, "@bot in the thread")
        .await
        .unwrap();
    let m = rec.wait_text("in the thread").await;
    assert_eq!(m.thread_id.as_deref(), Some(top_id.as_str()));
    assert_eq!(m.permission_thread_id.as_deref(), Some(top_id.as_str()));

    // The answer goes to the thread (roomId + tmid).
    rc.send(
        &room,
        OutgoingMessage::text("threaded answer").in_thread(Some(top_id.clone())),
    )
    .await
    .unwrap();
    let reply = fake
        .wait_for_message("dev", |d| text_of(d) == "threaded answer", PATIENCE)
        .await
        .unwrap();
    assert_eq!(reply["tmid"].as_str(), Some(top_id.as_str()));
    // The parent's thread counter update (same _id, later _updatedAt) did not trigger again.
    alice.post("dev", "@bot after").await.unwrap();
    rec.wait_text("after").await;
    assert_eq!(rec.count_text("top level"), 1);
}

#[tokio::test]
async fn reply_in_thread_starts_a_thread() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = config(&fake.url(), cache.path());
    cfg.reply_in_thread = true;
    let rc = RocketChatConnector::new("rc-test", cfg, quick_options()).unwrap();
    let rec = Recorder::new();
    rc.connect(rec.clone()).await.unwrap();
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    let posted = fake
        .login_as("alice")
        .unwrap()
        .post("dev", "@bot hi")
        .await
        .unwrap();
    let m = rec.wait_text("hi").await;
    assert_eq!(m.thread_id.as_deref(), posted["_id"].as_str());
}

#[tokio::test]
async fn attachments_are_downloaded_and_oversized_ones_become_warnings() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    let alice = fake.login_as("alice").unwrap();

    let bytes = b"hello attachment".to_vec();
    alice
        .upload(
            "dev",
            "../../notes.txt",
            bytes.clone(),
            Some("@bot read this"),
        )
        .await
        .unwrap();
    let m = rec.wait_text("read this").await;
    assert_eq!(m.attachments.len(), 1, "{m:?}");
    let path = &m.attachments[0];
    let room_dir = cache.path().join("rc-test").join(&room.id);
    assert_eq!(path.parent(), Some(room_dir.as_path()));
    assert!(path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with("_.._.._notes.txt"));
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    assert!(m.warnings.is_empty());
    // No temp file left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&room_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());

    let big = vec![7u8; 1024 * 1024 + 200 * 1024];
    alice
        .upload("dev", "big.bin", big, Some("@bot too big"))
        .await
        .unwrap();
    let m = rec.wait_text("too big").await;
    assert!(m.attachments.is_empty());
    assert_eq!(
        m.warnings,
        vec!["[⚠️ Attachment 'big.bin' skipped — 1.2 MB exceeds 1 MB limit]".to_string()]
    );
}

#[tokio::test]
async fn long_replies_are_chunked_at_the_server_limit_on_line_boundaries() {
    let mut options = FakeOptions::new("7.10.0", seed());
    options.message_max_allowed_size = 120;
    let fake = fake_with(options).await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, _rec) = connected(&fake, cache.path(), quick_options()).await;
    assert_eq!(rc.message_limit(), 120);
    let room = rc.resolve_room("dev").await.unwrap();
    let lines: Vec<String> = (0..30)
        .map(|i| format!("line {i:02} {}", "x".repeat(20)))
        .collect();
    let text = lines.join("\n");
    rc.send(&room, OutgoingMessage::text(text.clone()))
        .await
        .unwrap();
    let posted: Vec<String> = fake
        .messages("dev")
        .iter()
        .filter(|d| d["u"]["username"] == "bot")
        .map(|d| text_of(d).to_string())
        .collect();
    assert!(posted.len() > 1);
    for chunk in &posted {
        assert!(chunk.chars().count() <= 120, "{chunk}");
        // Cut on line boundaries: every chunk is whole lines.
        for line in chunk.lines() {
            assert!(lines.contains(&line.to_string()), "partial line {line:?}");
        }
    }
    assert_eq!(posted.join("\n"), text);
}

#[tokio::test]
async fn message_limit_falls_back_to_5000_and_short_texts_are_one_post() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, _rec) = connected(&fake, cache.path(), quick_options()).await;
    assert_eq!(rc.message_limit(), 5000);
    let room = rc.resolve_room("dev").await.unwrap();
    rc.send(&room, OutgoingMessage::text("x".repeat(4999)))
        .await
        .unwrap();
    let n = fake
        .messages("dev")
        .iter()
        .filter(|d| d["u"]["username"] == "bot")
        .count();
    assert_eq!(n, 1);
}

async fn upload_flow(version: &str, expected_endpoint: &str) {
    let fake = fake(version).await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, _rec) = connected(&fake, cache.path(), quick_options()).await;
    let major: u32 = version.split('.').next().unwrap().parse().unwrap();
    assert_eq!(rc.server_major_version(), Some(major));
    let room = rc.resolve_room("dev").await.unwrap();
    let file = cache.path().join("report.txt");
    std::fs::write(&file, b"report body").unwrap();
    rc.send(
        &room,
        OutgoingMessage {
            text: "here is the report".into(),
            attachment: Some(file),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let msg = fake
        .wait_for_message(
            "dev",
            |d| d["u"]["username"] == "bot" && d.get("files").is_some(),
            PATIENCE,
        )
        .await
        .unwrap();
    let caption_seen = text_of(&msg) == "here is the report"
        || msg["attachments"][0]["description"] == "here is the report";
    assert!(caption_seen, "{msg}");
    let file_id = msg["files"][0]["_id"].as_str().unwrap();
    assert_eq!(fake.file_bytes(file_id).unwrap(), b"report body");
    let log = fake.request_log();
    assert!(
        log.iter()
            .any(|r| r.path.contains(expected_endpoint) && r.status == 200),
        "{:?}",
        log.iter().map(|r| (&r.path, r.status)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn uploads_use_rooms_upload_on_7x() {
    upload_flow("7.10.0", "/api/v1/rooms.upload/").await;
}

#[tokio::test]
async fn uploads_use_rooms_media_on_8x() {
    upload_flow("8.1.0", "/api/v1/rooms.mediaConfirm/").await;
}

#[tokio::test]
async fn typing_indicator_on_and_off_and_fast_fail_when_down() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    // A typing timeout far beyond the test's patience: waiting for it would fail the test.
    let options = RocketChatOptions {
        typing_timeout: Duration::from_secs(3600),
        ..quick_options()
    };
    let (rc, _rec) = connected(&fake, cache.path(), options).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.set_typing(&room, None, true).await;
    rc.set_typing(&room, None, false).await;
    let events = fake.typing_events("dev");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].is_typing() && events[0].accepted);
    assert_eq!(events[0].username, "bot");
    assert_eq!(events[0].event, "user-activity");
    assert!(!events[1].is_typing());
    rc.disconnect().await;
    tokio::time::timeout(PATIENCE, rc.set_typing(&room, None, true))
        .await
        .expect("typing fails fast without a link");
}

#[tokio::test]
async fn history_fetch_maps_roles_and_drops_strangers() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, _rec) = connected(&fake, cache.path(), quick_options()).await;
    assert!(rc.supports_history());
    let room = rc.resolve_room("dev").await.unwrap();
    fake.login_as("alice")
        .unwrap()
        .post("dev", "owner says")
        .await
        .unwrap();
    fake.login_as("gina")
        .unwrap()
        .post("dev", "guest says")
        .await
        .unwrap();
    fake.login_as("eve")
        .unwrap()
        .post("dev", "stranger says")
        .await
        .unwrap();
    fake.login_as("wavebro")
        .unwrap()
        .post("dev", "agent says")
        .await
        .unwrap();
    rc.send(&room, OutgoingMessage::text("bot says"))
        .await
        .unwrap();
    // The fake stamps quick posts a millisecond apart, possibly just ahead of its clock, and
    // history ends at "now": poll until all five are in the past.
    let query = HistoryQuery {
        count: 50,
        ..Default::default()
    };
    let deadline = Instant::now() + PATIENCE;
    let entries = loop {
        let entries = rc.fetch_history(&room, query).await.unwrap();
        if entries.len() >= 4 || Instant::now() > deadline {
            break entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let got: Vec<(String, HistoryRole, String)> = entries
        .iter()
        .map(|e| (e.username.clone(), e.role, e.text.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("alice".into(), HistoryRole::Owner, "owner says".into()),
            ("gina".into(), HistoryRole::Guest, "guest says".into()),
            ("wavebro".into(), HistoryRole::Agent, "agent says".into()),
            ("me".into(), HistoryRole::Agent, "bot says".into()),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e.room_name == "dev" && e.timestamp_ms.is_some()));
}

#[tokio::test]
async fn peer_agents_spend_a_budget_that_a_human_resets() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    let wave = fake.login_as("wavebro").unwrap();
    let alice = fake.login_as("alice").unwrap();
    wave.post("dev", "agent one").await.unwrap();
    wave.post("dev", "agent two").await.unwrap();
    wave.post("dev", "agent three").await.unwrap();
    alice.post("dev", "@bot human").await.unwrap();
    wave.post("dev", "agent four").await.unwrap();
    rec.wait_text("agent four").await;
    assert_eq!(
        rec.texts(),
        vec!["agent one", "agent two", "human", "agent four"]
    );
    let one = rec.wait_text("agent one").await;
    assert_eq!(one.role, Role::Guest);
    assert_eq!(one.warnings.len(), 1);
    assert!(one.warnings[0].starts_with("---\n[Agent chain: turn 1/2]\n⚠️  Your next response"));
    let two = rec.wait_text("agent two").await;
    assert!(
        two.warnings[0].starts_with("---\n[Agent chain: turn 2/2]\n⚠️  This is your final turn")
    );
    let four = rec.wait_text("agent four").await;
    assert!(four.warnings[0].starts_with("---\n[Agent chain: turn 1/2]"));
}

#[tokio::test]
async fn replays_unanswered_messages_at_start_from_the_watermark() {
    let fake = fake("7.10.0").await;
    let alice = fake.login_as("alice").unwrap();
    let answered = alice.post("dev", "@bot answered before").await.unwrap();
    let watermark = acg_rocketchat::doc::parse_time_ms(&answered["ts"]).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    alice.post("dev", "@bot missed one").await.unwrap();
    alice.post("dev", "@bot missed two").await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, Some(watermark)).await.unwrap();
    rec.wait_text("missed two").await;
    alice.post("dev", "@bot live").await.unwrap();
    rec.wait_text("live").await;
    assert_eq!(rec.texts(), vec!["missed one", "missed two", "live"]);
}

#[tokio::test]
async fn a_message_the_gateway_rejected_is_replayed_after_a_reconnect() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    let alice = fake.login_as("alice").unwrap();
    alice.post("dev", "@bot accepted").await.unwrap();
    rec.wait_text("accepted").await;
    rec.answer_with(Delivery::Rejected);
    alice.post("dev", "@bot rejected once").await.unwrap();
    rec.wait_text("rejected once").await;
    rec.answer_with(Delivery::Accepted);
    fake.drop_all_sockets();
    eventually("a second delivery after the replay", || {
        rec.count_text("rejected once") == 2
    })
    .await;
    assert_eq!(rec.count_text("accepted"), 1);
}

#[tokio::test]
async fn reconnects_after_dropped_sockets_and_replays_the_outage_exactly_once() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    // Production delays: the measured reconnect time is what a deployment sees.
    let (rc, rec) = connected(&fake, cache.path(), RocketChatOptions::default()).await;
    let rc: Arc<RocketChatConnector> = rc;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    let alice = fake.login_as("alice").unwrap();
    alice.post("dev", "@bot before").await.unwrap();
    rec.wait_text("before").await;

    let top = alice.post("dev", "@bot thread start").await.unwrap();
    rec.wait_text("thread start").await;

    // Let the link be an established one (up for more than a second), as in production.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let logins = || {
        fake.ddp_frames()
            .iter()
            .filter(|f| f.text.contains("\"login\""))
            .count()
    };
    let logins_before = logins();
    let dropped = Instant::now();
    fake.drop_all_sockets();
    alice.post("dev", "@bot during the outage").await.unwrap();
    alice
        .reply_in_thread(
            "dev",
            top["_id"].as_str().unwrap(),
            "@bot thread reply during the outage",
        )
        .await
        .unwrap();
    // The reconnect can be quicker than a poll of the link state; a new DDP login shows the
    // drop was noticed.
    eventually("the connector notices the drop", || {
        logins() > logins_before
    })
    .await;
    assert!(rc.wait_connected(PATIENCE).await);
    eventually("the room is subscribed again", || {
        rc.active_rooms() == vec![room.id.clone()]
    })
    .await;
    let reconnect = dropped.elapsed();
    eprintln!("reconnect after drop_all_sockets: {reconnect:?}");

    rec.wait_text("during the outage").await;
    let reply = rec.wait_text("thread reply during the outage").await;
    assert_eq!(reply.thread_id.as_deref(), top["_id"].as_str());
    alice.post("dev", "@bot after").await.unwrap();
    rec.wait_text("after").await;
    assert_eq!(
        rec.texts(),
        vec![
            "before",
            "thread start",
            "during the outage",
            "thread reply during the outage",
            "after"
        ]
    );
}

#[tokio::test]
async fn a_server_that_is_down_at_start_is_connected_later() {
    let fake = fake("7.10.0").await;
    let room_id = fake.room_id("dev").unwrap();
    // Resolve once while the server is up so the room cache knows it.
    let cache = tempfile::tempdir().unwrap();
    {
        let (rc, _rec) = connected(&fake, cache.path(), quick_options()).await;
        rc.resolve_room("dev").await.unwrap();
        rc.disconnect().await;
    }
    fake.stop().await;

    let rc = RocketChatConnector::new(
        "rc-test",
        config(&fake.url(), cache.path()),
        quick_options(),
    )
    .unwrap();
    let rec = Recorder::new();
    let started = Instant::now();
    rc.connect(rec.clone())
        .await
        .expect("connect returns Ok while the server is down");
    eprintln!(
        "connect() with the server down returned after {:?}",
        started.elapsed()
    );
    eventually("the failure is reported", || {
        matches!(rc.connection_state(),
            ConnectionState::Reconnecting { last_error: Some(e), .. } if e.contains("cannot reach the server"))
    })
    .await;
    // The room resolves from the cache, and subscribing is recorded for later.
    let room = rc.resolve_room("dev").await.unwrap();
    assert_eq!(room.id, room_id);
    rc.subscribe(&room, None).await.unwrap();
    assert!(matches!(
        rc.resolve_room("never-seen").await,
        Err(ConnectorError::NotConnected(_))
    ));

    fake.restart().await.unwrap();
    assert!(rc.wait_connected(PATIENCE).await);
    eventually("subscribed once connected", || {
        rc.active_rooms() == vec![room_id.clone()]
    })
    .await;
    fake.login_as("alice")
        .unwrap()
        .post("dev", "@bot you are back")
        .await
        .unwrap();
    rec.wait_text("you are back").await;
}

#[tokio::test]
async fn a_room_subscribed_while_down_replays_from_its_watermark_once_connected() {
    let fake = fake("7.10.0").await;
    let room = Room {
        id: fake.room_id("dev").unwrap(),
        name: "dev".into(),
        kind: RoomKind::Channel,
    };
    let alice = fake.login_as("alice").unwrap();
    let old = alice.post("dev", "@bot old").await.unwrap();
    let watermark = acg_rocketchat::doc::parse_time_ms(&old["ts"]).unwrap();
    fake.stop().await;
    let cache = tempfile::tempdir().unwrap();
    let rc = RocketChatConnector::new(
        "rc-test",
        config(&fake.url(), cache.path()),
        quick_options(),
    )
    .unwrap();
    let rec = Recorder::new();
    rc.connect(rec.clone()).await.unwrap();
    rc.subscribe(&room, Some(watermark)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    fake.restart().await.unwrap();
    alice
        .post("dev", "@bot new while we were away")
        .await
        .unwrap();
    rec.wait_text("new while we were away").await;
    assert_eq!(rec.texts(), vec!["new while we were away"]);
}

#[tokio::test]
async fn wrong_credentials_back_off_without_failing_connect() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = config(&fake.url(), cache.path());
    cfg.password = "wrong".into();
    let options = RocketChatOptions {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..quick_options()
    };
    let rc = RocketChatConnector::new("rc-test", cfg, options).unwrap();
    rc.connect(Recorder::new())
        .await
        .expect("connect returns Ok");
    eventually("the refusal is reported", || {
        matches!(rc.connection_state(),
            ConnectionState::Reconnecting { last_error: Some(e), .. } if e.contains("login refused"))
    })
    .await;
    // No busy loop: over ~2 s the attempts are spaced by the backoff (ceiling 400 ms).
    fake.clear_request_log();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logins = fake
        .request_log()
        .iter()
        .filter(|r| r.path == "/api/v1/login")
        .count();
    assert!(logins <= 20, "{logins} login attempts in 2 s");
    assert!(!rc.wait_connected(Duration::from_millis(10)).await);
}

#[tokio::test]
async fn expired_tokens_are_renewed_by_logging_in_again() {
    let fake = fake("8.1.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    fake.clear_request_log();
    fake.expire_tokens();
    // REST: the post gets 401, logs in again and is retried.
    rc.send(&room, OutgoingMessage::text("still here"))
        .await
        .unwrap();
    fake.wait_for_message("dev", |d| text_of(d) == "still here", PATIENCE)
        .await
        .unwrap();
    let log = fake.request_log();
    assert!(log
        .iter()
        .any(|r| r.path == "/api/v1/chat.postMessage" && r.status == 401));
    assert!(log
        .iter()
        .any(|r| r.path == "/api/v1/login" && r.status == 200));
    // DDP: the session closed by the server comes back and the room is live again.
    assert!(rc.wait_connected(PATIENCE).await);
    eventually("subscribed again", || {
        rc.active_rooms() == vec![room.id.clone()]
    })
    .await;
    fake.login_as("alice")
        .unwrap()
        .post("dev", "@bot after renewal")
        .await
        .unwrap();
    rec.wait_text("after renewal").await;
}

#[tokio::test]
async fn transient_post_failures_are_retried() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, _rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    fake.fail_next_rest(2, 503);
    rc.send(&room, OutgoingMessage::text("third time lucky"))
        .await
        .unwrap();
    assert_eq!(
        fake.messages("dev")
            .iter()
            .filter(|d| text_of(d) == "third time lucky")
            .count(),
        1
    );
    fake.fail_next_rest(3, 503);
    assert!(rc
        .send(&room, OutgoingMessage::text("never"))
        .await
        .is_err());
}

#[tokio::test]
async fn malformed_frames_do_not_break_the_link() {
    let fake = fake("7.10.0").await;
    let cache = tempfile::tempdir().unwrap();
    let (rc, rec) = connected(&fake, cache.path(), quick_options()).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, None).await.unwrap();
    for kind in acg_testkit::rocketchat::MalformedFrames::ALL {
        fake.send_malformed_frames(kind);
    }
    fake.send_raw_frames(vec!["{".into(), "[]".into(), r#"{"msg":"changed","collection":"stream-room-messages","fields":{"eventName":"x","args":[1]}}"#.into()]);
    fake.login_as("alice")
        .unwrap()
        .post("dev", "@bot still fine")
        .await
        .unwrap();
    rec.wait_text("still fine").await;
    assert_eq!(rc.connection_state(), ConnectionState::Connected);
}

#[tokio::test]
async fn replay_pages_until_caught_up() {
    let fake = fake("7.10.0").await;
    let alice = fake.login_as("alice").unwrap();
    let anchor = alice.post("dev", "@bot answered").await.unwrap();
    let watermark = acg_rocketchat::doc::parse_time_ms(&anchor["ts"]).unwrap();
    let expected: Vec<String> = (0..10).map(|i| format!("missed {i}")).collect();
    for text in &expected {
        alice.post("dev", &format!("@bot {text}")).await.unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let options = RocketChatOptions {
        history_page_size: 3,
        ..quick_options()
    };
    let (rc, rec) = connected(&fake, cache.path(), options).await;
    let room = rc.resolve_room("dev").await.unwrap();
    rc.subscribe(&room, Some(watermark)).await.unwrap();
    rec.wait_text("missed 9").await;
    assert_eq!(rec.texts(), expected);
}

#[tokio::test]
async fn history_fetch_pages_and_honours_bounds() {
    let fake = fake("7.10.0").await;
    let alice = fake.login_as("alice").unwrap();
    let mut stamps = Vec::new();
    for i in 0..6 {
        let doc = alice.post("dev", &format!("m{i}")).await.unwrap();
        stamps.push(acg_rocketchat::doc::parse_time_ms(&doc["ts"]).unwrap());
    }
    let cache = tempfile::tempdir().unwrap();
    let options = RocketChatOptions {
        history_page_size: 2,
        ..quick_options()
    };
    let (rc, _rec) = connected(&fake, cache.path(), options).await;
    let room = rc.resolve_room("dev").await.unwrap();
    let texts = |entries: Vec<acg_core::HistoryEntry>| -> Vec<String> {
        entries.into_iter().map(|e| e.text).collect()
    };
    let query = |count, after_ms, before_ms| HistoryQuery {
        count,
        after_ms,
        before_ms,
    };
    let deadline = Instant::now() + PATIENCE;
    let newest = loop {
        let got = texts(rc.fetch_history(&room, query(4, None, None)).await.unwrap());
        if got.last().map(String::as_str) == Some("m5") || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(newest, vec!["m2", "m3", "m4", "m5"]);
    let between = texts(
        rc.fetch_history(&room, query(50, Some(stamps[1]), Some(stamps[4])))
            .await
            .unwrap(),
    );
    assert_eq!(between, vec!["m2", "m3"]);
}
