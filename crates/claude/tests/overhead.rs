//! Measures where the time of a trivial turn goes: the CLI itself versus the backend's own
//! work inside `turn()` (spawning, reading, parsing). Not a timed assertion: run it by hand with
//! `cargo test -p acg-claude --test overhead -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use acg_core::{AgentBackend, EventSink};
use common::Harness;

async fn measure(partial: bool) {
    let h = Harness::start_with(|s| s.include_partial_messages = partial).await;
    let sid = h.session().await;
    let runs = 8;
    let mut wall = Duration::ZERO;
    let mut process = Duration::ZERO;
    let mut spawn = Duration::ZERO;
    let mut first = Duration::ZERO;
    let mut parse = Duration::ZERO;
    let mut lines = 0;
    for i in 0..runs {
        let t = Instant::now();
        h.backend
            .turn(&h.turn(&sid, &format!("ping {i}")), &EventSink::discard())
            .await
            .unwrap();
        wall += t.elapsed();
        let timings = h.backend.last_timings().unwrap();
        spawn += timings.spawn;
        first += timings.first_output.unwrap_or_default();
        parse += timings.parse;
        lines += timings.lines;
        process += timings.total;
    }
    let n = runs as u32;
    println!(
        "partial={partial}: turn wall {:?} | spawn→reap {:?} | spawn {:?} | spawn→first stdout line {:?} | parse {:?} for {} lines/turn",
        wall / n,
        process / n,
        spawn / n,
        first / n,
        parse / n,
        lines / runs
    );
}

#[tokio::test]
#[ignore = "measurement, run by hand"]
async fn trivial_turn_overhead() {
    measure(false).await;
    measure(true).await;
}
