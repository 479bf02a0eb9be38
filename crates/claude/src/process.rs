//! Running one CLI process to completion under a deadline, leaving nothing behind.
//!
//! The child gets its own process group. Its stdin gets the prompt then EOF; stdout is read
//! line by line (a line longer than [`MAX_LINE_BYTES`] is an error, never an unbounded buffer)
//! and fed to a [`StreamParser`]; stderr is kept up to [`MAX_STDERR_BYTES`].
//!
//! Ending: after stdout and stderr close, the CLI gets [`EXIT_GRACE`] to exit. When its output
//! stays open after it exited (a straggler holding the pipes), reading stops after
//! [`DRAIN_GRACE`]. Anything left in its process group is then killed. On the deadline the
//! group gets `SIGTERM` (the CLI then stops its tools itself), [`TERM_GRACE`] later the whole
//! tree gets `SIGKILL` ([`proctree::force_kill`]). If the future running all this is dropped,
//! a guard kills the tree at once.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use acg_core::EventSink;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::proctree;
use crate::stream::{ParsedRun, StreamParser};

/// The longest stdout line accepted (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// How much stderr is kept (64 KiB); the rest is read and dropped.
pub const MAX_STDERR_BYTES: usize = 64 * 1024;
/// How long the CLI may take to exit after closing its output.
pub const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How long output is still read after the CLI exited.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the CLI gets between `SIGTERM` and `SIGKILL`.
pub const TERM_GRACE: Duration = Duration::from_secs(3);
/// How long reaping a killed CLI may take before we give up waiting (it is reaped later).
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The program (path or name looked up in `PATH`).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<String>,
    /// Variables set on top, in order (later wins).
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// What is written to stdin before closing it.
    pub stdin: String,
    /// When the run must be over.
    pub deadline: tokio::time::Instant,
}

/// Where the time of one run went, for metrics and overhead measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunTimings {
    /// The `spawn` call itself (fork + exec).
    pub spawn: Duration,
    /// From before `spawn` to the first stdout byte.
    pub first_output: Option<Duration>,
    /// Time spent parsing stdout lines (JSON decoding and event building).
    pub parse: Duration,
    /// How many stdout lines were parsed.
    pub lines: usize,
    /// From before `spawn` until the child was reaped.
    pub total: Duration,
}

/// A run that ended by itself.
#[derive(Debug)]
pub struct RunOutcome {
    /// How it exited.
    pub status: ExitStatus,
    /// What its stdout said.
    pub parsed: ParsedRun,
    /// Its stderr (at most [`MAX_STDERR_BYTES`], lossy UTF-8).
    pub stderr: String,
    /// Where the time went.
    pub timings: RunTimings,
}

/// Why a run did not end by itself.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// The deadline passed; the process tree was killed.
    #[error("deadline passed")]
    Timeout,
    /// A stdout line was longer than [`MAX_LINE_BYTES`]; the process tree was killed.
    #[error("an output line exceeded {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    /// Reading its output failed; the process tree was killed.
    #[error("reading agent output failed: {0}")]
    Io(io::Error),
}

/// Kills the child's whole tree if dropped while armed (the run was cancelled or failed).
struct TreeGuard {
    pid: i32,
    armed: bool,
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.armed {
            tracing::debug!(
                pid = self.pid,
                "agent run dropped: killing its process tree"
            );
            proctree::force_kill(self.pid, self.pid, &[]);
        }
    }
}

/// Tells when a process has exited without reaping it (so its pid and group id stay ours
/// until we call `wait`). Uses a pidfd; falls back to polling `waitid(WNOWAIT)`.
struct ExitWatch {
    pid: i32,
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl ExitWatch {
    fn new(pid: i32) -> Self {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = (fd >= 0)
            .then(|| {
                // SAFETY: fd is a fresh descriptor we own.
                let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
                // SAFETY: the OwnedFd keeps the descriptor open, unchanged, for the AsyncFd's
                // whole life (it owns it).
                unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
                    .ok()
            })
            .flatten();
        ExitWatch { pid, pidfd }
    }

    fn has_exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with WNOWAIT only inspects the child; `info` is valid for writes.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is set by waitid (0 when the child is still running).
        rc == 0 && unsafe { info.si_pid() } == self.pid
    }

