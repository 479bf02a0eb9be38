//! The command line: argument definitions (clap derive) and the commands that only talk to a
//! running daemon through its control socket (`status`, `list`, `pause`, `resume`, `reset`,
//! `send`, `inject`) or read local files (`config validate`, `config schema`, `policy check`,
//! `audit`). Daemon life cycle commands (`start`, `stop`, `restart`) live in [`crate::daemon`].
//!
//! Nothing here starts an async runtime: client commands use a blocking socket, so a CLI call
//! costs little more than process start-up.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::control::{self, CLIENT_TIMEOUT, RESET_TIMEOUT};
use crate::logging::LogFormat;
use crate::runtime::{self, DaemonState, RuntimeDir};

/// The environment variable naming the default config file.
pub const CONFIG_ENV: &str = "ACG_CONFIG";

/// agent-chat-gateway: talk to your AI coding agents from team chat.
#[derive(Debug, Parser)]
#[command(name = "agent-chat-gateway", version, arg_required_else_help = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// True for `start --foreground`: this process becomes the daemon.
    pub fn runs_daemon(&self) -> bool {
        matches!(&self.command, Command::Start(args) if args.foreground)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway daemon.
    Start(StartArgs),
    /// Stop the running daemon (SIGTERM, then SIGKILL after a timeout).
    Stop(StopArgs),
    /// Stop the daemon (if running), then start it again.
    Restart(RestartArgs),
    /// Show whether the daemon runs, its uptime, connectors and watchers.
    Status,
    /// List connectors with their link state, and watchers with their sessions.
    List {
        /// Only this connector's watchers.
        #[arg(long)]
        connector: Option<String>,
    },
    /// Pause a watcher: it stops taking messages, its session is kept.
    Pause(WatcherArgs),
    /// Resume a paused watcher.
    Resume(WatcherArgs),
    /// Give a watcher a fresh agent session (a pinned session id is kept).
    Reset(WatcherArgs),
    /// Post a message and/or a file to a room directly, bypassing the agent.
    Send(SendArgs),
    /// Deliver a message to a watcher as if a user had posted it in its room (drives
    /// `type: script` watchers headlessly).
    Inject(InjectArgs),
    /// Check or describe the config file.
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Config {
        /// What to do with the config.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Ask the tool policy about a tool call (no daemon needed).
    #[command(subcommand_required = true, arg_required_else_help = true)]
    Policy {
        /// What to ask.
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Show the audit trail of tool-call decisions (`<runtime>/audit.jsonl`).
    Audit(AuditArgs),
}

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Explain what the gateway would decide about one tool call: the rule (or the missing
    /// rule) for every param, then the decision.
    Check(PolicyCheckArgs),
}

/// The role a checked call is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// A configured owner.
    Owner,
    /// Anyone else.
    Guest,
}

/// `policy check` options.
#[derive(Debug, Args, Clone)]
pub struct PolicyCheckArgs {
    /// The agent (key under `agents:`).
    #[arg(long)]
    pub agent: String,
    /// Whose allow-list applies.
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The tool name (`Bash`, `Write`, …).
    #[arg(long)]
    pub tool: String,
    /// The tool input as a JSON object, e.g. '{"command": "ls -la"}'.
    #[arg(long, value_name = "JSON")]
    pub input: String,
    /// The directory relative paths are resolved against [default: the agent's working_directory].
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Config file [default: $ACG_CONFIG, else ~/.agent-chat-gateway/config.yaml].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// `audit` options.
#[derive(Debug, Args, Clone)]
pub struct AuditArgs {
    /// Only decisions at or after this time: RFC 3339 (`2026-05-10T08:00:00Z`) or an age
    /// (`90s`, `30m`, `1h`, `2d`, `1w`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only decisions of this watcher.
    #[arg(long)]
    pub watcher: Option<String>,
    /// Print the records as stored (one JSON object per line).
    #[arg(long)]
    pub json: bool,
}

/// `start` options.
#[derive(Debug, Args, Clone)]
pub struct StartArgs {
    /// Config file [default: $ACG_CONFIG, else ~/.agent-chat-gateway/config.yaml].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Run in this process instead of detaching a daemon.
    #[arg(long)]
    pub foreground: bool,
    /// Log line format in gateway.log.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Internal: the pipe on which a detached daemon reports its start to `start`.
    #[arg(long, hide = true, value_name = "FD")]
    pub notify_fd: Option<i32>,
}

/// `stop` options.
#[derive(Debug, Args, Clone)]
pub struct StopArgs {
    /// Seconds to wait for a clean exit before SIGKILL.
    #[arg(
        long,
        value_name = "SECS",
        env = "ACG_STOP_TIMEOUT",
        default_value_t = 90
    )]
    pub timeout: u64,
}

