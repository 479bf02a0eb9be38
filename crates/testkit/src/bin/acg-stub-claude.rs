//! `acg-stub-claude`: an instant stand-in for the Claude Code CLI, for measuring the gateway
//! itself (latency, throughput) without a model or a Node.js process in the way.
//!
//! It accepts the argv the gateway's Claude backend uses — `-p`, `--output-format json` or
//! `stream-json`, `--verbose`, `--resume <id>`, `--append-system-prompt-file <file>`,
//! `--settings <file>`, `--name <title>`, `--system-prompt-snapshot <mode>`,
//! `--dangerously-skip-permissions`, `--include-partial-messages`; anything else is ignored —
//! reads the prompt from stdin to its end and answers at once:
//! - `--output-format json` (session creation): one `result` object with a new session id;
//! - `--output-format stream-json`: a `system`/`init` event, one `assistant` message with the
//!   reply text, and a `result` event, one JSON object per line, session id = `--resume`;
//! - otherwise the reply text alone.
//!
//! The reply is `$ACG_STUB_REPLY` when set, else `echo: <first line of the prompt>` with a
//! leading trusted header (`[Rocket.Chat #room | …] `) left out. `$ACG_STUB_DELAY_MS` waits
//! that long before answering. `$ACG_STUB_LOG=<file>` appends one JSON line per run
//! (`{"args": [...], "prompt": "..."}`) for tests that want to see what the agent was given.
//!
//! Timing wrapper: with `$ACG_STUB_EXEC=<program>` it answers nothing itself but runs
//! `<program>` with the same arguments, stdin, stdout and stderr, exits with its status, and
//! appends `{"start_unix_ns": …, "end_unix_ns": …}` for that run to `$ACG_STUB_TIMING_LOG`.
//! The benchmark uses it around the real `claude` to split a chat round trip into the agent
//! process's own time and the rest (the gateway, the chat server and this wrapper's start).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Options that take a value (so the value is never mistaken for something else).
const VALUED: &[&str] = &[
    "--output-format",
    "--resume",
    "--append-system-prompt-file",
    "--settings",
    "--name",
    "--system-prompt-snapshot",
    "--input-format",
    "--model",
    "--agent",
];

/// What the command line asked for.
#[derive(Debug, Default)]
struct Invocation {
    output_format: Option<String>,
    resume: Option<String>,
}

fn parse_args(args: &[String]) -> Invocation {
    let mut inv = Invocation::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg, None),
        };
        if VALUED.contains(&name) {
            let value = match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    args.get(i).cloned()
                }
            };
            match name {
                "--output-format" => inv.output_format = value,
                "--resume" => inv.resume = value,
                _ => {}
            }
        }
        i += 1;
    }
    inv
}

/// `echo: <first line>` without a leading `[...]` header, or `$ACG_STUB_REPLY`.
fn reply_for(prompt: &str) -> String {
    if let Ok(fixed) = std::env::var("ACG_STUB_REPLY") {
        return fixed;
    }
    let first = prompt.lines().next().unwrap_or("").trim();
    let text = match first
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, after)) => after,
        None => first,
    };
    format!("echo: {text}")
}

fn new_session_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn usage() -> Value {
    json!({"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0})
}

fn result_event(text: &str, session: &str, elapsed: Duration) -> Value {
    json!({
        "type": "result",
        "subtype": "success",
        "is_error": false,
        "duration_ms": elapsed.as_millis() as u64,
        "duration_api_ms": 0,
        "num_turns": 1,
        "result": text,
        "session_id": session,
        "total_cost_usd": 0.0,
        "usage": usage(),
        "permission_denials": [],
    })
}

fn log_run(args: &[String], prompt: &str) {
    let Some(path) = std::env::var_os("ACG_STUB_LOG") else {
        return;
    };
    let line = json!({"args": args, "prompt": prompt}).to_string();
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// The timing wrapper (see the module doc): never returns.
fn wrap(program: std::ffi::OsString) -> ! {
    let start = unix_ns();
    let status = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .env_remove("ACG_STUB_EXEC")
        .env_remove("ACG_STUB_TIMING_LOG")
        .status();
    let end = unix_ns();
    if let Some(path) = std::env::var_os("ACG_STUB_TIMING_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(
                file,
                "{}",
                json!({"start_unix_ns": start, "end_unix_ns": end})
            );
        }
    }
    match status {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => {
            eprintln!(
                "acg-stub-claude: cannot run {}: {e}",
                program.to_string_lossy()
            );
            std::process::exit(127);
        }
    }
}

fn main() {
    if let Some(program) = std::env::var_os("ACG_STUB_EXEC") {
        wrap(program);
    }
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let inv = parse_args(&args);
    let mut prompt = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut prompt) {
        eprintln!("acg-stub-claude: cannot read stdin: {e}");
        std::process::exit(1);
    }
    log_run(&args, &prompt);
    if let Some(ms) = std::env::var("ACG_STUB_DELAY_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let text = reply_for(&prompt);
    let session = inv.resume.clone().unwrap_or_else(new_session_id);
    let mut out = std::io::stdout().lock();
    let written = match inv.output_format.as_deref() {
        Some("json") => writeln!(out, "{}", result_event(&text, &session, started.elapsed())),
        Some("stream-json") => {
            let init = json!({"type": "system", "subtype": "init", "session_id": session,
                "cwd": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
                "tools": [], "model": "acg-stub", "permissionMode": "default"});
            let assistant = json!({"type": "assistant", "parent_tool_use_id": null,
                "session_id": session,
                "message": {"id": "msg_stub", "type": "message", "role": "assistant",
                    "model": "acg-stub", "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn", "usage": usage()}});
            writeln!(out, "{init}")
                .and_then(|()| writeln!(out, "{assistant}"))
                .and_then(|()| {
                    writeln!(out, "{}", result_event(&text, &session, started.elapsed()))
                })
        }
        _ => writeln!(out, "{text}"),
    };
    if written.and_then(|()| out.flush()).is_err() {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_the_backend_argv() {
        let inv = parse_args(&strings(&[
            "-p",
            "--resume",
            "sid-1",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--dangerously-skip-permissions",
            "--settings",
            "/s.json",
            "--append-system-prompt-file",
            "/p.md",
            "--system-prompt-snapshot",
            "off",
            "--unknown-flag",
        ]));
        assert_eq!(inv.resume.as_deref(), Some("sid-1"));
        assert_eq!(inv.output_format.as_deref(), Some("stream-json"));
        let inv = parse_args(&strings(&[
            "-p",
            "--output-format=json",
            "--name",
            "--resume",
        ]));
        assert_eq!(inv.output_format.as_deref(), Some("json"));
        assert_eq!(inv.resume, None, "--name took the next word as its value");
    }

    #[test]
    fn replies_echo_the_first_line_without_the_header() {
        assert_eq!(
            reply_for("[Rocket.Chat #dev | from: alice | role: owner | to: me] hello there\nmore"),
            "echo: hello there"
        );
        assert_eq!(reply_for("plain"), "echo: plain");
        assert_eq!(reply_for(""), "echo: ");
    }
}
