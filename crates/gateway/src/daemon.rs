//! The daemon's life cycle (digest §8.4): `start` (detach and wait for the startup report),
//! the daemon itself (`start --foreground`), `stop` and `restart`.
//!
//! `start` never forks inside an async runtime: it re-executes its own binary as
//! `start --foreground --notify-fd N` in a new session, with stdio on `/dev/null`, and reads
//! the report pipe (see [`crate::notify`]). The daemon:
//! logging → instance lock + pid file → chmod 0600 config → load config → permission handling
//! (the tool gate for OpenCode agents and agents with `permissions.enabled`, the hook server
//! for the Claude ones) → build agents and connectors → `Gateway::start` (starts the agents,
//! e.g. OpenCode sidecars) → control socket → `ok`; then it waits for SIGTERM/SIGINT and shuts
//! down: control socket closed → `Gateway::shutdown()` (stops the agents) → broker stopped
//! (hook settings files removed) → pid file (if still ours) and socket removed.

use std::io::BufReader;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use std::sync::Arc;

use acg_core::approval::ApprovalRegistry;
use acg_core::gateway::{Gateway, GatewayOptions};
use agent_chat_gateway::broker;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::agents::DaemonTarget;
use crate::cli::{resolve_config_path, RestartArgs, StartArgs};
use crate::control::{ControlServer, DaemonFacts};
use crate::logging::{self, Echo};
use crate::notify::{self, StartupReporter};
use crate::runtime::{self, DaemonState, InstanceLock, RuntimeDir};
use crate::wiring;

/// How long `start` waits for the daemon's report before giving up on it.
const START_REPORT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long requests in progress may finish when the control socket closes.
const CONTROL_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// `start`: detaches a daemon (or runs in this process with `--foreground`). Returns the exit code.
pub fn start(args: StartArgs) -> i32 {
    let rt = RuntimeDir::default_location();
    if args.foreground {
        return run_daemon(&rt, args);
    }
    start_detached(&rt, &args)
}

fn start_detached(rt: &RuntimeDir, args: &StartArgs) -> i32 {
    if let Err(err) = rt.ensure() {
        eprintln!("Error: cannot create {}: {err}", rt.root().display());
        return 1;
    }
    match runtime::probe_settled(rt, Duration::from_secs(5)) {
        DaemonState::Running { pid } => {
            // A daemon that is just starting holds the lock a moment before its pid file exists.
            let pid = pid.or_else(|| runtime::wait_for_pid_file(rt, Duration::from_secs(2)));
            println!(
                "Gateway already running (pid={})",
                pid.map_or_else(|| "?".to_string(), |p| p.to_string())
            );
            return 1;
        }
        DaemonState::NotRunning {
            stale_pid: Some(pid),
        } => {
            // The daemon cleans up too (under its lock); doing it here keeps `status` honest.
            if runtime::remove_pid_file_if(&rt.pid_file(), pid) {
                eprintln!("Removed stale PID file (pid={pid} is not running)");
            }
        }
        DaemonState::NotRunning { stale_pid: None } => {}
    }

    let config = resolve_config_path(args.config.clone());
    let (read_end, write_end) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(pair) => pair,
        Err(err) => {
            eprintln!("Error: cannot create the startup pipe: {err}");
            return 1;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => {
            eprintln!("Error: cannot find my own executable: {err}");
            return 1;
        }
    };
    let notify_fd = write_end.as_raw_fd();
    let mut command = Command::new(exe);
    command
        .arg("start")
        .arg("--foreground")
        .arg("--notify-fd")
        .arg(notify_fd.to_string())
        .arg("--config")
        .arg(&config)
        .arg("--log-format")
        .arg(args.log_format.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (setsid, fcntl) run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Let the write end survive exec; everything else stays close-on-exec.
            if libc::fcntl(notify_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            eprintln!("Error: cannot launch the daemon: {err}");
            return 1;
        }
    };
    // Only the daemon may hold the write end now, so end of file means it finished or died.
    drop(write_end);
    let outcome = read_report(read_end);
    // The daemon is not our business any more; it runs in its own session.
    drop(child);

    let log = rt.log_file();
    match outcome {
        Some(outcome) if outcome.ok => {
            for line in &outcome.info {
                println!("{line}");
            }
            if outcome.errors.is_empty() {
                println!("Gateway started successfully.");
            } else {
                for line in &outcome.errors {
                    println!("Warning: {line}");
                }
                println!("Gateway started (degraded).");
            }
            0
        }
        Some(outcome) => {
            for line in &outcome.info {
                println!("{line}");
            }
            for line in &outcome.errors {
                println!("Error: {line}");
            }
            println!("Gateway failed to start — check logs at {}", log.display());
            1
        }
        None => {
            println!(
                "Gateway did not report its start within {} s — check logs at {}",
                START_REPORT_TIMEOUT.as_secs(),
                log.display()
            );
            1
        }
    }
}

