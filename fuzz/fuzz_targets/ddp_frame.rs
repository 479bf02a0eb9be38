//! Fuzzes what the Rocket.Chat connector reads from the server: DDP text frames
//! (`parse_frame`) and the message documents inside them (`normalize_doc`, then the chunker
//! on the normalized text). Any panic is a bug.
//!
//! Run: `cd fuzz && cargo +nightly fuzz run ddp_frame corpus/ddp_frame seeds/ddp_frame -- -max_total_time=60`
//! (new inputs go to `corpus/`, which is not committed; `seeds/` holds the starting frames).

#![no_main]

use acg_core::{Room, RoomKind};
use acg_rocketchat::chunk::split_message;
use acg_rocketchat::ddp::Frame;
use acg_rocketchat::filter::Gates;
use acg_rocketchat::{normalize_doc, parse_frame, Ctx, Settings};
use libfuzzer_sys::fuzz_target;

fn settings() -> Settings {
    Settings {
        gates: Gates {
            bot_username: "bot".into(),
            owners: vec!["alice".into()],
            guests: vec!["gina".into()],
            agents: vec!["wavebro".into()],
            filter_sender: true,
            require_mention: true,
        },
        reply_in_thread: false,
        permission_reply_in_thread: true,
        timezone: "America/Los_Angeles".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let settings = settings();
    // The frame as it came, and the text as a bare document.
    let mut docs = Vec::new();
    if let Ok(Frame::RoomMessage { doc, .. }) = parse_frame(text) {
        docs.push(doc);
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        docs.push(value);
    }
    for doc in &docs {
        for kind in [RoomKind::Channel, RoomKind::Dm] {
            let room = Room {
                id: "R1".into(),
                name: "general".into(),
                kind,
            };
            if let Ok(n) = normalize_doc(doc, &Ctx { settings: &settings, room: &room }) {
                assert!(!n.message.text.is_empty());
                for plan in &n.downloads {
                    assert!(!plan.file_name.contains('/'));
                    assert!(plan.file_name != "." && plan.file_name != "..");
                }
                let _ = split_message(&n.message.text, 1 + data.len() % 97);
            }
        }
    }
});
