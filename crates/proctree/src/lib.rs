//! The process tree of an agent process, via `/proc` (Linux): finding it, signalling it,
//! killing all of it, measuring its memory. Shared by the Claude backend (one CLI process per
//! turn) and the OpenCode backend (one long-lived `opencode serve` per agent).
//!
//! Both run their agent in its own process group, but the shell commands the agent's tools
//! start may leave that group (Claude's Bash tool starts each command in a new session), so
//! `killpg` alone misses them. Stopping a tree therefore:
//! 1. takes a [`snapshot`] (or [`snapshot_with_group`]) *before* the polite `SIGTERM`, so tools
//!    that get re-parented to init when their parent exits are still known;
//! 2. after the grace period, [`kill_tree`] / [`force_kill`] freeze everything still living —
//!    the snapshot, the group's members and all their descendants — with `SIGSTOP` (a stopped
//!    process cannot fork, so the set stops growing), then send `SIGKILL`.
//!
//! A process is identified by pid *and* start time, so a pid recycled since the snapshot is
//! never hit; a group is only signalled while some process still belongs to it.

use std::collections::{HashMap, HashSet};

/// How many times [`kill_tree`] rescans `/proc` for processes forked while it was freezing.
const FREEZE_ROUNDS: usize = 16;

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

impl ProcInfo {
    /// True when the process this entry describes still exists (same pid and start time) and
    /// is not a zombie.
    pub fn is_running(&self) -> bool {
        read_proc(self.pid).is_some_and(|p| p.starttime == self.starttime && p.state != 'Z')
    }
}

/// Parses the content of `/proc/<pid>/stat`.
fn parse_stat(stat: &str) -> Option<ProcInfo> {
    let pid = stat.split_whitespace().next()?.parse().ok()?;
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
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

/// Every process now visible in `/proc`.
pub fn proc_table() -> Vec<ProcInfo> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_proc)
        .collect()
}