    /// Resolves once the process has exited.
    async fn exited(&self) {
        if let Some(fd) = &self.pidfd {
            if let Ok(guard) = fd.readable().await {
                // Readable means exited; keep the readiness so later calls return at once.
                drop(guard);
                return;
            }
        }
        while !self.has_exited() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (without the `\n`) into `buf`, refusing to grow it beyond `cap`.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (chunk, found) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > cap {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        let used = found.unwrap_or(chunk.len());
        reader.consume(used);
        if found.is_some() {
            return Ok(LineRead::Line);
        }
    }
}

/// Reads everything, keeping the first `cap` bytes.
async fn read_capped<R: AsyncRead + Unpin>(reader: &mut R, out: &mut Vec<u8>, cap: usize) {
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                out.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// Runs `spec` to its end, parsing stdout and reporting progress to `events`.
pub async fn run(spec: &RunSpec, events: &EventSink) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let mut parser = StreamParser::new();
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for key in &spec.env_remove {
        command.env_remove(key);
    }
    for (key, value) in &spec.env {
        command.env(key, value);
    }
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: spec.program.clone(),
        source,
    })?;
    let spawned = started.elapsed();
    let Some(pid) = child.id().map(|p| p as i32) else {
        // Already reaped: nothing can be left to kill.
        return Err(RunError::Io(io::Error::other("child vanished at spawn")));
    };
    let mut guard = TreeGuard { pid, armed: true };
    let watch = ExitWatch::new(pid);

    let mut timings = RunTimings {
        spawn: spawned,
        ..Default::default()
    };
    let mut stderr_buf = Vec::new();
    let io_result = tokio::time::timeout_at(
        spec.deadline,
        talk(
            &mut child,
            spec,
            &watch,
            &mut parser,
            events,
            &mut stderr_buf,
            &mut timings,
            started,
        ),
    )
    .await;

    let status = match io_result {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => {
            terminate(&mut child, pid, &watch, Duration::ZERO).await;
            guard.armed = false;
            return Err(e);
        }
        Err(_elapsed) => {
            tracing::debug!(pid, "agent run passed its deadline: terminating");
            terminate(&mut child, pid, &watch, TERM_GRACE).await;
            guard.armed = false;
            return Err(RunError::Timeout);
        }
    };
    guard.armed = false;
    timings.total = started.elapsed();
    Ok(RunOutcome {
        status,
        parsed: parser.finish(),
        stderr: String::from_utf8_lossy(&stderr_buf).into_owned(),
        timings,
    })
}

