//! Measurements (ignored by default; they print figures, they assert no timings):
//! post → reply latency through the built daemon with the instant stub agent
//! (`acg-stub-claude`), 200 sequential messages in one room, and the time from the fake
//! dropping every socket to the room being subscribed again.
//!
//! ```text
//! cargo build -p acg-testkit --bin acg-stub-claude
//! cargo test -p agent-chat-gateway --test rocketchat_measure -- --ignored --nocapture
//! ```

mod common;
mod rc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use rc::*;
use serde_json::Value;

/// `acg-stub-claude` next to the test binaries (`<target>/<profile>/`).
fn stub_claude() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let stub = dir.join("acg-stub-claude");
    assert!(
        stub.exists(),
        "{} is missing: run `cargo build -p acg-testkit --bin acg-stub-claude` first",
        stub.display()
    );
    stub
}

fn ts_ms(doc: &Value) -> i64 {
    let text = doc["ts"].as_str().unwrap();
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture after building acg-stub-claude"]
fn latency_and_reconnect_through_the_daemon() {
    let rc = RcWorld::new("8.1.0");
    let config = format!(
        "connectors:\n{rcc}agents:\n  stub:\n    type: claude\n    command: {stub}\n    working_directory: {work}\n    timeout: 60\nwatchers:\n  - name: dev\n    connector: rc\n    room: dev\n",
        rcc = rc.connector_yaml("rc", "botpw", ""),
        stub = stub_claude().display(),
        work = rc.world.work.display(),
    );
    rc.world.write_config(&config);
    rc.world.start();
    rc.post("alice", "dev", "@bot warm up");
    rc.wait_for_bot("dev", "echo: warm up");

    let n = 200;
    let mut server_ms = Vec::with_capacity(n);
    let mut wall_ms = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("m{i:04}");
        let started = Instant::now();
        let posted = rc.post("alice", "dev", &format!("@bot {text}"));
        let needle = format!("echo: {text}");
        let reply = loop {
            if let Some(found) = rc
                .bot_messages("dev")
                .into_iter()
                .rev()
                .find(|m| m["msg"].as_str() == Some(needle.as_str()))
            {
                break found;
            }
            assert!(started.elapsed() < SLOW, "no reply to {text}");
            std::thread::sleep(Duration::from_millis(1));
        };
        wall_ms.push(started.elapsed().as_millis() as i64);
        server_ms.push(ts_ms(&reply) - ts_ms(&posted));
    }
    server_ms.sort_unstable();
    wall_ms.sort_unstable();
    println!(
        "post → reply, {n} sequential messages, stub agent: server clock p50 {} ms, p95 {} ms, max {} ms; test clock p50 {} ms, p95 {} ms",
        percentile(&server_ms, 50.0),
        percentile(&server_ms, 95.0),
        server_ms[n - 1],
        percentile(&wall_ms, 50.0),
        percentile(&wall_ms, 95.0),
    );

    // Reconnect: from dropping every socket to the room's subscription being sent again.
    let subs = |rc: &RcWorld| {
        rc.fake
            .ddp_frames()
            .iter()
            .filter(|f| f.text.contains("stream-room-messages") && f.text.contains("\"sub\""))
            .count()
    };
    let mut reconnect_ms = Vec::new();
    for round in 0..10 {
        // A link younger than a second waits for the backoff instead of reconnecting at once.
        std::thread::sleep(Duration::from_millis(1500));
        let before = subs(&rc);
        let started = Instant::now();
        rc.fake.drop_all_sockets();
        while subs(&rc) == before {
            assert!(
                started.elapsed() < SLOW,
                "no resubscription in round {round}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        reconnect_ms.push(started.elapsed().as_millis() as i64);
        let text = format!("after drop {round}");
        rc.post("alice", "dev", &format!("@bot {text}"));
        rc.wait_for_bot("dev", &format!("echo: {text}"));
    }
    reconnect_ms.sort_unstable();
    println!(
        "reconnect after drop_all_sockets (to the room subscribed again), 10 rounds: p50 {} ms, max {} ms",
        percentile(&reconnect_ms, 50.0),
        reconnect_ms[reconnect_ms.len() - 1]
    );
    rc.world.stop();
}
