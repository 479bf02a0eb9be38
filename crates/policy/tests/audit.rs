//! The audit trail: append/read round trip, filters, concurrent appends, damaged files.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Instant;

use acg_policy::audit::{
    truncate, AuditDecision, AuditFilter, AuditLog, AuditRecord, SyncPolicy, MAX_INPUT_CHARS,
};
use acg_policy::Decision;
use jiff::Timestamp;

fn record(watcher: &str, time: &str, decision: AuditDecision) -> AuditRecord {
    AuditRecord {
        time: time.parse().unwrap(),
        connector: "rc-home".into(),
        watcher: watcher.into(),
        session: "sess-1".into(),
        requester: "bob".into(),
        approver: None,
        tool: "Bash".into(),
        params: vec!["ls -la".into(), "> /tmp/x".into()],
        input: r#"{"command": "ls -la > /tmp/x"}"#.into(),
        decision,
        rule: Some(r#"owner rule #1 {tool: Bash, params: "ls.*"}"#.into()),
        reason: "every param matched a rule".into(),
    }
}

#[test]
fn records_round_trip_as_one_json_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    let a = record("w1", "2026-05-10T06:32:00.123Z", AuditDecision::AutoAllowed);
    let mut b = record("w2", "2026-05-10T06:33:00Z", AuditDecision::Approved);
    b.approver = Some("alice".into());
    b.rule = None;
    log.append(&a).unwrap();
    log.append(&b).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        r#"{"time":"2026-05-10T06:32:00.123Z","connector":"rc-home","watcher":"w1","session":"sess-1","requester":"bob","approver":null,"tool":"Bash","params":["ls -la","> /tmp/x"],"input":"{\"command\": \"ls -la > /tmp/x\"}","decision":"auto_allowed","rule":"owner rule #1 {tool: Bash, params: \"ls.*\"}","reason":"every param matched a rule"}"#
    );
    let readout = AuditLog::read(&path, &AuditFilter::default()).unwrap();
    assert_eq!(readout.entries.len(), 2);
    assert_eq!(readout.entries[0].record, a);
    assert_eq!(readout.entries[1].record, b);
    assert_eq!(readout.skipped, 0);
    assert!(!readout.truncated_tail);
    assert_eq!(readout.json_lines(), text);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn human_display() {
    let mut r = record(
        "rc-home-general",
        "2026-05-10T06:32:00Z",
        AuditDecision::Denied,
    );
    r.approver = Some("alice".into());
    r.rule = None;
    r.reason = "denied by alice in chat".into();
    assert_eq!(
        r.to_string(),
        r#"2026-05-10T06:32:00.000Z rc-home-general denied Bash (bob, denied by alice): "ls -la" | "> /tmp/x" — denied by alice in chat"#
    );
}

#[test]
fn filters_by_time_and_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_with(&path, SyncPolicy::OsBuffered).unwrap();
    log.append(&record("w1", "2026-05-10T06:00:00Z", AuditDecision::Asked))
        .unwrap();
    log.append(&record("w2", "2026-05-10T07:00:00Z", AuditDecision::Asked))
        .unwrap();
    log.append(&record(
        "w1",
        "2026-05-10T08:00:00Z",
        AuditDecision::TimedOut,
    ))
    .unwrap();
    let since: Timestamp = "2026-05-10T07:00:00Z".parse().unwrap();
    let by_time = AuditLog::read(
        &path,
        &AuditFilter {
            since: Some(since),
            watcher: None,
        },
    )
    .unwrap();
    assert_eq!(by_time.entries.len(), 2);
    let by_watcher = AuditLog::read(
        &path,
        &AuditFilter {
            since: None,
            watcher: Some("w1".into()),
        },
    )
    .unwrap();
    assert_eq!(by_watcher.entries.len(), 2);
    let both = AuditLog::read(
        &path,
        &AuditFilter {
            since: Some(since),
            watcher: Some("w1".into()),
        },
    )
    .unwrap();
    assert_eq!(both.entries.len(), 1);
    assert_eq!(both.entries[0].record.decision, AuditDecision::TimedOut);
}

