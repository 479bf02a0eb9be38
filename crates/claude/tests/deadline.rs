//! A turn past its deadline, or a turn whose future is dropped, leaves no process behind: not
//! the CLI, and not the tools it started (its Bash tool runs commands in their own session).

mod common;

use std::time::Duration;

use acg_core::{AgentBackend, AgentError, EventSink};
use acg_testkit::anthropic::Reply;
use common::{assert_all_gone, processes_in, Harness, ProcessObserver};
use serde_json::json;

/// Sets up a session whose next turn runs a Bash command that never ends; returns the
/// harness, the session and the file the command creates once it runs.
async fn lingering_tool() -> (Harness, String, std::path::PathBuf) {
    let h = Harness::start().await;
    h.home.allow_tools(&["Bash"]).unwrap();
    let sid = h.session().await;
    let started = h.home.work().join("linger.started");
    std::fs::write(
        h.home.work().join("linger.sh"),
        "echo $$ > linger.started\ntail -f /dev/null\n",
    )
    .unwrap();
    h.mock.push(Reply::tool_use(
        "Bash",
        json!({"command": "sh ./linger.sh", "description": "wait forever"}),
    ));
    (h, sid, started)
}

#[tokio::test]
async fn a_turn_past_its_deadline_is_killed_with_its_tools() {
    let (h, sid, started) = lingering_tool().await;
    let observer = ProcessObserver::watch(h.home.work());
    let mut req = h.turn(&sid, "run the script");
    // Long enough for the CLI to start and run the tool on a loaded machine (~2 s normally).
    req.timeout = Duration::from_secs(25);
    let err = h
        .backend
        .turn(&req, &EventSink::discard())
        .await
        .unwrap_err();
    let seen = observer.finish();
    assert_eq!(err, AgentError::Timeout);
    assert!(started.exists(), "the tool never ran: raise the deadline?");
    assert!(
        seen.len() >= 3,
        "expected the CLI, bash, sh and tail; saw {seen:?}"
    );
    assert_all_gone(&seen);
    assert!(processes_in(h.home.work()).is_empty());
}

#[tokio::test]
async fn a_dropped_turn_is_killed_with_its_tools() {
    let (h, sid, started) = lingering_tool().await;
    let observer = ProcessObserver::watch(h.home.work());
    let req = h.turn(&sid, "run the script");
    let events = EventSink::discard();
    let turn = h.backend.turn(&req, &events);
    // The tool has run once its file exists; the observer (polling every 25 ms, slower on a
    // loaded machine) is also given time to have seen the CLI and the tool's processes.
    let tool_running = async {
        while !(started.exists() && observer.seen_count() >= 3) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        r = turn => panic!("the turn ended by itself: {r:?}"),
        () = tool_running => {}
        () = tokio::time::sleep(Duration::from_secs(60)) => {
            panic!("the tool did not start within 60 s (seen {})", observer.seen_count())
        }
    }
    // The select dropped the turn future mid-way.
    let seen = observer.finish();
    assert!(
        seen.len() >= 3,
        "expected the CLI, bash, sh and tail; saw {seen:?}"
    );
    assert_all_gone(&seen);
    assert!(processes_in(h.home.work()).is_empty());
}

#[tokio::test]
async fn a_slow_model_runs_into_the_deadline() {
    let h = Harness::start().await;
    let sid = h.session().await;
    h.mock
        .push(Reply::text("too late").with_delay(Duration::from_secs(600)));
    let observer = ProcessObserver::watch(h.home.work());
    let mut req = h.turn(&sid, "hello");
    req.timeout = Duration::from_secs(8);
    let err = h
        .backend
        .turn(&req, &EventSink::discard())
        .await
        .unwrap_err();
    assert_eq!(err, AgentError::Timeout);
    let seen = observer.finish();
    assert!(!seen.is_empty());
    assert_all_gone(&seen);
    assert!(
        h.mock
            .wait_for_turn_requests(2, Duration::from_secs(1))
            .await
    );
}