/// The processes of `roots` in `table` (in table order), then all their descendants,
/// breadth-first, each once.
fn with_descendants(table: &[ProcInfo], roots: &HashSet<i32>) -> Vec<ProcInfo> {
    let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out: Vec<ProcInfo> = table
        .iter()
        .filter(|p| roots.contains(&p.pid))
        .copied()
        .collect();
    let mut seen: HashSet<i32> = out.iter().map(|p| p.pid).collect();
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

/// `root` and all its descendants in `table` (root first, then breadth-first); empty when
/// `root` is not in the table.
pub fn descendants(table: &[ProcInfo], root: i32) -> Vec<ProcInfo> {
    with_descendants(table, &HashSet::from([root]))
}

/// The tree under `leader` right now, to kill later even after it was re-parented.
pub fn snapshot(leader: i32) -> Vec<ProcInfo> {
    descendants(&proc_table(), leader)
}

/// The tree of `leader` right now, plus every member of group `pgid` with its descendants.
pub fn snapshot_with_group(leader: i32, pgid: i32) -> Vec<ProcInfo> {
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

/// Sends `sig` to group `pgid` when some process still belongs to it (so a group id that is
/// free again is never hit), and never to our own group or init's.
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

/// Kills a whole tree at once: the still-living processes of `known` (same pid and start
/// time), every member of group `pgid`, and all their descendants. They are frozen with
/// `SIGSTOP` round by round until a scan finds nothing new, then killed with `SIGKILL`, so a
/// forking tree cannot outrun it.
pub fn kill_tree(known: &[ProcInfo], pgid: i32) {
    // Victims by pid, with the start time they were frozen with.
    let mut victims: HashMap<i32, u64> = HashMap::new();
    for _ in 0..FREEZE_ROUNDS {
        let table = proc_table();
        let current: HashMap<i32, u64> = table.iter().map(|p| (p.pid, p.starttime)).collect();
        let alive = |pid: i32, starttime: u64| current.get(&pid) == Some(&starttime);
        let mut roots: HashSet<i32> = known
            .iter()
            .filter(|k| alive(k.pid, k.starttime))
            .map(|k| k.pid)
            .collect();
        roots.extend(table.iter().filter(|p| p.pgrp == pgid).map(|p| p.pid));
        roots.extend(
            victims
                .iter()
                .filter(|(pid, st)| alive(**pid, **st))
                .map(|(pid, _)| *pid),
        );
        let mut new = false;
        for p in with_descendants(&table, &roots) {
            if victims.get(&p.pid) != Some(&p.starttime) {
                victims.insert(p.pid, p.starttime);
                signal(p.pid, libc::SIGSTOP);
                new = true;
            }
        }
        if !new {
            break;
        }
    }
    for (pid, starttime) in &victims {
        if read_proc(*pid).is_some_and(|p| p.starttime == *starttime) {
            signal(*pid, libc::SIGKILL);
        }
    }
    signal_group(pgid, libc::SIGKILL);
}

/// [`kill_tree`] for a leader that has not been reaped yet (so its pid and group id are still
/// its own): the leader, its descendants, group `pgid`, and the living processes of `known`.
pub fn force_kill(leader: i32, pgid: i32, known: &[ProcInfo]) {
    let mut known = known.to_vec();
    known.extend(read_proc(leader));
    kill_tree(&known, pgid);
}

/// Resident memory of `leader` and its descendants, in bytes (from `VmRSS`).
pub fn tree_rss_bytes(leader: i32) -> Option<u64> {
    let tree = snapshot(leader);
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
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

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

    fn p(pid: i32, ppid: i32) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            pgrp: pid,
            starttime: 1,
            state: 'S',
        }
    }

    #[test]
    fn descendants_are_found_breadth_first() {
        let table = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(20, 1)];
        let pids: Vec<i32> = descendants(&table, 10).iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![10, 11, 13, 12]);
        assert!(descendants(&table, 99).is_empty());
        let both: Vec<i32> = with_descendants(&table, &HashSet::from([11, 20]))
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(both, vec![11, 20, 12]);
    }

    #[test]
    fn own_process_is_visible_and_measured() {
        let me = std::process::id() as i32;
        let entry = read_proc(me).unwrap();
        assert_eq!(entry.pid, me);
        assert!(entry.is_running());
        assert!(!ProcInfo {
            starttime: entry.starttime + 1,
            ..entry
        }
        .is_running());
        assert!(proc_table().iter().any(|p| p.pid == me));
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
        // Our own RSS moves while other tests run in this process: the tree (which includes
        // us) is compared with a reading taken a moment apart, so allow for that drift.
        let own = rss_bytes(me).unwrap_or(0);
        assert!(tree_rss_bytes(me).is_some_and(|b| b >= own / 2));
    }

    /// `sh` in its own group starting a grandchild in a new session (like an agent's shell
    /// tool); returns the child and the grandchild's pid once it runs `sleep`.
    fn tree_with_escaped_grandchild() -> (std::process::Child, i32) {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("setsid sleep 600 & echo $! ; wait")
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let cmd =
                std::fs::read_to_string(format!("/proc/{grandchild}/cmdline")).unwrap_or_default();
            if cmd.starts_with("sleep") {
                break;
            }
            assert!(Instant::now() < deadline, "grandchild never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, grandchild)
    }

    fn wait_gone(pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while read_proc(pid).is_some_and(|p| p.state != 'Z') {
            assert!(Instant::now() < deadline, "{pid} survived");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn force_kill_reaches_a_grandchild_in_another_session() {
        let (mut child, grandchild) = tree_with_escaped_grandchild();
        let leader = child.id() as i32;
        assert!(snapshot(leader).iter().any(|p| p.pid == grandchild));
        force_kill(leader, leader, &[]);
        child.wait().unwrap();
        wait_gone(grandchild);
    }

    #[test]
    fn kill_tree_reaches_a_snapshot_after_the_leader_was_reaped() {
        let (mut child, grandchild) = tree_with_escaped_grandchild();
        let leader = child.id() as i32;
        let tree = snapshot_with_group(leader, leader);
        assert!(tree.iter().any(|p| p.pid == grandchild));
        // The leader dies and is reaped first: the grandchild is re-parented, still known.
        signal(leader, libc::SIGKILL);
        child.wait().unwrap();
        kill_tree(&tree, leader);
        wait_gone(grandchild);
    }

    #[test]
    fn groups_without_members_and_our_own_group_are_never_signalled() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        // Would kill this test process if it were sent.
        signal_group(own, libc::SIGKILL);
        signal_group(1, libc::SIGKILL);
        signal_group(0, libc::SIGKILL);
        // A group id nobody has: no effect, no panic.
        signal_group(i32::MAX - 7, libc::SIGKILL);
    }
}