#[test]
fn garbage_lines_and_a_cut_short_tail_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let good = record("w1", "2026-05-10T06:00:00Z", AuditDecision::Approved)
        .to_json_line()
        .unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{good}").unwrap();
    writeln!(f, "not json at all").unwrap();
    f.write_all(b"\xff\xfe binary\n").unwrap();
    writeln!(f, r#"{{"time":"yesterday"}}"#).unwrap();
    writeln!(f).unwrap();
    writeln!(f, "{good}").unwrap();
    f.write_all(&good.as_bytes()[..good.len() / 2]).unwrap();
    drop(f);
    let readout = AuditLog::read(&path, &AuditFilter::default()).unwrap();
    assert_eq!(readout.entries.len(), 2);
    assert_eq!(readout.skipped, 3);
    assert!(readout.truncated_tail);
    // Reopening after the crash ends the torn line, so the next record is not lost: the torn
    // line now counts as skipped.
    let log = AuditLog::open(&path).unwrap();
    log.append(&record("w1", "2026-05-10T09:00:00Z", AuditDecision::Denied))
        .unwrap();
    let readout = AuditLog::read(&path, &AuditFilter::default()).unwrap();
    assert!(!readout.truncated_tail);
    assert_eq!(readout.skipped, 4);
    assert_eq!(readout.entries.len(), 3);
    assert_eq!(readout.entries[2].record.decision, AuditDecision::Denied);
}

#[test]
fn unknown_decision_words_survive() {
    let line = record(
        "w1",
        "2026-05-10T06:00:00Z",
        AuditDecision::Other("escalated".into()),
    )
    .to_json_line()
    .unwrap();
    let back = AuditRecord::from_json_line(&line).unwrap();
    assert_eq!(back.decision, AuditDecision::Other("escalated".into()));
    assert_eq!(
        AuditDecision::from(Decision::AskOwner),
        AuditDecision::Asked
    );
    assert_eq!(
        AuditDecision::from_word("guest_denied"),
        AuditDecision::GuestDenied
    );
}

#[test]
fn long_inputs_and_params_are_truncated() {
    let mut r = record("w1", "2026-05-10T06:00:00Z", AuditDecision::Asked);
    r.input = "é".repeat(MAX_INPUT_CHARS + 10);
    r.params = vec!["x".repeat(5000)];
    let back = AuditRecord::from_json_line(&r.to_json_line().unwrap()).unwrap();
    assert!(back.input.ends_with("…[10 more chars]"));
    assert_eq!(
        back.input.chars().count(),
        MAX_INPUT_CHARS + "…[10 more chars]".chars().count()
    );
    assert!(back.params[0].len() < 2100);
    assert_eq!(truncate("abc", 5), "abc");
}

#[test]
fn concurrent_appends_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open_with(&path, SyncPolicy::OsBuffered).unwrap();
    // A second handle on the same file, as another process would have.
    let other = Arc::new(AuditLog::open_with(&path, SyncPolicy::OsBuffered).unwrap());
    let threads = 8;
    let per_thread = 200;
    let mut handles = Vec::new();
    for t in 0..threads {
        let log = if t % 2 == 0 {
            log.clone()
        } else {
            (*other).clone()
        };
        handles.push(std::thread::spawn(move || {
            for i in 0..per_thread {
                let mut r = record(
                    &format!("w{t}"),
                    "2026-05-10T06:00:00Z",
                    AuditDecision::Asked,
                );
                // Big enough that a torn write would be visible.
                r.input = format!("{t}-{i}-").repeat(300);
                log.append(&r).unwrap();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let readout = AuditLog::read(&path, &AuditFilter::default()).unwrap();
    assert_eq!(readout.skipped, 0);
    assert!(!readout.truncated_tail);
    assert_eq!(readout.entries.len(), threads * per_thread);
    for t in 0..threads {
        let n = readout
            .entries
            .iter()
            .filter(|e| e.record.watcher == format!("w{t}"))
            .count();
        assert_eq!(n, per_thread);
    }
}

#[test]
fn open_fails_with_the_path_in_the_message() {
    let err = AuditLog::open(std::path::Path::new("/nonexistent-dir/x/audit.jsonl")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-dir/x/audit.jsonl"),
        "{err}"
    );
}

#[test]
#[ignore = "prints a measurement; run explicitly"]
fn append_cost() {
    let dir = tempfile::tempdir().unwrap();
    for sync in [SyncPolicy::EveryRecord, SyncPolicy::OsBuffered] {
        let path = dir.path().join(format!("{sync:?}.jsonl"));
        let log = AuditLog::open_with(&path, sync).unwrap();
        let r = record("w1", "2026-05-10T06:00:00Z", AuditDecision::Approved);
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            log.append(&r).unwrap();
        }
        println!(
            "{sync:?}: {:?} per record ({})",
            start.elapsed() / n,
            dir.path().display()
        );
    }
}
