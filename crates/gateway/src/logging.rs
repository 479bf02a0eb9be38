//! The daemon's log: `tracing` events appended to `<runtime>/gateway.log`, as text (default)
//! or JSON lines (`--log-format json`), filtered by `ACG_LOG` (`RUST_LOG` syntax, default
//! `info`). Panics are logged too, so a crash leaves a trace in the file.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// The environment variable holding the log filter.
pub const FILTER_ENV: &str = "ACG_LOG";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// The word used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Where the log goes besides the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Only the file. The process's stderr is pointed at the file too, so panics and stray
    /// output of libraries end up there (a detached daemon has no terminal).
    FileOnly,
    /// The file and stderr (an interactive `start --foreground`).
    Stderr,
}

/// Installs the global subscriber. Returns a warning to log when `ACG_LOG` was unusable.
pub fn init(log_file: &Path, format: LogFormat, echo: Echo) -> io::Result<Option<String>> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_file)?;
    if echo == Echo::FileOnly {
        nix::unistd::dup2(file.as_raw_fd(), 2).map_err(io::Error::from)?;
    }
    let file = Arc::new(file);

    let (filter, warning) = match std::env::var(FILTER_ENV) {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(err) => (
                EnvFilter::new("info"),
                Some(format!("ignoring {FILTER_ENV}={spec:?}: {err}")),
            ),
        },
        _ => (EnvFilter::new("info"), None),
    };

    let file_layer = match format {
        LogFormat::Text => fmt::layer().with_ansi(false).with_writer(file).boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(file).boxed(),
    };
    let stderr_layer = (echo == Echo::Stderr).then(|| fmt::layer().with_writer(io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .map_err(io::Error::other)?;

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(target: "panic", "{info}");
        default_hook(info);
    }));
    Ok(warning)
}
