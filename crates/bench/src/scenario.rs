//! The measurements, each against a fresh [`BenchWorld`]:
//!
//! - [`measure_gateway`]: for one gateway, a 20-room session (start → first answer, idle
//!   RSS, `list` ×N, 200 sequential messages, 20 rooms × 20 concurrent senders, RSS after the
//!   load, `stop`), then a 200-room and a 2,000-room session (start, RSS, stop);
//! - [`measure_floor`]: the same sequential round trip through a relay that only relays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::ddp::{DdpClient, RestPoster};
use crate::gateway::{write_config, ConfigSpec, Flavor, GatewayUnderTest, StopTiming};
use crate::procfs;
use crate::stats::{median, ms, Summary};
use crate::tracker::Tracker;
use crate::world::{self, BenchWorld};

/// How big each measurement is.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Sequential messages in one room.
    pub sequential_messages: usize,
    /// Unmeasured messages before them.
    pub warmup_messages: usize,
    /// Rooms of the concurrent load.
    pub concurrent_rooms: usize,
    /// Concurrent senders per room.
    pub senders_per_room: usize,
    /// Messages each sender posts (each waits for its answer before the next).
    pub rounds: usize,
    /// `list` calls.
    pub list_calls: usize,
    /// Room counts of the extra start/RSS sessions (e.g. 200, 2000).
    pub room_sessions: Vec<usize>,
    /// How long to let a daemon settle before reading its idle RSS.
    pub settle: Duration,
    /// How long one message may wait for its answer.
    pub reply_timeout: Duration,
}

impl Plan {
    /// The full plan of issue 6.
    pub fn full() -> Plan {
        Plan {
            sequential_messages: 200,
            warmup_messages: 5,
            concurrent_rooms: 20,
            senders_per_room: 20,
            rounds: 3,
            list_calls: 20,
            room_sessions: vec![200, 2000],
            settle: Duration::from_secs(2),
            reply_timeout: Duration::from_secs(60),
        }
    }

    /// A smoke run: a handful of messages, 2 rooms × 2 senders, no large sessions.
    pub fn quick() -> Plan {
        Plan {
            sequential_messages: 10,
            warmup_messages: 1,
            concurrent_rooms: 2,
            senders_per_room: 2,
            rounds: 2,
            list_calls: 3,
            room_sessions: Vec::new(),
            settle: Duration::from_millis(300),
            reply_timeout: Duration::from_secs(60),
        }
    }
}

/// Where things live for one harness run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The stub agent binary.
    pub stub: PathBuf,
    /// Scratch space (homes, configs, working directories, the turn log).
    pub scratch: PathBuf,
}

/// The concurrent load's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Concurrent {
    /// Messages answered.
    pub answered: usize,
    /// Messages that got no answer (timeout, error notice).
    pub lost: usize,
    /// Busy notices seen.
    pub busy_notices: usize,
    /// Answered messages per second of wall time.
    pub throughput_per_s: f64,
    /// Wall time of the load.
    pub wall_ms: f64,
    /// Post → answer latency.
    pub latency: Option<Summary>,
    /// Daemon CPU per answered message.
    pub cpu_per_message_ms: Option<f64>,
}

/// One start/RSS/stop session with N rooms.
#[derive(Debug, Clone, Serialize)]
pub struct RoomSession {
    /// Watched rooms.
    pub rooms: usize,
    /// `start` launched → first message answered.
    pub start_to_first_answer_ms: f64,
    /// How long the `start` command itself took.
    pub start_command_ms: f64,
    /// Daemon RSS after settling, MiB.
    pub rss_idle_mib: Option<f64>,
    /// Daemon threads after settling.
    pub threads: Option<u64>,
    /// `stop` launched → daemon exited.
    pub stop_ms: f64,
    /// `stop` command wall time.
    pub stop_command_ms: f64,
}

