//! Robustness: DDP frame parsing, message normalization, filtering and chunking never panic,
//! whatever a (buggy or hostile) server sends. A few thousand random inputs from a fixed seed
//! plus handcrafted documents with missing and wrong-typed fields; no network.

use std::time::{Duration, Instant};

use acg_core::{Room, RoomKind};
use acg_rocketchat::chunk::split_message;
use acg_rocketchat::ddp::{parse_frame, Frame};
use acg_rocketchat::doc::parse_message;
use acg_rocketchat::filter::{screen, Gates, RoomLedger, TurnBudget};
use acg_rocketchat::{normalize_doc, Ctx, Settings};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

const KEYS: &[&str] = &[
    "msg",
    "_id",
    "rid",
    "ts",
    "$date",
    "u",
    "username",
    "name",
    "mentions",
    "files",
    "attachments",
    "title",
    "title_link",
    "description",
    "size",
    "type",
    "tmid",
    "t",
    "editedAt",
    "_updatedAt",
    "fields",
    "args",
    "eventName",
    "collection",
    "id",
    "result",
    "error",
    "reason",
    "message",
    "subs",
    "session",
    "server_id",
    "version",
];

const MSGS: &[&str] = &[
    "connected",
    "failed",
    "ping",
    "pong",
    "result",
    "ready",
    "nosub",
    "changed",
    "added",
    "updated",
    "removed",
    "",
];

fn random_string(rng: &mut StdRng) -> String {
    let len = rng.gen_range(0..24);
    (0..len)
        .map(|_| match rng.gen_range(0..10) {
            0 => '@',
            1 => '\n',
            2 => ' ',
            3 => '/',
            4 => '.',
            5 => char::from_u32(rng.gen_range(0x80..0x3000)).unwrap_or('?'),
            6 => '😀',
            _ => rng.gen_range('a'..='z'),
        })
        .collect()
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let pick = if depth > 4 {
        rng.gen_range(0..6)
    } else {
        rng.gen_range(0..9)
    };
    match pick {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e16 - 5e15),
        4 => json!(random_string(rng)),
        5 => json!(["bot", "all", "alice"][rng.gen_range(0..3)]),
        6 | 7 => {
            let mut obj = Map::new();
            for _ in 0..rng.gen_range(0..6) {
                let key = KEYS[rng.gen_range(0..KEYS.len())].to_string();
                obj.insert(key, random_value(rng, depth + 1));
            }
            if rng.gen_bool(0.3) {
                obj.insert("msg".into(), json!(MSGS[rng.gen_range(0..MSGS.len())]));
            }
            Value::Object(obj)
        }
        _ => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
    }
}

/// A message-like document with each field randomly present, absent or of a wrong type.
fn random_doc(rng: &mut StdRng) -> Value {
    let sender = ["alice", "bot", "wavebro", "eve"][rng.gen_range(0..4)];
    let good = [
        ("_id", json!(random_string(rng))),
        ("rid", json!("R1")),
        ("msg", json!(format!("@bot {}", random_string(rng)))),
        (
            "ts",
            json!({"$date": rng.gen_range(-10_i64..2_000_000_000_000)}),
        ),
        (
            "_updatedAt",
            json!({"$date": rng.gen_range(0_i64..2_000_000_000_000)}),
        ),
        ("u", json!({"_id": "U", "username": sender})),
        (
            "mentions",
            json!([{"username": "bot"}, {"username": random_string(rng)}]),
        ),
        ("tmid", json!(random_string(rng))),
        ("t", json!("uj")),
        ("editedAt", json!({"$date": 5})),
        (
            "files",
            json!([{"_id": random_string(rng), "name": random_string(rng), "size": rng.gen::<u32>()}]),
        ),
        (
            "attachments",
            json!([{"title": random_string(rng), "title_link": random_string(rng), "description": random_string(rng)}]),
        ),
    ];
    let mut doc = Map::new();
    for (key, value) in good {
        match rng.gen_range(0..4) {
            0 => {}
            1 => {
                doc.insert(key.into(), random_value(rng, 2));
            }
            _ => {
                doc.insert(key.into(), value);
            }
        }
    }
    Value::Object(doc)
}

fn settings() -> Settings {
    Settings {
        gates: Gates {
            bot_username: "bot".into(),
            owners: vec!["alice".into()],
            guests: vec![],
            agents: vec!["wavebro".into()],
            filter_sender: true,
            require_mention: true,
        },
        reply_in_thread: true,
        permission_reply_in_thread: true,
        timezone: "Europe/Berlin".into(),
    }
}

fn rooms() -> Vec<Room> {
    [RoomKind::Channel, RoomKind::Group, RoomKind::Dm]
        .into_iter()
        .map(|kind| Room {
            id: "R1".into(),
            name: "r|o[o]m".into(),
            kind,
        })
        .collect()
}

