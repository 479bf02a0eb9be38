//! Loader rules, one small test per rule: defaults, error messages (0.5.x wording), templates,
//! presets, `rooms:` expansion, unknown keys with positions, error collection, paths.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::load::Env;
use crate::*;

/// A temporary config folder with a `work/` folder for agents and a fake home.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Fixture { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn env(&self) -> Env {
        Env {
            home: Some(self.home()),
        }
    }

    fn load(&self, yaml: &str) -> Result<Loaded, ConfigErrors> {
        std::fs::write(self.path(), yaml).unwrap();
        load_with_env(&self.path(), &self.env())
    }

    fn ok(&self, yaml: &str) -> Config {
        match self.load(yaml) {
            Ok(l) => l.config,
            Err(e) => panic!("expected the config to load, got:\n{e}"),
        }
    }

    fn errors(&self, yaml: &str) -> ConfigErrors {
        match self.load(yaml) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e,
        }
    }

    fn messages(&self, yaml: &str) -> Vec<String> {
        self.errors(yaml)
            .errors
            .iter()
            .map(|e| e.message.clone())
            .collect()
    }

    /// The only error's message.
    fn message(&self, yaml: &str) -> String {
        let errors = self.errors(yaml);
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one error, got:\n{errors}"
        );
        errors.errors[0].message.clone()
    }
}

const CONNECTOR: &str = "connectors:
  - name: rc-home
    type: rocketchat
    server: {url: 'https://chat.example.com/', username: bot, password: pw}
";

const AGENT: &str = "agents:
  claude:
    type: claude
    working_directory: work
";

fn base(rest: &str) -> String {
    format!("{CONNECTOR}{AGENT}{rest}")
}

fn minimal() -> String {
    base("watchers:\n  - room: general\n")
}

// ── defaults ────────────────────────────────────────────────────────────────────────────────

#[test]
fn minimal_config_gets_every_default() {
    let fx = Fixture::new();
    let c = fx.ok(&minimal());
    assert_eq!(c.path, fx.path());
    assert_eq!(c.max_queue_depth, 100);
    assert_eq!(c.scheduler.completed_job_ttl_days, 7);
    assert_eq!(c.gateway.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.default_agent, "claude");
    assert!(c.tool_presets.is_empty());

    let a = &c.agents[0];
    assert_eq!(a.kind, AgentKind::Claude);
    assert_eq!(a.command, "claude");
    assert_eq!(a.session_prefix, "agent-chat");
    assert!(a.lazy_instruction_loading);
    assert!(a.new_session_args.is_empty());
    assert_eq!(a.timeout, Duration::from_secs(360));
    assert_eq!(
        a.permissions,
        PermissionSettings {
            enabled: false,
            timeout: Duration::from_secs(300),
            skip_owner_approval: false,
            require_other_owner: false,
        }
    );

    let w = &c.watchers[0];
    assert_eq!(w.name, "rc-home-general");
    assert_eq!(w.connector, "rc-home");
    assert_eq!(w.agent, "claude");
    assert_eq!(w.room, "general");
    assert_eq!(w.session_id, None);
    assert_eq!(w.online_notification, None);
    assert_eq!(w.offline_notification, None);
    assert_eq!(
        w.history_handoff,
        HistoryHandoff {
            enabled: true,
            fetch_count: 50,
            verbatim_tail: 15
        }
    );

    let ConnectorKind::RocketChat(rc) = &c.connectors[0].kind else {
        panic!("not rocketchat")
    };
    assert_eq!(rc.url, "https://chat.example.com", "trailing / is dropped");
    assert!(!rc.reply_in_thread);
    assert!(rc.permission_reply_in_thread);
    assert!(rc.require_mention);
    assert!(rc.filter_sender);
    assert_eq!(rc.timezone, "");
    assert_eq!(rc.attachments.max_file_size_mb, 10.0);
    assert_eq!(rc.attachments.download_timeout, Duration::from_secs(30));
    assert_eq!(rc.attachments.cache_dir, "agent-chat.cache");
    assert_eq!(
        rc.attachments.cache_dir_global,
        fx.home().join(".agent-chat-gateway/attachments")
    );
    assert_eq!(rc.agent_chain.max_turns, 5);
    assert_eq!(rc.agent_chain.ttl, Duration::from_secs(3600));
    assert!(rc.agent_chain.agent_usernames.is_empty());
    assert_eq!(rc.team, None);
}

#[test]
fn watchers_default_to_empty() {
    let fx = Fixture::new();
    assert!(fx.ok(&base("")).watchers.is_empty());
    assert!(fx.ok(&base("watchers:\n")).watchers.is_empty());
}

#[test]
fn command_defaults_to_the_type_name() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "{CONNECTOR}agents:\n  oc:\n    type: opencode\n    working_directory: work\n    command: ''\n  cl:\n    type: claude\n    working_directory: work\n    command: /opt/claude-wrapper\n"
    ));
    assert_eq!(c.agents[0].command, "opencode");
    assert_eq!(c.agents[0].kind, AgentKind::Opencode);
    assert_eq!(c.agents[1].command, "/opt/claude-wrapper");
}

#[test]
fn voice_defaults_and_string_port() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "connectors:\n  - {{name: v, type: voice}}\n  - {{name: v2, type: voice, port: '9000', host: 127.0.0.1, secret: s, timeout: 10}}\n{AGENT}"
    ));
    assert_eq!(
        c.connectors[0].kind,
        ConnectorKind::Voice(VoiceConfig {
            port: 8765,
            host: "0.0.0.0".into(),
            secret: String::new(),
            timeout: Duration::from_secs(45),
        })
    );
    let ConnectorKind::Voice(v2) = &c.connectors[1].kind else {
        panic!()
    };
    assert_eq!(
        (v2.port, v2.host.as_str(), v2.secret.as_str()),
        (9000, "127.0.0.1", "s")
    );
    assert_eq!(v2.timeout, Duration::from_secs(10));
}

#[test]
fn script_connector_has_no_fields() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "connectors:\n  - {{name: jobs, type: script}}\n{AGENT}"
    ));
    assert_eq!(c.connectors[0].kind, ConnectorKind::Script);
    let msg = fx.message(&format!(
        "connectors:\n  - {{name: jobs, type: script, port: 1}}\n{AGENT}"
    ));
    assert_eq!(
        msg,
        "unknown key 'port' for a script connector (it is a voice connector setting)"
    );
}

#[test]
fn mattermost_with_token() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "connectors:\n  - name: mm\n    type: mattermost\n    server: {{url: 'https://mm.example.com', team: ops, token: t0k}}\n{AGENT}"
    ));
    let ConnectorKind::Mattermost(mm) = &c.connectors[0].kind else {
        panic!()
    };
    assert_eq!(mm.team.as_deref(), Some("ops"));
    assert_eq!(mm.token.as_deref(), Some("t0k"));
    assert_eq!(mm.username, "");
}

