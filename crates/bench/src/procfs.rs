//! What the harness reads about a daemon process from `/proc`: CPU time (`utime + stime` of
//! `/proc/<pid>/stat`, the process itself without its children, so agent processes are not
//! counted), resident memory (`VmRSS`), thread count, and whether it has exited.
//!
//! Daemons detach (both gateways double-fork or re-exec into a new session), so their parent
//! exits and they are re-parented. On a machine whose PID 1 does not reap orphans (some
//! container and micro-VM inits), an exited daemon would stay a zombie, and a `stop` command
//! that polls `kill(pid, 0)` would wait for its full timeout. [`become_subreaper`] makes the
//! harness the daemons' new parent, and [`reap`] / [`reap_orphans`] collect them the moment
//! they exit, as a normal init would.

use std::time::Duration;

/// CPU time (user + system) the process itself has used so far; `None` if it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = stat_fields(&stat)?;
    // After the `(comm)` field: state is field 3, utime 14, stime 15 (1-based).
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(ticks_to_duration(utime + stime))
}

/// The state letter (`R`, `S`, `Z`, …) of a process; `None` if there is no such process.
pub fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat)?.first()?.chars().next()
}

/// Whether the process has exited (gone, or a zombie nobody reaped yet).
pub fn exited(pid: u32) -> bool {
    matches!(state(pid), None | Some('Z') | Some('X'))
}

/// Resident set size in bytes (`VmRSS`); `None` if the process is gone.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// Number of threads; `None` if the process is gone.
pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

fn status_field(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The fields after `pid (comm)`; comm may contain spaces and parentheses.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

fn ticks_to_duration(ticks: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / hz)
}

/// The clock-tick length `/proc` CPU times are counted in (10 ms on most kernels): the
/// resolution of [`cpu_time`].
pub fn tick() -> Duration {
    ticks_to_duration(1)
}

/// Makes this process the reaper of orphaned descendants (see the module doc).
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reaps `pid` if it is our child and has exited; true when it is gone (reaped now, or not
/// our child and no longer running).
pub fn reap(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return true;
    };
    let mut status = 0;
    // SAFETY: waitpid on one pid with WNOHANG never blocks and only reaps that pid.
    let rc = unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) };
    if rc == raw {
        return true;
    }
    exited(pid)
}

/// Reaps every zombie whose parent is this process. Call it only when no child the harness
/// waits for itself (a CLI command) is running, so no exit status is stolen from it.
pub fn reap_orphans() {
    let me = std::process::id();
    for p in acg_proctree::proc_table() {
        if p.state == 'Z' && u32::try_from(p.ppid) == Ok(me) {
            if let Ok(pid) = u32::try_from(p.pid) {
                reap(pid);
            }
        }
    }
}

/// Waits until `pid` has exited (reaping it if it is our child), polling every `step`, at most
/// `timeout`. Returns whether it exited.
pub fn wait_exit(pid: u32, step: Duration, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if reap(pid) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(threads(me).unwrap() >= 1);
        assert!(!exited(me));
        assert!(tick() > Duration::ZERO);
    }

    #[test]
    fn comm_with_parentheses_and_spaces() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!(f[14 - 3], "7");
        assert_eq!(f[15 - 3], "3");
    }

    #[test]
    #[allow(clippy::zombie_processes)] // `wait_exit` reaps it (that is what is under test)
    fn a_reaped_child_has_exited() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        assert!(wait_exit(
            pid,
            Duration::from_millis(5),
            Duration::from_secs(30)
        ));
        assert!(exited(pid));
    }
}
