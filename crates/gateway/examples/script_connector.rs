//! A headless gateway: a script connector with one watcher backed by Claude Code. The
//! program posts a message into the watcher's room and prints the agent's reply — the same
//! path a chat message takes (dispatcher, watcher queue, prompt, agent turn, connector send).
//!
//! ```text
//! ACG_CLAUDE_BIN=/path/to/claude cargo run -p agent-chat-gateway --example script_connector [-- <working dir>]
//! ```
//! Replies are also appended to `<runtime dir>/transcripts/assistant.jsonl`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use acg_claude::{ClaudeBackend, ClaudeSettings};
use acg_core::context::ContextSources;
use acg_core::gateway::{AgentSetup, ConnectorSetup, Gateway, GatewayOptions};
use acg_core::watcher::WatcherSpec;
use acg_script::ScriptConnector;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let command = std::env::var("ACG_CLAUDE_BIN").unwrap_or_else(|_| "claude".to_string());
    let workdir = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir()?,
    };
    // State files and the watcher's system prompt go here instead of ~/.agent-chat-gateway.
    let runtime_dir = std::env::temp_dir().join(format!("acg-example-{}", std::process::id()));

    let script =
        Arc::new(ScriptConnector::new("jobs").with_transcript_dir(runtime_dir.join("transcripts")));
    let watcher = WatcherSpec {
        name: "jobs-assistant".into(),
        connector: "jobs".into(),
        room: "assistant".into(),
        agent: "claude".into(),
        pinned_session_id: None,
        working_directory: workdir,
        new_session_args: Vec::new(),
        session_prefix: "agent-chat".into(),
        turn_timeout: Duration::from_secs(180),
        max_queue_depth: 100,
        context: ContextSources {
            watcher_name: "jobs-assistant".into(),
            room: "assistant".into(),
            connector_name: "jobs".into(),
            ..Default::default()
        },
        online_notification: None,
        offline_notification: None,
    };
    let (gateway, report) = Gateway::start(
        GatewayOptions {
            runtime_dir: runtime_dir.clone(),
            drain_timeout: Duration::from_secs(30),
        },
        vec![AgentSetup {
            name: "claude".into(),
            backend: Arc::new(ClaudeBackend::new(ClaudeSettings::new(command))),
        }],
        vec![ConnectorSetup {
            connector: script.clone(),
            connector_type: "script".into(),
            watchers: vec![watcher],
        }],
    )
    .await;
    for error in &report.errors {
        eprintln!("start problem: {error}");
    }

    let delivery = script
        .inject("assistant", "Say hello to the team in one short sentence.")
        .await?;
    println!("message {delivery:?}");
    match tokio::time::timeout(Duration::from_secs(240), script.receive_reply("assistant")).await {
        Ok(reply) if reply.is_error => println!("the gateway reported: {}", reply.text),
        Ok(reply) => println!("agent: {}", reply.text),
        Err(_) => println!("no reply within 240 s"),
    }

    gateway.shutdown().await;
    println!("state and transcripts are under {}", runtime_dir.display());
    Ok(())
}
