//! Explanations: each param with its rule, the decision and its reason, the text printed by
//! `policy check`, and the config entry point.

use std::path::Path;

use acg_config::ToolRule;
use acg_policy::{check_from_config, Decision, PolicyError, Role, RuleList, ToolInput, ToolPolicy};

fn rule(tool: &str, params: Option<&str>) -> ToolRule {
    ToolRule {
        tool: tool.into(),
        params: params.map(Into::into),
    }
}

fn bash(command: &str) -> ToolInput {
    ToolInput::parse(&serde_json::json!({ "command": command }).to_string()).unwrap()
}

#[test]
fn each_param_names_its_rule_or_none() {
    let policy = ToolPolicy::new(
        &[rule("Bash", Some("ls.*")), rule("Bash", Some("git status"))],
        &[],
    )
    .unwrap();
    let e = policy.explain(
        Role::Owner,
        "Bash",
        &bash("ls -la && git status && rm -rf build"),
        Path::new("/w"),
    );
    assert_eq!(e.decision, Decision::AskOwner);
    assert_eq!(e.params.len(), 3);
    let first = e.params[0].rule.as_ref().unwrap();
    assert_eq!((first.list, first.index), (RuleList::Owner, 0));
    let second = e.params[1].rule.as_ref().unwrap();
    assert_eq!((second.list, second.index), (RuleList::Owner, 1));
    assert!(e.params[2].rule.is_none());
    assert_eq!(
        e.reason,
        r#"param 3 "rm -rf build" matched no rule; an owner is asked"#
    );
    assert_eq!(
        e.to_string(),
        r#"Tool call: Bash as owner
Input: {"command": "ls -la && git status && rm -rf build"}
Params:
  1. "ls -la" — matched owner rule #1 {tool: Bash, params: "ls.*"}
  2. "git status" — matched owner rule #2 {tool: Bash, params: "git status"}
  3. "rm -rf build" — no rule matched
Decision: ask an owner in chat — param 3 "rm -rf build" matched no rule; an owner is asked"#
    );
}

