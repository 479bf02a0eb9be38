//! What a config problem looks like to the user: one [`ConfigIssue`] per problem, naming the
//! file, the line and column, the entry (`agents.claude`, `watchers[2]`, `connectors[0] (rc-home)`)
//! and the field, rendered like a compiler diagnostic:
//! `<file>:<line>:<col>: <entry>: <field>: <message>` (parts we do not know are left out).
//!
//! Errors and warnings share the shape; [`ConfigErrors`] is the "this file cannot be used"
//! result of [`crate::load`], holding every error found, not just the first.

use std::fmt;
use std::path::PathBuf;

/// A 1-based line and column in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

/// One problem (error or warning) found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigIssue {
    /// The config file, as the caller named it.
    pub file: PathBuf,
    /// Where in the file, when known.
    pub location: Option<Location>,
    /// The entry at fault (`agents.claude`, `watchers[2]`, `connectors[0] (rc-home)`), if any.
    pub entry: Option<String>,
    /// The field inside the entry (`permissions.timeout`, `owner_allowed_tools[1].params`), if any.
    pub field: Option<String>,
    /// What is wrong, in the reference implementation's words where users may grep for them.
    pub message: String,
}

impl ConfigIssue {
    /// The one-line form `<file>:<line>:<col>: <entry>: <field>: <message>`.
    pub fn render(&self) -> String {
        let mut out = self.file.display().to_string();
        if let Some(loc) = self.location {
            out.push_str(&format!(":{}:{}", loc.line, loc.column));
        }
        out.push_str(": ");
        if let Some(entry) = &self.entry {
            out.push_str(entry);
            out.push_str(": ");
        }
        if let Some(field) = &self.field {
            out.push_str(field);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// Every error found while loading a config file (never empty when returned by [`crate::load`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigErrors {
    /// The errors, ordered by position in the file (file-wide problems first).
    pub errors: Vec<ConfigIssue>,
}

impl ConfigErrors {
    /// One error per line, no trailing newline.
    pub fn render(&self) -> String {
        let lines: Vec<String> = self.errors.iter().map(ConfigIssue::render).collect();
        lines.join("\n")
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when there are none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The errors' messages alone, handy for tests and summaries.
    pub fn messages(&self) -> Vec<&str> {
        self.errors.iter().map(|e| e.message.as_str()).collect()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(location: Option<Location>, entry: Option<&str>, field: Option<&str>) -> ConfigIssue {
        ConfigIssue {
            file: PathBuf::from("/etc/acg/config.yaml"),
            location,
            entry: entry.map(str::to_string),
            field: field.map(str::to_string),
            message: "boom".to_string(),
        }
    }

    #[test]
    fn renders_every_known_part() {
        let loc = Some(Location {
            line: 12,
            column: 5,
        });
        assert_eq!(
            issue(loc, Some("agents.claude"), Some("timeout")).to_string(),
            "/etc/acg/config.yaml:12:5: agents.claude: timeout: boom"
        );
    }

    #[test]
    fn leaves_out_unknown_parts() {
        assert_eq!(
            issue(None, None, None).to_string(),
            "/etc/acg/config.yaml: boom"
        );
        assert_eq!(
            issue(None, Some("watchers[2]"), None).to_string(),
            "/etc/acg/config.yaml: watchers[2]: boom"
        );
        assert_eq!(
            issue(None, None, Some("max_queue_depth")).to_string(),
            "/etc/acg/config.yaml: max_queue_depth: boom"
        );
    }

    #[test]
    fn errors_render_one_per_line() {
        let errs = ConfigErrors {
            errors: vec![issue(None, None, None), issue(None, Some("a"), None)],
        };
        assert_eq!(
            errs.to_string(),
            "/etc/acg/config.yaml: boom\n/etc/acg/config.yaml: a: boom"
        );
        assert_eq!(errs.len(), 2);
    }
}