#[test]
fn mattermost_login_rules() {
    let fx = Fixture::new();
    let both = fx.message(&format!(
        "connectors:\n  - name: mm\n    type: mattermost\n    server: {{url: 'https://mm', team: ops, token: t, username: u, password: p}}\n{AGENT}"
    ));
    assert!(both.contains("not both"), "{both}");
    let neither = fx.message(&format!(
        "connectors:\n  - name: mm\n    type: mattermost\n    server: {{url: 'https://mm', team: ops, username: u}}\n{AGENT}"
    ));
    assert!(neither.contains("server.token"), "{neither}");
    let no_team = fx.message(&format!(
        "connectors:\n  - name: mm\n    type: mattermost\n    server: {{url: 'https://mm', token: t}}\n{AGENT}"
    ));
    assert_eq!(no_team, "Connector 'mm': server.team is empty");
}

#[test]
fn other_settings_are_read() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "{CONNECTOR}    reply_in_thread: yes\n    permission_reply_in_thread: off\n    require_mention: false\n    filter_sender: false\n    timezone: Europe/Berlin\n    allowed_users: {{owners: [alice], guests: [bob, 42]}}\n    attachments: {{max_file_size_mb: 0, download_timeout: 5, cache_dir: x, cache_dir_global: cache}}\n    agent_chain: {{agent_usernames: [peer], max_turns: 3, ttl_seconds: 60.5}}\n{AGENT}max_queue_depth: 0\nscheduler: {{completed_job_ttl_days: 0}}\ngateway: {{drain_timeout: 2.5}}\n"
    ));
    let ConnectorKind::RocketChat(rc) = &c.connectors[0].kind else {
        panic!()
    };
    assert!(rc.reply_in_thread && !rc.permission_reply_in_thread);
    assert!(!rc.require_mention && !rc.filter_sender);
    assert_eq!(rc.timezone, "Europe/Berlin");
    assert_eq!(rc.owners, ["alice"]);
    assert_eq!(rc.guests, ["bob", "42"]);
    assert_eq!(rc.attachments.max_file_size_mb, 0.0);
    assert_eq!(rc.attachments.download_timeout, Duration::from_secs(5));
    assert_eq!(rc.attachments.cache_dir, "x");
    let canonical_dir = std::fs::canonicalize(fx.dir.path()).unwrap();
    assert_eq!(rc.attachments.cache_dir_global, canonical_dir.join("cache"));
    assert_eq!(rc.agent_chain.agent_usernames, ["peer"]);
    assert_eq!(rc.agent_chain.max_turns, 3);
    assert_eq!(rc.agent_chain.ttl, Duration::from_secs_f64(60.5));
    assert_eq!(c.max_queue_depth, 0);
    assert_eq!(c.scheduler.completed_job_ttl_days, 0);
    assert_eq!(c.gateway.drain_timeout, Duration::from_secs_f64(2.5));
}

#[test]
fn free_text_fields_keep_numbers_as_written() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "connectors:\n  - name: rc\n    type: rocketchat\n    server: {{url: 'https://c', username: 007, password: 0123}}\n{AGENT}"
    ));
    let ConnectorKind::RocketChat(rc) = &c.connectors[0].kind else {
        panic!()
    };
    assert_eq!(rc.username, "007");
    assert_eq!(rc.password, "0123");
}

// ── literal values, YAML 1.1 ───────────────────────────────────────────────────────────────

#[test]
fn no_env_var_expansion() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "connectors:\n  - name: rc\n    type: rocketchat\n    server: {{url: 'https://c', username: '$HOME', password: '${{HOME}}'}}\n{AGENT}"
    ));
    let ConnectorKind::RocketChat(rc) = &c.connectors[0].kind else {
        panic!()
    };
    assert_eq!(rc.username, "$HOME");
    assert_eq!(rc.password, "${HOME}");
    let msg = fx.message(&format!(
        "{CONNECTOR}agents:\n  a:\n    type: claude\n    working_directory: $HOME\n"
    ));
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(msg.contains("$HOME"), "{msg}");
}

#[test]
fn yaml_1_1_booleans_as_in_pyyaml() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "{CONNECTOR}{AGENT}    timeout: 400\n    permissions: {{enabled: yes, timeout: 6:00}}\n"
    ));
    assert!(c.agents[0].permissions.enabled);
    assert_eq!(c.agents[0].permissions.timeout, Duration::from_secs(360));
}

#[test]
fn anchors_and_merge_keys_work() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "{CONNECTOR}agents:\n  a: &base\n    type: claude\n    working_directory: work\n  b:\n    <<: *base\n    timeout: 500\n  c: *base\n"
    ));
    assert_eq!(c.agents.len(), 3);
    assert_eq!(c.agents[0].timeout, Duration::from_secs(360));
    assert_eq!(c.agents[1].timeout, Duration::from_secs(500));
    assert_eq!(c.agents[2].kind, AgentKind::Claude);
}

// ── top level ───────────────────────────────────────────────────────────────────────────────

#[test]
fn removed_defaults_keys_are_hard_errors() {
    let fx = Fixture::new();
    let msg = fx.message(&format!("{}agent_defaults:\n  timeout: 5\n", minimal()));
    assert_eq!(
        msg,
        "config.yaml 'agent_defaults:' is no longer supported (removed) — define shared fields under 'agent_templates:' instead and add 'inherits: <template-name>' to each entry that should use them. See docs/migration-0.3.md."
    );
    let errs = fx.errors(&format!("{}watcher_defaults: {{}}\n", minimal()));
    assert_eq!(errs.errors[0].location.unwrap().line, 11);
    assert!(errs.errors[0].message.contains("'watcher_templates:'"));
}

#[test]
fn unknown_top_level_key_suggests_and_points_at_the_line() {
    let fx = Fixture::new();
    let errs = fx.errors(&base("watcher:\n  - room: general\n"));
    assert_eq!(errs.len(), 1);
    let e = &errs.errors[0];
    assert_eq!(
        e.message,
        "unknown key 'watcher' (did you mean 'watchers'?)"
    );
    assert_eq!(e.location, Some(Location { line: 9, column: 1 }));
    assert_eq!(e.field.as_deref(), Some("watcher"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}:9:1: watcher: unknown key 'watcher' (did you mean 'watchers'?)",
            fx.path().display()
        )
    );
}

#[test]
fn top_level_must_be_a_mapping() {
    let fx = Fixture::new();
    let msg = fx.message("- a\n- b\n");
    assert_eq!(
        msg,
        format!(
            "Config file '{}' must contain a YAML mapping at the top level, got list.",
            fx.path().display()
        )
    );
}

#[test]
fn empty_file_needs_connectors_and_agents() {
    let fx = Fixture::new();
    assert_eq!(
        fx.messages(""),
        [
            "config.yaml must define at least one connector under 'connectors:'",
            "config.yaml must define at least one agent under 'agents:'",
        ]
    );
}