/// Reads the daemon's report on a helper thread so a hung daemon cannot hang `start`.
fn read_report(read_end: OwnedFd) -> Option<notify::StartupOutcome> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let outcome = notify::read_outcome(BufReader::new(std::fs::File::from(read_end)));
        let _ = tx.send(outcome);
    });
    rx.recv_timeout(START_REPORT_TIMEOUT).ok()
}

/// The daemon itself. Returns the exit code.
fn run_daemon(rt: &RuntimeDir, args: StartArgs) -> i32 {
    let mut reporter = match args.notify_fd {
        Some(fd) => match StartupReporter::from_fd(fd) {
            Ok(r) => r,
            Err(err) => {
                eprintln!("Error: bad --notify-fd {fd}: {err}");
                return 1;
            }
        },
        None => StartupReporter::none(),
    };
    // An interactive `--foreground` echoes (and reports) to the terminal too.
    let interactive = args.notify_fd.is_none();
    let fail = |reporter: &mut StartupReporter, msg: &str| {
        reporter.error(msg);
        if interactive {
            eprintln!("Error: {msg}");
        }
        1
    };

    if let Err(err) = rt.ensure() {
        return fail(
            &mut reporter,
            &format!("cannot create {}: {err}", rt.root().display()),
        );
    }
    let echo = if interactive {
        Echo::Stderr
    } else {
        Echo::FileOnly
    };
    match logging::init(&rt.log_file(), args.log_format, echo) {
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Ok(None) => {}
        Err(err) => {
            return fail(
                &mut reporter,
                &format!("cannot open log file {}: {err}", rt.log_file().display()),
            )
        }
    }

    let lock = match InstanceLock::acquire(rt, Duration::from_secs(2)) {
        Ok(lock) => lock,
        Err(err) => {
            tracing::error!("{err}");
            return fail(&mut reporter, &err.to_string());
        }
    };
    let pid = std::process::id();
    // Under the lock any pid file is a leftover of a dead daemon.
    if let Some(stale) = runtime::read_pid(&rt.pid_file()).filter(|p| *p != pid) {
        tracing::warn!(stale_pid = stale, "replacing stale PID file");
    }
    if let Err(err) = runtime::write_pid_file(&rt.pid_file(), pid) {
        tracing::error!(error = %err, "cannot write PID file");
        return fail(&mut reporter, &format!("cannot write PID file: {err}"));
    }
    let pid_guard = PidFileGuard {
        path: rt.pid_file(),
        pid,
    };
    let started = SystemTime::now();
    tracing::info!(pid, version = env!("CARGO_PKG_VERSION"), "gateway starting");

    // Every thread allocates from the one main malloc arena: the blocking pool's threads would
    // otherwise each get an arena of their own (with its own free lists and fragmentation)
    // for a few file writes; nothing here contends for the allocator.
    crate::residency::single_malloc_arena();

    // One thread runs the whole daemon: its work is waiting on sockets and agent processes,
    // a few microseconds of CPU per message, which a second worker only turns into
    // cross-thread wake-ups, a second malloc arena and more resident memory (see
    // docs/performance.md). File writes and other blocking calls go to the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // File writes of a start with many watchers queue here instead of each getting a
        // thread (and a malloc arena) of its own.
        .max_blocking_threads(8)
        .thread_name("acg-worker")
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(
                &mut reporter,
                &format!("cannot start the async runtime: {err}"),
            )
        }
    };
    let config_path = resolve_config_path(args.config.clone());
    let mut startup = Startup {
        rt,
        config_path: &config_path,
        reporter,
        started,
        interactive,
    };
    let code = runtime.block_on(serve(&mut startup));
    // Agent processes are killed by the gateway's shutdown; don't wait on stray blocking work.
    runtime.shutdown_timeout(Duration::from_secs(2));
    tracing::info!(exit_code = code, "daemon exits");
    // Clean up before the report pipe closes: `start` reads its end of file as "done", and a
    // failed start must not leave a pid file or lock behind for the next command to trip on.
    drop(pid_guard);
    drop(lock);
    drop(startup);
    code
}

