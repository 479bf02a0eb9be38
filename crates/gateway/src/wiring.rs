//! Config → adapters → core: turns the resolved [`acg_config::Config`] into the agent
//! backends, connectors and watcher specs that `Gateway::start` takes.
//!
//! Connectors: `script` → [`ScriptConnector`] (transcripts under the runtime dir),
//! `rocketchat` → [`RocketChatConnector`] with the production [`RocketChatOptions`] (its
//! attachment cache is `attachments.cache_dir_global` of its config). A Rocket.Chat server that
//! is down or refuses the login does not fail the start: the connector keeps retrying in the
//! background and core starts its watchers once it is connected.
//!
//! What this build cannot run is reported, not fatal (the start is then degraded):
//! `mattermost` / `voice` connectors are left out entirely, so their
//! `state.<connector>.json` files are not touched.
//!
//! Agents: `claude` → [`ClaudeBackend`]; `opencode` → [`OpencodeBackend`] (its sidecar runs
//! `<command> serve <new_session_args…>` in the working directory with the daemon's
//! environment, an `OPENCODE_CONFIG_CONTENT` there merged, not replaced; started by core at
//! daemon start, stopped at shutdown). Every backend is wrapped in a [`StartTracked`] and
//! listed in the [`AgentBook`], so `status` and `list` can show how it is doing.
//!
//! A Claude agent with `permissions.enabled` runs with the permission broker's hook
//! (`--settings <file>` and the hook secret in its environment); an OpenCode agent answers its
//! sidecar's permission requests through the daemon's [`ToolGate`](agent_chat_gateway::decision::ToolGate)
//! (with `permissions.enabled`, every tool of its sessions asks). Without its hook or gate
//! (it could not be set up) an agent gets no backend at all, so its watchers never run
//! unguarded.

use std::sync::Arc;

use acg_claude::{ClaudeBackend, ClaudeSettings};
use acg_config::{AgentConfig, AgentKind, Config, ConnectorConfig, ConnectorKind, WatcherConfig};
use acg_core::context::{builtin_platform_context, builtin_tool_context, ContextSources};
use acg_core::gateway::{AgentSetup, ConnectorSetup};
use acg_core::ports::Connector;
use acg_core::watcher::WatcherSpec;
use acg_core::AgentBackend;
use acg_opencode::{OpencodeBackend, OpencodeSettings};
use acg_rocketchat::{RocketChatConnector, RocketChatOptions};
use acg_script::ScriptConnector;
use agent_chat_gateway::broker::{Permissions, TOKEN_ENV};
use agent_chat_gateway::opencode_permissions::OpencodeApprovals;

use crate::agents::{AgentBook, StartTracked};

use crate::runtime::RuntimeDir;

/// Everything `Gateway::start` needs, plus what could not be built.
pub struct Wired {
    /// Agent backends this build can run.
    pub agents: Vec<AgentSetup>,
    /// Every configured agent, with its backend when it has one (for `status` and `list`).
    pub agent_book: AgentBook,
    /// Connectors this build can run, with their watchers.
    pub connectors: Vec<ConnectorSetup>,
    /// One operator line per thing left out (reported as `error:` lines: degraded start).
    pub errors: Vec<String>,
}

