//! Micro-benchmarks of prompt building: the trusted header (one per incoming message, in the
//! connector) and the prompt a turn sends (one per turn, in the watcher).
//!
//! Run with `cargo bench -p acg-core`; `docs/performance.md` records the results.

use std::path::PathBuf;

use acg_core::prompt::{build_batch_prompt, build_prompt, prompt_header, HeaderFields};
use acg_core::{IncomingMessage, Role, Room, RoomKind, Sender};

fn main() {
    divan::main();
}

const MENTIONS: &[&str] = &["bot", "all", "wavebro", "bob"];

fn fields<'a>(mentions: &'a [String], peers: &'a [String]) -> HeaderFields<'a> {
    HeaderFields {
        platform: "Rocket.Chat",
        room_name: "general",
        room_kind: RoomKind::Channel,
        sender: "alice",
        role: Role::Owner,
        timestamp_ms: Some(1_777_052_400_000),
        timezone: Some("America/Los_Angeles"),
        mentions,
        bot_username: Some("bot"),
        peer_agents: peers,
    }
}

/// The header with day/time in a named zone and a mix of mentions.
#[divan::bench]
fn header(bencher: divan::Bencher) {
    let mentions: Vec<String> = MENTIONS.iter().map(|m| m.to_string()).collect();
    let peers = vec!["wavebro".to_string()];
    let fields = fields(&mentions, &peers);
    bencher.bench_local(|| prompt_header(divan::black_box(&fields)));
}

/// The header without a zone (no day/time): the string work alone.
#[divan::bench]
fn header_without_zone(bencher: divan::Bencher) {
    let mentions: Vec<String> = MENTIONS.iter().map(|m| m.to_string()).collect();
    let peers = vec!["wavebro".to_string()];
    let fields = HeaderFields {
        timezone: None,
        ..fields(&mentions, &peers)
    };
    bencher.bench_local(|| prompt_header(divan::black_box(&fields)));
}

fn message(i: usize) -> IncomingMessage {
    IncomingMessage {
        id: format!("m{i}"),
        room: Room {
            id: "R1".into(),
            name: "general".into(),
            kind: RoomKind::Channel,
        },
        sender: Sender {
            id: "U1".into(),
            username: "alice".into(),
            display_name: Some("Alice".into()),
        },
        role: Role::Owner,
        text: format!("message {i}: please summarize the last build failure and suggest a fix"),
        timestamp_ms: Some(1_777_052_400_000 + i as i64),
        thread_id: None,
        permission_thread_id: None,
        mentions: vec!["bot".into()],
        attachments: Vec::<PathBuf>::new(),
        warnings: Vec::new(),
        prompt_header: "[Rocket.Chat #general | from: alice | role: owner | day: Fri | ts: 2026-04-24T10:40:00-07:00 | to: me]".into(),
    }
}

/// One message's prompt (the usual turn).
#[divan::bench]
fn single_prompt(bencher: divan::Bencher) {
    let msg = message(0);
    bencher.bench_local(|| build_prompt(divan::black_box(&msg)));
}

/// A catch-up prompt of `n` queued messages.
#[divan::bench(args = [2, 20])]
fn batch_prompt(bencher: divan::Bencher, n: usize) {
    let batch: Vec<IncomingMessage> = (0..n).map(message).collect();
    bencher.bench_local(|| build_batch_prompt(divan::black_box(&batch)));
}
