//! End-to-end: the built daemon with a `type: script` connector and the real Claude CLI talking
//! to a mock Anthropic API, driven only through the CLI, as an operator would.

mod common;

use std::time::Duration;

use acg_testkit::anthropic::Reply;
use common::*;

/// Replies `echo: <last user text>` so each answer names the prompt it answers.
fn echo(world: &World) {
    world.mock.respond_with(|req| {
        req.is_turn()
            .then(|| req.last_user_text())
            .flatten()
            .map(|text| Reply::text(format!("echo: {}", text.trim())))
    });
}

#[test]
fn start_status_list_inject_pause_resume_reset_stop() {
    let world = World::new();
    echo(&world);
    world.write_config(&world.standard_config());

    let started = world.start();
    let pid = world.pid().expect("pid file written");
    assert!(alive(pid));
    assert!(
        !started.stdout().contains("Warning"),
        "clean start expected: {started:?}"
    );

    // status: running, pid, uptime, watchers, connector state.
    let status = world.run(&["status"]);
    assert_eq!(status.code(), 0, "{status:?}");
    let out = status.stdout();
    assert!(
        out.contains(&format!("Gateway:  running (pid={pid})")),
        "{out}"
    );
    assert!(out.contains("Uptime:   0h "), "{out}");
    assert!(out.contains("PID file: "), "{out}");
    assert!(out.contains("Log file: "), "{out}");
    assert!(out.contains("Watchers: 2"), "{out}");
    assert!(out.contains("local (script): connected"), "{out}");

    // The control socket is private.
    assert_eq!(mode(&world.socket()), 0o600);

    // list: one line per watcher, in the reference's format.
    let lines = world.list();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("helper: (local) desk [claude] session="),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("[active]"), "{lines:?}");
    assert_eq!(
        lines[1],
        "pinned: (local) pins [claude] session=11111111-2222-3333-4444-555555555555 [active]"
    );

    // inject → the agent's reply lands in the room's transcript; the mock saw the prompt.
    let run = world.run(&["inject", "helper", "ping", "number", "one"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let reply = world.wait_for_reply("desk", "echo: ");
    assert!(
        reply["text"].as_str().unwrap().contains("ping number one"),
        "{reply}"
    );
    assert!(
        world
            .prompts_seen()
            .iter()
            .any(|t| t.contains("ping number one")),
        "{:?}",
        world.prompts_seen()
    );
    let first_session = world.session_of("helper");
    assert!(!first_session.is_empty(), "a session exists after a turn");

    // pause: list shows PAUSED and injected messages are refused.
    let run = world.run(&["pause", "helper"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout().trim(), "Watcher 'helper' paused");
    assert!(world.list_line("helper").ends_with("[PAUSED]"));
    let turns_before = world.mock.turn_requests().len();
    let run = world.run(&["inject", "helper", "while", "paused"]);
    assert_eq!(run.code(), 1, "a paused watcher takes no messages: {run:?}");
    assert!(run.stderr().starts_with("Error: "), "{run:?}");
    assert_eq!(world.mock.turn_requests().len(), turns_before);

    // resume.
    let run = world.run(&["resume", "helper"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout().trim(), "Watcher 'helper' resumed");
    assert!(world.list_line("helper").ends_with("[active]"));
    assert_eq!(
        world.session_of("helper"),
        first_session,
        "resume keeps the session"
    );

    // reset: a new session for helper; the pinned one keeps its id.
    let run = world.run(&["reset", "helper"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout().trim(), "Watcher 'helper' reset");
    let run = world.run(&["reset", "pinned"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_ne!(world.session_of("helper"), first_session);
    assert_eq!(
        world.session_of("pinned"),
        "11111111-2222-3333-4444-555555555555"
    );

    // Unknown watchers are reported by name.
    let run = world.run(&["pause", "nobody"]);
    assert_eq!(run.code(), 1);
    assert_eq!(run.stderr().trim(), "Error: Unknown watcher: 'nobody'");

    // stop: process gone, pid file and socket removed.
    let run = world.stop();
    assert!(
        run.stdout()
            .contains(&format!("Stopping gateway (pid={pid})...")),
        "{run:?}"
    );
    assert!(!world.pid_file().exists());
    assert!(!world.socket().exists());
    assert!(world.agent_processes().is_empty());
    let run = world.run(&["status"]);
    assert_eq!(run.stdout().trim(), "Gateway:  not running");
    let run = world.run(&["stop"]);
    assert_eq!(run.stdout().trim(), "Gateway is not running");
}

#[test]
fn restart_keeps_the_session() {
    let world = World::new();
    echo(&world);
    world.write_config(&world.standard_config());
    world.start();

    let run = world.run(&["inject", "helper", "remember", "alpha-7"]);
    assert_eq!(run.code(), 0, "{run:?}");
    world.wait_for_reply("desk", "alpha-7");
    let session = world.session_of("helper");
    let old_pid = world.pid().unwrap();

    let run = world.run(&["restart"]);
    assert_eq!(run.code(), 0, "{run:?}\nlog:\n{}", world.log());
    assert!(run.stdout().contains("Gateway stopped"), "{run:?}");
    assert!(
        run.stdout().contains("Gateway started successfully."),
        "{run:?}"
    );
    let new_pid = world.pid().unwrap();
    assert_ne!(old_pid, new_pid);
    assert!(!alive(old_pid));
    assert_eq!(world.session_of("helper"), session);

    let run = world.run(&["inject", "helper", "what", "did", "I", "say?"]);
    assert_eq!(run.code(), 0, "{run:?}");
    world.wait_for_reply("desk", "what did I say?");
    // The second turn resumed the same conversation: the mock received the first exchange.
    let last = world
        .mock
        .turn_requests()
        .into_iter()
        .rev()
        .find(|r| r.user_texts().iter().any(|t| t.contains("what did I say?")))
        .expect("second turn reached the mock");
    assert!(
        last.user_texts()
            .iter()
            .any(|t| t.contains("remember alpha-7")),
        "{:?}",
        last.user_texts()
    );
    assert!(
        last.assistant_texts()
            .iter()
            .any(|t| t.contains("echo: remember alpha-7")),
        "{:?}",
        last.assistant_texts()
    );
    world.stop();
}

#[test]
fn sigterm_with_a_turn_in_flight_exits_promptly_and_leaves_no_agent() {
    let world = World::new();
    // The model "thinks" about this one prompt far longer than the test is willing to wait.
    world.mock.respond_with(|req| {
        let text = req.last_user_text().unwrap_or_default();
        (req.is_turn() && text.contains("take your time"))
            .then(|| Reply::text("too late").with_delay(Duration::from_secs(600)))
    });
    world.write_config(&world.config_yaml(
        "  - name: helper\n    connector: local\n    room: desk\n",
        "gateway:\n  drain_timeout: 1\n",
    ));
    world.start();
    let pid = world.pid().unwrap();

    let run = world.run(&["inject", "helper", "take", "your", "time"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(
        wait_for(SLOW, || world
            .prompts_seen()
            .iter()
            .any(|t| t.contains("take your time"))),
        "the turn reached the model"
    );
    assert!(
        !world.agent_processes().is_empty(),
        "an agent process is running the turn"
    );

    signal(pid, "TERM");
    // Well before the model would answer (600 s) and the turn timeout (300 s).
    assert!(
        wait_for(SLOW, || !alive(pid)),
        "daemon did not exit after SIGTERM\nlog:\n{}",
        world.log()
    );
    assert!(!world.pid_file().exists());
    assert!(!world.socket().exists());
    assert!(
        wait_for(Duration::from_secs(30), || world
            .agent_processes()
            .is_empty()),
        "agent processes left behind: {:?}",
        world.agent_processes()
    );
    assert!(
        !world
            .transcript("desk")
            .iter()
            .any(|m| m["text"] == "too late"),
        "the reply cannot have arrived"
    );
}
