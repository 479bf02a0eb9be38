//! Micro-benchmarks of the inbound path: every DDP frame the server pushes is parsed by
//! [`parse_frame`], and every room message goes through [`normalize_doc`] (gates, mention
//! strip, trusted header).
//!
//! Run with `cargo bench -p acg-rocketchat`; `docs/performance.md` records the results.

use acg_core::{Room, RoomKind};
use acg_rocketchat::ddp::Frame;
use acg_rocketchat::filter::Gates;
use acg_rocketchat::{normalize_doc, parse_frame, Ctx, Settings};
use serde_json::Value;

fn main() {
    divan::main();
}

/// A room message as a 7.x/8.x server streams it (chat.postMessage by a user, one mention).
const MESSAGE_FRAME: &str = r#"{"msg":"changed","collection":"stream-room-messages","id":"id","fields":{"eventName":"GENERAL","args":[{"_id":"Wq3cB8tY5rZkLmN2p","rid":"GENERAL","msg":"@bot please summarize the last build failure and suggest a fix","ts":{"$date":1777052400000},"u":{"_id":"aLiCe1234567890ab","username":"alice","name":"Alice"},"_updatedAt":{"$date":1777052400000},"mentions":[{"_id":"bOt12345678901234","username":"bot","name":"Gateway Bot","type":"user"}],"channels":[],"md":[{"type":"PARAGRAPH","value":[{"type":"MENTION_USER","value":{"type":"PLAIN_TEXT","value":"bot"}},{"type":"PLAIN_TEXT","value":" please summarize the last build failure and suggest a fix"}]}],"urls":[],"alias":"","attachments":[],"parseUrls":true,"groupable":false}]}}"#;

/// The keepalive the server sends.
const PING_FRAME: &str = r#"{"msg":"ping","id":"7"}"#;

/// A method result (our `chat.postMessage` is REST; typing calls answer like this).
const RESULT_FRAME: &str = r#"{"msg":"result","id":"a1b2c3d4e5f6","result":{}}"#;

/// Parsing one frame of each common kind.
#[divan::bench(args = ["message", "ping", "result"])]
fn parse(bencher: divan::Bencher, kind: &str) {
    let text = match kind {
        "message" => MESSAGE_FRAME,
        "ping" => PING_FRAME,
        _ => RESULT_FRAME,
    };
    bencher.bench_local(|| parse_frame(divan::black_box(text)));
}

fn settings() -> Settings {
    Settings {
        gates: Gates {
            bot_username: "bot".into(),
            owners: vec!["alice".into()],
            guests: vec!["bob".into()],
            agents: vec!["wavebro".into()],
            filter_sender: true,
            require_mention: true,
        },
        reply_in_thread: false,
        permission_reply_in_thread: true,
        timezone: "America/Los_Angeles".into(),
    }
}

fn document() -> Value {
    let frame: Value = serde_json::from_str(MESSAGE_FRAME).expect("the fixture is JSON");
    frame["fields"]["args"][0].clone()
}

/// Gates and normalization of one message document (header included).
#[divan::bench]
fn normalize(bencher: divan::Bencher) {
    let settings = settings();
    let room = Room {
        id: "GENERAL".into(),
        name: "general".into(),
        kind: RoomKind::Channel,
    };
    let ctx = Ctx {
        settings: &settings,
        room: &room,
    };
    let doc = document();
    bencher.bench_local(|| normalize_doc(divan::black_box(&doc), &ctx));
}

/// Frame parsing plus normalization: the connector's whole CPU cost per inbound message
/// before it reaches a watcher.
#[divan::bench]
fn frame_to_message(bencher: divan::Bencher) {
    let settings = settings();
    let room = Room {
        id: "GENERAL".into(),
        name: "general".into(),
        kind: RoomKind::Channel,
    };
    let ctx = Ctx {
        settings: &settings,
        room: &room,
    };
    bencher.bench_local(|| match parse_frame(divan::black_box(MESSAGE_FRAME)) {
        Ok(Frame::RoomMessage { doc, .. }) => normalize_doc(&doc, &ctx).is_ok(),
        _ => false,
    });
}