/// `restart` options.
#[derive(Debug, Args, Clone)]
pub struct RestartArgs {
    /// Config file for the new daemon.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log line format in gateway.log.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Seconds to wait for the old daemon's clean exit before SIGKILL.
    #[arg(
        long,
        value_name = "SECS",
        env = "ACG_STOP_TIMEOUT",
        default_value_t = 90
    )]
    pub timeout: u64,
}

/// A watcher, optionally qualified by its connector.
#[derive(Debug, Args, Clone)]
pub struct WatcherArgs {
    /// The watcher's name (see `list`).
    pub watcher: String,
    /// The watcher's connector (needed when several are configured).
    #[arg(long)]
    pub connector: Option<String>,
}

/// `send` options.
#[derive(Debug, Args, Clone)]
pub struct SendArgs {
    /// The room (as in the config: `general`, `@alice`, …).
    pub room: String,
    /// The message; words are joined with spaces (put `--` before words starting with `-`). `-` alone reads it from stdin.
    #[arg(value_name = "MESSAGE")]
    pub message: Vec<String>,
    /// Read the message from this file.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Upload this file with the message.
    #[arg(long, value_name = "PATH")]
    pub attach: Option<PathBuf>,
    /// The connector (needed when several are configured).
    #[arg(long)]
    pub connector: Option<String>,
}

/// `inject` options.
#[derive(Debug, Args, Clone)]
pub struct InjectArgs {
    /// The watcher that receives the message.
    pub watcher: String,
    /// The message; words are joined with spaces (put `--` before words starting with `-`). `-` alone reads it from stdin.
    #[arg(value_name = "MESSAGE", required = true)]
    pub message: Vec<String>,
    /// The sender's username.
    #[arg(long, value_name = "USER", default_value = "script")]
    pub from: String,
    /// Send as a guest instead of an owner.
    #[arg(long)]
    pub guest: bool,
    /// The watcher's connector.
    #[arg(long)]
    pub connector: Option<String>,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the config, report every problem; exit 1 on errors.
    Validate {
        /// Config file [default: $ACG_CONFIG, else ~/.agent-chat-gateway/config.yaml].
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Also flag values that restate defaults or their template.
        #[arg(long)]
        lint: bool,
    },
    /// Print the JSON schema of config.yaml.
    Schema,
}

/// Parses the command line. No subcommand prints the help and exits 1 (like the reference);
/// other usage errors exit 2, `--help`/`--version` exit 0.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let missing =
                err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            let _ = err.print();
            std::process::exit(if missing { 1 } else { err.exit_code() });
        }
    }
}

/// Runs a parsed command and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Start(args) => crate::daemon::start(args),
        Command::Stop(args) => crate::daemon::stop(&RuntimeDir::default_location(), args.timeout),
        Command::Restart(args) => crate::daemon::restart(args),
        Command::Status => status(&RuntimeDir::default_location()),
        Command::List { connector } => list(&RuntimeDir::default_location(), connector),
        Command::Pause(args) => watcher_command(&RuntimeDir::default_location(), "pause", args),
        Command::Resume(args) => watcher_command(&RuntimeDir::default_location(), "resume", args),
        Command::Reset(args) => watcher_command(&RuntimeDir::default_location(), "reset", args),
        Command::Send(args) => send(&RuntimeDir::default_location(), args, &mut std::io::stdin()),
        Command::Inject(args) => {
            inject(&RuntimeDir::default_location(), args, &mut std::io::stdin())
        }
        Command::Config { command } => match command {
            ConfigCommand::Validate { config, lint } => config_validate(config, lint),
            ConfigCommand::Schema => config_schema(),
        },
        Command::Policy { command } => match command {
            PolicyCommand::Check(args) => policy_check(args),
        },
        Command::Audit(args) => audit(&RuntimeDir::default_location(), args),
    }
}

/// The config file to use: `--config` > `$ACG_CONFIG` > `<runtime>/config.yaml`, absolute.
pub fn resolve_config_path(flag: Option<PathBuf>) -> PathBuf {
    let path = flag
        .or_else(|| {
            std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(acg_config::default_config_path);
    std::path::absolute(&path).unwrap_or(path)
}

/// A user-facing failure: printed as `Error: <msg>`, exit 1.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure(err.to_string())
    }
}

fn report(result: Result<(), Failure>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(Failure(msg)) => {
            eprintln!("Error: {msg}");
            1
        }
    }
}