#[test]
fn connectors_and_agents_shapes() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!("connectors: {{a: 1}}\n{AGENT}")),
        "config.yaml 'connectors:' must be a list (got dict)."
    );
    assert_eq!(
        fx.message(&format!("{CONNECTOR}agents: [a]\n")),
        "config.yaml 'agents:' must be a mapping (got list). Expected a dict of agent names to config blocks."
    );
    assert_eq!(
        fx.message(&format!("{CONNECTOR}agents:\n  a: 5\n")),
        "Agent 'a' config must be a mapping (got int)."
    );
    assert_eq!(
        fx.message(&base("watchers: {a: 1}\n")),
        "config.yaml 'watchers:' must be a list (got dict)."
    );
}

#[test]
fn max_queue_depth_rules() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&base("max_queue_depth: -1\n")),
        "config.yaml 'max_queue_depth' must be >= 0"
    );
    assert_eq!(
        fx.message(&base("max_queue_depth: lots\n")),
        "config.yaml 'max_queue_depth' must be an integer (got str)."
    );
    assert_eq!(
        fx.message(&base("max_queue_depth: true\n")),
        "config.yaml 'max_queue_depth' must be an integer (got bool)."
    );
}

#[test]
fn scheduler_rules() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&base("scheduler: {completed_job_ttl_days: -2}\n")),
        "config.yaml 'scheduler.completed_job_ttl_days' must be a non-negative integer."
    );
    assert_eq!(
        fx.message(&base("scheduler: [1]\n")),
        "config.yaml 'scheduler:' must be a mapping (got list)."
    );
    assert_eq!(
        fx.message(&base("scheduler: {ttl: 1}\n")),
        "unknown key 'ttl'"
    );
}

#[test]
fn gateway_drain_timeout_rules() {
    let fx = Fixture::new();
    let e = &fx.errors(&base("gateway: {drain_timeout: -1}\n")).errors[0];
    assert_eq!(e.field.as_deref(), Some("gateway.drain_timeout"));
    assert!(e.message.contains(">= 0"), "{}", e.message);
    assert_eq!(
        fx.message(&base("gateway: {drain: 1}\n")),
        "unknown key 'drain' (did you mean 'drain_timeout'?)"
    );
}

#[test]
fn default_agent_rules() {
    let fx = Fixture::new();
    let two = format!(
        "{CONNECTOR}agents:\n  a: {{type: claude, working_directory: work}}\n  b: {{type: claude, working_directory: work}}\n"
    );
    assert_eq!(fx.ok(&two).default_agent, "a");
    assert_eq!(
        fx.ok(&format!("{two}default_agent: b\n")).default_agent,
        "b"
    );
    assert_eq!(
        fx.message(&format!("{two}default_agent: c\n")),
        "default_agent 'c' not found in agents: ['a', 'b']"
    );
    assert_eq!(
        fx.message(&format!("{two}default_agent: [a]\n")),
        "config.yaml 'default_agent' must be a string (got list)."
    );
}

// ── connectors ──────────────────────────────────────────────────────────────────────────────

#[test]
fn connector_name_and_type_rules() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!("connectors:\n  - type: script\n{AGENT}")),
        "Each connector entry must have a 'name' field"
    );
    assert_eq!(
        fx.message(&format!(
            "connectors:\n  - name: [x]\n    type: script\n{AGENT}"
        )),
        "Connector entry at index 0: 'name' must be a string (got list)."
    );
    assert_eq!(
        fx.message(&format!("connectors:\n  - name: x\n{AGENT}")),
        "Connector 'x' must have a 'type' field"
    );
    assert_eq!(
        fx.message(&format!("connectors:\n  - {{name: x, type: slack}}\n{AGENT}")),
        "Connector 'x': unknown type 'slack'. Set it to one of: rocketchat, mattermost, voice, script."
    );
    assert_eq!(
        fx.message(&format!(
            "connectors:\n  - {{name: x, type: script}}\n  - {{name: x, type: script}}\n{AGENT}"
        )),
        "Duplicate connector name 'x' found. Each connector must use a unique name."
    );
    assert_eq!(
        fx.message(&format!("connectors:\n  - just-a-string\n{AGENT}")),
        "Connector entry at index 0 must be a mapping (got str)."
    );
}

#[test]
fn chat_server_checks_run_at_load() {
    let fx = Fixture::new();
    let rc = |server: &str| {
        format!("connectors:\n  - name: rc\n    type: rocketchat\n    server: {server}\n{AGENT}")
    };
    assert_eq!(
        fx.message(&rc("{url: test, username: u, password: p}")),
        "Connector 'rc': server.url ('test') does not look like a URL (expected e.g. 'https://host')"
    );
    assert_eq!(
        fx.messages(&rc("{}")),
        [
            "Connector 'rc': server.url is empty",
            "Connector 'rc': server.username is empty",
            "Connector 'rc': server.password is empty",
        ]
    );
}

#[test]
fn connector_keys_of_another_type_are_named() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!(
        "{CONNECTOR}    port: 9000\n    server2: 1\n{AGENT}"
    ));
    let msgs = errs.messages();
    assert!(msgs.contains(
        &"unknown key 'port' for a rocketchat connector (it is a voice connector setting)"
    ));
    assert!(msgs.contains(&"unknown key 'server2' (did you mean 'server'?)"));
    let e = errs
        .errors
        .iter()
        .find(|e| e.field.as_deref() == Some("port"))
        .unwrap();
    assert_eq!(e.entry.as_deref(), Some("connectors[0] (rc-home)"));
    assert_eq!(e.location, Some(Location { line: 5, column: 5 }));

    let team = fx.message(&format!(
        "connectors:\n  - name: rc\n    type: rocketchat\n    server: {{url: 'https://c', username: u, password: p, team: t}}\n{AGENT}"
    ));
    assert_eq!(
        team,
        "unknown key 'team' for a rocketchat connector (it is a mattermost connector setting)"
    );
}

#[test]
fn nested_connector_typos_are_found() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!(
        "{CONNECTOR}    attachments: {{max_file_size: 5}}\n    allowed_users: {{owner: [a]}}\n{AGENT}"
    ));
    let fields: Vec<_> = errs
        .errors
        .iter()
        .map(|e| e.field.clone().unwrap())
        .collect();
    assert_eq!(fields, ["attachments.max_file_size", "allowed_users.owner"]);
    assert_eq!(
        errs.messages(),
        [
            "unknown key 'max_file_size' (did you mean 'max_file_size_mb'?)",
            "unknown key 'owner' (did you mean 'owners'?)",
        ]
    );
}

#[test]
fn wrong_value_types_are_reported() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!(
        "{CONNECTOR}    require_mention: maybe\n    agent_chain: {{max_turns: 0}}\n{AGENT}"
    ));
    assert_eq!(
        errs.messages(),
        ["must be true or false (got str).", "must be >= 1 (got 0)."]
    );
    assert_eq!(
        errs.errors[1].field.as_deref(),
        Some("agent_chain.max_turns")
    );
}

// ── agents ──────────────────────────────────────────────────────────────────────────────────

