//! The shape of `config.yaml` as Rust types, used to generate `config.schema.json` for editors
//! (YAML language servers give completion and typo checks from it).
//!
//! These "file" types mirror the YAML as written (templates unmerged, presets unexpanded); the
//! loader reads the YAML itself so it can report every problem with its line. The key tables in
//! `keys.rs` must list the same keys; a test compares them. Connector entries are one flat type
//! with every type's keys, because an entry may take its `type` from a template; the loader
//! checks which keys fit which type.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// agent-chat-gateway `config.yaml` (0.5.x / v0.3 format).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "agent-chat-gateway config.yaml")]
pub(crate) struct ConfigFile {
    /// Chat connections (at least one). Each has a unique `name` and a `type`.
    pub connectors: Vec<ConnectorEntry>,
    /// Agents by name (at least one). Watchers refer to them by that name.
    pub agents: BTreeMap<String, AgentEntry>,
    /// The agent used by watchers that do not name one. Default: the first agent.
    pub default_agent: Option<String>,
    /// Rooms to watch. An entry with `rooms:` becomes one watcher per room.
    pub watchers: Option<Vec<WatcherEntry>>,
    /// Messages that may wait per watcher before new ones are dropped (0 = no limit). Default 100.
    #[schemars(range(min = 0))]
    pub max_queue_depth: Option<u64>,
    /// Scheduled-job settings.
    pub scheduler: Option<SchedulerSection>,
    /// Named lists of tool rules; an allow-list entry that is a string names one of these.
    pub tool_presets: Option<BTreeMap<String, Vec<ToolRule>>>,
    /// Named partial connector entries, used through a connector's `inherits:`.
    pub connector_templates: Option<BTreeMap<String, ConnectorTemplate>>,
    /// Named partial agent entries, used through an agent's `inherits:`.
    pub agent_templates: Option<BTreeMap<String, AgentTemplate>>,
    /// Named partial watcher entries, used through a watcher's `inherits:`.
    pub watcher_templates: Option<BTreeMap<String, WatcherTemplate>>,
    /// Daemon-wide settings (not in 0.5.x files; every key optional).
    pub gateway: Option<GatewaySection>,
}

/// `scheduler:`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SchedulerSection {
    /// Days a completed scheduled job is kept before it is purged (0 = at once). Default 7.
    pub completed_job_ttl_days: Option<u64>,
}

/// `gateway:`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewaySection {
    /// Seconds each watcher may spend finishing queued messages at shutdown. Default 30.
    #[schemars(range(min = 0))]
    pub drain_timeout: Option<f64>,
}

/// The connector types.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ConnectorType {
    /// Rocket.Chat (REST + realtime WebSocket).
    Rocketchat,
    /// Mattermost (REST + WebSocket).
    Mattermost,
    /// A small HTTP endpoint for voice assistants (experimental).
    Voice,
    /// In-memory connector for scripted and scheduled use.
    Script,
}

/// One connector. Keys after `context_inject_files` depend on `type`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectorEntry {
    /// Unique name; used in watcher names, state file names and `--connector`.
    pub name: String,
    /// Name of a `connector_templates` entry to build on.
    pub inherits: Option<String>,
    #[serde(flatten)]
    pub body: ConnectorTemplate,
}