/// Checks that a daemon runs and its socket exists, then sends `request` and returns the
/// answer's payload (an `ok:false` answer becomes the failure).
fn ask_daemon(rt: &RuntimeDir, request: Value, timeout: Duration) -> Result<Value, Failure> {
    if let DaemonState::NotRunning { .. } = runtime::probe(rt) {
        return Err(Failure(
            "Gateway is not running. Start it with: agent-chat-gateway start".into(),
        ));
    }
    let socket = rt.socket();
    if !socket.exists() {
        return Err(Failure(
            "Control socket not found. The daemon may still be starting.".into(),
        ));
    }
    let answer = control::call(&socket, &request, timeout)?;
    if answer.get("ok") == Some(&Value::Bool(true)) {
        Ok(answer)
    } else {
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the gateway refused the request without saying why");
        Err(Failure(error.to_string()))
    }
}

fn status(rt: &RuntimeDir) -> i32 {
    let pid = match runtime::probe(rt) {
        DaemonState::NotRunning { .. } => {
            println!("Gateway:  not running");
            return 0;
        }
        DaemonState::Running { pid } => pid,
    };
    let answer = if rt.socket().exists() {
        control::call(&rt.socket(), &json!({"cmd": "status"}), CLIENT_TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                if a["ok"] == true {
                    Ok(a["data"].clone())
                } else {
                    Err(a["error"].as_str().unwrap_or("refused").to_string())
                }
            })
    } else {
        Err("control socket not found (the daemon may still be starting)".to_string())
    };
    let pid_text = pid.map_or_else(|| "?".to_string(), |p| p.to_string());
    println!("Gateway:  running (pid={pid_text})");
    let uptime = match &answer {
        Ok(data) => data["uptime_secs"].as_u64().map(Duration::from_secs),
        Err(_) => runtime::pid_file_mtime(&rt.pid_file())
            .and_then(|t| SystemTime::now().duration_since(t).ok()),
    };
    if let Some(uptime) = uptime {
        println!("Uptime:   {}", runtime::format_duration(uptime));
    }
    println!("PID file: {}", rt.pid_file().display());
    println!("Log file: {}", rt.log_file().display());
    match answer {
        Ok(data) => {
            println!("Watchers: {}", data["watchers"].as_u64().unwrap_or(0));
            let connectors = data["connectors"].as_array().cloned().unwrap_or_default();
            if !connectors.is_empty() {
                println!("Connectors:");
            }
            for c in connectors {
                println!(
                    "  {} ({}): {}",
                    c["name"].as_str().unwrap_or("?"),
                    c["connector_type"].as_str().unwrap_or("?"),
                    describe_link(&c["state"])
                );
            }
            let agents = data["agents"].as_array().cloned().unwrap_or_default();
            if !agents.is_empty() {
                println!("Agents:");
            }
            for a in &agents {
                println!(
                    "  {} ({}): {}",
                    a["name"].as_str().unwrap_or("?"),
                    a["type"].as_str().unwrap_or("?"),
                    describe_agent(a)
                );
            }
            let pending = data["pending_approvals"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !pending.is_empty() {
                println!("Pending approvals: {}", pending.len());
                for p in &pending {
                    println!("  {}", pending_line(p));
                }
            }
        }
        Err(err) => println!("Watchers: unknown ({err})"),
    }
    0
}

/// `a3k9 Bash in desk (helper), asked by alice 12s ago, times out after 300s`.
fn pending_line(p: &Value) -> String {
    let text = |key: &str| p[key].as_str().unwrap_or("?").to_string();
    format!(
        "{} {} in {} ({}), asked by {} {}s ago, times out after {}s",
        text("id"),
        text("tool"),
        text("room"),
        text("watcher"),
        text("requester"),
        p["age_secs"].as_u64().unwrap_or(0),
        p["timeout_secs"].as_u64().unwrap_or(0)
    )
}

/// `connected`, `reconnecting for 1h 2m 3s (last error: …)` or `disconnected`.
fn describe_link(state: &Value) -> String {
    match state["state"].as_str() {
        Some("reconnecting") => {
            let now_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let since = state["since_ms"].as_i64().unwrap_or(now_ms);
            let down = Duration::from_millis((now_ms - since).max(0) as u64);
            let mut text = format!("reconnecting for {}", runtime::format_duration(down));
            if let Some(err) = state["last_error"].as_str() {
                text.push_str(&format!(" (last error: {err})"));
            }
            text
        }
        Some(other) => other.to_string(),
        None => "unknown".to_string(),
    }
}