/// What the async part of the daemon starts from.
struct Startup<'a> {
    rt: &'a RuntimeDir,
    config_path: &'a Path,
    reporter: StartupReporter,
    started: SystemTime,
    interactive: bool,
}

impl Startup<'_> {
    /// Reports a problem to `start` (and the terminal of an interactive run).
    fn error(&mut self, msg: &str) {
        self.reporter.error(msg);
        if self.interactive {
            eprintln!("Error: {msg}");
        }
    }

    /// chmod 0600 (warn on failure), then load: every config error becomes one `error:` line.
    fn load_config(&mut self) -> Option<acg_config::Config> {
        let path = self.config_path;
        if path.exists() {
            if let Err(err) = acg_config::restrict_permissions(path) {
                tracing::warn!(config = %path.display(), error = %err,
                    "could not restrict config file permissions to 0600");
            }
        }
        match acg_config::load_with_warnings(path) {
            Ok(acg_config::Loaded { config, warnings }) => {
                for warning in &warnings {
                    tracing::warn!("config: {warning}");
                }
                tracing::info!(config = %path.display(),
                    connectors = config.connectors.len(), agents = config.agents.len(),
                    watchers = config.watchers.len(), "config loaded");
                Some(config)
            }
            Err(errors) => {
                tracing::error!(config = %path.display(), "config has errors:\n{errors}");
                for issue in &errors.errors {
                    self.error(&issue.render());
                }
                None
            }
        }
    }
}

/// Removes the pid file on exit, if it still names this process.
struct PidFileGuard {
    path: std::path::PathBuf,
    pid: u32,
}

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        runtime::remove_pid_file_if(&self.path, self.pid);
    }
}

