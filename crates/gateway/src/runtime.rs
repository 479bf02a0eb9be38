//! The runtime directory (`~/.agent-chat-gateway/`, digest §8.1) and the files that say whether
//! a daemon is running: `gateway.pid`, `gateway.lock` and `control.sock`.
//!
//! Who is running is decided by an exclusive `flock` on `gateway.lock`, held by the daemon for
//! its whole life: the kernel drops it when the daemon dies, even by `SIGKILL`, so a leftover
//! pid file is recognised as stale without trusting a pid that may have been reused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// The runtime directory and the well-known files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDir {
    root: PathBuf,
}

impl RuntimeDir {
    /// The runtime directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RuntimeDir { root: root.into() }
    }

    /// `$HOME/.agent-chat-gateway`, as the config crate defines it.
    pub fn default_location() -> Self {
        RuntimeDir::new(acg_config::default_runtime_dir())
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `gateway.pid`: the daemon's pid as decimal text.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("gateway.pid")
    }

    /// `gateway.lock`: held (flock) by the running daemon.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("gateway.lock")
    }

    /// `gateway.log`: the daemon's log (appended).
    pub fn log_file(&self) -> PathBuf {
        self.root.join("gateway.log")
    }

    /// `control.sock`: the control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// `script/<connector>/`: transcripts of a script connector.
    pub fn script_dir(&self, connector: &str) -> PathBuf {
        self.root.join("script").join(connector)
    }

    /// Creates the directory (mode 0700) if it does not exist yet.
    pub fn ensure(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
    }
}

/// Whether a daemon holds the runtime directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    /// A daemon holds the lock. `pid` is `None` while it has not written its pid file yet.
    Running {
        /// The daemon's pid from the pid file.
        pid: Option<u32>,
    },
    /// Nobody holds the lock; `stale_pid` is what a leftover pid file still says.
    NotRunning {
        /// The pid a leftover pid file names.
        stale_pid: Option<u32>,
    },
}

/// Looks at the lock and the pid file without disturbing a running daemon.
pub fn probe(rt: &RuntimeDir) -> DaemonState {
    let pid = read_pid(&rt.pid_file());
    if lock_is_held(&rt.lock_file()) {
        DaemonState::Running { pid }
    } else {
        DaemonState::NotRunning { stale_pid: pid }
    }
}

/// Like [`probe`], but a lock whose pid-file process has already died is given up to
/// `patience` to be released: a daemon killed with SIGKILL shows as a zombie (or is gone)
/// while its other threads are still exiting and its files, the lock among them, still
/// open. `start` right after `kill -9` must not read that moment as "already running".
pub fn probe_settled(rt: &RuntimeDir, patience: Duration) -> DaemonState {
    let deadline = Instant::now() + patience;
    loop {
        let state = probe(rt);
        match state {
            DaemonState::Running { pid: Some(pid) }
                if !process_alive(pid) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => return state,
        }
    }
}

/// True when some process holds `gateway.lock`. Takes a shared lock for an instant to find
/// out; the daemon retries its own lock briefly, so this cannot make a start fail.
fn lock_is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(lock) => {
            drop(lock);
            false
        }
        Err((_, Errno::EWOULDBLOCK)) => true,
        // Locking is not possible here (odd filesystem): fall back to the pid file.
        Err((_, _)) => read_pid(&path.with_file_name("gateway.pid")).is_some_and(process_alive),
    }
}

/// Reads a pid file; `None` when missing or not a positive decimal number.
pub fn read_pid(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    text.trim().parse::<u32>().ok().filter(|pid| *pid > 0)
}

/// Waits up to `patience` for the pid file to name a pid (a daemon that holds the lock
/// writes it right away).
pub fn wait_for_pid_file(rt: &RuntimeDir, patience: Duration) -> Option<u32> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(pid) = read_pid(&rt.pid_file()) {
            return Some(pid);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid file's modification time: the daemon's start time (the reference's `status` reads it).
pub fn pid_file_mtime(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Writes `pid` to `path` atomically, via `gateway.<pid>.pid.tmp` and a rename.
pub fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("gateway.{pid}.pid.tmp"));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        writeln!(file, "{pid}")?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the pid file only if it still names `pid` (a newer daemon's file is left alone).
pub fn remove_pid_file_if(path: &Path, pid: u32) -> bool {
    if read_pid(path) == Some(pid) {
        fs::remove_file(path).is_ok()
    } else {
        false
    }
}

/// True if a process with this pid exists and is not a zombie (`EPERM` counts as alive).
pub fn process_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => !is_zombie(pid),
        Err(_) => false,
    }
}

/// A zombie has exited but not been reaped: for us it is gone.
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last ')', as comm may contain anything.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "Z" || state == "X")
}

