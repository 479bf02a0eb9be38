//! Finding and killing every process a CLI run started, via `/proc`.
//!
//! The CLI runs in its own process group, but its Bash tool starts each command in a new
//! session (so `killpg` alone misses them). The CLI cleans them up itself on `SIGTERM`; when
//! it does not get the chance (it hangs, or we must `SIGKILL` it), [`force_kill`] finds the
//! whole tree — the CLI's descendants, members of its group, and processes remembered from an
//! earlier [`snapshot`] — stops them all with `SIGSTOP` (a stopped process cannot fork, so the
//! set stops growing), then sends `SIGKILL`. Processes are identified by pid *and* start time,
//! so a recycled pid is never hit.

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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
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

/// `root` and all its descendants in `table` (root first, then breadth-first).
pub fn descendants(table: &[ProcInfo], root: i32) -> Vec<ProcInfo> {
    let mut children: HashMap<i32, Vec<&ProcInfo>> = HashMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out: Vec<ProcInfo> = table.iter().filter(|p| p.pid == root).copied().collect();
    let mut i = 0;
    while i < out.len() {
        let pid = out[i].pid;
        if let Some(kids) = children.get(&pid) {
            for kid in kids {
                if kid.pid != root && !out.iter().any(|p| p.pid == kid.pid) {
                    out.push(**kid);
                }
            }
        }
        i += 1;
    }
    out
}

/// The process tree under `leader` right now, to kill later even after it was re-parented.
pub fn snapshot(leader: i32) -> Vec<ProcInfo> {
    descendants(&proc_table(), leader)
}

fn signal(pid: i32, sig: libc::c_int) {
    let own = std::process::id() as i32;
    if pid > 1 && pid != own {
        // SAFETY: kill(2) has no memory-safety preconditions; errors (ESRCH) are ignored.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Sends `sig` to process group `pgid` (ignored for ids that could hit us or init).
pub fn signal_group(pgid: i32, sig: libc::c_int) {
    // SAFETY: as above; getpgrp has no preconditions.
    let own_group = unsafe { libc::getpgrp() };
    if pgid > 1 && pgid != own_group {
        // SAFETY: killpg(2) has no memory-safety preconditions; errors are ignored.
        unsafe {
            libc::killpg(pgid, sig);
        }
    }
}

/// Kills `leader`'s whole tree at once: its descendants, the members of group `pgid`, the
/// still-living processes of `known` (same pid and start time), and their descendants. Call
/// it before reaping `leader`, so its pid and group id cannot have been reused.
pub fn force_kill(leader: i32, pgid: i32, known: &[ProcInfo]) {
    let mut victims: HashMap<i32, u64> = HashMap::new();
    // Freeze the tree breadth by breadth until a scan finds nothing new (bounded, in case
    // something keeps escaping).
    for _ in 0..16 {
        let table = proc_table();
        let by_pid: HashMap<i32, &ProcInfo> = table.iter().map(|p| (p.pid, p)).collect();
        let mut roots: HashSet<i32> = HashSet::from([leader]);
        roots.extend(
            known
                .iter()
                .filter(|k| {
                    by_pid
                        .get(&k.pid)
                        .is_some_and(|p| p.starttime == k.starttime)
                })
                .map(|k| k.pid),
        );
        roots.extend(table.iter().filter(|p| p.pgrp == pgid).map(|p| p.pid));
        roots.extend(victims.keys().copied());
        let mut new = false;
        for root in roots {
            for p in descendants(&table, root) {
                if victims.get(&p.pid).is_none_or(|st| *st != p.starttime) {
                    victims.insert(p.pid, p.starttime);
                    signal(p.pid, libc::SIGSTOP);
                    new = true;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let p = parse_stat(stat).unwrap();
        assert_eq!(
            p,
            ProcInfo {
                pid: 4242,
                ppid: 17,
                pgrp: 4242,
                starttime: 987654,
                state: 'S'
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn finds_own_process() {
        let me = std::process::id() as i32;
        let p = read_proc(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(proc_table().iter().any(|p| p.pid == me));
    }

    #[test]
    fn descendants_walks_the_tree() {
        let p = |pid, ppid| ProcInfo {
            pid,
            ppid,
            pgrp: pid,
            starttime: 1,
            state: 'S',
        };
        let table = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(20, 1)];
        let pids: Vec<i32> = descendants(&table, 10).iter().map(|p| p.pid).collect();
        assert_eq!(pids, vec![10, 11, 13, 12]);
        assert!(descendants(&table, 99).is_empty());
    }

    #[test]
    fn force_kill_reaches_processes_in_other_sessions() {
        use std::os::unix::process::CommandExt;
        use std::process::Command;
        // sh (own group) starts a grandchild in a new session, like the CLI's Bash tool.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("setsid sleep 600 & echo $! ; wait")
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        // Wait until setsid has exec'd sleep in its own session.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let cmd =
                std::fs::read_to_string(format!("/proc/{grandchild}/cmdline")).unwrap_or_default();
            if cmd.starts_with("sleep") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let leader = child.id() as i32;
        force_kill(leader, leader, &[]);
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while read_proc(grandchild).is_some_and(|p| p.state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "grandchild survived");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