/// The async part of the daemon: load the config, start everything, serve until a signal,
/// shut down.
async fn serve(startup: &mut Startup<'_>) -> i32 {
    // Signals first: a SIGTERM during start-up must lead to a clean shutdown, not a dead
    // process with a pid file left behind.
    let shutdown = CancellationToken::new();
    if let Err(err) = watch_signals(shutdown.clone()) {
        startup.error(&format!("cannot install signal handlers: {err}"));
        return 1;
    }
    let Some(config) = startup.load_config() else {
        return 1;
    };
    let rt = startup.rt;
    // The broker comes first: agents with permissions get its hook in their settings.
    let approvals = Arc::new(ApprovalRegistry::new());
    let permissions = broker::start_permissions(&config, rt.root(), approvals.clone()).await;
    for line in &permissions.errors {
        tracing::error!("{line}");
        startup.reporter.error(line);
    }
    let wired = wiring::wire(&config, rt, &permissions);
    for line in &wired.errors {
        tracing::error!("{line}");
        startup.reporter.error(line);
    }
    let options = GatewayOptions {
        runtime_dir: rt.root().to_path_buf(),
        drain_timeout: config.gateway.drain_timeout,
    };
    let (gateway, report) = tokio::select! {
        started = Gateway::start_with_approvals(options, wired.agents, wired.connectors, approvals) => started,
        // Dropping the half-done start kills the agent processes it launched.
        _ = shutdown.cancelled() => {
            startup.error("start interrupted by a signal");
            permissions.stop().await;
            return 1;
        }
    };
    for line in &report.info {
        tracing::info!("{line}");
        startup.reporter.info(line);
    }
    for line in &report.errors {
        tracing::error!("{line}");
        startup.reporter.error(line);
    }

    let facts = DaemonFacts {
        pid: std::process::id(),
        started: startup.started,
    };
    let target = Arc::new(DaemonTarget::new(gateway.clone(), wired.agent_book));
    let server = match ControlServer::bind(&rt.socket(), target, facts).await {
        Ok(server) => server,
        Err(err) => {
            tracing::error!("{err}");
            startup.error(&err.to_string());
            gateway.shutdown().await;
            permissions.stop().await;
            return 1;
        }
    };
    let degraded =
        !(permissions.errors.is_empty() && wired.errors.is_empty() && report.errors.is_empty());
    tracing::info!(
        socket = %rt.socket().display(),
        degraded,
        "gateway started"
    );
    startup.reporter.ok();
    // Start-up code will not run again: let only what keeps running stay resident.
    crate::residency::release_startup_pages();
    tokio::spawn(crate::residency::trim_heap_when_grown());
    if startup.interactive {
        eprintln!(
            "{}",
            if degraded {
                "Gateway started (degraded)."
            } else {
                "Gateway started successfully."
            }
        );
    }

    shutdown.cancelled().await;
    let begun = Instant::now();
    tracing::info!("shutting down");
    server.close(CONTROL_CLOSE_GRACE).await;
    gateway.shutdown().await;
    // After the gateway: turns still draining may call the hook until their agents are gone.
    permissions.stop().await;
    tracing::info!(
        elapsed_ms = begun.elapsed().as_millis() as u64,
        "shutdown complete"
    );
    0
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
fn watch_signals(shutdown: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received");
        shutdown.cancel();
    });
    Ok(())
}

/// `stop`: SIGTERM, wait up to `timeout_secs`, then SIGKILL. Returns the exit code.
pub fn stop(rt: &RuntimeDir, timeout_secs: u64) -> i32 {
    let pid = match runtime::probe(rt) {
        DaemonState::NotRunning { stale_pid } => {
            if let Some(pid) = stale_pid {
                runtime::remove_pid_file_if(&rt.pid_file(), pid);
            }
            println!("Gateway is not running");
            return 0;
        }
        DaemonState::Running { pid } => {
            match pid.or_else(|| runtime::wait_for_pid_file(rt, Duration::from_secs(2))) {
                Some(pid) => pid,
                None => {
                    eprintln!("Error: the gateway is still starting (no PID file yet); try again");
                    return 1;
                }
            }
        }
    };
    println!("Stopping gateway (pid={pid})...");
    let Ok(raw) = i32::try_from(pid) else {
        eprintln!("Error: PID file holds an impossible pid {pid}");
        return 1;
    };
    let target = Pid::from_raw(raw);
    if let Err(err) = kill(target, Signal::SIGTERM) {
        if err != nix::errno::Errno::ESRCH {
            eprintln!("Error: cannot signal pid {pid}: {err}");
            return 1;
        }
    }
    let gone = |rt: &RuntimeDir| {
        !runtime::process_alive(pid) && !matches!(runtime::probe(rt), DaemonState::Running { .. })
    };
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    while !gone(rt) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(25));
    }
    if !gone(rt) {
        println!("Force killing...");
        let _ = kill(target, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while runtime::process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A killed daemon cannot clean up after itself.
        if !runtime::process_alive(pid) {
            let _ = std::fs::remove_file(rt.socket());
        }
    }
    runtime::remove_pid_file_if(&rt.pid_file(), pid);
    if runtime::process_alive(pid) {
        eprintln!("Error: pid {pid} is still alive");
        return 1;
    }
    println!("Gateway stopped");
    0
}

/// `restart`: stop (if running), then start detached.
pub fn restart(args: RestartArgs) -> i32 {
    let rt = RuntimeDir::default_location();
    let code = stop(&rt, args.timeout);
    if code != 0 {
        return code;
    }
    start_detached(
        &rt,
        &StartArgs {
            config: args.config,
            foreground: false,
            log_format: args.log_format,
            notify_fd: None,
        },
    )
}