/// Runs one document through everything that reads documents.
fn exercise_doc(
    doc: &Value,
    settings: &Settings,
    ledger: &mut RoomLedger,
    budget: &mut TurnBudget,
) {
    for room in rooms() {
        let ctx = Ctx {
            settings,
            room: &room,
        };
        if let Ok(n) = normalize_doc(doc, &ctx) {
            assert!(!n.message.text.is_empty());
            assert!(n.message.prompt_header.starts_with("[Rocket.Chat #"));
            for plan in &n.downloads {
                assert!(!plan.file_name.contains('/'));
            }
        }
    }
    if let Some(msg) = parse_message(doc) {
        let _ = ledger.check(&msg);
        let _ = screen(&msg, &settings.gates, RoomKind::Channel);
        if let Some(id) = &msg.id {
            ledger.mark_seen(id);
        }
        ledger.delivered(msg.ts_ms);
        let _ = budget.charge("R1", msg.thread_id.as_deref(), "wavebro", Instant::now());
    }
    let _ = split_message(doc.get("msg").and_then(Value::as_str).unwrap_or(""), 7);
}

#[test]
fn random_frames_and_documents_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed_acc0);
    let settings = settings();
    let mut ledger = RoomLedger::new(Some(1_000));
    let mut budget = TurnBudget::new(3, Duration::from_secs(60));
    let mut room_messages = 0;
    for i in 0..4000 {
        // Raw text frames: random bytes, random JSON, and frame-shaped JSON.
        let text = match i % 4 {
            0 => {
                let bytes: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            1 => random_value(&mut rng, 0).to_string(),
            _ => json!({
                "msg": "changed",
                "collection": "stream-room-messages",
                "fields": {"eventName": "R1", "args": [random_doc(&mut rng)]}
            })
            .to_string(),
        };
        if let Ok(Frame::RoomMessage { doc, .. }) = parse_frame(&text) {
            room_messages += 1;
            exercise_doc(&doc, &settings, &mut ledger, &mut budget);
        }
        // Truncated frames.
        let cut = text
            .char_indices()
            .map(|(i, _)| i)
            .nth(text.chars().count() / 2)
            .unwrap_or(0);
        let _ = parse_frame(&text[..cut]);
        // Documents straight into normalization.
        exercise_doc(&random_doc(&mut rng), &settings, &mut ledger, &mut budget);
        exercise_doc(
            &random_value(&mut rng, 0),
            &settings,
            &mut ledger,
            &mut budget,
        );
    }
    assert!(
        room_messages > 1000,
        "too few frames reached normalization: {room_messages}"
    );
}

#[test]
fn handcrafted_documents_never_panic() {
    let settings = settings();
    let mut ledger = RoomLedger::new(None);
    let mut budget = TurnBudget::new(1, Duration::from_secs(1));
    let docs = [
        json!(null),
        json!({}),
        json!({"_id": null, "u": null}),
        json!({"_id": "x", "u": "alice", "msg": "@bot"}),
        json!({"_id": "x", "u": {"_id": 1, "username": ["alice"]}, "msg": "@bot"}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": null, "ts": "soon"}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "ts": {"$date": "nope"}}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "ts": {"$date": 1e308}}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "ts": -9223372036854775808_i64}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "ts": {"$date": 9223372036854775807_i64}}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "mentions": [null, 3, {"username": null}]}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "files": [{"_id": "../..", "name": "../../etc/passwd", "size": -1}], "attachments": "x"}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "files": [{"size": 1e300}], "attachments": [null, {"title_link": 5}]}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot", "tmid": {"x": 1}, "t": 7}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "\u{0}@bot\u{202e}", "editedAt": false}),
        json!({"_id": "", "u": {"_id": "", "username": ""}, "msg": ""}),
        json!({"_id": "x", "u": {"_id": "U", "username": "alice"}, "msg": "@bot".repeat(10_000)}),
    ];
    for doc in &docs {
        exercise_doc(doc, &settings, &mut ledger, &mut budget);
    }
    let frames = [
        "",
        "{",
        "null",
        "\"msg\"",
        r#"{"msg":"result","id":null}"#,
        r#"{"msg":"result","id":"1","error":null}"#,
        r#"{"msg":"result","id":"1","error":[1,2]}"#,
        r#"{"msg":"ready","subs":"s1"}"#,
        r#"{"msg":"ready","subs":[1,null,"s"]}"#,
        r#"{"msg":"nosub","id":5}"#,
        r#"{"msg":"changed","collection":"stream-room-messages"}"#,
        r#"{"msg":"changed","collection":"stream-room-messages","fields":[]}"#,
        r#"{"msg":"changed","collection":"stream-room-messages","fields":{"eventName":5,"args":[{"rid":7}]}}"#,
        r#"{"msg":"ping","id":{"x":1}}"#,
        r#"{"server_id":null}"#,
    ];
    for frame in frames {
        let _ = parse_frame(frame);
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let _ = parse_frame(&deep);
}