#[test]
fn agent_type_rules() {
    let fx = Fixture::new();
    let agent =
        |body: &str| format!("{CONNECTOR}agents:\n  a:\n    working_directory: work\n{body}");
    assert_eq!(
        fx.message(&agent("")),
        "Agent 'a': type is required (directly or via an inherits: agent_templates entry). Set it to 'claude' or 'opencode'."
    );
    assert_eq!(
        fx.message(&agent("    type: gpt\n")),
        "Agent 'a': unknown type 'gpt'. Set it to 'claude' or 'opencode'."
    );
    assert_eq!(
        fx.message(&agent("    type: [claude]\n")),
        "Agent 'a': type must be a string (got list)."
    );
}

#[test]
fn missing_type_is_reported_next_to_other_agent_errors() {
    let fx = Fixture::new();
    let msgs = fx.messages(&format!(
        "{CONNECTOR}agents:\n  a:\n    working_directory: work\n    typo: 1\n"
    ));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].starts_with("Agent 'a': type is required"),
        "{msgs:?}"
    );
    assert_eq!(msgs[1], "unknown key 'typo' (did you mean 'type'?)");
}

#[test]
fn working_directory_is_required_and_must_exist() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!("{CONNECTOR}agents:\n  a:\n    type: claude\n")),
        "Agent 'a': working_directory is required. Set it to the directory where the agent should run."
    );
    let missing = fx.dir.path().join("nope");
    assert_eq!(
        fx.message(&format!(
            "{CONNECTOR}agents:\n  a:\n    type: claude\n    working_directory: {}\n",
            missing.display()
        )),
        format!(
            "Agent 'a': working_directory does not exist or is not a directory: '{}'",
            missing.display()
        )
    );
}

#[test]
fn working_directory_relative_tilde_and_absolute() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.home().join("proj")).unwrap();
    let abs = fx.dir.path().join("work");
    let c = fx.ok(&format!(
        "{CONNECTOR}agents:\n  rel: {{type: claude, working_directory: ./sub/../work}}\n  tilde: {{type: claude, working_directory: ~/proj}}\n  abs: {{type: claude, working_directory: '{}'}}\n",
        abs.display()
    ));
    let canonical = std::fs::canonicalize(fx.dir.path()).unwrap();
    assert_eq!(c.agents[0].working_directory, canonical.join("work"));
    assert_eq!(c.agents[1].working_directory, fx.home().join("proj"));
    assert_eq!(c.agents[2].working_directory, abs);
}

#[test]
fn tilde_without_home_is_an_error() {
    let fx = Fixture::new();
    std::fs::write(
        fx.path(),
        format!("{CONNECTOR}agents:\n  a: {{type: claude, working_directory: ~/x}}\n"),
    )
    .unwrap();
    let err = load_with_env(&fx.path(), &Env { home: None }).unwrap_err();
    assert!(err.to_string().contains("HOME is not set"), "{err}");
}

#[test]
fn lazy_instruction_loading_must_be_a_boolean() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!(
            "{CONNECTOR}{AGENT}    lazy_instruction_loading: 'no'\n"
        )),
        "Agent 'claude': lazy_instruction_loading must be a boolean"
    );
}

#[test]
fn agent_fields_are_read() {
    let fx = Fixture::new();
    std::fs::write(fx.dir.path().join("ctx.md"), "x").unwrap();
    let c = fx.ok(&format!(
        "{CONNECTOR}{AGENT}    new_session_args: [--model, sonnet, 5]\n    session_prefix: team\n    lazy_instruction_loading: false\n    context_inject_files: [ctx.md]\n    timeout: 90.5\n"
    ));
    let a = &c.agents[0];
    assert_eq!(a.new_session_args, ["--model", "sonnet", "5"]);
    assert_eq!(a.session_prefix, "team");
    assert!(!a.lazy_instruction_loading);
    let canonical = std::fs::canonicalize(fx.dir.path()).unwrap();
    assert_eq!(a.context_inject_files, [canonical.join("ctx.md")]);
    assert_eq!(a.timeout, Duration::from_secs_f64(90.5));
}

#[test]
fn agent_unknown_key_with_suggestion_and_position() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!(
        "{CONNECTOR}{AGENT}    workdir: /tmp\n    permissions:\n      enabeld: true\n"
    ));
    assert_eq!(errs.len(), 2);
    let e = &errs.errors[0];
    assert_eq!(e.entry.as_deref(), Some("agents.claude"));
    assert_eq!(e.field.as_deref(), Some("workdir"));
    assert_eq!(e.location, Some(Location { line: 9, column: 5 }));
    let e = &errs.errors[1];
    assert_eq!(e.field.as_deref(), Some("permissions.enabeld"));
    assert_eq!(e.message, "unknown key 'enabeld' (did you mean 'enabled'?)");
    assert_eq!(
        e.location,
        Some(Location {
            line: 11,
            column: 7
        })
    );
}

#[test]
fn permission_timeout_must_be_below_agent_timeout() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!(
            "{CONNECTOR}{AGENT}    timeout: 200\n    permissions: {{enabled: true}}\n"
        )),
        "Agent 'claude': timeout (200s) must be greater than permissions.timeout (300s). Suggested: set timeout to at least 360s."
    );
    // Equal is not enough; disabled permissions are not checked.
    let msg = fx.message(&format!(
        "{CONNECTOR}{AGENT}    timeout: 300\n    permissions: {{enabled: true, timeout: 300}}\n"
    ));
    assert!(
        msg.contains("timeout (300s) must be greater than permissions.timeout (300s)"),
        "{msg}"
    );
    assert!(msg.ends_with("at least 360s."), "{msg}");
    fx.ok(&format!(
        "{CONNECTOR}{AGENT}    timeout: 100\n    permissions: {{enabled: false, timeout: 300}}\n"
    ));
    fx.ok(&format!(
        "{CONNECTOR}{AGENT}    timeout: 361\n    permissions: {{enabled: true}}\n"
    ));
}

#[test]
fn skip_owner_approval_without_permissions_is_a_warning() {
    let fx = Fixture::new();
    let loaded = fx
        .load(&format!(
            "{CONNECTOR}{AGENT}    permissions: {{skip_owner_approval: true}}\n"
        ))
        .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("skip_owner_approval"));
    assert!(loaded.config.agents[0].permissions.skip_owner_approval);
}

#[test]
fn permissions_must_be_a_mapping() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!("{CONNECTOR}{AGENT}    permissions: true\n")),
        "Agent 'claude': permissions must be a mapping (got bool)."
    );
}

// ── tool rules and presets ──────────────────────────────────────────────────────────────────

fn with_tools(presets: &str, owner: &str) -> String {
    format!("{CONNECTOR}{AGENT}    owner_allowed_tools:\n{owner}{presets}")
}

#[test]
fn presets_expand_in_place_in_order() {
    let fx = Fixture::new();
    let c = fx.ok(&with_tools(
        "tool_presets:\n  ro:\n    - tool: Read\n    - {tool: Grep, params: ''}\n",
        "      - tool: First\n      - ro\n      - {tool: Bash, params: 'git .*'}\n",
    ));
    let rules: Vec<(&str, Option<&str>)> = c.agents[0]
        .owner_allowed_tools
        .iter()
        .map(|r| (r.tool.as_str(), r.params.as_deref()))
        .collect();
    assert_eq!(
        rules,
        [
            ("First", None),
            ("Read", None),
            ("Grep", None),
            ("Bash", Some("git .*"))
        ]
    );
    assert_eq!(c.tool_presets["ro"].len(), 2);
}