/// Everything measured for one gateway.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayResults {
    /// Which gateway.
    pub flavor: Flavor,
    /// Sequential post → reply latency.
    pub sequential: Option<Summary>,
    /// Daemon CPU per sequential message.
    pub sequential_cpu_per_message_ms: Option<f64>,
    /// The concurrent load.
    pub concurrent: Option<Concurrent>,
    /// RSS after the concurrent load, MiB.
    pub rss_after_load_mib: Option<f64>,
    /// `list` wall time, median.
    pub list_median_ms: Option<f64>,
    /// The room sessions: first the main one, then the large ones.
    pub sessions: Vec<RoomSession>,
    /// What went wrong (a failed part leaves its fields empty).
    pub errors: Vec<String>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Another agent than the stub (the real CLI), with its own HOME (also the gateway's) and
/// working directory.
#[derive(Debug, Clone)]
pub(crate) struct AgentOverride {
    pub command: PathBuf,
    pub env: Vec<(String, String)>,
    pub home: PathBuf,
    pub work: PathBuf,
}

/// A started gateway in its world, with the observer attached.
pub(crate) struct Running {
    pub world: BenchWorld,
    pub gateway: GatewayUnderTest,
    pub tracker: Arc<Tracker>,
    _observer: DdpClient,
    pub pid: u32,
    session: RoomSessionStart,
}

struct RoomSessionStart {
    start_to_first_answer: Duration,
    start_command: Duration,
}

/// The sessions the fake has seen subscribe to rooms, other than `exclude`.
fn subscribed_rooms(
    world: &BenchWorld,
    exclude: &std::collections::HashSet<u64>,
) -> std::collections::HashSet<String> {
    world
        .fake
        .ddp_frames()
        .into_iter()
        .filter(|f| !exclude.contains(&f.session) && f.text.contains("stream-room-messages"))
        .filter_map(|f| {
            let v: serde_json::Value = serde_json::from_str(&f.text).ok()?;
            (v["msg"] == "sub").then(|| v["params"][0].as_str().map(str::to_owned))?
        })
        .collect()
}

/// Starts a world with `rooms` rooms and the gateway on it, and measures start → first answer:
/// from launching `start` until (after the daemon subscribed to every room) a probe message
/// in the last room is answered.
#[allow(clippy::too_many_arguments)] // one call site per scenario; a struct would only rename the list
pub(crate) async fn start_session(
    flavor: Flavor,
    exe: &Path,
    setup: &Setup,
    rooms: usize,
    senders: usize,
    busy_rooms: usize,
    plan: &Plan,
    agent: Option<&AgentOverride>,
) -> Result<Running> {
    let world = BenchWorld::start(rooms, senders, busy_rooms).await?;
    let tag = format!("{}-{rooms}", flavor.label());
    let home = match agent {
        Some(a) => a.home.clone(),
        None => setup.scratch.join(format!("home-{tag}")),
    };
    let work = match agent {
        Some(a) => a.work.clone(),
        None => setup.scratch.join(format!("work-{tag}")),
    };
    std::fs::create_dir_all(&home)?;
    std::fs::create_dir_all(&work)?;
    let config = home.join("config.yaml");
    let owners: Vec<String> = (0..senders.max(1)).map(world::sender_name).collect();
    write_config(
        &config,
        &ConfigSpec {
            url: &world.fake.url(),
            rooms: &world.rooms,
            owners: &owners,
            agent_command: agent.map_or(&setup.stub, |a| &a.command),
            working_directory: &work,
            timeout_secs: 120,
        },
    )?;
    let turn_log = setup.scratch.join(format!("turns-{tag}.jsonl"));
    std::fs::write(&turn_log, "")?;
    let mut env = vec![(
        "ACG_STUB_LOG".to_owned(),
        turn_log.to_string_lossy().into_owned(),
    )];
    env.extend(agent.iter().flat_map(|a| a.env.iter().cloned()));
    let gateway = GatewayUnderTest {
        flavor,
        exe: exe.to_path_buf(),
        home,
        config,
        env,
    };

    // The observer watches the busy rooms and the probe room.
    let (observer, events) =
        DdpClient::connect(&world.fake.ws_url(), world::OBSERVER, world::USER_PASSWORD).await?;
    let mut watched: Vec<String> = world.room_ids.iter().take(busy_rooms).cloned().collect();
    let probe_room = world.room_ids.last().context("no rooms")?.clone();
    if !watched.contains(&probe_room) {
        watched.push(probe_room.clone());
    }
    observer.subscribe(&watched).await?;
    let observer_sessions: std::collections::HashSet<u64> =
        world.fake.ddp_frames().iter().map(|f| f.session).collect();
    let tracker = Tracker::new(world::BOT, agent.is_none().then_some(turn_log));
    tokio::spawn(tracker.clone().run(events));

    let begun = Instant::now();
    let g = gateway.clone();
    let start_command = tokio::task::spawn_blocking(move || g.start()).await??;
    let pid = gateway.pid().context("the gateway wrote no pid file")?;
    // Every room subscribed (the reference does it before `start` returns; a gateway that
    // reports ready earlier must still have them before it can answer everywhere).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if subscribed_rooms(&world, &observer_sessions).len() >= world.room_ids.len() {
            break;
        }
        if Instant::now() > deadline {
            gateway.kill();
            bail!("{} did not subscribe to all {rooms} rooms", flavor.label());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let prober = &world.senders[0];
    let mut answered = false;
    // The stub answers at once; a real agent's first turn also creates its session.
    let probe_timeout = match agent {
        Some(_) => plan.reply_timeout,
        None => Duration::from_secs(10).min(plan.reply_timeout),
    };
    for _ in 0..5 {
        match tracker
            .ask(prober, &probe_room, "probe", probe_timeout)
            .await
        {
            Ok(_) => {
                answered = true;
                break;
            }
            Err(e) => eprintln!("  probe: {e}"),
        }
    }
    let start_to_first_answer = begun.elapsed();
    if !answered {
        let tail = gateway.log_tail(30);
        gateway.kill();
        bail!(
            "{} never answered a probe after start; log tail:\n{tail}",
            flavor.label()
        );
    }
    Ok(Running {
        world,
        gateway,
        tracker,
        _observer: observer,
        pid,
        session: RoomSessionStart {
            start_to_first_answer,
            start_command,
        },
    })
}

async fn settle_and_stop(running: Running, plan: &Plan) -> Result<RoomSession> {
    tokio::time::sleep(plan.settle).await;
    let rss = procfs::rss_bytes(running.pid).map(mib);
    let threads = procfs::threads(running.pid);
    let stop = stop(&running.gateway).await?;
    Ok(RoomSession {
        rooms: running.world.rooms.len(),
        start_to_first_answer_ms: ms(running.session.start_to_first_answer),
        start_command_ms: ms(running.session.start_command),
        rss_idle_mib: rss,
        threads,
        stop_ms: ms(stop.exited),
        stop_command_ms: ms(stop.command),
    })
}

pub(crate) async fn stop(gateway: &GatewayUnderTest) -> Result<StopTiming> {
    let g = gateway.clone();
    tokio::task::spawn_blocking(move || g.stop()).await?
}

/// `n` sequential messages from one sender in one room; returns the latencies.
async fn sequential(
    running: &Running,
    room: usize,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Duration>> {
    let sender = &running.world.senders[0];
    let rid = &running.world.room_ids[room];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(
            running
                .tracker
                .ask(sender, rid, &format!("sequential {i}"), timeout)
                .await?,
        );
    }
    Ok(out)
}

/// `rooms` × `senders` closed-loop senders, `rounds` messages each.
async fn concurrent(running: &Running, plan: &Plan) -> (Vec<Duration>, usize, Duration) {
    let begun = Instant::now();
    let mut tasks = Vec::new();
    for room in 0..plan.concurrent_rooms.min(running.world.room_ids.len()) {
        for s in 0..plan.senders_per_room.min(running.world.senders.len()) {
            let tracker = running.tracker.clone();
            let sender = running.world.senders[s].clone();
            let rid = running.world.room_ids[room].clone();
            let rounds = plan.rounds;
            let timeout = plan.reply_timeout;
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut lost = 0;
                for r in 0..rounds {
                    match tracker
                        .ask(&sender, &rid, &format!("load {s} {r}"), timeout)
                        .await
                    {
                        Ok(d) => latencies.push(d),
                        Err(_) => lost += 1,
                    }
                }
                (latencies, lost)
            }));
        }
    }
    let mut all = Vec::new();
    let mut lost = 0;
    for t in tasks {
        if let Ok((l, n)) = t.await {
            all.extend(l);
            lost += n;
        }
    }
    (all, lost, begun.elapsed())
}