/// Builds the adapters for `config`, giving agents with `permissions.enabled` their hook
/// and OpenCode agents their permission handler from `permissions`. Never fails; see
/// [`Wired::errors`].
pub fn wire(config: &Config, rt: &RuntimeDir, permissions: &Permissions) -> Wired {
    let mut errors = Vec::new();
    let mut agent_book = AgentBook::default();

    let mut agents = Vec::new();
    for agent in &config.agents {
        let kind = agent.kind.type_name();
        // `permissions` reported why an agent has no hook or gate; it must not run unguarded.
        let unguarded = "its tool calls cannot be judged (see the start report)";
        let (backend, opencode): (Arc<dyn AgentBackend>, _) = match agent.kind {
            AgentKind::Claude => {
                let mut settings = ClaudeSettings::new(agent.command.clone());
                if agent.permissions.enabled {
                    let Some(hook) = permissions.hooks.get(&agent.name) else {
                        agent_book.add_missing(&agent.name, kind, unguarded);
                        continue;
                    };
                    settings.settings_file = Some(hook.settings_file.clone());
                    settings
                        .extra_env
                        .push((TOKEN_ENV.to_string(), hook.token.clone()));
                }
                (Arc::new(ClaudeBackend::new(settings)), None)
            }
            AgentKind::Opencode => {
                let Some(gate) = permissions.gate_for(&agent.name) else {
                    agent_book.add_missing(&agent.name, kind, unguarded);
                    continue;
                };
                match opencode_backend(agent, OpencodeApprovals::new(gate)) {
                    Ok(backend) => {
                        let backend = Arc::new(backend);
                        (backend.clone() as Arc<dyn AgentBackend>, Some(backend))
                    }
                    Err(e) => {
                        let why = format!("{e}; its watchers are not started");
                        errors.push(format!("Agent '{}' (type: opencode): {why}", agent.name));
                        agent_book.add_missing(&agent.name, kind, why);
                        continue;
                    }
                }
            }
        };
        let tracked = Arc::new(StartTracked::new(backend));
        agent_book.add(&agent.name, kind, tracked.clone(), opencode);
        agents.push(AgentSetup {
            name: agent.name.clone(),
            backend: tracked,
        });
    }

    let mut connectors = Vec::new();
    for connector in &config.connectors {
        let adapter: Arc<dyn Connector> = match &connector.kind {
            ConnectorKind::Script => Arc::new(
                ScriptConnector::new(&connector.name)
                    .with_transcript_dir(rt.script_dir(&connector.name)),
            ),
            ConnectorKind::RocketChat(server) => match RocketChatConnector::new(
                &connector.name,
                server.clone(),
                RocketChatOptions::default(),
            ) {
                Ok(rc) => Arc::new(rc),
                Err(e) => {
                    errors.push(format!(
                        "Connector '{}' (type: rocketchat): {e}; its watchers are not started \
                         and their saved state is kept",
                        connector.name
                    ));
                    continue;
                }
            },
            other => {
                errors.push(format!(
                    "Connector '{}' (type: {}): not available in this build yet; its watchers \
                     are not started and their saved state is kept",
                    connector.name,
                    other.type_name()
                ));
                continue;
            }
        };
        let watchers = config
            .watchers
            .iter()
            .filter(|w| w.connector == connector.name)
            .filter_map(|w| {
                let Some(agent) = config.agents.iter().find(|a| a.name == w.agent) else {
                    // The loader rejects unknown agents; never reached with a valid config.
                    errors.push(format!(
                        "Watcher '{}': unknown agent '{}'; not started",
                        w.name, w.agent
                    ));
                    return None;
                };
                Some(watcher_spec(config, connector, agent, w, adapter.as_ref()))
            })
            .collect();
        connectors.push(ConnectorSetup {
            connector: adapter,
            connector_type: connector.kind.type_name().to_string(),
            watchers,
        });
    }

    Wired {
        agents,
        agent_book,
        connectors,
        errors,
    }
}

/// The backend of an OpenCode agent: its sidecar runs `<command> serve <new_session_args…>`
/// in the working directory with the daemon's environment (an `OPENCODE_CONFIG_CONTENT` there
/// gets the gateway's permission defaults merged in), and its permission requests go to
/// `approvals`. With `permissions.enabled` every tool of its sessions asks, so the gateway
/// decides each call. Fails only on an invalid `OPENCODE_CONFIG_CONTENT`.
fn opencode_backend(
    agent: &AgentConfig,
    approvals: OpencodeApprovals,
) -> Result<OpencodeBackend, acg_opencode::ConfigContentError> {
    let mut settings =
        OpencodeSettings::new(agent.command.clone(), agent.working_directory.clone());
    settings.name = agent.name.clone();
    settings.serve_args = agent.new_session_args.clone();
    settings.gate_every_tool = agent.permissions.enabled;
    Ok(OpencodeBackend::new(settings)?.with_permission_handler(Arc::new(approvals)))
}

/// One watcher's spec: the watcher's own settings, its agent's, and the context layers
/// (built-in documents, then connector, agent and watcher files).
fn watcher_spec(
    config: &Config,
    connector: &ConnectorConfig,
    agent: &AgentConfig,
    watcher: &WatcherConfig,
    adapter: &dyn Connector,
) -> WatcherSpec {
    let mut builtin: Vec<std::borrow::Cow<'static, str>> = Vec::new();
    if let Some(doc) = builtin_platform_context(connector.kind.type_name()) {
        builtin.push(doc.into());
    }
    builtin.extend(
        builtin_tool_context(agent.lazy_instruction_loading)
            .into_iter()
            .map(Into::into),
    );
    let files = connector
        .context_inject_files
        .iter()
        .chain(&agent.context_inject_files)
        .chain(&watcher.context_inject_files)
        .cloned()
        .collect();
    WatcherSpec {
        name: watcher.name.clone(),
        connector: watcher.connector.clone(),
        room: watcher.room.clone(),
        agent: watcher.agent.clone(),
        pinned_session_id: watcher.session_id.clone(),
        working_directory: agent.working_directory.clone(),
        new_session_args: agent.new_session_args.clone(),
        session_prefix: agent.session_prefix.clone(),
        turn_timeout: agent.timeout,
        max_queue_depth: config.max_queue_depth,
        context: ContextSources {
            watcher_name: watcher.name.clone(),
            room: watcher.room.clone(),
            connector_name: connector.name.clone(),
            bot_username: adapter.bot_username(),
            builtin,
            files,
        },
        online_notification: watcher.online_notification.clone(),
        offline_notification: watcher.offline_notification.clone(),
    }
}