#[test]
fn unknown_preset_names_the_agent_list_and_index() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&with_tools("", "      - {tool: Read}\n      - nope\n")),
        "Agent 'claude': unknown tool preset 'nope' in owner_allowed_tools[1]. Available presets: (none defined)"
    );
    assert_eq!(
        fx.message(&with_tools(
            "tool_presets:\n  b: []\n  a: []\n",
            "      - nope\n"
        )),
        "Agent 'claude': unknown tool preset 'nope' in owner_allowed_tools[0]. Available presets: a, b"
    );
}

#[test]
fn invalid_regex_names_agent_list_and_index() {
    let fx = Fixture::new();
    let errs = fx.errors(&with_tools(
        "",
        "      - {tool: Read}\n      - {tool: 'Bash', params: '('}\n",
    ));
    assert_eq!(errs.len(), 1);
    let e = &errs.errors[0];
    assert!(
        e.message.starts_with(
            "Agent 'claude': invalid tool rule at index 1 in owner_allowed_tools: Invalid regex for 'params' field '(': "
        ),
        "{}",
        e.message
    );
    assert_eq!(e.field.as_deref(), Some("owner_allowed_tools[1].params"));
    assert_eq!(e.location.map(|l| l.line), Some(11));

    let tool = fx.message(&with_tools("", "      - {tool: '[a'}\n"));
    assert!(
        tool.starts_with("Agent 'claude': invalid tool rule at index 0 in owner_allowed_tools: Invalid regex for 'tool' field '[a': "),
        "{tool}"
    );
}

#[test]
fn python_style_regexes_are_accepted() {
    let fx = Fixture::new();
    fx.ok(&with_tools(
        "",
        "      - {tool: Bash, params: '(?!rm\\b).*'}\n      - {tool: Bash, params: '(?P<q>[\"'']).*(?P=q)'}\n      - {tool: Bash, params: '(?<=x)y'}\n      - {tool: 'mcp__.*'}\n",
    ));
}

#[test]
fn non_rule_entries_are_rejected() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&with_tools("", "      - 5\n")),
        "Agent 'claude': invalid tool rule at index 0 in owner_allowed_tools: Invalid tool rule: 5. Expected a dict with a 'tool' key, e.g. {tool: Bash, params: 'git .*'}"
    );
    assert!(fx
        .message(&with_tools("", "      - {params: x}\n"))
        .contains("Expected a dict with a 'tool' key"));
    assert_eq!(
        fx.message(&with_tools("", "      - {tool: Bash, param: x}\n")),
        "unknown key 'param' (did you mean 'params'?)"
    );
}

#[test]
fn preset_rules() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&base("tool_presets:\n  a: [b]\n")),
        "tool_presets['a'][0]: presets cannot reference another preset ('b') — a preset must be a flat list of inline tool rules."
    );
    assert_eq!(
        fx.message(&base("tool_presets:\n  a: {tool: x}\n")),
        "tool_presets['a'] must be a list of tool rules (got dict)."
    );
    assert!(fx
        .message(&base("tool_presets:\n  a: [{tool: '(' }]\n"))
        .starts_with(
            "tool_presets['a']: invalid tool rule at index 0: Invalid regex for 'tool' field '(': "
        ));
    assert_eq!(
        fx.message(&base("tool_presets: [a]\n")),
        "config.yaml 'tool_presets:' must be a mapping (got list)."
    );
}

// ── templates ───────────────────────────────────────────────────────────────────────────────

#[test]
fn agent_template_deep_merge() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "{CONNECTOR}agent_templates:\n  t:\n    description: shared\n    type: claude\n    working_directory: work\n    timeout: 900\n    new_session_args: [--a, --b]\n    session_prefix: tpl\n    permissions: {{enabled: true, timeout: 100}}\nagents:\n  a:\n    inherits: t\n    new_session_args: [--c]\n    session_prefix: null\n    permissions: {{timeout: 200}}\n"
    ));
    let a = &c.agents[0];
    assert_eq!(a.timeout, Duration::from_secs(900), "from the template");
    assert_eq!(a.new_session_args, ["--c"], "lists replace");
    assert_eq!(
        a.session_prefix, "agent-chat",
        "explicit null replaces, then the default applies"
    );
    assert!(a.permissions.enabled, "mappings merge");
    assert_eq!(
        a.permissions.timeout,
        Duration::from_secs(200),
        "entry wins"
    );
}

#[test]
fn template_may_not_inherit_or_set_identity_keys() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&base("agent_templates:\n  t: {inherits: u}\n")),
        "agent_templates['t'] must not set 'inherits': a template cannot inherit from another template."
    );
    assert_eq!(
        fx.message(&base("connector_templates:\n  t: {name: x}\n")),
        "connector_templates['t'] must not set 'name': it identifies a single entry, so set it on the entry itself."
    );
    let msgs = fx.messages(&base("watcher_templates:\n  t: {room: x, session_id: y}\n"));
    assert_eq!(msgs.len(), 2);
    assert!(msgs[0].contains("must not set 'room'"));
    assert!(msgs[1].contains("must not set 'session_id'"));
    assert_eq!(
        fx.message(&base("watcher_templates:\n  t: [1]\n")),
        "watcher_templates['t'] must be a mapping (got list)."
    );
}

#[test]
fn unknown_template_lists_the_available_ones() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!("{CONNECTOR}agents:\n  a: {{inherits: nope}}\n")),
        "Agent 'a': unknown agent_templates 'nope'. Available templates: (none defined)"
    );
    assert_eq!(
        fx.message(&base(
            "watcher_templates:\n  z: {}\n  y: {}\nwatchers:\n  - {room: r, inherits: x}\n"
        )),
        "Watcher entry 'index 0': unknown watcher_templates 'x'. Available templates: y, z"
    );
    assert_eq!(
        fx.message(&format!(
            "connectors:\n  - {{name: c, type: script, inherits: 5}}\n{AGENT}"
        )),
        "Connector entry 'index 0': 'inherits' must be a non-empty string naming a connector_templates entry (got 5)."
    );
}

#[test]
fn template_of_another_type_is_refused() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&format!(
            "connector_templates:\n  mm: {{type: mattermost}}\nconnectors:\n  - {{name: c, type: script, inherits: mm}}\n{AGENT}"
        )),
        "Connector entry 'index 0': type 'script' does not match connector_templates['mm']'s own type 'mattermost' — an entry cannot inherit a template written for a different type."
    );
}

