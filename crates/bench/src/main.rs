//! `acg-bench`: runs the benchmarks and writes the report (see the library docs and
//! `docs/performance.md`). `scripts/bench.sh` builds everything and calls it; `--quick` is a
//! smoke run of our gateway alone.

use std::path::PathBuf;

use acg_bench::gateway::Flavor;
use acg_bench::report::{table, Machine, Report};
use acg_bench::scenario::{measure_floor, measure_gateway, Plan, Setup};
use acg_bench::{procfs, real_agent};
use anyhow::{Context, Result};
use clap::Parser;

/// Benchmarks agent-chat-gateway side by side with the Python 0.5.2 reference.
#[derive(Debug, Parser)]
#[command(name = "acg-bench", version)]
struct Args {
    /// Smoke run: a handful of messages, our gateway only, no large sessions, no real agent.
    #[arg(long)]
    quick: bool,
    /// Our gateway's CLI [default: `agent-chat-gateway` next to this binary].
    #[arg(long, value_name = "PATH")]
    gateway: Option<PathBuf>,
    /// The stub agent [default: `acg-stub-claude` next to this binary].
    #[arg(long, value_name = "PATH")]
    stub: Option<PathBuf>,
    /// The reference's CLI (`.tools/acg-0.5.2/bin/agent-chat-gateway`); without it the
    /// reference column is skipped.
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,
    /// Why the reference is not available (printed instead of its column).
    #[arg(long, value_name = "TEXT")]
    reference_skipped: Option<String>,
    /// The real Claude CLI for the overhead measurement [default: the pinned install, if any].
    #[arg(long, value_name = "PATH")]
    claude: Option<PathBuf>,
    /// Paired turns of the real-agent measurement (0 = skip it).
    #[arg(long, default_value_t = 10)]
    real_turns: usize,
    /// Sequential messages [default: 200, quick: 10].
    #[arg(long)]
    messages: Option<usize>,
    /// Messages per concurrent sender [default: 3, quick: 2].
    #[arg(long)]
    rounds: Option<usize>,
    /// Skip the 200/2,000-room sessions.
    #[arg(long)]
    no_room_sessions: bool,
    /// Room counts of the start/RSS/stop sessions instead of 200 and 2,000 (repeatable).
    #[arg(long = "room-session", value_name = "ROOMS")]
    room_session: Vec<usize>,
    /// Measure only the reference (with the floor), e.g. to look at its logs with --keep.
    #[arg(long)]
    skip_ours: bool,
    /// Keep the scratch directory (homes with the daemons' logs, configs, turn logs).
    #[arg(long)]
    keep: bool,
    /// Where the JSON goes [default: <workspace>/target/bench/results.json].
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    Ok(exe.with_file_name(name))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Detached daemons become our children when their parents exit, so their exits are
    // seen at once even where PID 1 does not reap orphans.
    if let Err(e) = procfs::become_subreaper() {
        eprintln!("warning: cannot become a subreaper ({e}); stop times may include zombie waits");
    }
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(n) = args.messages {
        plan.sequential_messages = n;
    }
    if let Some(n) = args.rounds {
        plan.rounds = n;
    }
    if !args.room_session.is_empty() {
        plan.room_sessions = args.room_session.clone();
    }
    if args.no_room_sessions {
        plan.room_sessions.clear();
    }
    let gateway = match args.gateway {
        Some(p) => p,
        None => sibling("agent-chat-gateway")?,
    };
    let stub = match args.stub {
        Some(p) => p,
        None => sibling("acg-stub-claude")?,
    };
    for (what, path) in [("gateway", &gateway), ("stub agent", &stub)] {
        if !path.is_file() {
            anyhow::bail!(
                "the {what} binary {} does not exist (build it first, or run scripts/bench.sh)",
                path.display()
            );
        }
    }
    let scratch = tempfile::Builder::new().prefix("acg-bench-").tempdir()?;
    let setup = Setup {
        stub: std::fs::canonicalize(&stub)?,
        scratch: std::fs::canonicalize(scratch.path())?,
    };
    if args.keep {
        let kept = scratch.keep();
        eprintln!("scratch directory kept: {}", kept.display());
    }
    let mut report = Report {
        finished_at: String::new(),
        machine: Machine::current(),
        plan: plan.clone(),
        floor: None,
        ours: None,
        reference: None,
        reference_skipped: None,
        real_agent: None,
        errors: Vec::new(),
    };

    eprintln!(
        "[floor] {} sequential messages through a relay-only bot, then through it running the stub agent",
        plan.sequential_messages
    );
    match measure_floor(&plan, &setup.stub).await {
        Ok(floor) => report.floor = Some(floor),
        Err(e) => report.errors.push(format!("floor: {e:#}")),
    }
    if !args.skip_ours {
        report.ours = Some(measure_gateway(Flavor::Ours, &gateway, &setup, &plan).await);
    }

    if args.quick {
        report.reference_skipped = Some("--quick runs our gateway only".into());
    } else {
        match (&args.reference, &args.reference_skipped) {
            (Some(reference), _) if reference.is_file() => {
                report.reference =
                    Some(measure_gateway(Flavor::Reference, reference, &setup, &plan).await);
            }
            (Some(reference), _) => {
                report.reference_skipped = Some(format!("{} does not exist", reference.display()));
            }
            (None, Some(reason)) => report.reference_skipped = Some(reason.clone()),
            (None, None) => {
                report.reference_skipped = Some("no --reference given".into());
            }
        }
    }

    if !args.quick && args.real_turns > 0 {
        let claude = args
            .claude
            .clone()
            .or_else(|| acg_testkit::agents::claude_binary().ok());
        match claude {
            Some(claude) => {
                eprintln!(
                    "[real agent] {} paired turns with {}",
                    args.real_turns,
                    claude.display()
                );
                match real_agent::measure(&gateway, &claude, &setup, &plan, args.real_turns).await {
                    Ok(r) => report.real_agent = Some(r),
                    Err(e) => report.errors.push(format!("real agent: {e:#}")),
                }
            }
            None => report
                .errors
                .push("real agent: no claude CLI (run scripts/install-agents.sh)".into()),
        }
    }

    report.finished_at = now_rfc3339();
    let out = args
        .out
        .unwrap_or_else(|| acg_testkit::agents::workspace_root().join("target/bench/results.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!("{}", table(&report));
    println!("\nresults: {}", out.display());
    procfs::reap_orphans();
    Ok(())
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string())
}
