//! End-to-end: the daemon's life cycle edges (refused second start, stale files, SIGKILL
//! recovery, broken config, JSON logs) and the CLI's own checks (`send`, `config`, help).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn second_start_is_refused_and_stale_files_are_cleaned() {
    let world = World::new();
    world.write_config(&world.standard_config());
    // Leftovers of a daemon that died: a pid file naming a dead pid, a socket nobody serves.
    std::fs::write(world.pid_file(), format!("{}\n", dead_pid())).unwrap();
    drop(std::os::unix::net::UnixListener::bind(world.socket()).unwrap());

    let run = world.run(&["status"]);
    assert_eq!(run.stdout().trim(), "Gateway:  not running", "{run:?}");

    world.start();
    let pid = world.pid().unwrap();
    assert!(alive(pid));
    assert_eq!(mode(&world.socket()), 0o600);

    let run = world.run(&["start"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert_eq!(
        run.stdout().trim(),
        format!("Gateway already running (pid={pid})")
    );
    // A daemon launched directly (bypassing the CLI's check) loses on the instance lock.
    let run = world.run(&["start", "--foreground"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(
        run.stderr()
            .contains(&format!("Gateway already running (pid={pid})")),
        "{run:?}"
    );
    assert_eq!(
        world.pid(),
        Some(pid),
        "the running daemon's pid file is untouched"
    );
    assert_eq!(world.list().len(), 2);
    world.stop();
}

#[test]
fn sigkilled_daemon_is_recovered_by_the_next_start() {
    let world = World::new();
    world.write_config(&world.standard_config());
    world.start();
    let pid = world.pid().unwrap();
    signal(pid, "KILL");
    assert!(wait_for(SLOW, || !alive(pid)));
    assert!(world.pid_file().exists() && world.socket().exists());

    let run = world.run(&["list"]);
    assert_eq!(run.code(), 1);
    assert_eq!(
        run.stderr().trim(),
        "Error: Gateway is not running. Start it with: agent-chat-gateway start"
    );

    world.start();
    let new_pid = world.pid().unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(world.list().len(), 2);
    world.stop();
}

#[test]
fn broken_config_fails_the_start_naming_file_entry_and_field() {
    let world = World::new();
    let config = world.write_config(
        "connectors:\n  - name: local\n    type: script\nagents:\n  claude:\n    type: claude\n    working_directory: /nonexistent/dir/for/acg\nwatchers:\n  - connector: local\n    room: desk\n",
    );
    let run = world.run(&["start"]);
    assert_eq!(run.code(), 1, "{run:?}");
    let out = run.stdout();
    assert!(
        out.contains("Gateway failed to start — check logs at"),
        "{out}"
    );
    assert!(out.contains(&config.display().to_string()), "{out}");
    assert!(out.contains("claude"), "names the entry: {out}");
    assert!(out.contains("working_directory"), "names the field: {out}");
    assert!(!world.pid_file().exists());
    assert!(!world.socket().exists());
    assert!(world.log().contains("working_directory"));

    // The same problem through `config validate`.
    let run = world.run(&["config", "validate"]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr().starts_with("✗ "), "{run:?}");
    assert!(run.stderr().contains("working_directory"), "{run:?}");
}

#[test]
fn config_validate_and_schema() {
    let world = World::new();
    let path = world.write_config(&world.standard_config());
    let run = world.run(&["config", "validate"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(
        run.stdout().contains(&path.display().to_string()),
        "{run:?}"
    );
    assert!(run.stdout().contains("valid"), "{run:?}");

    // --config and ACG_CONFIG pick other files.
    let other = world.home.join("other.yaml");
    std::fs::write(&other, "connectors: []\n").unwrap();
    let run = world.run(&["config", "validate", "--config", other.to_str().unwrap()]);
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr().contains("other.yaml"), "{run:?}");
    let run = Run(world
        .cmd(&["config", "validate"])
        .env("ACG_CONFIG", &other)
        .output()
        .unwrap());
    assert_eq!(run.code(), 1, "{run:?}");
    assert!(run.stderr().contains("other.yaml"), "{run:?}");

    let run = world.run(&["config", "schema"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let schema: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert!(schema.is_object());
}

#[test]
fn send_checks_its_arguments_and_posts_through_the_daemon() {
    let world = World::new();
    world.write_config(&world.standard_config());

    let err = |args: &[&str]| {
        let run = world.run(args);
        assert_eq!(run.code(), 1, "{args:?}: {run:?}");
        run.stderr()
    };
    assert!(err(&["send", "desk"]).contains("Nothing to send"));
    let note = world.work.join("note.txt");
    std::fs::write(&note, "from a file").unwrap();
    assert!(err(&["send", "desk", "hi", "--file", note.to_str().unwrap()]).contains("not both"));
    assert!(err(&["send", "desk", "--file", "/nonexistent/x.txt"]).contains("Cannot read --file"));
    assert!(
        err(&["send", "desk", "hi", "--attach", "missing.png"]).contains("Attachment not found")
    );
    assert!(err(&["send", "desk", "   "]).contains("The message is empty."));
    assert_eq!(
        err(&["send", "desk", "hi"]).trim(),
        "Error: Gateway is not running. Start it with: agent-chat-gateway start"
    );

    world.start();
    let run = world.run_with_stdin(&["send", "desk", "-"], "hello from stdin\n");
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(run.stdout().trim(), "Sent.");
    let run = world.run(&["send", "desk", "two", "words"]);
    assert_eq!(run.stdout().trim(), "Sent.", "{run:?}");
    // A relative attachment is resolved against the caller's directory.
    let run = world.run(&[
        "send",
        "desk",
        "--file",
        note.to_str().unwrap(),
        "--attach",
        "note.txt",
    ]);
    assert_eq!(run.stdout().trim(), "Sent.", "{run:?}");

    let transcript = world.transcript("desk");
    let texts: Vec<&str> = transcript
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(texts.contains(&"hello from stdin"), "{transcript:?}");
    assert!(texts.contains(&"two words"), "{transcript:?}");
    let with_file = transcript
        .iter()
        .find(|m| m["text"] == "from a file")
        .expect("file message posted");
    assert_eq!(with_file["attachment"], note.to_str().unwrap());
    // The agent was not involved.
    assert!(
        !world
            .prompts_seen()
            .iter()
            .any(|t| t.contains("two words") || t.contains("hello from stdin")),
        "{:?}",
        world.prompts_seen()
    );
    world.stop();
}

#[test]
fn json_log_format_writes_json_lines() {
    let world = World::new();
    world.write_config(&world.standard_config());
    let run = Run(world
        .cmd(&["start", "--log-format", "json"])
        .env("ACG_LOG", "debug")
        .output()
        .unwrap());
    assert_eq!(run.code(), 0, "{run:?}");
    world.list();
    world.stop();
    let log = world.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
    assert!(log.contains("gateway started"), "{log}");
    // ACG_LOG=debug lets debug events through (the default filter is info).
    assert!(
        log.lines()
            .any(|l| l.contains("\"DEBUG\"") && l.contains("control request")),
        "{log}"
    );
}

#[test]
fn help_and_usage() {
    let world = World::new();
    let run = world.run(&[]);
    assert_eq!(
        run.code(),
        1,
        "no subcommand prints help and fails: {run:?}"
    );
    assert!((run.stdout() + &run.stderr()).contains("Usage:"), "{run:?}");
    let run = world.run(&["--help"]);
    assert_eq!(run.code(), 0);
    for cmd in [
        "start", "stop", "restart", "status", "list", "pause", "resume", "reset", "send", "inject",
        "config",
    ] {
        assert!(run.stdout().contains(cmd), "{cmd} missing from help");
    }
    assert!(
        !run.stdout().contains("notify-fd"),
        "internal flag is hidden"
    );
    let run = world.run(&["inject", "w"]);
    assert_eq!(run.code(), 2, "missing message is a usage error: {run:?}");
    let run = world.run(&["stop"]);
    assert_eq!(run.code(), 0);
    assert_eq!(run.stdout().trim(), "Gateway is not running");
    // Client commands need the daemon; the socket check follows the pid check.
    let run = world.run(&["list"]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("Gateway is not running"));
}

#[test]
fn degraded_start_for_adapters_not_in_this_build() {
    let world = World::new();
    world.write_config(&format!(
        "connectors:\n  - name: local\n    type: script\n  - name: mm\n    type: mattermost\n    server:\n      url: http://127.0.0.1:9\n      team: t\n      username: bot\n      password: pw\nagents:\n  claude:\n    type: claude\n    command: {claude}\n    working_directory: {work}\n  oc:\n    type: opencode\n    command: {no_opencode}\n    working_directory: {work}\nwatchers:\n  - name: helper\n    connector: local\n    room: desk\n  - name: oc-watch\n    connector: local\n    room: other\n    agent: oc\n  - name: mm-watch\n    connector: mm\n    room: general\n",
        claude = world.claude().display(),
        work = world.work.display(),
        // Not whatever `opencode` the machine's PATH may have: this agent cannot start.
        no_opencode = world.work.join("no-such-opencode").display()
    ));
    // Saved state of the mattermost watcher must survive.
    let rc_state = world.runtime_dir().join("state.mm.json");
    let saved = r#"{"watchers": [{"watcher_name": "mm-watch", "session_id": "keep-me", "room_id": "R1", "room_type": "channel", "context_injected": true, "paused": false, "last_processed_ts": "1700000000000"}]}"#;
    std::fs::write(&rc_state, saved).unwrap();

    let run = world.run(&["start"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let out = run.stdout();
    assert!(out.contains("Gateway started (degraded)."), "{out}");
    assert!(out.contains("opencode"), "{out}");
    assert!(out.contains("mattermost"), "{out}");
    let list = world.list();
    assert!(
        list.iter()
            .any(|l| l.starts_with("helper: ") && l.ends_with("[active]")),
        "{list:?}"
    );
    assert!(
        list.iter()
            .any(|l| l.starts_with("oc-watch: ") && l.ends_with("[inactive]")),
        "{list:?}"
    );
    world.stop();
    assert_eq!(std::fs::read_to_string(&rc_state).unwrap(), saved);
}

/// Not a test on its own: when `ACG_STANDIN_RUNTIME` is set, this test process plays a daemon
/// that ignores SIGTERM (it takes the instance lock and writes the pid file, like ours).
#[test]
fn stubborn_daemon_standin() {
    let Some(runtime) = std::env::var_os("ACG_STANDIN_RUNTIME") else {
        return;
    };
    let runtime = std::path::PathBuf::from(runtime);
    // SAFETY: setting a signal disposition to "ignore" has no preconditions.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(runtime.join("gateway.lock"))
        .unwrap();
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    std::fs::write(runtime.join("gateway.pid"), std::process::id().to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn stop_force_kills_a_daemon_that_ignores_sigterm() {
    let world = World::new();
    std::fs::create_dir_all(world.runtime_dir()).unwrap();
    let mut standin = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stubborn_daemon_standin",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ACG_STANDIN_RUNTIME", world.runtime_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = standin.id();
    assert!(wait_for(SLOW, || world.pid() == Some(pid)));
    let run = world.run(&["status"]);
    assert!(
        run.stdout().contains(&format!("running (pid={pid})")),
        "{run:?}"
    );

    let run = Run(world
        .cmd(&["stop"])
        .env("ACG_STOP_TIMEOUT", "1")
        .output()
        .unwrap());
    assert_eq!(run.code(), 0, "{run:?}");
    let out = run.stdout();
    assert!(
        out.contains(&format!("Stopping gateway (pid={pid})...")),
        "{out}"
    );
    assert!(out.contains("Force killing..."), "{out}");
    assert!(out.contains("Gateway stopped"), "{out}");
    let status = standin.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!world.pid_file().exists());
}

#[test]
fn racing_starts_leave_exactly_one_daemon() {
    let world = World::new();
    world.write_config(&world.standard_config());
    let spawn = || {
        world
            .cmd(&["start"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let runs = [
        Run(a.wait_with_output().unwrap()),
        Run(b.wait_with_output().unwrap()),
    ];
    let winners: Vec<&Run> = runs.iter().filter(|r| r.code() == 0).collect();
    assert_eq!(winners.len(), 1, "{runs:?}");
    let pid = world.pid().unwrap();
    let loser = runs.iter().find(|r| r.code() != 0).unwrap();
    assert!(
        loser
            .stdout()
            .contains(&format!("Gateway already running (pid={pid})")),
        "{loser:?}"
    );
    assert_eq!(world.list().len(), 2);
    world.stop();
}