#[test]
fn connector_template_supplies_type_and_settings() {
    let fx = Fixture::new();
    let c = fx.ok(&format!(
        "connector_templates:\n  chat:\n    type: rocketchat\n    allowed_users: {{owners: [alice]}}\n    server: {{url: 'https://c'}}\nconnectors:\n  - name: rc\n    inherits: chat\n    server: {{username: u, password: p}}\n{AGENT}"
    ));
    let ConnectorKind::RocketChat(rc) = &c.connectors[0].kind else {
        panic!()
    };
    assert_eq!(rc.url, "https://c");
    assert_eq!(rc.username, "u");
    assert_eq!(rc.owners, ["alice"]);
}

#[test]
fn template_unknown_keys_are_reported_once_at_the_template() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!(
        "{CONNECTOR}agent_templates:\n  t:\n    type: claude\n    timout: 5\nagents:\n  a: {{inherits: t, working_directory: work}}\n  b: {{inherits: t, working_directory: work}}\n"
    ));
    assert_eq!(errs.len(), 1, "{errs}");
    let e = &errs.errors[0];
    assert_eq!(e.entry.as_deref(), Some("agent_templates.t"));
    assert_eq!(e.message, "unknown key 'timout' (did you mean 'timeout'?)");
    assert_eq!(e.location.map(|l| l.line), Some(8));
}

#[test]
fn errors_from_template_values_point_at_the_template_line() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!(
        "{CONNECTOR}agent_templates:\n  t:\n    type: claude\n    timeout: soon\nagents:\n  a: {{inherits: t, working_directory: work}}\n"
    ));
    let e = &errs.errors[0];
    assert_eq!(e.entry.as_deref(), Some("agents.a"));
    assert_eq!(e.field.as_deref(), Some("timeout"));
    assert_eq!(e.location.map(|l| l.line), Some(8));
}

// ── watchers ────────────────────────────────────────────────────────────────────────────────

#[test]
fn rooms_expand_to_golden_names() {
    let fx = Fixture::new();
    let c = fx.ok(&base(
        "watchers:\n  - rooms: [general, '@alice', 'my room/x', '--a..b--', '@bob.smith']\n",
    ));
    let names: Vec<&str> = c.watchers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rc-home-general",
            "rc-home-dm-alice",
            "rc-home-my-room-x",
            "rc-home-a..b",
            "rc-home-dm-bob.smith"
        ]
    );
    assert_eq!(c.watchers[1].room, "@alice");
}

#[test]
fn explicit_name_session_and_notifications() {
    let fx = Fixture::new();
    let c = fx.ok(&base(
        "watchers:\n  - name: ops\n    room: general\n    session_id: abc\n    online_notification: hi\n    offline_notification: bye\n    history_handoff: {enabled: false, fetch_count: 10, verbatim_tail: 0}\n",
    ));
    let w = &c.watchers[0];
    assert_eq!(w.name, "ops");
    assert_eq!(w.session_id.as_deref(), Some("abc"));
    assert_eq!(w.online_notification.as_deref(), Some("hi"));
    assert_eq!(w.offline_notification.as_deref(), Some("bye"));
    assert_eq!(
        w.history_handoff,
        HistoryHandoff {
            enabled: false,
            fetch_count: 10,
            verbatim_tail: 0
        }
    );
}

#[test]
fn room_and_rooms_rules() {
    let fx = Fixture::new();
    let w = |entry: &str| base(&format!("watchers:\n  - {entry}\n"));
    assert_eq!(
        fx.message(&w("{room: a, rooms: [b]}")),
        "Watcher entry at index 0: set either 'room' or 'rooms', not both."
    );
    assert_eq!(
        fx.message(&w("{rooms: []}")),
        "Watcher entry at index 0: 'rooms' must be a non-empty list of room names."
    );
    assert_eq!(
        fx.message(&w("{rooms: [a, '']}")),
        "Watcher entry at index 0: 'rooms' entries must be non-empty strings."
    );
    assert_eq!(
        fx.message(&w("{rooms: [b, a, b, a, c]}")),
        "Watcher entry at index 0: 'rooms' contains duplicate room(s): ['a', 'b']."
    );
    assert_eq!(
        fx.message(&w("{agent: claude}")),
        "Watcher entry at index 0 must have a non-empty 'room' or 'rooms' field"
    );
    assert_eq!(
        fx.message(&w("{room: 5}")),
        "Watcher entry at index 0: 'room' must be a string (got int)."
    );
    assert_eq!(
        fx.message(&base("watchers:\n  - 5\n")),
        "Watcher entry at index 0 must be a mapping (got int)."
    );
}

#[test]
fn name_and_session_id_need_a_single_room() {
    let fx = Fixture::new();
    let msgs = fx.messages(&base(
        "watchers:\n  - {rooms: [a, b], name: n, session_id: s}\n",
    ));
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[0].starts_with(
            "Watcher entry at index 0: 'name' can only be set when the entry has exactly one room"
        ),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].starts_with("Watcher entry at index 0: 'session_id' can only be set"),
        "{}",
        msgs[1]
    );
    fx.ok(&base(
        "watchers:\n  - {rooms: [a], name: n, session_id: s}\n",
    ));
}

#[test]
fn watcher_names_must_be_unique_and_slash_free() {
    let fx = Fixture::new();
    let msg = fx.message(&base("watchers:\n  - room: general\n  - room: general\n"));
    assert!(
        msg.starts_with("Duplicate watcher name 'rc-home-general' found (derived from connector 'rc-home' and room 'general')."),
        "{msg}"
    );
    let msg = fx.message(&base(
        "watchers:\n  - {room: a, name: x}\n  - {room: b, name: x}\n",
    ));
    assert!(
        msg.starts_with("Duplicate watcher name 'x' found (set by 'name:')."),
        "{msg}"
    );
    let msg = fx.message(&base("watchers:\n  - {room: a, name: a/b}\n"));
    assert!(
        msg.starts_with("Watcher name 'a/b' must not contain '/'"),
        "{msg}"
    );
}

#[test]
fn a_broken_entry_does_not_claim_names() {
    let fx = Fixture::new();
    // Entry 0 fails (unknown agent) after its rooms are known; entry 1 may use the same room.
    let msgs = fx.messages(&base(
        "watchers:\n  - {rooms: [general], agent: ghost}\n  - room: general\n",
    ));
    assert_eq!(
        msgs,
        ["Watcher entry at index 0 references unknown agent 'ghost'"]
    );
}

#[test]
fn underivable_name_asks_for_an_explicit_one() {
    let fx = Fixture::new();
    assert_eq!(
        fx.message(&base("watchers:\n  - room: '///'\n")),
        "Watcher entry at index 0: cannot derive a watcher name from room '///' — set an explicit 'name:' for this entry."
    );
    fx.ok(&base("watchers:\n  - {room: '///', name: slashes}\n"));
}

#[test]
fn sticky_session_ids_must_be_unique() {
    let fx = Fixture::new();
    let errs = fx.errors(&base(
        "watchers:\n  - {room: a, session_id: s1}\n  - {room: b, session_id: s1}\n",
    ));
    assert_eq!(errs.len(), 1);
    let e = &errs.errors[0];
    assert!(
        e.message.starts_with("Duplicate sticky session_id 's1'"),
        "{}",
        e.message
    );
    assert_eq!(e.entry.as_deref(), Some("watchers[1]"));
    assert_eq!(e.location.map(|l| l.line), Some(11));
}