fn list(rt: &RuntimeDir, connector: Option<String>) -> i32 {
    report((|| {
        let mut request = json!({"cmd": "list"});
        if let Some(c) = connector {
            request["connector"] = json!(c);
        }
        let answer = ask_daemon(rt, request, CLIENT_TIMEOUT)?;
        for line in list_lines(&answer) {
            println!("{line}");
        }
        Ok(())
    })())
}

/// The `list` output: per connector a `Connector <name> (<type>): <link state>` line (our
/// addition) followed by its watchers' lines in the reference format; watchers of connectors
/// the daemon did not report come last; `No configured watchers` when there are none.
fn list_lines(answer: &Value) -> Vec<String> {
    let watchers = answer["data"].as_array().cloned().unwrap_or_default();
    let connectors = answer["connectors"].as_array().cloned().unwrap_or_default();
    let mut lines = Vec::new();
    let mut shown = vec![false; watchers.len()];
    for c in &connectors {
        let name = c["name"].as_str().unwrap_or("?");
        lines.push(format!(
            "Connector {name} ({}): {}",
            c["connector_type"].as_str().unwrap_or("?"),
            describe_link(&c["state"])
        ));
        for (i, w) in watchers.iter().enumerate() {
            if !shown[i] && w["connector"].as_str() == Some(name) {
                lines.push(list_line(w));
                shown[i] = true;
            }
        }
    }
    for (i, w) in watchers.iter().enumerate() {
        if !shown[i] {
            lines.push(list_line(w));
        }
    }
    if watchers.is_empty() {
        lines.push("No configured watchers".to_string());
    }
    // Our addition, last: agents with something to say (e.g. an OpenCode sidecar's state).
    for a in answer["agents"].as_array().into_iter().flatten() {
        if a["health"].is_string() || a["state"] != "ready" {
            lines.push(format!(
                "Agent {} ({}): {}",
                a["name"].as_str().unwrap_or("?"),
                a["type"].as_str().unwrap_or("?"),
                describe_agent(a)
            ));
        }
    }
    lines
}

/// An agent's state in a few words: its health line (`opencode server running (pid …)`,
/// `failed to start: …`), `ready`, or `not running (<why>)`.
fn describe_agent(a: &Value) -> String {
    let health = a["health"].as_str();
    match a["state"].as_str() {
        Some("ready") => health.unwrap_or("ready").to_string(),
        Some("failed") => health.unwrap_or("failed to start").to_string(),
        _ => format!("not running ({})", health.unwrap_or("unavailable")),
    }
}

/// `<watcher>: (<connector>) <room> [<agent>] session=<id> [PAUSED|active|waiting|inactive]`
/// (`waiting`: its connector could not reach the server yet; it starts once it can).
fn list_line(w: &Value) -> String {
    let text = |key: &str| w[key].as_str().unwrap_or("").to_string();
    let state = if w["paused"] == true {
        "PAUSED"
    } else if w["active"] == true {
        "active"
    } else if w["waiting"] == true {
        "waiting"
    } else {
        "inactive"
    };
    format!(
        "{}: ({}) {} [{}] session={} [{}]",
        text("watcher_name"),
        text("connector"),
        text("room_name"),
        text("agent_name"),
        text("session_id"),
        state
    )
}

fn watcher_command(rt: &RuntimeDir, cmd: &str, args: WatcherArgs) -> i32 {
    report((|| {
        let mut request = json!({"cmd": cmd, "watcher_name": args.watcher});
        if let Some(c) = &args.connector {
            request["connector"] = json!(c);
        }
        let timeout = if cmd == "reset" {
            RESET_TIMEOUT
        } else {
            CLIENT_TIMEOUT
        };
        ask_daemon(rt, request, timeout)?;
        let done = match cmd {
            "pause" => "paused",
            "resume" => "resumed",
            _ => "reset",
        };
        println!("Watcher '{}' {done}", args.watcher);
        Ok(())
    })())
}

/// Turns message words (or `-` for stdin) into the message text; `None` if no words.
fn message_text(words: &[String], stdin: &mut dyn Read) -> Result<Option<String>, Failure> {
    match words {
        [] => Ok(None),
        [dash] if dash == "-" => {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|e| Failure(format!("cannot read the message from stdin: {e}")))?;
            Ok(Some(text))
        }
        words => Ok(Some(words.join(" "))),
    }
}

