//! Config → adapters → core: turns the resolved [`acg_config::Config`] into the agent
//! backends, connectors and watcher specs that `Gateway::start` takes.
//!
//! Connectors: `script` → [`ScriptConnector`] (transcripts under the runtime dir),
//! `rocketchat` → [`RocketChatConnector`] with the production [`RocketChatOptions`] (its
//! attachment cache is `attachments.cache_dir_global` of its config). A Rocket.Chat server that
//! is down or refuses the login does not fail the start: the connector keeps retrying in the
//! background and core starts its watchers once it is connected.
//!
//! What this build cannot run is reported, not fatal (the start is then degraded): an
//! `opencode` agent gets no backend (core keeps its watchers' saved state and does not start
//! them), and `mattermost` / `voice` connectors are left out entirely, so their
//! `state.<connector>.json` files are not touched.
//!
//! A Claude agent with `permissions.enabled` runs with the permission broker's hook
//! (`--settings <file>` and the hook secret in its environment); without its hook (the
//! broker could not be set up) it gets no backend at all, so its watchers never run unguarded.

use std::collections::HashMap;
use std::sync::Arc;

use acg_claude::{ClaudeBackend, ClaudeSettings};
use acg_config::{AgentConfig, AgentKind, Config, ConnectorConfig, ConnectorKind, WatcherConfig};
use acg_core::context::{builtin_platform_context, builtin_tool_context, ContextSources};
use acg_core::gateway::{AgentSetup, ConnectorSetup};
use acg_core::ports::Connector;
use acg_core::watcher::WatcherSpec;
use acg_rocketchat::{RocketChatConnector, RocketChatOptions};
use acg_script::ScriptConnector;
use agent_chat_gateway::broker::{AgentHook, TOKEN_ENV};

use crate::runtime::RuntimeDir;

/// Everything `Gateway::start` needs, plus what could not be built.
pub struct Wired {
    /// Agent backends this build can run.
    pub agents: Vec<AgentSetup>,
    /// Connectors this build can run, with their watchers.
    pub connectors: Vec<ConnectorSetup>,
    /// One operator line per thing left out (reported as `error:` lines: degraded start).
    pub errors: Vec<String>,
}

/// Builds the adapters for `config`, giving agents with `permissions.enabled` their hook
/// from `hooks` (by agent name). Never fails; see [`Wired::errors`].
pub fn wire(config: &Config, rt: &RuntimeDir, hooks: &HashMap<String, AgentHook>) -> Wired {
    let mut errors = Vec::new();

    let mut agents = Vec::new();
    for agent in &config.agents {
        match agent.kind {
            AgentKind::Claude => {
                let mut settings = ClaudeSettings::new(agent.command.clone());
                if agent.permissions.enabled {
                    // The broker reported why it has no hook for this agent.
                    let Some(hook) = hooks.get(&agent.name) else {
                        continue;
                    };
                    settings.settings_file = Some(hook.settings_file.clone());
                    settings
                        .extra_env
                        .push((TOKEN_ENV.to_string(), hook.token.clone()));
                }
                agents.push(AgentSetup {
                    name: agent.name.clone(),
                    backend: Arc::new(ClaudeBackend::new(settings)),
                })
            }
            AgentKind::Opencode => errors.push(format!(
                "Agent '{}' (type: opencode): the opencode backend is not available in this \
                 build; its watchers are not started",
                agent.name
            )),
        }
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
        connectors,
        errors,
    }
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
    let mut builtin: Vec<String> = Vec::new();
    if let Some(doc) = builtin_platform_context(connector.kind.type_name()) {
        builtin.push(doc.to_string());
    }
    builtin.extend(
        builtin_tool_context(agent.lazy_instruction_loading)
            .into_iter()
            .map(str::to_string),
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
