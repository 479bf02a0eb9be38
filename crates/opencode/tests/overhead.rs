//! Measures the sidecar's start time, where the time of a trivial turn goes (the gateway's own
//! work versus OpenCode's), and the server's memory. Not a timed assertion: run it by hand with
//! `cargo test -p acg-opencode --test overhead -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use acg_core::{AgentBackend, EventSink};
use acg_opencode::proctree;
use common::Harness;

#[tokio::test]
#[ignore = "measurement, run by hand"]
async fn start_time_turn_overhead_and_memory() {
    let h = Harness::new().await;
    let mut starts = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        h.backend.start().await.expect("start");
        starts.push((
            t.elapsed(),
            h.backend.sidecar().last_start_duration().unwrap(),
        ));
        h.backend.stop().await;
    }
    for (i, (start, ready)) in starts.iter().enumerate() {
        println!("start #{i}: start() {start:?} (spawn → listening line {ready:?})");
    }

    h.backend.start().await.expect("start");
    let pid = h.backend.sidecar().pid().unwrap() as i32;
    let idle_rss = proctree::tree_rss_bytes(pid).unwrap_or(0);
    let sid = h.session().await;
    let runs = 10u32;
    let mut rows = Vec::new();
    for i in 0..runs {
        let t = Instant::now();
        h.backend
            .turn(&h.turn(&sid, &format!("ping {i}")), &EventSink::discard())
            .await
            .expect("turn");
        let wall = t.elapsed();
        rows.push((wall, h.backend.last_timings().unwrap()));
    }
    for (i, (wall, t)) in rows.iter().enumerate() {
        println!(
            "turn #{i}: wall {wall:?} | agent {:?} | overhead {:?} | subscribe {:?} | post {:?} | handling {:?} for {} events",
            t.agent.unwrap_or_default(),
            t.overhead().unwrap_or_default(),
            t.subscribe,
            t.post,
            t.handling,
            t.events
        );
    }
    // The first turn loads the provider; average the rest.
    let steady = &rows[1..];
    let n = steady.len() as u32;
    let sum = |f: &dyn Fn(&acg_opencode::TurnTimings) -> Duration| {
        steady.iter().map(|(_, t)| f(t)).sum::<Duration>() / n
    };
    println!(
        "steady state (turns 2..{runs}): total {:?} | opencode {:?} | gateway overhead {:?} (subscribe {:?}, post {:?}, event handling {:?})",
        sum(&|t| t.total),
        sum(&|t| t.agent.unwrap_or_default()),
        sum(&|t| t.overhead().unwrap_or_default()),
        sum(&|t| t.subscribe),
        sum(&|t| t.post),
        sum(&|t| t.handling),
    );
    let busy_rss = proctree::tree_rss_bytes(pid).unwrap_or(0);
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!(
        "sidecar RSS: {} MiB after start, {} MiB after {runs} turns, peak {} MiB",
        idle_rss / (1024 * 1024),
        busy_rss / (1024 * 1024),
        peak / 1024
    );
    h.backend.stop().await;
}