#[test]
fn references_and_their_defaults() {
    let fx = Fixture::new();
    let two = "connectors:\n  - {name: first, type: script}\n  - {name: second, type: script}\nagents:\n  a: {type: claude, working_directory: work}\n  b: {type: claude, working_directory: work}\ndefault_agent: b\n".to_string();
    let c = fx.ok(&format!(
        "{two}watchers:\n  - room: r\n  - {{room: s, connector: second, agent: a}}\n"
    ));
    assert_eq!(
        (
            c.watchers[0].connector.as_str(),
            c.watchers[0].agent.as_str()
        ),
        ("first", "b")
    );
    assert_eq!(c.watchers[0].name, "first-r");
    assert_eq!(
        (
            c.watchers[1].connector.as_str(),
            c.watchers[1].agent.as_str()
        ),
        ("second", "a")
    );
    assert_eq!(
        fx.messages(&format!(
            "{two}watchers:\n  - {{room: r, connector: x, agent: y}}\n"
        )),
        [
            "Watcher entry at index 0 references unknown connector 'x'",
            "Watcher entry at index 0 references unknown agent 'y'",
        ]
    );
}

#[test]
fn broken_agent_does_not_cascade_into_its_watchers() {
    let fx = Fixture::new();
    let msgs = fx.messages(&format!(
        "{CONNECTOR}agents:\n  a: {{type: claude}}\nwatchers:\n  - {{room: r, agent: a}}\n"
    ));
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs[0].contains("working_directory is required"));
}

#[test]
fn watcher_unknown_key_names_the_entry() {
    let fx = Fixture::new();
    let errs = fx.errors(&base(
        "watchers:\n  - name: ops\n    room: general\n    agnet: claude\n",
    ));
    let e = &errs.errors[0];
    assert_eq!(e.entry.as_deref(), Some("watchers[0] (ops)"));
    assert_eq!(e.message, "unknown key 'agnet' (did you mean 'agent'?)");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:12:5: watchers[0] (ops): agnet: unknown key 'agnet' (did you mean 'agent'?)",
            fx.path().display()
        )
    );
}

#[test]
fn watcher_template_supplies_settings() {
    let fx = Fixture::new();
    let c = fx.ok(&base(
        "watcher_templates:\n  t: {agent: claude, online_notification: up, history_handoff: {fetch_count: 5}}\nwatchers:\n  - {rooms: [a, b], inherits: t, history_handoff: {verbatim_tail: 1}}\n",
    ));
    assert_eq!(c.watchers.len(), 2);
    for w in &c.watchers {
        assert_eq!(w.online_notification.as_deref(), Some("up"));
        assert_eq!(w.history_handoff.fetch_count, 5);
        assert_eq!(w.history_handoff.verbatim_tail, 1);
    }
}

#[test]
fn context_files_resolve_and_missing_ones_warn() {
    let fx = Fixture::new();
    std::fs::write(fx.dir.path().join("present.md"), "x").unwrap();
    let loaded = fx
        .load(&base(
            "watchers:\n  - room: r\n    context_inject_files: [present.md, missing.md, '/abs/none.md']\n",
        ))
        .unwrap();
    let canonical = std::fs::canonicalize(fx.dir.path()).unwrap();
    assert_eq!(
        loaded.config.watchers[0].context_inject_files,
        [
            canonical.join("present.md"),
            canonical.join("missing.md"),
            PathBuf::from("/abs/none.md")
        ]
    );
    assert_eq!(loaded.warnings.len(), 2);
    assert_eq!(
        loaded.warnings[0].field.as_deref(),
        Some("context_inject_files[1]")
    );
}

// ── collection and positions ────────────────────────────────────────────────────────────────

#[test]
fn every_error_is_collected_in_file_order() {
    let fx = Fixture::new();
    let errs = fx.errors(
        "max_queue_depth: -5\nconnectors:\n  - name: rc\n    type: rocketchat\n    server: {url: nope, username: u, password: p}\nagents:\n  a:\n    type: claude\n    working_directory: /definitely/missing\n    permisions: {}\nwatchers:\n  - room: r\n    connector: ghost\n",
    );
    let lines: Vec<usize> = errs
        .errors
        .iter()
        .map(|e| e.location.unwrap().line)
        .collect();
    assert_eq!(lines, [1, 5, 9, 10, 13], "{errs}");
    let rendered = errs.to_string();
    assert_eq!(rendered.lines().count(), 5);
    for line in rendered.lines() {
        assert!(line.starts_with(&fx.path().display().to_string()), "{line}");
    }
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let fx = Fixture::new();
    let errs = fx.errors("connectors: [\n  name: x\nagents: {\n");
    assert_eq!(errs.len(), 1);
    assert!(errs.errors[0].message.starts_with("YAML syntax error"));
    assert!(errs.errors[0].location.is_some());
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    let fx = Fixture::new();
    let errs = fx.errors(&format!("{CONNECTOR}{AGENT}    type: opencode\n"));
    assert!(
        errs.errors[0].message.contains("duplicate key 'type'"),
        "{errs}"
    );
    assert!(errs.errors[0].message.contains("line 7"), "{errs}");
    assert_eq!(errs.errors[0].location.map(|l| l.line), Some(9));
}

#[test]
fn missing_file() {
    let err = load(Path::new("/definitely/not/here/config.yaml")).unwrap_err();
    assert_eq!(
        err.messages(),
        ["Config file not found: /definitely/not/here/config.yaml"]
    );
}

// ── the shipped example and schema ──────────────────────────────────────────────────────────

/// The repository's `config.example.yaml`.
fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.yaml")
}

/// A home folder holding the projects the example's agents work in.
fn example_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    for dir in ["projects/webapp", "projects/docs-site"] {
        std::fs::create_dir_all(home.path().join(dir)).unwrap();
    }
    home
}

#[test]
fn example_config_loads() {
    let home = example_home();
    let env = Env {
        home: Some(home.path().to_path_buf()),
    };
    let loaded = match load_with_env(&example_path(), &env) {
        Ok(l) => l,
        Err(e) => panic!("config.example.yaml does not load:\n{e}"),
    };
    let c = &loaded.config;
    let names: Vec<&str> = c.watchers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rc-home-general",
            "rc-home-dev-team",
            "alice-dm",
            "mm-ops-incidents",
            "voice-kitchen",
            "jobs-nightly-report"
        ]
    );
    assert_eq!(c.connectors.len(), 5);
    assert_eq!(c.agents.len(), 2);
    let claude = &c.agents[0];
    assert!(claude.permissions.enabled && claude.permissions.require_other_owner);
    assert_eq!(
        claude.working_directory,
        home.path().join("projects/webapp")
    );
    // Only the context files the example mentions but a fresh checkout lacks may warn.
    for w in &loaded.warnings {
        assert!(w.message.starts_with("context file not found"), "{w}");
    }
}

