//! The gateway's share of a real agent turn: our gateway runs the real `claude` CLI (offline,
//! against the test kit's mock Anthropic API) through `acg-stub-claude`'s timing wrapper, which
//! logs when the `claude` process started and ended. For each chat round trip the rest — the
//! round trip minus the `claude` process's lifetime — is what the gateway (with the chat
//! server and the wrapper's own start) added to that turn; share = median rest ÷ median round
//! trip. One `claude` turn varies by ±100 ms against the mock, so comparing two separately
//! timed runs cannot resolve a cost of a few milliseconds; this split is per turn.
//!
//! As a cross-check each round trip is paired with the same `claude -p --resume` turn run
//! directly on the same session (same flags, working directory and environment).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use acg_testkit::agents::claude_offline_env;
use acg_testkit::anthropic::{MockAnthropic, Reply};
use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::gateway::Flavor;
use crate::scenario::{start_session, stop, AgentOverride, Plan, Setup};
use crate::stats::{median, ms, Summary};

/// The outcome of the real-agent comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RealAgent {
    /// Paired turns measured.
    pub turns: usize,
    /// Chat post → reply through the gateway.
    pub through_gateway: Option<Summary>,
    /// The same turn run directly.
    pub direct: Option<Summary>,
    /// The `claude` process's own lifetime in each gateway turn.
    pub agent_process: Option<Summary>,
    /// Round trip minus the `claude` process's lifetime, per turn.
    pub gateway_rest: Option<Summary>,
    /// Median gateway round trip − median direct turn, ms (the cross-check; noisy).
    pub overhead_ms: Option<f64>,
    /// Median rest ÷ median round trip, percent.
    pub gateway_share_percent: Option<f64>,
}

impl RealAgent {
    /// One line for the table's footer.
    pub fn summary_line(&self) -> String {
        match (
            &self.through_gateway,
            &self.agent_process,
            &self.gateway_rest,
            self.gateway_share_percent,
        ) {
            (Some(g), Some(a), Some(r), Some(p)) => {
                let direct = match &self.direct {
                    Some(d) => format!("; direct `claude -p --resume` p50 {:.0} ms", d.p50_ms),
                    None => String::new(),
                };
                format!(
                    "REAL AGENT (claude CLI + mock LLM, {} turns): round trip through the \
                     gateway p50 {:.0} ms, of it the claude process p50 {:.0} ms, the rest p50 \
                     {:.1} ms (p95 {:.1}) → gateway share {:.2} %{direct}",
                    self.turns, g.p50_ms, a.p50_ms, r.p50_ms, r.p95_ms, p
                )
            }
            _ => "REAL AGENT: not measured".into(),
        }
    }
}

/// The session id our gateway stored for its (only) watcher.
fn stored_session(runtime: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(runtime.join("state.rc.json")).context("read state.rc.json")?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    v["watchers"]
        .as_array()
        .and_then(|w| w.iter().find_map(|w| w["session_id"].as_str()))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .context("no session id in state.rc.json")
}

/// The durable-context file the gateway passes with `--append-system-prompt-file`, if any.
fn system_prompt_file(runtime: &Path) -> Option<PathBuf> {
    std::fs::read_dir(runtime.join("system-prompts"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
}

/// The lifetimes of the `claude` runs the timing wrapper logged so far, oldest first.
fn agent_lifetimes(log: &Path) -> Result<Vec<Duration>> {
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).context("read the claude timing log"),
    };
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let (Some(start), Some(end)) = (v["start_unix_ns"].as_u64(), v["end_unix_ns"].as_u64())
            else {
                bail!("bad timing line: {line}");
            };
            Ok(Duration::from_nanos(end.saturating_sub(start)))
        })
        .collect()
}

