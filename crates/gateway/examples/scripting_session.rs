//! Scripting Claude Code sessions from Rust, with no chat platform at all.
//!
//! Part 1 starts one session, sends two prompts in it (the second relies on the first, so the
//! session is really reused) and stops it. Part 2 pipes one session's reply into a second one.
//!
//! ```text
//! ACG_CLAUDE_BIN=/path/to/claude cargo run -p agent-chat-gateway --example scripting_session [-- <working dir>]
//! ```
//! `ACG_CLAUDE_BIN` defaults to `claude` on `PATH`; the working directory defaults to the
//! current one. Each turn is one `claude -p --resume <session>` run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use acg_claude::{ClaudeBackend, ClaudeSettings};
use acg_core::session::AgentSession;
use acg_core::AgentBackend;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let command = std::env::var("ACG_CLAUDE_BIN").unwrap_or_else(|_| "claude".to_string());
    let workdir = match std::env::args().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir()?,
    };
    let backend: Arc<dyn AgentBackend> = Arc::new(ClaudeBackend::new(ClaudeSettings::new(command)));
    backend.start().await?;

    // Part 1: one session, two turns.
    let counter = AgentSession::new(backend.clone(), &workdir)
        .with_timeout(Duration::from_secs(180))
        .with_title("example:counter");
    let id = counter.start().await?;
    println!("started session {id}");
    let first = counter
        .send("Pick a whole number between 1 and 9. Reply with the number only.")
        .await?;
    println!("first reply:  {}", first.text);
    let second = counter
        .send("Add 10 to the number you picked. Reply with the result only.")
        .await?;
    println!("second reply: {}", second.text);
    counter.stop().await;

    // Part 2: one session's answer is the next session's prompt.
    let poet = AgentSession::new(backend.clone(), &workdir).with_title("example:poet");
    let critic = AgentSession::new(backend.clone(), &workdir).with_title("example:critic");
    poet.start().await?;
    critic.start().await?;
    critic
        .send("I will send you short poems. Answer each with a one-sentence critique.")
        .await?;
    let critique = critic
        .send(
            &poet
                .send("Write a two-line poem about message queues.")
                .await?
                .text,
        )
        .await?;
    println!("critique: {}", critique.text);
    poet.stop().await;
    critic.stop().await;

    backend.stop().await;
    Ok(())
}