/// A connector without its `name` (what a connector template holds).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectorTemplate {
    /// `rocketchat`, `mattermost`, `voice` or `script` (here or in the inherited template).
    #[serde(rename = "type")]
    pub kind: Option<ConnectorType>,
    /// A note for the reader; ignored.
    pub description: Option<String>,
    /// Context files given to every watcher of this connector (relative to this file).
    pub context_inject_files: Option<Vec<String>>,
    /// Server address and login (rocketchat, mattermost).
    pub server: Option<ServerSection>,
    /// Who may talk to the agents (rocketchat, mattermost).
    pub allowed_users: Option<AllowedUsers>,
    /// Attachment download settings (rocketchat, mattermost).
    pub attachments: Option<AttachmentsSection>,
    /// Reply in a thread under each top-level message (rocketchat, mattermost). Default false.
    pub reply_in_thread: Option<bool>,
    /// Post permission prompts in a thread under the request (rocketchat, mattermost). Default true.
    pub permission_reply_in_thread: Option<bool>,
    /// In rooms (not DMs), only answer messages that mention the bot. Default true.
    pub require_mention: Option<bool>,
    /// Only accept messages from `allowed_users`. Default true.
    pub filter_sender: Option<bool>,
    /// Conversations with other bots (rocketchat, mattermost).
    pub agent_chain: Option<AgentChainSection>,
    /// IANA time zone for message timestamps and schedules ("" = the host's). Default "".
    pub timezone: Option<String>,
    /// Listen port (voice). Default 8765.
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Listen address (voice). Default "0.0.0.0".
    pub host: Option<String>,
    /// Bearer token callers must send ("" = none) (voice). Default "".
    pub secret: Option<String>,
    /// Seconds to wait for the agent's reply (voice). Default 45.
    #[schemars(range(min = 0))]
    pub timeout: Option<f64>,
}

/// `server:` of a chat connector.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSection {
    /// Base URL, e.g. `https://chat.example.com`.
    pub url: Option<String>,
    /// Bot account user name.
    pub username: Option<String>,
    /// Bot account password (the file should be private: chmod 600).
    pub password: Option<String>,
    /// Team name (mattermost only).
    pub team: Option<String>,
    /// Personal access or bot token instead of username/password (mattermost only).
    pub token: Option<String>,
}

/// `allowed_users:`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AllowedUsers {
    /// Users with full rights (they also approve tool use).
    pub owners: Option<Vec<String>>,
    /// Users with restricted rights.
    pub guests: Option<Vec<String>>,
}

/// `attachments:`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachmentsSection {
    /// Largest file downloaded, in MB (0 = no limit). Default 10.
    #[schemars(range(min = 0))]
    pub max_file_size_mb: Option<f64>,
    /// Seconds allowed per download. Default 30.
    #[schemars(range(min = 0))]
    pub download_timeout: Option<f64>,
    /// Legacy setting, accepted and unused. Default "agent-chat.cache".
    pub cache_dir: Option<String>,
    /// Where downloads are cached. Default "~/.agent-chat-gateway/attachments".
    pub cache_dir_global: Option<String>,
}

/// `agent_chain:`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentChainSection {
    /// User names of other bots whose messages are answered.
    pub agent_usernames: Option<Vec<String>>,
    /// Turns allowed per bot before its messages are ignored. Default 5.
    #[schemars(range(min = 1))]
    pub max_turns: Option<u32>,
    /// Seconds after which the turn count is forgotten. Default 3600.
    #[schemars(range(min = 0))]
    pub ttl_seconds: Option<f64>,
}

/// The agent types.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AgentType {
    /// Claude Code CLI.
    Claude,
    /// OpenCode.
    Opencode,
}

/// One agent.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentEntry {
    /// Name of an `agent_templates` entry to build on.
    pub inherits: Option<String>,
    #[serde(flatten)]
    pub body: AgentTemplate,
}

