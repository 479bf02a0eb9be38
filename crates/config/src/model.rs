//! The resolved configuration: templates merged, presets expanded, `rooms:` expanded into one
//! watcher per room, defaults filled, paths absolute. Everything downstream reads only this.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The whole resolved config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was loaded from (absolute).
    pub path: PathBuf,
    /// Connectors in file order.
    pub connectors: Vec<ConnectorConfig>,
    /// Agents in file order.
    pub agents: Vec<AgentConfig>,
    /// The agent used by watchers that name none.
    pub default_agent: String,
    /// One entry per watched room (after `rooms:` expansion), in file order.
    pub watchers: Vec<WatcherConfig>,
    /// Per-watcher queue bound; 0 = unbounded.
    pub max_queue_depth: usize,
    /// Scheduler settings.
    pub scheduler: SchedulerConfig,
    /// Named tool-rule lists (already expanded into agents' allow-lists).
    pub tool_presets: BTreeMap<String, Vec<ToolRule>>,
    /// Daemon-wide settings (our extension: the `gateway:` key, all optional).
    pub gateway: GatewaySettings,
}

/// Daemon-wide settings (top-level `gateway:`; absent in 0.5.x files, every key optional).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    /// How long each watcher may take to finish its queue on shutdown (default 30 s).
    pub drain_timeout: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// `scheduler:` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Days a completed job is kept (default 7).
    pub completed_job_ttl_days: u64,
}

/// One connector entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// Unique name.
    pub name: String,
    /// Context files for every watcher of this connector (layer 1), absolute paths.
    pub context_inject_files: Vec<PathBuf>,
    /// Type-specific settings.
    pub kind: ConnectorKind,
}

/// Type-specific connector settings.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorKind {
    /// `type: rocketchat`.
    RocketChat(ChatServerConfig),
    /// `type: mattermost`.
    Mattermost(ChatServerConfig),
    /// `type: voice`.
    Voice(VoiceConfig),
    /// `type: script` (in-memory, no fields).
    Script,
}

impl ConnectorKind {
    /// The `type:` word.
    pub fn type_name(&self) -> &'static str {
        match self {
            ConnectorKind::RocketChat(_) => "rocketchat",
            ConnectorKind::Mattermost(_) => "mattermost",
            ConnectorKind::Voice(_) => "voice",
            ConnectorKind::Script => "script",
        }
    }
}

/// Settings shared by Rocket.Chat and Mattermost connectors.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatServerConfig {
    /// `server.url` without a trailing `/`.
    pub url: String,
    /// `server.username`.
    pub username: String,
    /// `server.password`.
    pub password: String,
    /// `server.team` (Mattermost only).
    pub team: Option<String>,
    /// `server.token` (Mattermost only).
    pub token: Option<String>,
    /// `allowed_users.owners`.
    pub owners: Vec<String>,
    /// `allowed_users.guests`.
    pub guests: Vec<String>,
    /// `attachments:`.
    pub attachments: AttachmentSettings,
    /// `reply_in_thread` (default false).
    pub reply_in_thread: bool,
    /// `permission_reply_in_thread` (default true).
    pub permission_reply_in_thread: bool,
    /// `require_mention` (default true).
    pub require_mention: bool,
    /// `filter_sender` (default true).
    pub filter_sender: bool,
    /// `agent_chain:`.
    pub agent_chain: AgentChainSettings,
    /// `timezone` (IANA; empty = host zone).
    pub timezone: String,
}

/// `attachments:` of a chat connector.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentSettings {
    /// Largest file downloaded, in MB (0 = no limit; default 10).
    pub max_file_size_mb: f64,
    /// Per-download time limit (default 30 s).
    pub download_timeout: Duration,
    /// Legacy `cache_dir` (accepted, unused).
    pub cache_dir: String,
    /// Where attachments are cached (default `~/.agent-chat-gateway/attachments`), absolute.
    pub cache_dir_global: PathBuf,
}

/// `agent_chain:` of a chat connector.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentChainSettings {
    /// Usernames of peer agents.
    pub agent_usernames: Vec<String>,
    /// Turn budget per peer (default 5).
    pub max_turns: u32,
    /// Budget lifetime (default 3600 s).
    pub ttl: Duration,
}

/// `type: voice` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceConfig {
    /// Listen port (default 8765).
    pub port: u16,
    /// Listen address (default `0.0.0.0`).
    pub host: String,
    /// Bearer secret ("" = none).
    pub secret: String,
    /// Reply wait (default 45 s).
    pub timeout: Duration,
}

/// The agent types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    /// Claude Code CLI.
    Claude,
    /// OpenCode.
    Opencode,
}

impl AgentKind {
    /// The `type:` word.
    pub fn type_name(self) -> &'static str {
        match self {
            AgentKind::Claude => "claude",
            AgentKind::Opencode => "opencode",
        }
    }
}

/// One agent entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The key under `agents:`.
    pub name: String,
    /// `type`.
    pub kind: AgentKind,
    /// `command` (default = the type name).
    pub command: String,
    /// `working_directory`, absolute, existing.
    pub working_directory: PathBuf,
    /// `new_session_args`.
    pub new_session_args: Vec<String>,
    /// `session_prefix` (default `agent-chat`).
    pub session_prefix: String,
    /// `lazy_instruction_loading` (default true).
    pub lazy_instruction_loading: bool,
    /// Layer-2 context files, absolute.
    pub context_inject_files: Vec<PathBuf>,
    /// Owner tool rules, presets expanded (built-in rules are added by the policy, not here).
    pub owner_allowed_tools: Vec<ToolRule>,
    /// Guest tool rules, presets expanded.
    pub guest_allowed_tools: Vec<ToolRule>,
    /// Per-turn deadline (default 360 s).
    pub timeout: Duration,
    /// `permissions:`.
    pub permissions: PermissionSettings,
}

/// `permissions:` of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionSettings {
    /// Route tool calls through the gateway's broker (default false).
    pub enabled: bool,
    /// How long an owner has to answer (default 300 s).
    pub timeout: Duration,
    /// Owners' calls are allowed without asking (default false).
    pub skip_owner_approval: bool,
    /// The requester may not approve their own request (our extension; default false).
    pub require_other_owner: bool,
}

/// One tool rule `{tool, params}`; regexes validated at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRule {
    /// Regex for the tool name (full match, case-insensitive).
    pub tool: String,
    /// Regex each param string must fully match (dot-all); `None` = any params.
    pub params: Option<String>,
}

/// One watcher: a room bound to an agent session.
#[derive(Debug, Clone, PartialEq)]
pub struct WatcherConfig {
    /// Unique name (explicit or `<connector>-<sanitized room>`).
    pub name: String,
    /// The connector's name.
    pub connector: String,
    /// The agent's name.
    pub agent: String,
    /// The room as configured (`general`, `@alice`, a room id).
    pub room: String,
    /// A pinned session id that survives `reset`.
    pub session_id: Option<String>,
    /// Layer-3 context files, absolute.
    pub context_inject_files: Vec<PathBuf>,
    /// Posted when the watcher starts (`None` = nothing).
    pub online_notification: Option<String>,
    /// Posted when the watcher stops (`None` = nothing).
    pub offline_notification: Option<String>,
    /// `history_handoff:`.
    pub history_handoff: HistoryHandoff,
}

/// `history_handoff:` of a watcher.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryHandoff {
    /// Send recent room history to a newly created session (default true).
    pub enabled: bool,
    /// Messages fetched (default 50).
    pub fetch_count: u32,
    /// Newest messages quoted in full (default 15).
    pub verbatim_tail: u32,
}
