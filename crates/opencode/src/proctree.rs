//! The sidecar's process tree, via `/proc`: finding it, signalling it, measuring it.
//!
//! The sidecar runs in its own process group, but the shell commands its tools start may leave
//! that group. Stopping therefore snapshots the whole tree (descendants by parent pid, plus
//! group members) before `SIGTERM`, and after the grace period `SIGKILL`s whatever of that
//! snapshot still lives — matched by pid *and* start time, so a recycled pid is never hit — and
//! anything now in the group or below a survivor.
//!
//! The Claude backend has a fuller version of this (it also freezes a forking tree with
//! `SIGSTOP`); a shared crate for both would be the next step.

use std::collections::{HashMap, HashSet};

/// One process, as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks since boot: with `pid`, a unique identity.
    pub starttime: u64,
    /// State letter (`R`, `S`, `Z`, …).
    pub state: char,
}

/// Parses the content of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    Some(ProcInfo {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// One process's entry, if it still exists.
pub fn read_proc(pid: i32) -> Option<ProcInfo> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn proc_table() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_proc)
        .collect()
}

/// `roots` and all their descendants in `table`.
fn with_descendants(table: &[ProcInfo], roots: &HashSet<i32>) -> Vec<ProcInfo> {
    let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut seen: HashSet<i32> = HashSet::new();
    let mut out: Vec<ProcInfo> = table
        .iter()
        .filter(|p| roots.contains(&p.pid))
        .copied()
        .collect();
    seen.extend(out.iter().map(|p| p.pid));
    let mut i = 0;
    while i < out.len() {
        for kid in children.get(&out[i].pid).into_iter().flatten() {
            if seen.insert(kid.pid) {
                out.push(**kid);
            }
        }
        i += 1;
    }
    out
}

/// The tree of `leader` right now: it, its descendants, and every member of group `pgid`
/// with their descendants.
pub fn snapshot(leader: i32, pgid: i32) -> Vec<ProcInfo> {
    let table = proc_table();
    let mut roots: HashSet<i32> = HashSet::from([leader]);
    roots.extend(table.iter().filter(|p| p.pgrp == pgid).map(|p| p.pid));
    with_descendants(&table, &roots)
}

fn signal(pid: i32, sig: libc::c_int) {
    if pid > 1 && pid != std::process::id() as i32 {
        // SAFETY: kill(2) has no memory-safety preconditions; errors (ESRCH) are ignored.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Sends `sig` to group `pgid` when some process still belongs to it (so a recycled group id
/// is never hit), and never to our own group or init's.
pub fn signal_group(pgid: i32, sig: libc::c_int) {
    // SAFETY: getpgrp has no preconditions.
    let own_group = unsafe { libc::getpgrp() };
    if pgid <= 1 || pgid == own_group {
        return;
    }
    if proc_table().iter().any(|p| p.pgrp == pgid) {
        // SAFETY: killpg(2) has no memory-safety preconditions; errors are ignored.
        unsafe {
            libc::killpg(pgid, sig);
        }
    }
}

/// `SIGKILL`s every still-living process of `known` (same pid and start time), every member of
/// group `pgid`, and all their descendants.
pub fn kill_all(known: &[ProcInfo], pgid: i32) {
    let table = proc_table();
    let by_pid: HashMap<i32, &ProcInfo> = table.iter().map(|p| (p.pid, p)).collect();
    let mut roots: HashSet<i32> = known
        .iter()
        .filter(|k| {
            by_pid
                .get(&k.pid)
                .is_some_and(|p| p.starttime == k.starttime)
        })
        .map(|k| k.pid)
        .collect();
    roots.extend(table.iter().filter(|p| p.pgrp == pgid).map(|p| p.pid));
    for p in with_descendants(&table, &roots) {
        signal(p.pid, libc::SIGKILL);
    }
}

/// Resident memory of `leader` and its descendants, in bytes (from `VmRSS`).
pub fn tree_rss_bytes(leader: i32) -> Option<u64> {
    let table = proc_table();
    let tree = with_descendants(&table, &HashSet::from([leader]));
    if tree.is_empty() {
        return None;
    }
    Some(tree.iter().filter_map(|p| rss_bytes(p.pid)).sum())
}

/// Resident memory of one process, in bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(ProcInfo {
                pid: 4242,
                ppid: 17,
                pgrp: 4242,
                starttime: 987654,
                state: 'S'
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn descendants_are_found_breadth_first() {
        let p = |pid, ppid| ProcInfo {
            pid,
            ppid,
            pgrp: pid,
            starttime: 1,
            state: 'S',
        };
        let table = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(20, 1)];
        let pids: Vec<i32> = with_descendants(&table, &HashSet::from([10]))
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(pids, vec![10, 11, 13, 12]);
    }

    #[test]
    fn own_process_is_visible_and_measured() {
        let me = std::process::id() as i32;
        assert_eq!(read_proc(me).map(|p| p.pid), Some(me));
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        assert!(tree_rss_bytes(me).is_some_and(|b| b >= rss_bytes(me).unwrap_or(0)));
    }

    #[test]
    fn kill_all_reaches_a_grandchild_in_another_session() {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("setsid sleep 600 & echo $! ; wait")
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let leader = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let tree = loop {
            let tree = snapshot(leader, leader);
            if tree.iter().any(|p| p.pid == grandchild) {
                break tree;
            }
            assert!(std::time::Instant::now() < deadline, "grandchild not seen");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        kill_all(&tree, leader);
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while read_proc(grandchild).is_some_and(|p| p.state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "grandchild survived");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