/// An agent without `inherits` (what an agent template holds).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentTemplate {
    /// `claude` or `opencode` (here or in the inherited template). Required.
    #[serde(rename = "type")]
    pub kind: Option<AgentType>,
    /// A note for the reader; ignored.
    pub description: Option<String>,
    /// Program to run. Default: the type name.
    pub command: Option<String>,
    /// Folder the agent works in; must exist. `~` and paths relative to this file work. Required.
    pub working_directory: Option<String>,
    /// Extra arguments when a new session is created.
    pub new_session_args: Option<Vec<String>>,
    /// Prefix of session titles. Default "agent-chat".
    pub session_prefix: Option<String>,
    /// Give the agent a short tool index and let it load full instructions on demand. Default true.
    pub lazy_instruction_loading: Option<bool>,
    /// Context files for every watcher using this agent (relative to this file).
    pub context_inject_files: Option<Vec<String>>,
    /// Tools owners may use without asking: preset names or `{tool, params}` rules.
    pub owner_allowed_tools: Option<Vec<ToolEntry>>,
    /// Tools guests may use without asking: preset names or `{tool, params}` rules.
    pub guest_allowed_tools: Option<Vec<ToolEntry>>,
    /// Seconds one turn may take; must exceed `permissions.timeout` when permissions are on.
    /// Default 360.
    #[schemars(range(min = 0))]
    pub timeout: Option<f64>,
    /// Asking owners in chat before tools run.
    pub permissions: Option<PermissionsSection>,
}

/// `permissions:`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PermissionsSection {
    /// Route tool calls through chat approval. Default false.
    pub enabled: Option<bool>,
    /// Seconds an owner has to answer before the call is denied. Default 300.
    #[schemars(range(min = 0))]
    pub timeout: Option<f64>,
    /// Owners' own tool calls run without asking. Default false.
    pub skip_owner_approval: Option<bool>,
    /// The requester cannot approve their own request; another owner must. Default false.
    pub require_other_owner: Option<bool>,
}

/// An allow-list entry: a `tool_presets` name or an inline rule.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum ToolEntry {
    /// The name of a `tool_presets` entry, expanded in place.
    Preset(String),
    /// An inline rule.
    Rule(ToolRule),
}

/// A tool rule.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolRule {
    /// Regex for the tool name (whole name, case-insensitive), e.g. `Bash` or `mcp__.*`.
    pub tool: String,
    /// Regex every parameter string must match (whole string, case-insensitive, `.` matches
    /// newlines). Absent: any parameters.
    pub params: Option<String>,
}

/// One watcher entry.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatcherEntry {
    /// Watcher name. Default `<connector>-<room>`; only with a single room.
    pub name: Option<String>,
    /// The room: a channel name, `@user` for a direct message, or a room id.
    pub room: Option<String>,
    /// Several rooms at once (one watcher each); use instead of `room`.
    pub rooms: Option<Vec<String>>,
    /// Pin this watcher to an existing agent session (kept across `reset`); single room only.
    pub session_id: Option<String>,
    /// Name of a `watcher_templates` entry to build on.
    pub inherits: Option<String>,
    #[serde(flatten)]
    pub body: WatcherTemplate,
}

/// A watcher without the keys that identify one (what a watcher template holds).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatcherTemplate {
    /// A note for the reader; ignored.
    pub description: Option<String>,
    /// Connector name. Default: the first connector.
    pub connector: Option<String>,
    /// Agent name. Default: `default_agent`.
    pub agent: Option<String>,
    /// Context files for this watcher (relative to this file).
    pub context_inject_files: Option<Vec<String>>,
    /// Posted to the room when the watcher starts. Default: nothing.
    pub online_notification: Option<String>,
    /// Posted to the room when the watcher stops. Default: nothing.
    pub offline_notification: Option<String>,
    /// Recent room history given to a newly created session.
    pub history_handoff: Option<HistoryHandoffSection>,
}

/// `history_handoff:`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryHandoffSection {
    /// Send recent history to new sessions. Default true.
    pub enabled: Option<bool>,
    /// Messages fetched. Default 50.
    pub fetch_count: Option<u32>,
    /// Newest messages quoted in full; older ones are shortened. Default 15.
    pub verbatim_tail: Option<u32>,
}

/// The JSON Schema of `config.yaml`, generated from the types above.
pub(crate) fn generate() -> serde_json::Value {
    let settings = schemars::gen::SchemaSettings::draft07().with(|s| {
        s.option_add_null_type = true;
    });
    let schema = settings
        .into_generator()
        .into_root_schema_for::<ConfigFile>();
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}