#[test]
fn built_in_rules_come_first_and_are_named() {
    let policy = ToolPolicy::new(&[rule("Bash", Some("date.*"))], &[]).unwrap();
    let e = policy.explain(Role::Owner, "Bash", &bash("date +%F"), Path::new("/"));
    assert_eq!(e.decision, Decision::AutoAllowed);
    let r = e.params[0].rule.as_ref().unwrap();
    assert_eq!((r.list, r.index), (RuleList::BuiltIn, 4));
    assert_eq!(e.reason, "every param matched a rule");
    assert_eq!(
        e.approving_rules(),
        vec![r#"built-in rule #5 {tool: Bash, params: "date(\\s+.*)?"}"#]
    );
}

#[test]
fn guest_built_ins_are_narrower() {
    let policy = ToolPolicy::new(&[], &[]).unwrap();
    let send = bash("agent-chat-gateway send --room x hi");
    assert_eq!(
        policy.decide(Role::Owner, "Bash", &send, Path::new("/")),
        Decision::AutoAllowed
    );
    assert_eq!(
        policy.decide(Role::Guest, "Bash", &send, Path::new("/")),
        Decision::GuestDenied
    );
    let history = bash("agent-chat-gateway fetch-history --limit 5");
    assert_eq!(
        policy.decide(Role::Guest, "Bash", &history, Path::new("/")),
        Decision::AutoAllowed
    );
    let doc = bash("agent-chat-gateway instructions scheduling");
    assert_eq!(
        policy.decide(Role::Guest, "Bash", &doc, Path::new("/")),
        Decision::AutoAllowed
    );
    assert_eq!(
        policy.decide(Role::Guest, "Bash", &bash("date"), Path::new("/")),
        Decision::GuestDenied
    );
}

#[test]
fn empty_lists_allow_nothing_but_toolsearch() {
    let policy = ToolPolicy::new(&[], &[]).unwrap();
    let input = ToolInput::parse(r#"{"pattern": "*.rs"}"#).unwrap();
    let e = policy.explain(Role::Guest, "Glob", &input, Path::new("/"));
    assert_eq!(e.decision, Decision::GuestDenied);
    assert_eq!(
        e.reason,
        "no guest rule is about tool Glob; guests cannot be asked for approval"
    );
    let e = policy.explain(Role::Guest, "ToolSearch", &input, Path::new("/"));
    assert_eq!(e.decision, Decision::AutoAllowed);
    assert_eq!(e.reason, "ToolSearch is always allowed");
}

#[test]
fn json_param_for_other_tools_is_python_dumps() {
    let policy =
        ToolPolicy::new(&[rule("Glob", Some(r#"\{"pattern": "[^"]*\.py"\}"#))], &[]).unwrap();
    let ok = ToolInput::parse(r#"{"pattern":"*.py"}"#).unwrap();
    assert_eq!(
        policy.decide(Role::Owner, "Glob", &ok, Path::new("/")),
        Decision::AutoAllowed
    );
    let extra = ToolInput::parse(r#"{"pattern":"*.py","path":"/etc"}"#).unwrap();
    assert_eq!(
        policy.decide(Role::Owner, "Glob", &extra, Path::new("/")),
        Decision::AskOwner
    );
}

#[test]
fn every_param_must_match_some_rule() {
    let policy = ToolPolicy::new(
        &[rule("Bash", Some("echo .*")), rule("Bash", Some("ls"))],
        &[],
    )
    .unwrap();
    let cwd = Path::new("/");
    assert_eq!(
        policy.decide(Role::Owner, "Bash", &bash("echo a; ls"), cwd),
        Decision::AutoAllowed
    );
    assert_eq!(
        policy.decide(Role::Owner, "Bash", &bash("echo a; ls -la"), cwd),
        Decision::AskOwner
    );
    // Tool names are compared case-insensitively with the whole pattern.
    assert_eq!(
        policy.decide(Role::Owner, "BASH", &bash("ls"), cwd),
        Decision::AutoAllowed
    );
    assert_eq!(
        policy.decide(Role::Owner, "Bashy", &bash("ls"), cwd),
        Decision::AskOwner
    );
}

#[test]
fn opaque_constructs_are_listed_with_their_reason() {
    let policy = ToolPolicy::new(&[rule("Bash", Some(".*"))], &[]).unwrap();
    let e = policy.explain(Role::Owner, "Bash", &bash("echo $(whoami)"), Path::new("/"));
    assert_eq!(e.decision, Decision::AskOwner);
    assert_eq!(e.opaque.len(), 1);
    let text = e.to_string();
    assert!(text.contains("Never approved by a params rule:"), "{text}");
    assert!(
        text.contains(r#"  - "$(whoami)": command substitution"#),
        "{text}"
    );
    assert!(
        text.contains("(no rule without params covers this tool)"),
        "{text}"
    );
    assert!(
        e.reason.starts_with(r#""$(whoami)": command substitution"#),
        "{}",
        e.reason
    );
}

#[test]
fn opencode_patterns_are_judged_like_params() {
    let policy = ToolPolicy::new(
        &[rule("bash", Some("ls.*"))],
        &[rule("edit", Some("/w/.*"))],
    )
    .unwrap();
    let e = policy.explain_patterns(Role::Owner, "bash", &["ls -la".into()]);
    assert_eq!(e.decision, Decision::AutoAllowed);
    let e = policy.explain_patterns(Role::Owner, "bash", &["ls $(rm -rf /)".into()]);
    assert_eq!(e.decision, Decision::AskOwner);
    let e = policy.explain_patterns(Role::Guest, "edit", &["/w/a".into(), "/etc/x".into()]);
    assert_eq!(e.decision, Decision::GuestDenied);
    assert!(e.params[1].rule.is_none());
}

fn write_config(dir: &Path, agent_extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "connectors:
  - name: rc-home
    type: rocketchat
    server: {{url: 'https://chat.example.com/', username: bot, password: pw}}
agents:
  claude:
    type: claude
    working_directory: work
{agent_extra}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_from_config_uses_the_agents_lists_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "    owner_allowed_tools:
      - {tool: Bash, params: 'ls.*'}
    guest_allowed_tools:
      - {tool: Read, params: '/srv/docs/.*'}
    permissions:
      enabled: true
      skip_owner_approval: true
",
    );
    let config = acg_config::load(&path).unwrap();
    let cwd = Path::new("/srv");
    let e = check_from_config(&config, "claude", Role::Owner, "Bash", &bash("ls"), cwd).unwrap();
    assert_eq!(e.decision, Decision::AutoAllowed);
    let e = check_from_config(&config, "claude", Role::Owner, "Bash", &bash("rm x"), cwd).unwrap();
    assert_eq!(e.decision, Decision::SkipOwnerApproval);
    assert!(e.to_string().contains("skip_owner_approval"));
    let read = ToolInput::parse(r#"{"file_path": "docs/a.md"}"#).unwrap();
    let e = check_from_config(&config, "claude", Role::Guest, "Read", &read, cwd).unwrap();
    assert_eq!(e.decision, Decision::AutoAllowed, "{e}");
    let err =
        check_from_config(&config, "nope", Role::Owner, "Bash", &bash("ls"), cwd).unwrap_err();
    assert!(matches!(err, PolicyError::UnknownAgent { .. }));
    assert_eq!(
        err.to_string(),
        r#"unknown agent "nope"; agents in the config: claude"#
    );
}

#[test]
fn check_from_config_notes_disabled_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let config = acg_config::load(&path).unwrap();
    let e = check_from_config(
        &config,
        "claude",
        Role::Owner,
        "Bash",
        &bash("ls"),
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(e.decision, Decision::AskOwner);
    assert!(
        e.to_string().contains("Note: permissions.enabled is false"),
        "{e}"
    );
}

#[test]
fn roles_parse() {
    assert_eq!("Owner".parse::<Role>().unwrap(), Role::Owner);
    assert_eq!("guest".parse::<Role>().unwrap(), Role::Guest);
    assert!("admin".parse::<Role>().is_err());
}
