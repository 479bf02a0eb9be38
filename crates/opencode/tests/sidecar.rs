//! Sidecar supervision against the real `opencode serve`: a server killed mid-session is
//! restarted and the same session continues (its state is in SQLite); repeated failed restarts
//! open the circuit until `start` resets it.

mod common;

use std::time::{Duration, Instant};

use acg_core::{AgentBackend, AgentError};
use acg_opencode::SidecarState;
use acg_testkit::openai::Reply;
use common::Harness;

/// Polls `check` until it holds; fails the test after `limit`.
async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

#[tokio::test]
async fn a_killed_sidecar_is_restarted_and_the_same_session_continues() {
    let h = Harness::started().await;
    let sid = h.session().await;
    h.mock.push(Reply::text("Answer before the crash."));
    let (result, _) = h.run(&h.turn(&sid, "before")).await;
    result.expect("first turn");
    let first_pid = h.backend.sidecar().pid().unwrap();

    // Killed while a turn is in flight: that turn reports the agent unavailable.
    h.mock
        .push(Reply::text("never delivered").with_delay(Duration::from_secs(600)));
    let turn = h.turn(&sid, "during");
    let in_flight = h.run(&turn);
    let killer = async {
        assert!(
            h.mock
                .wait_for_turn_requests(2, Duration::from_secs(120))
                .await
        );
        kill(first_pid);
    };
    let ((result, _), ()) = tokio::join!(in_flight, killer);
    let err = result.unwrap_err();
    assert!(matches!(err, AgentError::Unavailable(_)), "{err:?}");

    // The watcher brings up a new server on its own.
    wait_until("a new sidecar", Duration::from_secs(120), || {
        matches!(h.backend.sidecar_state(), SidecarState::Running { pid, .. } if pid != first_pid)
    })
    .await;

    h.mock.push(Reply::text("Answer after the restart."));
    let (result, _) = h.run(&h.turn(&sid, "after")).await;
    let response = result.expect("turn on the same session after the restart");
    assert_eq!(response.text, "Answer after the restart.");
    assert_eq!(response.session_id.as_deref(), Some(sid.as_str()));
    let request = h.mock.last_turn_request().unwrap();
    assert!(request.user_texts().contains(&"before".to_owned()));
    assert!(request
        .assistant_texts()
        .contains(&"Answer before the crash.".to_owned()));
}

#[tokio::test]
async fn a_dead_sidecar_is_restarted_before_the_next_request() {
    let h = Harness::started().await;
    let sid = h.session().await;
    let first_pid = h.backend.sidecar().pid().unwrap();
    kill(first_pid);
    // Straight away, racing the watcher: the request itself finds a live server.
    let (result, _) = h.run(&h.turn(&sid, "hello")).await;
    assert_eq!(result.expect("turn").text, "ok");
    assert_ne!(h.backend.sidecar().pid(), Some(first_pid));
}

#[tokio::test]
async fn repeated_failed_restarts_open_the_circuit_until_start() {
    use std::os::unix::fs::PermissionsExt;
    let opencode = common::opencode();
    let scratch = tempfile::tempdir().unwrap();
    let flag = scratch.path().join("fail");
    let wrapper = scratch.path().join("opencode-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e '{}' ]; then echo 'refusing to start (test)' >&2; exit 7; fi\nexec '{}' \"$@\"\n",
            flag.display(),
            opencode.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let h = Harness::with(|s| s.command = wrapper.to_string_lossy().into_owned()).await;
    h.backend.start().await.expect("first start works");
    let sid = h.session().await;
    let pid = h.backend.sidecar().pid().unwrap();

    std::fs::write(&flag, "").unwrap();
    kill(pid);
    wait_until("the circuit to open", Duration::from_secs(120), || {
        matches!(h.backend.sidecar_state(), SidecarState::Broken { .. })
    })
    .await;
    let SidecarState::Broken { last_error, .. } = h.backend.sidecar_state() else {
        unreachable!()
    };
    assert!(last_error.contains("refusing to start"), "{last_error}");

    // Open circuit: the turn fails at once, without another start attempt.
    let started = Instant::now();
    let (result, _) = h.run(&h.turn(&sid, "hello")).await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, AgentError::Unavailable(ref m) if m.contains("consecutive failed restarts")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));

    // A session deleted while the server is down is remembered as an orphan.
    let doomed = sid.clone();
    h.backend.delete_session(&doomed, &h.home.work()).await;
    assert_eq!(h.backend.sidecar().orphans(), vec![doomed.clone()]);

    // start() resets the breaker.
    std::fs::remove_file(&flag).unwrap();
    h.backend.start().await.expect("restart after reset");
    assert!(matches!(
        h.backend.sidecar_state(),
        SidecarState::Running { .. }
    ));
    let other = h.session().await;
    let (result, _) = h.run(&h.turn(&other, "hello again")).await;
    assert_eq!(result.expect("turn").text, "ok");

    // stop() deletes the orphan (the server's SQLite database outlives it: check after a start).
    assert!(h.server_sessions().await.contains(&doomed));
    h.backend.stop().await;
    assert!(h.backend.sidecar().orphans().is_empty());
    h.backend.start().await.expect("start after stop");
    let sessions = h.server_sessions().await;
    assert!(!sessions.contains(&doomed), "{sessions:?}");
    assert!(sessions.contains(&other));
}

/// Processes under `root` whose command line is `sleep <seconds>`.
fn sleeping_descendants(root: u32, seconds: &str) -> Vec<i32> {
    acg_opencode::proctree::snapshot_with_group(root as i32, root as i32)
        .iter()
        .filter(|p| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", p.pid)) else {
                return false;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.first().is_some_and(|a| a.ends_with("sleep"))
                && args.get(1).map(String::as_str) == Some(seconds)
        })
        .map(|p| p.pid)
        .collect()
}

#[tokio::test]
async fn stop_ends_the_server_and_the_tools_it_runs() {
    use acg_opencode::{PermissionAsked, PermissionReply};
    use std::sync::Arc;
    let Harness {
        mock,
        home,
        backend,
    } = Harness::new().await;
    let backend = backend.with_permission_handler(Arc::new(|_: PermissionAsked| async {
        PermissionReply::Once
    }));
    let h = Harness {
        mock,
        home,
        backend,
    };
    h.backend.start().await.unwrap();
    let sid = h.session().await;
    let server = h.backend.sidecar().pid().unwrap();
    h.mock.push(acg_testkit::openai::Reply::tool_call(
        "bash",
        serde_json::json!({"command": "sleep 613", "description": "wait a long time"}),
    ));
    let turn = h.turn(&sid, "wait");
    let in_flight = h.run(&turn);
    let stopper = async {
        let deadline = Instant::now() + Duration::from_secs(120);
        let tool = loop {
            if let Some(pid) = sleeping_descendants(server, "613").first() {
                break *pid;
            }
            assert!(Instant::now() < deadline, "the tool never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let t = Instant::now();
        h.backend.stop().await;
        println!("stop with a running tool took {:?}", t.elapsed());
        tool
    };
    let ((result, _), tool) = tokio::join!(in_flight, stopper);
    assert!(
        matches!(result, Err(AgentError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(h.backend.sidecar_state(), SidecarState::Stopped);
    let gone = |pid: i32| acg_opencode::proctree::read_proc(pid).is_none_or(|p| p.state == 'Z');
    wait_until("the tool to end", Duration::from_secs(30), || gone(tool)).await;
    assert!(gone(server as i32));
}