/// One direct turn: the argv our Claude backend uses for a turn, the prompt on stdin.
fn direct_turn(
    claude: &Path,
    session: &str,
    prompt_file: Option<&Path>,
    env: &[(String, String)],
    work: &Path,
    prompt: &str,
) -> Result<Duration> {
    use std::io::Write;
    let mut args: Vec<String> = ["-p", "--resume", session, "--output-format", "stream-json"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push("--verbose".into());
    if let Some(file) = prompt_file {
        args.push("--append-system-prompt-file".into());
        args.push(file.to_string_lossy().into_owned());
        args.extend(["--system-prompt-snapshot".into(), "off".into()]);
    }
    let begun = Instant::now();
    let mut child = Command::new(claude)
        .args(&args)
        .current_dir(work)
        .env_remove("CLAUDECODE")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", claude.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(prompt.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let took = begun.elapsed();
    crate::procfs::reap_orphans();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("\"type\":\"result\"") {
        bail!(
            "direct claude turn failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// Runs the comparison with `turns` paired turns.
pub async fn measure(
    gateway_exe: &Path,
    claude: &Path,
    setup: &Setup,
    plan: &Plan,
    turns: usize,
) -> Result<RealAgent> {
    let mock = MockAnthropic::start().await.context("mock Anthropic API")?;
    mock.set_default(Reply::text("Done."));
    mock.set_auxiliary_reply(Reply::text("Done."));
    let root = setup.scratch.join("real-agent");
    let home = root.join("home");
    let work = root.join("work");
    std::fs::create_dir_all(&home)?;
    std::fs::create_dir_all(&work)?;
    let env = claude_offline_env(&home, &mock.base_url());
    let timing_log = root.join("claude-runs.jsonl");
    let mut gateway_env = env.clone();
    gateway_env.push((
        "ACG_STUB_EXEC".to_owned(),
        claude.to_string_lossy().into_owned(),
    ));
    gateway_env.push((
        "ACG_STUB_TIMING_LOG".to_owned(),
        timing_log.to_string_lossy().into_owned(),
    ));
    let agent = AgentOverride {
        command: setup.stub.clone(),
        env: gateway_env,
        home: home.clone(),
        work: work.clone(),
    };
    let running = start_session(
        Flavor::Ours,
        gateway_exe,
        setup,
        1,
        1,
        1,
        plan,
        Some(&agent),
    )
    .await
    .context("our gateway with the real claude")?;
    let runtime = running.gateway.runtime_dir();
    let outcome = async {
        let session = stored_session(&runtime)?;
        let prompt_file = system_prompt_file(&runtime);
        let mut through = Vec::new();
        let mut agent_runs = Vec::new();
        let mut rest = Vec::new();
        let mut direct = Vec::new();
        let sender = &running.world.senders[0];
        let rid = running.world.room_ids[0].clone();
        for i in 0..turns {
            let before = agent_lifetimes(&timing_log)?.len();
            let round_trip = running
                .tracker
                .ask(sender, &rid, &format!("question {i}"), plan.reply_timeout)
                .await?;
            let lifetimes = agent_lifetimes(&timing_log)?;
            if lifetimes.len() != before + 1 {
                bail!(
                    "expected one claude run for turn {i}, the wrapper logged {}",
                    lifetimes.len() - before
                );
            }
            let lifetime = lifetimes[before];
            through.push(round_trip);
            agent_runs.push(lifetime);
            rest.push(round_trip.saturating_sub(lifetime));
            let prompt = format!(
                "[Rocket.Chat #{} | from: s00 | role: owner | to: me] direct question {i}",
                running.world.rooms[0]
            );
            let (claude, session, pf, env, work) = (
                claude.to_path_buf(),
                session.clone(),
                prompt_file.clone(),
                env.clone(),
                work.clone(),
            );
            direct.push(
                tokio::task::spawn_blocking(move || {
                    direct_turn(&claude, &session, pf.as_deref(), &env, &work, &prompt)
                })
                .await??,
            );
        }
        let (g, d, r) = (median(&through), median(&direct), median(&rest));
        let overhead = match (g, d) {
            (Some(g), Some(d)) => Some(ms(g) - ms(d)),
            _ => None,
        };
        Ok::<_, anyhow::Error>(RealAgent {
            turns,
            through_gateway: Summary::of(&through),
            direct: Summary::of(&direct),
            agent_process: Summary::of(&agent_runs),
            gateway_rest: Summary::of(&rest),
            overhead_ms: overhead,
            gateway_share_percent: match (r, g) {
                (Some(r), Some(g)) if !g.is_zero() => Some(ms(r) / ms(g) * 100.0),
                _ => None,
            },
        })
    }
    .await;
    if let Err(e) = stop(&running.gateway).await {
        running.gateway.kill();
        eprintln!("real agent: stop failed: {e:#}");
    }
    outcome
}