fn cpu(pid: u32) -> Option<Duration> {
    procfs::cpu_time(pid)
}

/// Runs every measurement for one gateway.
pub async fn measure_gateway(
    flavor: Flavor,
    exe: &Path,
    setup: &Setup,
    plan: &Plan,
) -> GatewayResults {
    let mut results = GatewayResults {
        flavor,
        sequential: None,
        sequential_cpu_per_message_ms: None,
        concurrent: None,
        rss_after_load_mib: None,
        list_median_ms: None,
        sessions: Vec::new(),
        errors: Vec::new(),
    };
    let label = flavor.label();

    // The main session: 20 rooms (or the plan's concurrent room count).
    let rooms = plan.concurrent_rooms.max(1);
    eprintln!("[{label}] start with {rooms} rooms");
    match start_session(
        flavor,
        exe,
        setup,
        rooms,
        plan.senders_per_room,
        rooms,
        plan,
        None,
    )
    .await
    {
        Err(e) => results.errors.push(format!("start ({rooms} rooms): {e:#}")),
        Ok(running) => {
            tokio::time::sleep(plan.settle).await;
            let idle_rss = procfs::rss_bytes(running.pid).map(mib);
            let idle_threads = procfs::threads(running.pid);

            eprintln!("[{label}] list x{}", plan.list_calls);
            let mut lists = Vec::new();
            for _ in 0..plan.list_calls {
                let g = running.gateway.clone();
                match tokio::task::spawn_blocking(move || g.list()).await {
                    Ok(Ok(d)) => lists.push(d),
                    Ok(Err(e)) => {
                        results.errors.push(format!("list: {e:#}"));
                        break;
                    }
                    Err(e) => {
                        results.errors.push(format!("list: {e}"));
                        break;
                    }
                }
            }
            results.list_median_ms = median(&lists).map(ms);

            eprintln!(
                "[{label}] {} sequential messages (+{} warm-up)",
                plan.sequential_messages, plan.warmup_messages
            );
            let warm = sequential(&running, 0, plan.warmup_messages, plan.reply_timeout).await;
            if let Err(e) = warm {
                results.errors.push(format!("warm-up: {e:#}"));
            }
            let cpu0 = cpu(running.pid);
            match sequential(&running, 0, plan.sequential_messages, plan.reply_timeout).await {
                Ok(latencies) => {
                    results.sequential = Summary::of(&latencies);
                    if let (Some(a), Some(b)) = (cpu0, cpu(running.pid)) {
                        results.sequential_cpu_per_message_ms =
                            Some(ms(b.saturating_sub(a)) / latencies.len().max(1) as f64);
                    }
                }
                Err(e) => results.errors.push(format!("sequential: {e:#}")),
            }

            eprintln!(
                "[{label}] {} rooms x {} concurrent senders x {} messages",
                plan.concurrent_rooms, plan.senders_per_room, plan.rounds
            );
            let busy0 = running
                .tracker
                .counters
                .busy
                .load(std::sync::atomic::Ordering::Relaxed);
            let cpu0 = cpu(running.pid);
            let (latencies, lost, wall) = concurrent(&running, plan).await;
            let cpu1 = cpu(running.pid);
            let busy = running
                .tracker
                .counters
                .busy
                .load(std::sync::atomic::Ordering::Relaxed)
                - busy0;
            results.concurrent = Some(Concurrent {
                answered: latencies.len(),
                lost,
                busy_notices: busy,
                throughput_per_s: latencies.len() as f64 / wall.as_secs_f64().max(1e-9),
                wall_ms: ms(wall),
                latency: Summary::of(&latencies),
                cpu_per_message_ms: match (cpu0, cpu1) {
                    (Some(a), Some(b)) if !latencies.is_empty() => {
                        Some(ms(b.saturating_sub(a)) / latencies.len() as f64)
                    }
                    _ => None,
                },
            });
            if lost > 0 {
                results
                    .errors
                    .push(format!("concurrent: {lost} message(s) got no answer"));
            }
            tokio::time::sleep(plan.settle).await;
            results.rss_after_load_mib = procfs::rss_bytes(running.pid).map(mib);

            eprintln!("[{label}] stop");
            match stop(&running.gateway).await {
                Ok(stop) => results.sessions.push(RoomSession {
                    rooms,
                    start_to_first_answer_ms: ms(running.session.start_to_first_answer),
                    start_command_ms: ms(running.session.start_command),
                    rss_idle_mib: idle_rss,
                    threads: idle_threads,
                    stop_ms: ms(stop.exited),
                    stop_command_ms: ms(stop.command),
                }),
                Err(e) => {
                    running.gateway.kill();
                    results.errors.push(format!("stop: {e:#}"));
                }
            }
        }
    }

    for &rooms in &plan.room_sessions {
        eprintln!("[{label}] start with {rooms} rooms");
        let outcome = match start_session(flavor, exe, setup, rooms, 1, 0, plan, None).await {
            Ok(running) => settle_and_stop(running, plan).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(session) => results.sessions.push(session),
            Err(e) => results.errors.push(format!("{rooms} rooms: {e:#}")),
        }
    }
    results
}