/// Why the instance lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error("Gateway already running (pid={})", pid.map_or_else(|| "?".to_string(), |p| p.to_string()))]
    Held {
        /// The other daemon's pid, if its pid file says.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// The exclusive lock that makes this process *the* daemon of a runtime directory. Released
/// when dropped or when the process dies. The file is opened close-on-exec, so agent processes
/// never inherit it.
#[derive(Debug)]
pub struct InstanceLock {
    _lock: Flock<File>,
}

impl InstanceLock {
    /// Takes the lock, retrying for up to `patience` (a `status` probe may hold a shared lock
    /// for an instant).
    pub fn acquire(rt: &RuntimeDir, patience: Duration) -> Result<InstanceLock, LockError> {
        let path = rt.lock_file();
        let deadline = Instant::now() + patience;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|source| LockError::Io {
                    path: path.clone(),
                    source,
                })?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(InstanceLock { _lock: lock }),
                Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(LockError::Held {
                        pid: read_pid(&rt.pid_file()),
                    })
                }
                Err((_, errno)) => {
                    return Err(LockError::Io {
                        path,
                        source: io::Error::from(errno),
                    })
                }
            }
        }
    }
}

/// Restricts a file to its owner (mode 0600).
pub fn set_owner_only(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

/// `1h 2m 3s`, the reference's uptime format.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}h {}m {}s", secs / 3600, (secs % 3600) / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trip_and_guarded_removal() {
        let dir = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::new(dir.path());
        write_pid_file(&rt.pid_file(), 4242).unwrap();
        assert_eq!(read_pid(&rt.pid_file()), Some(4242));
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(!remove_pid_file_if(&rt.pid_file(), 1));
        assert!(rt.pid_file().exists());
        assert!(remove_pid_file_if(&rt.pid_file(), 4242));
        assert!(!rt.pid_file().exists());
    }

    #[test]
    fn garbage_pid_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.pid");
        fs::write(&path, "not a pid").unwrap();
        assert_eq!(read_pid(&path), None);
        fs::write(&path, "0\n").unwrap();
        assert_eq!(read_pid(&path), None);
    }

    #[test]
    fn a_lock_left_by_a_dead_pid_is_waited_for_not_reported_as_running() {
        let dir = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::new(dir.path());
        // A pid that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        write_pid_file(&rt.pid_file(), dead).unwrap();
        // The lock is still held a moment after that pid died (its threads are exiting).
        let lock = InstanceLock::acquire(&rt, Duration::ZERO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(lock);
        });
        assert_eq!(probe(&rt), DaemonState::Running { pid: Some(dead) });
        assert_eq!(
            probe_settled(&rt, Duration::from_secs(5)),
            DaemonState::NotRunning {
                stale_pid: Some(dead)
            }
        );
        releaser.join().unwrap();

        // A live holder is reported at once, without waiting out the patience.
        let _live = InstanceLock::acquire(&rt, Duration::ZERO).unwrap();
        write_pid_file(&rt.pid_file(), std::process::id()).unwrap();
        let started = Instant::now();
        assert_eq!(
            probe_settled(&rt, Duration::from_secs(5)),
            DaemonState::Running {
                pid: Some(std::process::id())
            }
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn lock_decides_running_and_excludes_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::new(dir.path());
        // A leftover pid file without a lock holder is stale.
        write_pid_file(&rt.pid_file(), 777_777).unwrap();
        assert_eq!(
            probe(&rt),
            DaemonState::NotRunning {
                stale_pid: Some(777_777)
            }
        );
        let lock = InstanceLock::acquire(&rt, Duration::ZERO).unwrap();
        assert_eq!(probe(&rt), DaemonState::Running { pid: Some(777_777) });
        match InstanceLock::acquire(&rt, Duration::from_millis(100)) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(777_777)),
            other => panic!("second lock must fail: {other:?}"),
        }
        drop(lock);
        assert!(matches!(probe(&rt), DaemonState::NotRunning { .. }));
        assert!(InstanceLock::acquire(&rt, Duration::ZERO).is_ok());
    }

    #[test]
    fn own_process_is_alive_and_a_reaped_child_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn zombie_counts_as_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Not reaped yet: wait until it has exited and is a zombie.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_zombie(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!process_alive(pid));
        child.wait().unwrap();
    }

    #[test]
    fn uptime_format() {
        assert_eq!(format_duration(Duration::from_secs(3723)), "1h 2m 3s");
        assert_eq!(format_duration(Duration::from_secs(5)), "0h 0m 5s");
    }
}
