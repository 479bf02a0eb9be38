//! The harness's smoke mode end to end: `acg-bench --quick` starts the fake Rocket.Chat, our
//! gateway with the stub agent, measures a handful of messages and writes the report.
//!
//! Ignored by default (it needs the release-or-debug `agent-chat-gateway` and
//! `acg-stub-claude` binaries next to `acg-bench`, and takes a few seconds):
//! `cargo build -p agent-chat-gateway -p acg-testkit -p acg-bench && cargo test -p acg-bench -- --ignored`.

use std::path::PathBuf;
use std::process::Command;

#[test]
#[ignore = "needs the gateway and stub binaries built next to acg-bench"]
fn quick_mode_measures_our_gateway_and_writes_the_report() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_acg-bench"));
    let dir = bench.parent().unwrap();
    for bin in ["agent-chat-gateway", "acg-stub-claude"] {
        assert!(
            dir.join(bin).is_file(),
            "{bin} is not built in {}; build it first",
            dir.display()
        );
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("results.json");
    let run = Command::new(&bench)
        .args(["--quick", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("post→reply p50"), "{stdout}");
    assert!(stdout.contains("FLOOR"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let ours = &report["ours"];
    assert_eq!(ours["errors"], serde_json::json!([]), "{report:#}");
    assert!(ours["sequential"]["n"].as_u64().unwrap() > 0);
    assert!(ours["sessions"][0]["rss_idle_mib"].as_f64().unwrap() > 0.0);
    assert!(report["floor"]["sequential"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(report["reference"].is_null());
}