/// The floor's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// Post → reply latency through the relay.
    pub sequential: Option<Summary>,
    /// Post → reply latency through the relay when it also runs the stub agent for every
    /// message (spawn, prompt on stdin, `stream-json` out, reap) before posting its answer:
    /// what the fake server and the stub agent allow a gateway that runs one agent process
    /// per turn.
    pub with_agent: Option<Summary>,
}

/// Runs the stub agent once the way a gateway's Claude backend does and returns its answer.
async fn run_stub(stub: &Path, prompt: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(stub)
        .args([
            "-p",
            "--resume",
            "floor-session",
            "--output-format",
            "stream-json",
            "--verbose",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .env_remove("ACG_STUB_LOG")
        .spawn()
        .with_context(|| format!("cannot run {}", stub.display()))?;
    let mut stdin = child.stdin.take().context("stub stdin")?;
    stdin.write_all(prompt.as_bytes()).await?;
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("stub stdout")?
        .read_to_string(&mut out)
        .await?;
    child.wait().await?;
    out.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["type"] == "result")
        .and_then(|event| event["result"].as_str().map(str::to_owned))
        .context("the stub printed no result")
}

/// The sequential round trip through a relay that does nothing but relay: a DDP client
/// logged in as the bot that answers every message over REST at once (no agent, no queue,
/// no state). No gateway can be faster against this fake. Then the same with the stub agent
/// run for every message before the answer is posted.
pub async fn measure_floor(plan: &Plan, stub: &Path) -> Result<Floor> {
    let world = BenchWorld::start(1, 1, 1).await?;
    let rid = world.room_ids[0].clone();
    let (observer, events) =
        DdpClient::connect(&world.fake.ws_url(), world::OBSERVER, world::USER_PASSWORD).await?;
    observer.subscribe(std::slice::from_ref(&rid)).await?;
    let (relay, mut inbox) =
        DdpClient::connect(&world.fake.ws_url(), world::BOT, world::BOT_PASSWORD).await?;
    relay.subscribe(std::slice::from_ref(&rid)).await?;
    let poster = RestPoster::login(&world.fake.url(), world::BOT, world::BOT_PASSWORD).await?;
    let run_agent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay_task = tokio::spawn({
        let (run_agent, stub) = (run_agent.clone(), stub.to_path_buf());
        async move {
            while let Some(event) = inbox.recv().await {
                if event.username == world::BOT || event.not_a_post {
                    continue;
                }
                let answer = if run_agent.load(std::sync::atomic::Ordering::Relaxed) {
                    match run_stub(&stub, &event.text).await {
                        Ok(answer) => answer,
                        Err(e) => format!("stub failed: {e:#}"),
                    }
                } else {
                    format!("echo: {}", event.text)
                };
                let _ = poster.post(&event.room_id, &answer).await;
            }
        }
    });
    let tracker = Tracker::new(world::BOT, None);
    tokio::spawn(tracker.clone().run(events));
    let sender = &world.senders[0];
    let mut phases = Vec::new();
    for with_agent in [false, true] {
        run_agent.store(with_agent, std::sync::atomic::Ordering::Relaxed);
        for i in 0..plan.warmup_messages {
            tracker
                .ask(sender, &rid, &format!("warm {i}"), plan.reply_timeout)
                .await?;
        }
        let mut latencies = Vec::new();
        for i in 0..plan.sequential_messages {
            latencies.push(
                tracker
                    .ask(sender, &rid, &format!("floor {i}"), plan.reply_timeout)
                    .await?,
            );
        }
        phases.push(Summary::of(&latencies));
    }
    relay_task.abort();
    drop(relay);
    Ok(Floor {
        sequential: phases[0],
        with_agent: phases[1],
    })
}