/// Writes stdin, reads stdout and stderr, waits for the exit and reaps the child.
#[allow(clippy::too_many_arguments)]
async fn talk(
    child: &mut Child,
    spec: &RunSpec,
    watch: &ExitWatch,
    parser: &mut StreamParser,
    events: &EventSink,
    stderr_buf: &mut Vec<u8>,
    timings: &mut RunTimings,
    started: Instant,
) -> Result<ExitStatus, RunError> {
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let pid = watch.pid;

    let write = async {
        if let Some(mut stdin) = stdin {
            // The CLI may exit before reading everything (bad flags): a broken pipe is fine.
            let _ = stdin.write_all(spec.stdin.as_bytes()).await;
            let _ = stdin.shutdown().await;
        }
    };
    let read_err = async {
        if let Some(mut stderr) = stderr {
            read_capped(&mut stderr, stderr_buf, MAX_STDERR_BYTES).await;
        }
    };
    let read_out = async {
        let Some(stdout) = stdout else {
            return Ok(());
        };
        // Lines longer than the buffer are assembled in `line`; a bigger buffer only costs
        // zeroing and memory per run (thousands at once when many watchers start together).
        let mut reader = BufReader::with_capacity(8 * 1024, stdout);
        let mut line = Vec::new();
        loop {
            match read_line_capped(&mut reader, &mut line, MAX_LINE_BYTES)
                .await
                .map_err(RunError::Io)?
            {
                LineRead::Eof => return Ok(()),
                LineRead::TooLong => return Err(RunError::LineTooLong),
                LineRead::Line => {
                    if timings.first_output.is_none() {
                        timings.first_output = Some(started.elapsed());
                    }
                    let t = Instant::now();
                    parser.feed_line(&String::from_utf8_lossy(&line), events);
                    timings.parse += t.elapsed();
                    timings.lines += 1;
                }
            }
        }
    };
    // Boxed so it can be dropped (closing our pipe ends) before waiting for the exit.
    let mut pipes = Box::pin(async {
        let ((), (), out) = tokio::join!(write, read_err, read_out);
        out
    });
    tokio::select! {
        out = &mut pipes => out?,
        () = watch.exited() => {
            // The CLI is gone; a straggler may hold the pipes open. Take what comes soon.
            match tokio::time::timeout(DRAIN_GRACE, &mut pipes).await {
                Ok(out) => out?,
                Err(_) => tracing::warn!(pid, "agent output stayed open after it exited"),
            }
        }
    }
    drop(pipes);

    if tokio::time::timeout(EXIT_GRACE, watch.exited())
        .await
        .is_err()
    {
        tracing::warn!(pid, "agent closed its output but did not exit: terminating");
        terminate_unreaped(pid, watch, TERM_GRACE).await;
    }
    // The leader has exited but is not reaped, so its group id is still ours: clear out
    // anything it left in its group before reaping. Signalled directly, without
    // `proctree::signal_group`'s scan of every process in /proc (the check that a group id
    // is not free again): an unreaped leader keeps its group id reserved, and the scan was
    // the largest CPU cost of a turn.
    if pid > 1 {
        // SAFETY: killpg(2) has no memory-safety preconditions; ESRCH (nobody left) is fine.
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
    child.wait().await.map_err(RunError::Io)
}

/// `SIGTERM` to the group, up to `grace` for the leader to exit, then `SIGKILL` to the whole
/// tree (as found before the `SIGTERM`, so re-parented tools are not missed). Does not reap.
async fn terminate_unreaped(pid: i32, watch: &ExitWatch, grace: Duration) {
    let before = proctree::snapshot(pid);
    if !grace.is_zero() {
        proctree::signal_group(pid, libc::SIGTERM);
        let _ = tokio::time::timeout(grace, watch.exited()).await;
    }
    proctree::force_kill(pid, pid, &before);
}

/// [`terminate_unreaped`], then reaps the child (bounded: if it cannot be reaped in time,
/// tokio reaps it in the background once it dies).
async fn terminate(child: &mut Child, pid: i32, watch: &ExitWatch, grace: Duration) {
    terminate_unreaped(pid, watch, grace).await;
    if tokio::time::timeout(REAP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "killed agent process was not reaped in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(script: &str, timeout: Duration) -> RunSpec {
        RunSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env_remove: vec!["CLAUDECODE".into()],
            env: vec![("ACG_TEST_VAR".into(), "v1".into())],
            cwd: std::env::temp_dir(),
            stdin: "from stdin".into(),
            deadline: tokio::time::Instant::now() + timeout,
        }
    }

    #[tokio::test]
    async fn reads_lines_stdin_env_and_stderr() {
        let script = r#"read -r x; echo "{\"type\":\"result\",\"result\":\"$x $ACG_TEST_VAR\"}"; echo oops >&2; exit 3"#;
        let out = run(
            &spec(script, Duration::from_secs(60)),
            &EventSink::discard(),
        )
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stderr, "oops\n");
        assert_eq!(out.parsed.reply_text().as_deref(), Some("from stdin v1"));
        assert_eq!(out.timings.lines, 1);
        assert!(out.timings.first_output.is_some());
    }

    #[tokio::test]
    async fn stderr_is_capped() {
        let script = "head -c 200000 /dev/zero | tr '\\0' x >&2; echo done";
        let out = run(
            &spec(script, Duration::from_secs(60)),
            &EventSink::discard(),
        )
        .await
        .unwrap();
        assert_eq!(out.stderr.len(), MAX_STDERR_BYTES);
        assert_eq!(out.parsed.last_lines, vec!["done".to_owned()]);
    }

    #[tokio::test]
    async fn an_overlong_line_is_an_error() {
        let script = "head -c 17000000 /dev/zero | tr '\\0' x; echo; sleep 600";
        let err = run(
            &spec(script, Duration::from_secs(120)),
            &EventSink::discard(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RunError::LineTooLong), "{err:?}");
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let mut s = spec("", Duration::from_secs(5));
        s.program = "/nonexistent/claude".into();
        let err = run(&s, &EventSink::discard()).await.unwrap_err();
        assert!(matches!(err, RunError::Spawn { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn output_held_open_by_a_straggler_does_not_block() {
        // The leader exits at once; a background child keeps stdout open for a long time.
        let script = r#"echo '{"type":"result","result":"r"}'; (exec sleep 600) & exit 0"#;
        let out = run(
            &spec(script, Duration::from_secs(120)),
            &EventSink::discard(),
        )
        .await
        .unwrap();
        assert_eq!(out.parsed.reply_text().as_deref(), Some("r"));
    }

    #[tokio::test]
    async fn deadline_kills_the_tree() {
        // A grandchild in its own session, like the CLI's Bash tool; and one that ignores TERM.
        let script = "trap '' TERM; setsid sleep 600 & echo $! > \"$ACG_PIDFILE\"; sleep 600";
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut s = spec(script, Duration::from_secs(3));
        s.env
            .push(("ACG_PIDFILE".into(), pidfile.to_string_lossy().into_owned()));
        let err = run(&s, &EventSink::discard()).await.unwrap_err();
        assert!(matches!(err, RunError::Timeout));
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while proctree::read_proc(grandchild).is_some_and(|p| p.state != 'Z') {
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} survived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
