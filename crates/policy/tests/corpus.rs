//! The bypass corpus: every entry must stay "not auto-approved" under a permissive-looking
//! owner rule set, and every benign entry must still be approved.

use std::path::Path;

use acg_config::ToolRule;
use acg_policy::{Decision, Role, ToolInput, ToolPolicy};

/// Rules a team might write believing each allows only "safe" commands.
const PERMISSIVE_OWNER_RULES: &[&str] = &[
    "echo .*",
    "ls.*",
    "cat .*",
    "cat",
    "git (status|log|diff).*",
    "git .*",
    "find .*",
    "xargs .*",
    "env .*",
    "timeout .*",
    "sudo ls.*",
    "doas ls.*",
    "bash -c ls",
    "sh -c ls",
    "nice .*",
    "ionice .*",
    "nohup .*",
    "stdbuf .*",
    "time .*",
    "command .*",
    "builtin .*",
    "exec .*",
    "setsid .*",
    "chroot .*",
    "watch .*",
    "ssh .*",
    "su .*",
    "grep .*",
    "awk .*",
    "gawk .*",
    "sed .*",
    "head .*",
    "tail .*",
    "wc.*",
    "sort .*",
    "true",
    "cd .*",
    "printf .*",
    "tar .*",
    "rg .*",
    "rsync .*",
    "python3 .*",
    "perl .*",
    "node .*",
    "ruby .*",
    "eval ls.*",
    "test .*",
    "read .*",
    "let .*",
    "export .*",
    "declare .*",
    "alias .*",
    "trap .*",
    "source .*",
    r"\. .*",
    "hash .*",
    "enable .*",
    "coproc .*",
    "curl .*",
    "> /tmp/.*",
    "python3.*",
    "vim .*",
];

fn policy() -> ToolPolicy {
    let rules: Vec<ToolRule> = PERMISSIVE_OWNER_RULES
        .iter()
        .map(|p| ToolRule {
            tool: "Bash".to_string(),
            params: Some((*p).to_string()),
        })
        .collect();
    ToolPolicy::new(&rules, &rules).expect("rules compile")
}

fn entries(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("##"))
        .map(|l| l.replace('⏎', "\n"))
        .collect()
}

fn bash(command: &str) -> ToolInput {
    ToolInput::Object(vec![
        (
            "command".to_string(),
            ToolInput::String(command.to_string()),
        ),
        (
            "description".to_string(),
            ToolInput::String("test".to_string()),
        ),
    ])
}

#[test]
fn every_bypass_attempt_is_not_auto_approved() {
    let corpus = entries(include_str!("bypass_corpus.txt"));
    assert!(corpus.len() >= 60, "corpus has {} entries", corpus.len());
    let policy = policy();
    let mut approved = Vec::new();
    for cmd in &corpus {
        for role in [Role::Owner, Role::Guest] {
            let e = policy.explain(role, "Bash", &bash(cmd), Path::new("/work/proj"));
            if e.decision == Decision::AutoAllowed {
                approved.push(format!("{cmd:?} ({role}):\n{e}"));
            }
        }
    }
    assert!(
        approved.is_empty(),
        "{} bypass(es) approved:\n{}",
        approved.len(),
        approved.join("\n\n")
    );
}

#[test]
fn benign_commands_stay_approved() {
    let benign = entries(include_str!("benign_commands.txt"));
    assert!(
        benign.len() >= 40,
        "benign table has {} entries",
        benign.len()
    );
    let policy = policy();
    let mut refused = Vec::new();
    for cmd in &benign {
        let e = policy.explain(Role::Owner, "Bash", &bash(cmd), Path::new("/work/proj"));
        if e.decision != Decision::AutoAllowed {
            refused.push(format!("{cmd:?}:\n{e}"));
        }
    }
    assert!(
        refused.is_empty(),
        "{} benign command(s) not approved:\n{}",
        refused.len(),
        refused.join("\n\n")
    );
}

#[test]
fn a_rule_without_params_still_approves_opaque_calls() {
    let policy = ToolPolicy::new(
        &[ToolRule {
            tool: "Bash".to_string(),
            params: None,
        }],
        &[],
    )
    .unwrap();
    let e = policy.explain(Role::Owner, "Bash", &bash("echo $(id)"), Path::new("/"));
    assert_eq!(e.decision, Decision::AutoAllowed, "{e}");
    // `.*` is a params rule: it matches every string but not opaque constructs.
    let policy = ToolPolicy::new(
        &[ToolRule {
            tool: "Bash".to_string(),
            params: Some(".*".to_string()),
        }],
        &[],
    )
    .unwrap();
    let e = policy.explain(Role::Owner, "Bash", &bash("echo $(id)"), Path::new("/"));
    assert_eq!(e.decision, Decision::AskOwner, "{e}");
    let e = policy.explain(
        Role::Owner,
        "Bash",
        &bash("echo hi; rm -rf build"),
        Path::new("/"),
    );
    assert_eq!(e.decision, Decision::AutoAllowed, "{e}");
}

#[test]
fn file_tool_paths_cannot_climb_out_of_an_allowed_tree() {
    let rules = [ToolRule {
        tool: "Read|Write|Edit".to_string(),
        params: Some("/work/proj/.*".to_string()),
    }];
    let policy = ToolPolicy::new(&rules, &[]).unwrap();
    let cwd = Path::new("/work/proj");
    for path in [
        "/work/proj/../../etc/passwd",
        "../../etc/passwd",
        "/work/proj/./../other/x",
        "sub/../../../../root/.ssh/id_rsa",
        "/work/projX/file",
    ] {
        let input = ToolInput::Object(vec![(
            "file_path".to_string(),
            ToolInput::String(path.to_string()),
        )]);
        for tool in ["Read", "Write", "Edit"] {
            let e = policy.explain(Role::Owner, tool, &input, cwd);
            assert_eq!(e.decision, Decision::AskOwner, "{tool} {path}: {e}");
        }
    }
    let input = ToolInput::Object(vec![(
        "file_path".to_string(),
        ToolInput::String("src/../README.md".to_string()),
    )]);
    assert_eq!(
        policy.decide(Role::Owner, "Read", &input, cwd),
        Decision::AutoAllowed
    );
}
