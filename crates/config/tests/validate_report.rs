//! `validate()` as the `config validate` command uses it: the summary and error lines, warnings
//! for state files naming watchers the config no longer has, and `--lint` findings.

use std::path::{Path, PathBuf};

use acg_config::{validate, ValidationReport};

/// A config folder with a `work/` folder for agents and an empty runtime folder.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("work")).expect("work dir");
        std::fs::create_dir(dir.path().join("runtime")).expect("runtime dir");
        Setup { dir }
    }

    fn config(&self, yaml: &str) -> PathBuf {
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, yaml).expect("write config");
        path
    }

    fn runtime(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    fn validate(&self, yaml: &str, lint: bool) -> ValidationReport {
        let path = self.config(yaml);
        validate(&path, lint, Some(&self.runtime()))
    }
}

const BASE: &str = "connectors:
  - name: rc
    type: rocketchat
    server: {url: 'https://chat.example.com', username: bot, password: pw}
agents:
  claude:
    type: claude
    working_directory: work
";

#[test]
fn valid_summary_mentions_expansion() {
    let s = Setup::new();
    let report = s.validate(
        &format!("{BASE}watchers:\n  - rooms: [a, b]\n  - room: c\n"),
        false,
    );
    assert!(report.is_valid());
    assert_eq!(report.exit_code(), 0);
    assert_eq!((report.watcher_count, report.entry_count), (3, 2));
    let path = s.dir.path().join("config.yaml");
    assert_eq!(
        report.render(),
        format!(
            "✓ {}: valid — 3 watcher(s) (expanded from 2 entries)",
            path.display()
        )
    );
}

#[test]
fn valid_summary_without_expansion() {
    let s = Setup::new();
    let report = s.validate(&format!("{BASE}watchers:\n  - room: a\n"), false);
    assert!(
        report.render().ends_with(": valid — 1 watcher(s)"),
        "{}",
        report.render()
    );
}

#[test]
fn invalid_report_lists_every_error_with_location() {
    let s = Setup::new();
    let report = s.validate(
        &format!("{BASE}    timeout: soon\nwatchers:\n  - room: a\n    agent: ghost\n"),
        false,
    );
    assert!(!report.is_valid());
    assert_eq!(report.exit_code(), 1);
    let path = s.dir.path().join("config.yaml");
    let text = report.render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("✗ {}: 2 error(s)", path.display()));
    assert_eq!(
        lines[1],
        format!(
            "  - {}:9:14: agents.claude: timeout: must be a number of seconds (got str).",
            path.display()
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "  - {}:12:12: watchers[0]: agent: Watcher entry at index 0 references unknown agent 'ghost'",
            path.display()
        )
    );
}

#[test]
fn missing_file_is_one_error() {
    let report = validate(Path::new("/no/such/config.yaml"), false, None);
    assert_eq!(
        report.render(),
        "✗ /no/such/config.yaml: 1 error(s)\n  - /no/such/config.yaml: Config file not found: /no/such/config.yaml"
    );
}

#[test]
fn state_watchers_missing_from_the_config_warn() {
    let s = Setup::new();
    std::fs::write(
        s.runtime().join("state.rc.json"),
        r#"{"watchers": [
            {"watcher_name": "rc-a", "session_id": ""},
            {"watcher_name": "rc-gone", "session_id": "x"},
            {"watcher_id": "old", "room_name": "legacy-room"},
            {"nothing": true}
        ]}"#,
    )
    .expect("state file");
    let report = s.validate(&format!("{BASE}watchers:\n  - room: a\n"), false);
    assert!(report.is_valid());
    let names: Vec<bool> = ["rc-gone", "legacy-room"]
        .iter()
        .map(|n| {
            report
                .warnings
                .iter()
                .any(|w| w.message.contains(&format!("'{n}'")))
        })
        .collect();
    assert_eq!(names, [true, true], "{report}");
    assert_eq!(report.warnings.len(), 2, "{report}");
    assert!(report.render().contains("\n  ⚠ "), "{report}");
}

#[test]
fn corrupt_state_file_is_ignored() {
    let s = Setup::new();
    std::fs::write(s.runtime().join("state.rc.json"), "{not json").expect("state file");
    let report = s.validate(&format!("{BASE}watchers:\n  - room: a\n"), false);
    assert!(report.warnings.is_empty());
}

#[test]
fn lint_flags_restated_defaults_and_inherited_values() {
    let s = Setup::new();
    let yaml = "connectors:
  - name: rc
    type: rocketchat
    server: {url: 'https://c', username: u, password: p}
    require_mention: true
    attachments: {max_file_size_mb: 10}
agent_templates:
  t:
    type: claude
    working_directory: work
    timeout: 900
    session_prefix: team
agents:
  a:
    inherits: t
    timeout: 360
    session_prefix: team
    lazy_instruction_loading: true
    command: claude
watchers:
  - room: x
    online_notification: null
max_queue_depth: 100
";
    let report = s.validate(yaml, true);
    assert!(report.is_valid(), "{report}");
    let found: Vec<(String, String)> = report
        .lint
        .iter()
        .map(|f| {
            (
                f.entry.clone().unwrap_or_default(),
                f.field.clone().unwrap_or_default(),
            )
        })
        .collect();
    let expect = |entry: &str, field: &str| (entry.to_string(), field.to_string());
    assert_eq!(
        found,
        [
            expect("connectors[0] (rc)", "require_mention"),
            expect("connectors[0] (rc)", "attachments.max_file_size_mb"),
            expect("agents.a", "session_prefix"),
            expect("agents.a", "lazy_instruction_loading"),
            expect("agents.a", "command"),
            expect("watchers[0]", "online_notification"),
            expect("", "max_queue_depth"),
        ],
        "{report}"
    );
    let inherited = &report.lint[2];
    assert_eq!(
        inherited.message,
        "matches the value inherited from agent_templates['t'].session_prefix ('team') — can be omitted from this entry."
    );
    assert_eq!(
        report.lint[0].message,
        "restates the built-in default (True) — can be omitted."
    );
    let text = report.render();
    assert!(text.contains("\n\n7 lint finding(s):\n  - "), "{text}");
}

#[test]
fn lint_with_nothing_to_say() {
    let s = Setup::new();
    let report = s.validate(BASE, true);
    assert!(
        report
            .render()
            .ends_with("\n\nlint: no redundant defaults found"),
        "{report}"
    );
}
