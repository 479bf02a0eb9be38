//! `acg-stub-claude` answers the Claude backend's two invocations (session creation with
//! `--output-format json`, turns with `stream-json`) instantly and in the CLI's shapes.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn run(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acg-stub-claude"))
        .args(args)
        .env_remove("ACG_STUB_REPLY")
        .env_remove("ACG_STUB_DELAY_MS")
        .env_remove("ACG_STUB_LOG")
        .env_remove("ACG_STUB_EXEC")
        .env_remove("ACG_STUB_TIMING_LOG")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn session_creation_prints_one_result_with_a_new_session_id() {
    let out = run(
        &["-p", "--output-format", "json", "--name", "agent-chat:dev"],
        "Set up.",
        &[],
    );
    let events = lines(&out);
    assert_eq!(events.len(), 1);
    let result = &events[0];
    assert_eq!(result["type"], "result");
    assert_eq!(result["subtype"], "success");
    assert_eq!(result["is_error"], false);
    assert_eq!(result["result"], "echo: Set up.");
    assert_eq!(result["session_id"].as_str().unwrap().len(), 36);
}

#[test]
fn a_turn_streams_init_assistant_and_result_in_the_resumed_session() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.jsonl");
    let out = run(
        &[
            "-p",
            "--resume",
            "sid-7",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--dangerously-skip-permissions",
            "--settings",
            "/x.json",
            "--append-system-prompt-file",
            "/p.md",
            "--system-prompt-snapshot",
            "off",
        ],
        "[Rocket.Chat #dev | from: alice | role: owner | to: me] ping 1\n[Attached: a → b]",
        &[("ACG_STUB_LOG", log.to_str().unwrap())],
    );
    let events = lines(&out);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["system", "assistant", "result"]);
    assert!(events.iter().all(|e| e["session_id"] == "sid-7"));
    assert_eq!(events[1]["message"]["content"][0]["text"], "echo: ping 1");
    assert_eq!(events[2]["result"], "echo: ping 1");
    let logged: Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(logged["args"][2], "sid-7");
    assert!(logged["prompt"]
        .as_str()
        .unwrap()
        .ends_with("[Attached: a → b]"));
}

#[test]
fn fixed_reply_and_plain_output() {
    let out = run(
        &["-p"],
        "hi",
        &[("ACG_STUB_REPLY", "pong"), ("ACG_STUB_DELAY_MS", "5")],
    );
    assert_eq!(out, "pong\n");
}

/// As a timing wrapper it runs the program it is given with the same arguments and stdio,
/// keeps its exit status, and logs the run's start and end.
#[test]
fn the_timing_wrapper_runs_the_program_and_logs_its_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("timing.jsonl");
    let log_s = log.to_string_lossy().into_owned();
    let out = run(
        &["-c", "read line; echo \"got $line $0\"; sleep 0.2"],
        "hello\n",
        &[
            ("ACG_STUB_EXEC", "/bin/sh"),
            ("ACG_STUB_TIMING_LOG", &log_s),
        ],
    );
    assert!(out.starts_with("got hello"), "{out}");
    let runs = lines(&std::fs::read_to_string(&log).unwrap());
    assert_eq!(runs.len(), 1);
    let start = runs[0]["start_unix_ns"].as_u64().unwrap();
    let end = runs[0]["end_unix_ns"].as_u64().unwrap();
    assert!(end - start >= 200_000_000, "{start}..{end}");

    let status = Command::new(env!("CARGO_BIN_EXE_acg-stub-claude"))
        .args(["-c", "exit 7"])
        .env("ACG_STUB_EXEC", "/bin/sh")
        .env_remove("ACG_STUB_TIMING_LOG")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
}