/// Checks `send`'s arguments and builds its request (no daemon needed).
fn send_request(args: &SendArgs, stdin: &mut dyn Read) -> Result<Value, Failure> {
    if !args.message.is_empty() && args.file.is_some() {
        return Err(Failure(
            "Give the message inline or with --file, not both.".into(),
        ));
    }
    if args.message.is_empty() && args.file.is_none() && args.attach.is_none() {
        return Err(Failure(
            "Nothing to send: give a message, --file PATH or --attach PATH.".into(),
        ));
    }
    let mut text = message_text(&args.message, stdin)?;
    if let Some(file) = &args.file {
        let body = std::fs::read_to_string(file)
            .map_err(|e| Failure(format!("Cannot read --file {}: {e}", file.display())))?;
        text = Some(body);
    }
    if let Some(t) = &text {
        if t.trim().is_empty() {
            return Err(Failure("The message is empty.".into()));
        }
    }
    let mut request = json!({"cmd": "send", "room": args.room});
    if let Some(t) = text {
        request["text"] = json!(t.trim_end_matches('\n'));
    }
    if let Some(attach) = &args.attach {
        request["attachment_path"] = json!(checked_attachment(attach)?);
    }
    if let Some(c) = &args.connector {
        request["connector"] = json!(c);
    }
    Ok(request)
}

/// Makes the path absolute and checks it is a readable regular file.
fn checked_attachment(path: &Path) -> Result<String, Failure> {
    let abs = std::path::absolute(path)
        .map_err(|e| Failure(format!("Bad attachment path {}: {e}", path.display())))?;
    let meta = std::fs::metadata(&abs)
        .map_err(|e| Failure(format!("Attachment not found: {} ({e})", abs.display())))?;
    if !meta.is_file() {
        return Err(Failure(format!(
            "Attachment is not a regular file: {}",
            abs.display()
        )));
    }
    std::fs::File::open(&abs).map_err(|e| {
        Failure(format!(
            "Attachment is not readable: {} ({e})",
            abs.display()
        ))
    })?;
    abs.into_os_string().into_string().map_err(|p| {
        Failure(format!(
            "Attachment path is not UTF-8: {}",
            Path::new(&p).display()
        ))
    })
}

fn send(rt: &RuntimeDir, args: SendArgs, stdin: &mut dyn Read) -> i32 {
    report((|| {
        let request = send_request(&args, stdin)?;
        ask_daemon(rt, request, CLIENT_TIMEOUT)?;
        println!("Sent.");
        Ok(())
    })())
}

/// Builds `inject`'s request (no daemon needed).
fn inject_request(args: &InjectArgs, stdin: &mut dyn Read) -> Result<Value, Failure> {
    let text = message_text(&args.message, stdin)?.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(Failure("The message is empty.".into()));
    }
    let mut request = json!({
        "cmd": "inject",
        "watcher_name": args.watcher,
        "text": text.trim_end_matches('\n'),
        "sender": args.from,
        "role": if args.guest { "guest" } else { "owner" },
    });
    if let Some(c) = &args.connector {
        request["connector"] = json!(c);
    }
    Ok(request)
}

fn inject(rt: &RuntimeDir, args: InjectArgs, stdin: &mut dyn Read) -> i32 {
    report((|| {
        let request = inject_request(&args, stdin)?;
        ask_daemon(rt, request, CLIENT_TIMEOUT)?;
        println!("Injected.");
        Ok(())
    })())
}

fn config_validate(config: Option<PathBuf>, lint: bool) -> i32 {
    let path = resolve_config_path(config);
    let rt = RuntimeDir::default_location();
    let report = acg_config::validate(&path, lint, Some(rt.root()));
    // Like 0.5.x: a failed validation's summary and errors go to stderr.
    if report.is_valid() {
        println!("{}", report.render_summary());
    } else {
        eprintln!("{}", report.render_summary());
    }
    let details = report.render_details();
    if !details.is_empty() {
        println!("{details}");
    }
    report.exit_code()
}

fn config_schema() -> i32 {
    let schema = acg_config::json_schema();
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(err) => {
            eprintln!("Error: cannot render the schema: {err}");
            1
        }
    }
}

