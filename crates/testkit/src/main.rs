//! `acg-testkit`: the test kit's fakes as standalone servers, for demos and benchmarks.
//!
//! `acg-testkit mock-anthropic --port 8080` serves a mock Anthropic Messages API that answers
//! every turn with a fixed text; point a Claude CLI at it with `ANTHROPIC_BASE_URL`.
//! `acg-testkit fake-rocketchat --port 3000 --seed seed.yaml [--version 8.1.0]` serves a fake
//! Rocket.Chat (REST + DDP) with the users and rooms of the seed file.
//! `acg-testkit mock-openai --port 8081` does the same for the OpenAI Chat Completions API
//! (an OpenCode provider's `baseURL` is the printed `…/v1` URL).

use std::net::SocketAddr;

use acg_testkit::anthropic::{MockAnthropic, RecordedRequest, Reply};
use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "acg-testkit",
    version,
    about = "Fake servers of the agent-chat-gateway test kit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One fake server per subcommand.
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a mock Anthropic Messages API on 127.0.0.1.
    MockAnthropic {
        /// The port to listen on (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The text every turn request is answered with.
        #[arg(long, default_value = "ok")]
        reply: String,
        /// Print one line per request received (to stderr).
        #[arg(long)]
        log_requests: bool,
        /// Append every request, as one JSON object per line, to this file.
        #[arg(long)]
        record: Option<std::path::PathBuf>,
    },
    /// Serve a mock OpenAI Chat Completions API on 127.0.0.1 (base URL `…/v1`).
    MockOpenai {
        /// The port to listen on (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The text every turn request is answered with.
        #[arg(long, default_value = "ok")]
        reply: String,
        /// Print one line per request received (to stderr).
        #[arg(long)]
        log_requests: bool,
    },
    /// Serve a fake Rocket.Chat (REST + DDP) on 127.0.0.1.
    FakeRocketchat {
        /// The port to listen on (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// YAML or JSON file with `users` and `rooms` (see docs/fake-rocketchat.md).
        #[arg(long)]
        seed: Option<std::path::PathBuf>,
        /// The Rocket.Chat version to imitate (7.x or 8.x).
        #[arg(long, default_value = "7.10.0")]
        version: String,
        /// `Message_MaxAllowedSize`.
        #[arg(long, default_value_t = 5000)]
        max_message_size: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::MockAnthropic {
            port,
            reply,
            log_requests,
            record,
        } => {
            let mock = MockAnthropic::start_on(SocketAddr::from(([127, 0, 0, 1], port))).await?;
            mock.set_default(Reply::text(reply.clone()));
            mock.set_auxiliary_reply(Reply::text(reply));
            // The port line is the contract for scripts that start us with --port 0.
            println!("mock-anthropic listening on {}", mock.base_url());
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                r = report_requests(&mock, log_requests, record.as_deref()) => r?,
            }
        }
        Command::MockOpenai {
            port,
            reply,
            log_requests,
        } => {
            let mock =
                acg_testkit::openai::MockOpenAI::start_on(SocketAddr::from(([127, 0, 0, 1], port)))
                    .await?;
            mock.set_default(acg_testkit::openai::Reply::text(reply));
            println!("mock-openai listening on {}", mock.base_url());
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                () = log_openai_requests(&mock, log_requests) => {}
            }
        }
        Command::FakeRocketchat {
            port,
            seed,
            version,
            max_message_size,
        } => {
            use acg_testkit::rocketchat::{FakeOptions, FakeRocketChat, Seed};
            let seed = match seed {
                Some(path) => Seed::from_file(&path)?,
                None => Seed::default(),
            };
            let options = FakeOptions {
                port,
                message_max_allowed_size: max_message_size,
                ..FakeOptions::new(&version, seed)
            };
            let fake = FakeRocketChat::start(options).await?;
            // The URL line is the contract for scripts that start us with --port 0.
            println!(
                "fake-rocketchat {} listening on {}",
                fake.version(),
                fake.url()
            );
            tokio::signal::ctrl_c().await?;
        }
    }
    Ok(())
}

/// Logs and/or records every request as it arrives; never returns unless writing fails.
async fn report_requests(
    mock: &MockAnthropic,
    log: bool,
    record: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut seen = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let requests = mock.requests();
        for r in requests.iter().skip(seen) {
            if log {
                let query = r.query.as_deref().map(|q| format!("?{q}"));
                eprintln!(
                    "{} {}{} kind={:?} user={:?}",
                    r.method,
                    r.path,
                    query.unwrap_or_default(),
                    r.kind,
                    r.last_user_text()
                );
            }
            if let Some(path) = record {
                append_record(path, r)?;
            }
        }
        seen = requests.len();
    }
}

/// Appends one request to the record file as a JSON line.
fn append_record(path: &std::path::Path, r: &RecordedRequest) -> anyhow::Result<()> {
    use std::io::Write;
    let line = serde_json::json!({
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "kind": format!("{:?}", r.kind),
        "headers": r.headers,
        "body": r.body,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")?;
    Ok(())
}

/// Prints one line per OpenAI request as it arrives (when `log` is set); never returns.
async fn log_openai_requests(mock: &acg_testkit::openai::MockOpenAI, log: bool) {
    let mut seen = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let requests = mock.requests();
        for r in requests.iter().skip(seen).filter(|_| log) {
            eprintln!(
                "{} {} kind={:?} user={:?}",
                r.method,
                r.path,
                r.kind,
                r.last_user_text()
            );
        }
        seen = requests.len();
    }
}
