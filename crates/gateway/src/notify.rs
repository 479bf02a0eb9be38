//! The startup report pipe between `start` and the daemon it launches (digest §8.4).
//!
//! The daemon writes one line per event: `info:<msg>`, `error:<msg>` (non-fatal problems, or
//! the reason it gives up) and finally `ok` once it serves the control socket. `start` reads
//! until the pipe closes: `ok` seen means started (degraded if any `error:` came first), no
//! `ok` means the daemon gave up or died.

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// The daemon's end of the pipe. Without a pipe (a plain `start --foreground`) every call is
/// a no-op.
#[derive(Debug, Default)]
pub struct StartupReporter {
    pipe: Option<File>,
}

impl StartupReporter {
    /// A reporter that reports to nobody.
    pub fn none() -> Self {
        StartupReporter { pipe: None }
    }

    /// Takes ownership of the inherited write end `fd` (passed by `start` with `--notify-fd`).
    /// Marks it close-on-exec so agent processes never hold the pipe open.
    pub fn from_fd(fd: RawFd) -> std::io::Result<Self> {
        if fd < 3 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("--notify-fd {fd} is a standard stream"),
            ));
        }
        // Fails with EBADF unless the descriptor is really open.
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(std::io::Error::from)?;
        // SAFETY: the descriptor is open (checked above) and, by the `--notify-fd` contract,
        // handed to this process alone; nothing else in the daemon uses that number.
        let file = unsafe { File::from_raw_fd(fd) };
        Ok(StartupReporter { pipe: Some(file) })
    }

    /// Reports an informational line.
    pub fn info(&mut self, msg: &str) {
        self.line("info:", msg);
    }

    /// Reports a problem (non-fatal if `ok` follows).
    pub fn error(&mut self, msg: &str) {
        self.line("error:", msg);
    }

    /// Reports a completed start and closes the pipe.
    pub fn ok(&mut self) {
        self.line("ok", "");
        self.pipe = None;
    }

    fn line(&mut self, tag: &str, msg: &str) {
        if let Some(pipe) = &mut self.pipe {
            let flat = msg.replace(['\n', '\r'], " ");
            // A parent that went away (EPIPE) only loses the report; the daemon goes on.
            let _ = pipe.write_all(format!("{tag}{flat}\n").as_bytes());
        }
    }
}

/// What the daemon reported, as `start` read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupOutcome {
    /// `info:` lines.
    pub info: Vec<String>,
    /// `error:` lines.
    pub errors: Vec<String>,
    /// `ok` was seen.
    pub ok: bool,
}

/// Reads the report until `ok` or end of file. Unknown lines are ignored.
pub fn read_outcome(reader: impl BufRead) -> StartupOutcome {
    let mut outcome = StartupOutcome::default();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if let Some(msg) = line.strip_prefix("info:") {
            outcome.info.push(msg.to_string());
        } else if let Some(msg) = line.strip_prefix("error:") {
            outcome.errors.push(msg.to_string());
        } else if line == "ok" {
            outcome.ok = true;
            break;
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::IntoRawFd;

    #[test]
    fn lines_are_parsed_until_ok() {
        let text = "info:loaded\nerror:agent 'x' failed\nnoise\nok\nerror:after ok\n";
        let outcome = read_outcome(text.as_bytes());
        assert_eq!(outcome.info, ["loaded"]);
        assert_eq!(outcome.errors, ["agent 'x' failed"]);
        assert!(outcome.ok);
    }

    #[test]
    fn closed_pipe_without_ok_is_a_failure() {
        let outcome = read_outcome("error:bad config\n".as_bytes());
        assert!(!outcome.ok);
        assert_eq!(outcome.errors, ["bad config"]);
    }

    #[test]
    fn reporter_flattens_newlines_and_closes_after_ok() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let mut reporter = StartupReporter::from_fd(write.into_raw_fd()).unwrap();
        reporter.info("two\nlines");
        reporter.error("bad");
        reporter.ok();
        reporter.error("ignored after ok");
        let mut text = String::new();
        File::from(read).read_to_string(&mut text).unwrap();
        assert_eq!(text, "info:two lines\nerror:bad\nok\n");
    }

    #[test]
    fn bad_descriptors_are_refused() {
        assert!(StartupReporter::from_fd(1).is_err());
        assert!(StartupReporter::from_fd(987_654).is_err());
    }
}