fn policy_check(args: PolicyCheckArgs) -> i32 {
    report((|| {
        let path = resolve_config_path(args.config.clone());
        let config = acg_config::load(&path).map_err(|errors| {
            Failure(format!(
                "{} has errors:\n{}",
                path.display(),
                errors.render()
            ))
        })?;
        let input = acg_policy::ToolInput::parse(&args.input)
            .map_err(|e| Failure(format!("--input is not valid JSON: {e}")))?;
        if !matches!(input, acg_policy::ToolInput::Object(_)) {
            return Err(Failure(
                "--input must be a JSON object, e.g. '{\"command\": \"ls\"}'".into(),
            ));
        }
        let cwd = match &args.cwd {
            Some(dir) => std::path::absolute(dir)
                .map_err(|e| Failure(format!("Bad --cwd {}: {e}", dir.display())))?,
            None => config
                .agents
                .iter()
                .find(|a| a.name == args.agent)
                .map(|a| a.working_directory.clone())
                .unwrap_or_else(|| PathBuf::from("/")),
        };
        let role = match args.role {
            RoleArg::Owner => acg_policy::Role::Owner,
            RoleArg::Guest => acg_policy::Role::Guest,
        };
        let explanation =
            acg_policy::check_from_config(&config, &args.agent, role, &args.tool, &input, &cwd)?;
        println!("{explanation}");
        Ok(())
    })())
}

