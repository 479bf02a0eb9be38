//! `acg-testkit`: the test kit's fakes as standalone servers, for demos and benchmarks.
//!
//! `acg-testkit mock-anthropic --port 8080` serves a mock Anthropic Messages API that answers
//! every turn with a fixed text; point a Claude CLI at it with `ANTHROPIC_BASE_URL`.

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
