//! Micro-benchmarks of the tool policy's hot path: one decision per tool call the agent makes
//! (the permission broker runs it before every tool), including the tree-sitter bash split.
//!
//! Run with `cargo bench -p acg-policy`; `docs/performance.md` records the results.

use std::path::Path;

use acg_config::model::ToolRule;
use acg_policy::{split_bash, Role, ToolInput, ToolPolicy};

fn main() {
    divan::main();
}

fn rule(tool: &str, params: Option<&str>) -> ToolRule {
    ToolRule {
        tool: tool.to_string(),
        params: params.map(str::to_string),
    }
}

/// A typical owner allow-list: read-only tools anywhere, a handful of bash commands.
fn policy() -> ToolPolicy {
    let owner = [
        rule("Read|Glob|Grep", None),
        rule(
            "Bash",
            Some(r"(ls|cat|head|tail|wc|git (status|log|diff))(\s.*)?"),
        ),
        rule("Bash", Some(r"cargo (build|test|check)(\s.*)?")),
        rule("Write|Edit", Some(r"/work/project/.*")),
    ];
    let guest = [rule("Read", Some(r"/work/project/docs/.*"))];
    ToolPolicy::new(&owner, &guest).expect("the bench rules compile")
}

const SIMPLE: &str = "ls -la src";
const PIPELINE: &str = "git log --oneline | head -20 && cargo test -p acg-core 2>&1 | tail -5";
const HOSTILE: &str =
    r#"for f in $(ls *.rs); do echo "$f" | sed -e 's/a/b/' > /tmp/x.$f; done; eval "$CMD" &"#;

/// Splitting a command line into invocations (tree-sitter parse + hardening walk).
#[divan::bench(args = [SIMPLE, PIPELINE, HOSTILE])]
fn bash_split(command: &str) -> usize {
    split_bash(divan::black_box(command)).params.len()
}

/// A whole decision for a Bash call: param extraction (the split), rule matching, reason.
#[divan::bench(args = [SIMPLE, PIPELINE, HOSTILE])]
fn decide_bash(bencher: divan::Bencher, command: &str) {
    let policy = policy();
    let input = ToolInput::from_value(&serde_json::json!({"command": command, "description": "x"}));
    let cwd = Path::new("/work/project");
    bencher.bench_local(|| policy.decide(Role::Owner, "Bash", divan::black_box(&input), cwd));
}

/// A decision for a file tool: path normalization and one regex.
#[divan::bench]
fn decide_write(bencher: divan::Bencher) {
    let policy = policy();
    let input = ToolInput::from_value(
        &serde_json::json!({"file_path": "src/../src/main.rs", "content": "fn main() {}\n"}),
    );
    let cwd = Path::new("/work/project");
    bencher.bench_local(|| policy.decide(Role::Owner, "Write", divan::black_box(&input), cwd));
}

/// Compiling an agent's allow-lists (once per daemon start, per agent).
#[divan::bench]
fn compile_rules() -> ToolPolicy {
    policy()
}