/// Reads `--since`: an RFC 3339 time, or an age such as `30m` counted back from `now`.
fn parse_since(text: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, Failure> {
    let text = text.trim();
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let bad = || {
        Failure(format!(
            "--since {text:?}: expected an RFC 3339 time (2026-05-10T08:00:00Z) or an age such \
             as 90s, 30m, 1h, 2d, 1w"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(secs_per).ok_or_else(bad)?;
    now.checked_sub(jiff::SignedDuration::from_secs(secs))
        .map_err(|_| bad())
}

fn audit(rt: &RuntimeDir, args: AuditArgs) -> i32 {
    report((|| {
        let since = args
            .since
            .as_deref()
            .map(|t| parse_since(t, jiff::Timestamp::now()))
            .transpose()?;
        let path = acg_policy::audit::default_audit_path(rt.root());
        if !path.exists() {
            if !args.json {
                println!("No audit records yet ({} does not exist).", path.display());
            }
            return Ok(());
        }
        let filter = acg_policy::audit::AuditFilter {
            since,
            watcher: args.watcher.clone(),
        };
        let readout = acg_policy::audit::AuditLog::read(&path, &filter)?;
        if readout.skipped > 0 {
            eprintln!(
                "Warning: {} line(s) of {} are not audit records and were skipped",
                readout.skipped,
                path.display()
            );
        }
        if readout.truncated_tail {
            eprintln!("Warning: the last line of {} is cut short", path.display());
        }
        if args.json {
            print!("{}", readout.json_lines());
        } else if readout.entries.is_empty() {
            println!("No audit records match.");
        } else {
            for entry in &readout.entries {
                println!("{}", entry.record);
            }
        }
        Ok(())
    })())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse_args(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("agent-chat-gateway").chain(args.iter().copied()))
    }

    fn send_args(args: &[&str]) -> SendArgs {
        match parse_args(&[&["send"], args].concat()).unwrap().command {
            Command::Send(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_is_the_help_case() {
        let err = parse_args(&[]).unwrap_err();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    #[test]
    fn start_flags_parse() {
        let cli = parse_args(&[
            "start",
            "--config",
            "c.yaml",
            "--foreground",
            "--log-format",
            "json",
            "--notify-fd",
            "7",
        ])
        .unwrap();
        match cli.command {
            Command::Start(a) => {
                assert_eq!(a.config, Some(PathBuf::from("c.yaml")));
                assert!(a.foreground);
                assert_eq!(a.log_format, LogFormat::Json);
                assert_eq!(a.notify_fd, Some(7));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_args(&["start", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn send_joins_words_and_reads_stdin() {
        let request = send_request(
            &send_args(&["general", "hello", "big", "world"]),
            &mut &b""[..],
        )
        .unwrap();
        assert_eq!(
            request,
            json!({"cmd": "send", "room": "general", "text": "hello big world"})
        );
        let request =
            send_request(&send_args(&["general", "-"]), &mut &b"from stdin\n"[..]).unwrap();
        assert_eq!(request["text"], "from stdin");
    }

    #[test]
    fn send_argument_errors() {
        let err = |args: &[&str]| send_request(&send_args(args), &mut &b""[..]).unwrap_err().0;
        assert!(err(&["r"]).starts_with("Nothing to send"));
        assert!(err(&["r", "hi", "--file", "x.txt"]).contains("not both"));
        assert!(err(&["r", "--file", "/nonexistent/x.txt"]).starts_with("Cannot read --file"));
        assert!(
            err(&["r", "hi", "--attach", "/nonexistent/a.png"]).starts_with("Attachment not found")
        );
        assert!(err(&["r", "hi", "--attach", "/"]).starts_with("Attachment is not a regular file"));
        assert_eq!(err(&["r", "  "]), "The message is empty.");
        assert_eq!(err(&["r", "-"]), "The message is empty.");
    }

    #[test]
    fn send_file_and_attachment_become_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let body = dir.path().join("body.txt");
        std::fs::write(&body, "report\n").unwrap();
        let request = send_request(
            &send_args(&[
                "r",
                "--file",
                body.to_str().unwrap(),
                "--attach",
                body.to_str().unwrap(),
                "--connector",
                "c1",
            ]),
            &mut &b""[..],
        )
        .unwrap();
        assert_eq!(request["text"], "report");
        assert_eq!(request["attachment_path"], body.to_str().unwrap());
        assert_eq!(request["connector"], "c1");
        // Attachment alone is enough.
        let request = send_request(
            &send_args(&["r", "--attach", body.to_str().unwrap()]),
            &mut &b""[..],
        )
        .unwrap();
        assert!(request.get("text").is_none());
    }

    #[test]
    fn inject_requests() {
        let args = |a: &[&str]| match parse_args(&[&["inject"], a].concat()).unwrap().command {
            Command::Inject(args) => args,
            other => panic!("{other:?}"),
        };
        let request = inject_request(&args(&["w", "hello", "there"]), &mut &b""[..]).unwrap();
        assert_eq!(
            request,
            json!({"cmd": "inject", "watcher_name": "w", "text": "hello there",
                "sender": "script", "role": "owner"})
        );
        let request = inject_request(
            &args(&["w", "-", "--from", "bob", "--guest", "--connector", "c"]),
            &mut &b"piped\n"[..],
        )
        .unwrap();
        assert_eq!(
            request,
            json!({"cmd": "inject", "watcher_name": "w", "text": "piped",
                "sender": "bob", "role": "guest", "connector": "c"})
        );
        assert_eq!(
            inject_request(&args(&["w", "-"]), &mut &b" \n"[..])
                .unwrap_err()
                .0,
            "The message is empty."
        );
    }

    #[test]
    fn list_lines_follow_the_reference() {
        let w = json!({"watcher_name": "w", "connector": "c", "room_name": "general",
            "agent_name": "claude", "session_id": "s1", "paused": false, "active": true});
        assert_eq!(list_line(&w), "w: (c) general [claude] session=s1 [active]");
        let w = json!({"watcher_name": "w", "connector": "c", "room_name": "general",
            "agent_name": "claude", "session_id": "", "paused": true, "active": false});
        assert_eq!(list_line(&w), "w: (c) general [claude] session= [PAUSED]");
        let w = json!({"watcher_name": "w", "connector": "c", "room_name": "general",
            "agent_name": "claude", "session_id": "", "paused": false, "active": false,
            "waiting": true});
        assert_eq!(list_line(&w), "w: (c) general [claude] session= [waiting]");
    }

    #[test]
    fn list_groups_watchers_under_their_connector_state() {
        let w = |name: &str, connector: &str| {
            json!({"watcher_name": name, "connector": connector, "room_name": "r",
                "agent_name": "a", "session_id": "", "paused": false, "active": true})
        };
        let answer = json!({"ok": true,
        "data": [w("w1", "rc"), w("w2", "local"), w("w3", "rc")],
        "connectors": [
            {"name": "local", "connector_type": "script", "state": {"state": "connected"}},
            {"name": "rc", "connector_type": "rocketchat", "state": {"state": "reconnecting",
                "since_ms": 0, "last_error": "refused"}},
        ]});
        let lines = list_lines(&answer);
        assert_eq!(lines[0], "Connector local (script): connected");
        assert_eq!(lines[1], "w2: (local) r [a] session= [active]");
        assert!(
            lines[2].starts_with("Connector rc (rocketchat): reconnecting for "),
            "{lines:?}"
        );
        assert!(lines[2].ends_with("(last error: refused)"), "{lines:?}");
        assert_eq!(
            &lines[3..],
            [
                "w1: (rc) r [a] session= [active]",
                "w3: (rc) r [a] session= [active]"
            ]
        );
        // An older daemon without `connectors`: the reference output.
        let answer = json!({"ok": true, "data": [w("w1", "rc")]});
        assert_eq!(list_lines(&answer), ["w1: (rc) r [a] session= [active]"]);
        let answer = json!({"ok": true, "data": [], "connectors": []});
        assert_eq!(list_lines(&answer), ["No configured watchers"]);
    }

    #[test]
    fn agents_are_described_and_listed_when_they_have_something_to_say() {
        let ready = json!({"name": "oc", "type": "opencode", "state": "ready",
            "health": "opencode server running (pid 7, http://127.0.0.1:1)"});
        assert_eq!(
            describe_agent(&ready),
            "opencode server running (pid 7, http://127.0.0.1:1)"
        );
        let quiet = json!({"name": "claude", "type": "claude", "state": "ready", "health": null});
        assert_eq!(describe_agent(&quiet), "ready");
        let failed = json!({"name": "oc", "type": "opencode", "state": "failed",
            "health": "failed to start: boom"});
        assert_eq!(describe_agent(&failed), "failed to start: boom");
        let missing = json!({"name": "oc", "type": "opencode", "state": "unavailable",
            "health": "no gate"});
        assert_eq!(describe_agent(&missing), "not running (no gate)");
        let answer = json!({"ok": true, "data": [], "agents": [quiet, ready]});
        assert_eq!(
            list_lines(&answer),
            [
                "No configured watchers",
                "Agent oc (opencode): opencode server running (pid 7, http://127.0.0.1:1)"
            ]
        );
    }

    #[test]
    fn pending_approval_lines() {
        let p = json!({"id": "a3k9", "tool": "Bash", "room": "desk", "watcher": "helper",
            "requester": "alice", "age_secs": 12, "timeout_secs": 300});
        assert_eq!(
            pending_line(&p),
            "a3k9 Bash in desk (helper), asked by alice 12s ago, times out after 300s"
        );
    }

    #[test]
    fn link_descriptions() {
        assert_eq!(describe_link(&json!({"state": "connected"})), "connected");
        let text = describe_link(&json!({"state": "reconnecting", "since_ms": 0,
            "last_error": "refused"}));
        assert!(text.starts_with("reconnecting for "), "{text}");
        assert!(text.ends_with("(last error: refused)"), "{text}");
    }

    #[test]
    fn since_accepts_rfc3339_and_ages() {
        let now: jiff::Timestamp = "2026-05-10T12:00:00Z".parse().unwrap();
        let at = |t: &str| parse_since(t, now).map(|t| t.to_string());
        assert_eq!(at("2026-05-09T08:30:00Z").unwrap(), "2026-05-09T08:30:00Z");
        assert_eq!(
            at("2026-05-09T10:30:00+02:00").unwrap(),
            "2026-05-09T08:30:00Z"
        );
        assert_eq!(at("90s").unwrap(), "2026-05-10T11:58:30Z");
        assert_eq!(at("30m").unwrap(), "2026-05-10T11:30:00Z");
        assert_eq!(at("1h").unwrap(), "2026-05-10T11:00:00Z");
        assert_eq!(at("2d").unwrap(), "2026-05-08T12:00:00Z");
        assert_eq!(at("1w").unwrap(), "2026-05-03T12:00:00Z");
        for bad in [
            "",
            "h",
            "1y",
            "-1h",
            "1.5h",
            "yesterday",
            "99999999999999999w",
        ] {
            assert!(at(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn policy_and_audit_arguments_parse() {
        let cli = parse_args(&[
            "policy",
            "check",
            "--agent",
            "a",
            "--role",
            "guest",
            "--tool",
            "Bash",
            "--input",
            r#"{"command":"ls"}"#,
            "--cwd",
            "/w",
        ])
        .unwrap();
        match cli.command {
            Command::Policy {
                command: PolicyCommand::Check(a),
            } => {
                assert_eq!(a.role, RoleArg::Guest);
                assert_eq!(a.cwd, Some(PathBuf::from("/w")));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_args(&[
            "policy", "check", "--agent", "a", "--role", "boss", "--tool", "T", "--input", "{}"
        ])
        .is_err());
        match parse_args(&["audit", "--since", "1h", "--watcher", "w", "--json"])
            .unwrap()
            .command
        {
            Command::Audit(a) => {
                assert_eq!(a.since.as_deref(), Some("1h"));
                assert!(a.json);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_commands_without_a_daemon_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::new(dir.path());
        let err = ask_daemon(&rt, json!({"cmd": "list"}), CLIENT_TIMEOUT).unwrap_err();
        assert_eq!(
            err.0,
            "Gateway is not running. Start it with: agent-chat-gateway start"
        );
        // A lock holder without a socket yet: the daemon is still starting.
        let _lock = runtime::InstanceLock::acquire(&rt, Duration::ZERO).unwrap();
        let err = ask_daemon(&rt, json!({"cmd": "list"}), CLIENT_TIMEOUT).unwrap_err();
        assert_eq!(
            err.0,
            "Control socket not found. The daemon may still be starting."
        );
    }
}
