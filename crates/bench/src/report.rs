//! The run's results: one JSON document (`target/bench/results.json`) and one table with a
//! column per gateway and their ratio (ours ÷ reference: below 1 means ours is smaller or
//! faster).

use serde::Serialize;

use crate::real_agent::RealAgent;
use crate::scenario::{Floor, GatewayResults, Plan};

/// Everything one harness run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run ended (RFC 3339, UTC).
    pub finished_at: String,
    /// CPUs, kernel, load average at the start.
    pub machine: Machine,
    /// What was measured, how big.
    pub plan: Plan,
    /// The relay-only floor.
    pub floor: Option<Floor>,
    /// Our gateway.
    pub ours: Option<GatewayResults>,
    /// The Python 0.5.2 reference.
    pub reference: Option<GatewayResults>,
    /// Why the reference column is empty, when it is.
    pub reference_skipped: Option<String>,
    /// The gateway's share of a real `claude` turn.
    pub real_agent: Option<RealAgent>,
    /// Problems outside one gateway's column.
    pub errors: Vec<String>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub cpus: usize,
    /// `uname -sr`-like kernel string.
    pub kernel: String,
    /// 1-minute load average when the run started.
    pub load_average: Option<f64>,
}

impl Machine {
    /// Reads the current machine's facts.
    pub fn current() -> Machine {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| "unknown".into());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            load_average,
        }
    }
}

/// One table row: a label and both values (same unit).
struct Row {
    label: String,
    unit: &'static str,
    ours: Option<f64>,
    theirs: Option<f64>,
}

fn session(r: Option<&GatewayResults>, rooms: usize) -> Option<&crate::scenario::RoomSession> {
    r?.sessions.iter().find(|s| s.rooms == rooms)
}

fn rows(report: &Report) -> Vec<Row> {
    let o = report.ours.as_ref();
    let t = report.reference.as_ref();
    let mut rows = Vec::new();
    let mut row = |label: String, unit, f: &dyn Fn(Option<&GatewayResults>) -> Option<f64>| {
        rows.push(Row {
            label,
            unit,
            ours: f(o),
            theirs: f(t),
        })
    };
    row("post→reply p50 (sequential)".into(), "ms", &|r| {
        Some(r?.sequential?.p50_ms)
    });
    row("post→reply p95 (sequential)".into(), "ms", &|r| {
        Some(r?.sequential?.p95_ms)
    });
    row("daemon CPU / message (sequential)".into(), "ms", &|r| {
        r?.sequential_cpu_per_message_ms
    });
    let c = &report.plan;
    let load = format!("{}×{}", c.concurrent_rooms, c.senders_per_room);
    row(format!("throughput ({load} concurrent)"), "msg/s", &|r| {
        Some(r?.concurrent.as_ref()?.throughput_per_s)
    });
    row(format!("latency p50 ({load})"), "ms", &|r| {
        Some(r?.concurrent.as_ref()?.latency?.p50_ms)
    });
    row(format!("latency p95 ({load})"), "ms", &|r| {
        Some(r?.concurrent.as_ref()?.latency?.p95_ms)
    });
    row(format!("daemon CPU / message ({load})"), "ms", &|r| {
        r?.concurrent.as_ref()?.cpu_per_message_ms
    });
    let main_rooms = c.concurrent_rooms.max(1);
    row(format!("RSS idle ({main_rooms} rooms)"), "MiB", &|r| {
        session(r, main_rooms)?.rss_idle_mib
    });
    row("RSS after the load".into(), "MiB", &|r| {
        r?.rss_after_load_mib
    });
    for &n in &c.room_sessions {
        row(format!("RSS idle ({n} rooms)"), "MiB", &|r| {
            session(r, n)?.rss_idle_mib
        });
    }
    let mut all_rooms = vec![main_rooms];
    all_rooms.extend(c.room_sessions.iter().copied());
    for &n in &all_rooms {
        row(format!("start → first answer ({n} rooms)"), "ms", &|r| {
            Some(session(r, n)?.start_to_first_answer_ms)
        });
    }
    for &n in &all_rooms {
        row(format!("stop → exited ({n} rooms)"), "ms", &|r| {
            Some(session(r, n)?.stop_ms)
        });
    }
    row("list (median)".into(), "ms", &|r| r?.list_median_ms);
    rows
}

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
        None => "—".into(),
    }
}

/// The table as text.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let head = format!(
        "{:<40} {:>6} {:>10} {:>10} {:>9}\n",
        "metric", "unit", "ours", "0.5.2", "ours/0.5.2"
    );
    out.push_str(&head);
    out.push_str(&"-".repeat(head.chars().count() - 1));
    out.push('\n');
    for r in rows(report) {
        let ratio = match (r.ours, r.theirs) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "—".into(),
        };
        out.push_str(&format!(
            "{:<40} {:>6} {:>10} {:>10} {:>9}\n",
            r.label,
            r.unit,
            cell(r.ours),
            cell(r.theirs),
            ratio
        ));
    }
    if let Some(floor) = report.floor.as_ref().and_then(|f| f.sequential) {
        out.push_str(&format!(
            "\nFLOOR (relay only, same fake + observer): post→reply p50 {} ms, p95 {} ms\n",
            cell(Some(floor.p50_ms)),
            cell(Some(floor.p95_ms))
        ));
    }
    if let Some(floor) = report.floor.as_ref().and_then(|f| f.with_agent) {
        out.push_str(&format!(
            "FLOOR + AGENT (the relay runs the stub agent per message): post→reply p50 {} ms, p95 {} ms\n",
            cell(Some(floor.p50_ms)),
            cell(Some(floor.p95_ms))
        ));
    }
    if let Some(reason) = &report.reference_skipped {
        out.push_str(&format!("\n0.5.2 column skipped: {reason}\n"));
    }
    if let Some(real) = &report.real_agent {
        out.push_str(&format!("\n{}\n", real.summary_line()));
    }
    for (who, r) in [("ours", &report.ours), ("0.5.2", &report.reference)] {
        for e in r.iter().flat_map(|r| r.errors.iter()) {
            out.push_str(&format!("\n[{who}] error: {e}"));
        }
    }
    for e in &report.errors {
        out.push_str(&format!("\nerror: {e}"));
    }
    out
}