/// The example as JSON, for the schema walks below.
fn example_json() -> serde_json::Value {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let root = crate::yaml::parse(&text).unwrap().unwrap();
    to_json(&root)
}

fn to_json(node: &crate::yaml::Node) -> serde_json::Value {
    use crate::yaml::Value as Y;
    use serde_json::Value as J;
    match &node.value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Int(i) => J::from(*i),
        Y::Float(f) => J::from(*f),
        Y::Str(s) => J::String(s.clone()),
        Y::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Y::Map(entries) => J::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
    }
}

/// A key counts as shown whether it appears in an entry or in a template of that kind.
fn section(definition: &str) -> String {
    definition.replace("Template", "Entry")
}

/// Walks `value` against `schema`, recording every (definition, property) used and failing on
/// any property the schema does not allow.
struct SchemaWalk<'s> {
    root: &'s serde_json::Value,
    used: std::collections::BTreeSet<(String, String)>,
    problems: Vec<String>,
}

impl<'s> SchemaWalk<'s> {
    fn deref(&self, schema: &'s serde_json::Value) -> (Option<String>, &'s serde_json::Value) {
        if let Some(r) = schema.get("$ref").and_then(|r| r.as_str()) {
            let name = r.trim_start_matches("#/definitions/");
            return (Some(name.to_string()), &self.root["definitions"][name]);
        }
        if let Some(all) = schema.get("allOf").and_then(|a| a.as_array()) {
            if all.len() == 1 {
                return self.deref(&all[0]);
            }
        }
        (None, schema)
    }

    fn walk(&mut self, value: &serde_json::Value, schema: &'s serde_json::Value, at: &str) {
        let (name, schema) = self.deref(schema);
        if let Some(options) = schema.get("anyOf").and_then(|a| a.as_array()) {
            // Pick the branch whose JSON type fits the value.
            for option in options {
                let (_, resolved) = self.deref(option);
                let t = resolved.get("type").and_then(|t| t.as_str());
                let fits = match value {
                    serde_json::Value::Null => t == Some("null"),
                    _ if t.is_none() => true,
                    serde_json::Value::String(_) => t == Some("string"),
                    serde_json::Value::Object(_) => t == Some("object"),
                    serde_json::Value::Array(_) => t == Some("array"),
                    _ => t.is_some() && t != Some("null"),
                };
                if fits {
                    return self.walk(value, option, at);
                }
            }
            self.problems
                .push(format!("{at}: no schema branch fits {value}"));
            return;
        }
        match value {
            serde_json::Value::Object(map) => {
                let props = schema.get("properties").and_then(|p| p.as_object());
                for (k, v) in map {
                    let here = format!("{at}.{k}");
                    if let Some(prop) = props.and_then(|p| p.get(k)) {
                        if let Some(n) = &name {
                            self.used.insert((section(n), k.clone()));
                        }
                        self.walk(v, prop, &here);
                    } else if let Some(extra) =
                        schema.get("additionalProperties").filter(|a| a.is_object())
                    {
                        self.walk(v, extra, &here);
                    } else {
                        self.problems.push(format!("{here}: not in the schema"));
                    }
                }
            }
            serde_json::Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item, item_schema, &format!("{at}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn example_fits_the_schema_and_uses_every_key() {
    let schema = json_schema();
    let mut walk = SchemaWalk {
        root: &schema,
        used: Default::default(),
        problems: Vec::new(),
    };
    let example = example_json();
    // The root schema is the ConfigFile definition inlined at the top.
    let mut root_used = std::collections::BTreeSet::new();
    for (k, v) in example.as_object().unwrap() {
        let prop = &schema["properties"][k];
        assert!(!prop.is_null(), "top-level key {k} is not in the schema");
        root_used.insert(k.clone());
        walk.walk(v, prop, k);
    }
    assert!(walk.problems.is_empty(), "{:#?}", walk.problems);

    let mut unused = Vec::new();
    for k in schema["properties"].as_object().unwrap().keys() {
        if !root_used.contains(k) {
            unused.push(k.clone());
        }
    }
    for (def, body) in schema["definitions"].as_object().unwrap() {
        if let Some(props) = body.get("properties").and_then(|p| p.as_object()) {
            for k in props.keys() {
                if !walk.used.contains(&(section(def), k.clone())) {
                    unused.push(format!("{def}.{k}"));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "config.example.yaml does not show: {unused:?}"
    );
}

#[test]
fn example_deserializes_into_the_schema_types() {
    let parsed: Result<crate::schema::ConfigFile, _> = serde_json::from_value(example_json());
    if let Err(e) = parsed {
        panic!("config.example.yaml does not fit the schema types: {e}");
    }
}

/// The loader's key tables and the generated schema describe the same keys.
#[test]
fn key_tables_match_the_schema() {
    use crate::keys::{self, Key};
    let schema = json_schema();
    let defs = &schema["definitions"];

    fn props(s: &serde_json::Value) -> std::collections::BTreeSet<String> {
        s["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
    fn names(table: &[Key], without: &[&str]) -> std::collections::BTreeSet<String> {
        table
            .iter()
            .map(|k| k.name.to_string())
            .filter(|n| !without.contains(&n.as_str()))
            .collect()
    }
    /// The definition a property points at (through `anyOf: [{$ref}, null]`).
    fn target<'a>(defs: &'a serde_json::Value, prop: &serde_json::Value) -> &'a serde_json::Value {
        let r = prop["anyOf"][0]["$ref"]
            .as_str()
            .or_else(|| prop["$ref"].as_str())
            .unwrap();
        &defs[r.trim_start_matches("#/definitions/")]
    }
    fn same(
        defs: &serde_json::Value,
        table: &'static [Key],
        schema: &serde_json::Value,
        without: &[&str],
        what: &str,
    ) {
        assert_eq!(names(table, without), props(schema), "{what}");
        for key in table {
            if let Some(nested) = key.nested {
                let sub = target(defs, &schema["properties"][key.name]);
                same(defs, nested, sub, &[], &format!("{what}.{}", key.name));
            }
        }
    }

    same(defs, keys::TOP, &schema, &[], "top level");
    same(defs, keys::AGENT, &defs["AgentEntry"], &[], "agent");
    same(
        defs,
        keys::AGENT,
        &defs["AgentTemplate"],
        &["inherits"],
        "agent template",
    );
    same(defs, keys::WATCHER, &defs["WatcherEntry"], &[], "watcher");
    let mut watcher_forbidden = keys::WATCHER_TEMPLATE_FORBIDDEN.to_vec();
    watcher_forbidden.push("inherits");
    same(
        defs,
        keys::WATCHER,
        &defs["WatcherTemplate"],
        &watcher_forbidden,
        "watcher template",
    );
    same(
        defs,
        keys::ANY_CONNECTOR,
        &defs["ConnectorEntry"],
        &[],
        "connector",
    );
    same(
        defs,
        keys::ANY_CONNECTOR,
        &defs["ConnectorTemplate"],
        &["name", "inherits"],
        "connector template",
    );
    same(defs, keys::TOOL_RULE, &defs["ToolRule"], &[], "tool rule");
}
