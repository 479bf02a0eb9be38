//! Tool rules compiled for matching, and the built-in rules placed in front of the
//! configured ones.
//!
//! A rule `{tool, params}` matches a tool name when `tool` matches the whole name, ignoring
//! case; it matches a param string when `params` matches the whole string, ignoring case, with
//! `.` matching newlines too. A rule without `params` matches every param of the tool — and is
//! the only kind that also approves calls with opaque constructs (see [`crate::bash`]).
//!
//! Patterns use Python-`re`-like syntax through `fancy-regex` (look-around and backreferences
//! work). Each pattern is first compiled on its own, then wrapped as `\A(?:…)\z` so that an
//! alternation such as `ls|cat` stays anchored at both ends. Verbose mode (`(?x)`) is refused:
//! its `#` comments could swallow the closing anchor.

use std::fmt;

use acg_config::ToolRule;
use fancy_regex::Regex;

use crate::PolicyError;

/// Which list a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleList {
    /// Shipped with the gateway (its own CLI commands, `date`).
    BuiltIn,
    /// The agent's `owner_allowed_tools`.
    Owner,
    /// The agent's `guest_allowed_tools`.
    Guest,
}

impl RuleList {
    /// The word used in explanations and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleList::BuiltIn => "built-in",
            RuleList::Owner => "owner",
            RuleList::Guest => "guest",
        }
    }
}

impl fmt::Display for RuleList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in owner rules: the gateway's own CLI commands the agent is told to use.
pub const BUILT_IN_OWNER_PARAMS: &[&str] = &[
    r"agent-chat-gateway\s+send\s+.*",
    r"agent-chat-gateway\s+schedule\s+.*",
    r"agent-chat-gateway\s+fetch-history\s+.*",
    r"agent-chat-gateway\s+instructions\s+(scheduling|fetch-history)\s*",
    r"date(\s+.*)?",
];

/// The built-in guest rules: reading history and the instructions only.
pub const BUILT_IN_GUEST_PARAMS: &[&str] = &[
    r"agent-chat-gateway\s+fetch-history\s+.*",
    r"agent-chat-gateway\s+instructions\s+(scheduling|fetch-history)\s*",
];

/// A rule ready to match.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The list it came from.
    pub list: RuleList,
    /// Its 0-based index in that list.
    pub index: usize,
    /// The rule as written.
    pub rule: ToolRule,
    tool: Regex,
    params: Option<Regex>,
}

impl CompiledRule {
    /// Compiles one rule; `list`/`index` locate it in error messages and explanations.
    pub fn compile(
        rule: &ToolRule,
        list: RuleList,
        index: usize,
    ) -> Result<CompiledRule, PolicyError> {
        let tool =
            compile_full_match(&rule.tool, false).map_err(|message| PolicyError::InvalidRule {
                list,
                index,
                field: "tool",
                pattern: rule.tool.clone(),
                message,
            })?;
        let params =
            match &rule.params {
                Some(p) => Some(compile_full_match(p, true).map_err(|message| {
                    PolicyError::InvalidRule {
                        list,
                        index,
                        field: "params",
                        pattern: p.clone(),
                        message,
                    }
                })?),
                None => None,
            };
        Ok(CompiledRule {
            list,
            index,
            rule: rule.clone(),
            tool,
            params,
        })
    }

    /// Whether the rule is about this tool name.
    pub fn matches_tool(&self, tool_name: &str) -> bool {
        // A regex that gives up (backtracking limit) does not match: fail closed.
        self.tool.is_match(tool_name).unwrap_or(false)
    }

    /// Whether the rule approves this param (its tool having matched).
    pub fn matches_param(&self, param: &str) -> bool {
        match &self.params {
            None => true,
            Some(re) => re.is_match(param).unwrap_or(false),
        }
    }

    /// A rule without `params`: approves every call of its tool.
    pub fn is_tool_wide(&self) -> bool {
        self.params.is_none()
    }
}

impl fmt::Display for CompiledRule {
    /// `owner rule #2 {tool: Bash, params: "ls.*"}` (1-based for people).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rule #{} {{tool: {}",
            self.list,
            self.index + 1,
            self.rule.tool
        )?;
        if let Some(p) = &self.rule.params {
            write!(f, ", params: {p:?}")?;
        }
        f.write_str("}")
    }
}

/// Compiles `pattern` to match whole strings, case-insensitively (and dot-all for params).
fn compile_full_match(pattern: &str, dot_all: bool) -> Result<Regex, String> {
    if uses_verbose_flag(pattern) {
        return Err("verbose mode `(?x)` is not supported in tool rules".to_string());
    }
    // On its own first: a pattern like `a)|(b` must not become valid by being wrapped.
    Regex::new(pattern).map_err(|e| e.to_string())?;
    let flags = if dot_all { "(?is)" } else { "(?i)" };
    Regex::new(&format!(r"{flags}\A(?:{pattern})\z")).map_err(|e| e.to_string())
}

/// Whether an inline flag group turns on `x` (`(?x)`, `(?ix:…)`, …).
fn uses_verbose_flag(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        if b[i] == b'(' && b[i + 1] == b'?' && (i == 0 || b[i - 1] != b'\\') {
            let mut j = i + 2;
            let mut on = true;
            while j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'-') {
                if b[j] == b'-' {
                    on = false;
                } else if b[j] == b'x' && on {
                    return true;
                }
                j += 1;
            }
        }
        i += 1;
    }
    false
}

/// The built-in rules of a list, as [`ToolRule`]s.
pub fn built_in_rules(for_owner: bool) -> Vec<ToolRule> {
    let params = if for_owner {
        BUILT_IN_OWNER_PARAMS
    } else {
        BUILT_IN_GUEST_PARAMS
    };
    params
        .iter()
        .map(|p| ToolRule {
            tool: "Bash".to_string(),
            params: Some((*p).to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tool: &str, params: Option<&str>) -> CompiledRule {
        CompiledRule::compile(
            &ToolRule {
                tool: tool.into(),
                params: params.map(Into::into),
            },
            RuleList::Owner,
            0,
        )
        .unwrap()
    }

    #[test]
    fn tool_is_full_match_case_insensitive_without_dotall() {
        let r = rule("Bash", None);
        assert!(r.matches_tool("bash"));
        assert!(r.matches_tool("BASH"));
        assert!(!r.matches_tool("Bashful"));
        assert!(!r.matches_tool("xBash"));
        let r = rule("mcp__.*", None);
        assert!(r.matches_tool("mcp__github__list"));
        assert!(!r.matches_tool("mcp__a\nb"));
    }

    #[test]
    fn params_full_match_case_insensitive_dotall() {
        let r = rule("Bash", Some("echo .*"));
        assert!(r.matches_param("echo hi"));
        assert!(r.matches_param("ECHO hi\nthere"));
        assert!(!r.matches_param("xecho hi"));
        assert!(!r.matches_param("echo"));
    }

    #[test]
    fn alternations_stay_anchored() {
        let r = rule("Bash", Some("ls|cat"));
        assert!(r.matches_param("ls"));
        assert!(r.matches_param("cat"));
        assert!(!r.matches_param("ls; rm -rf /"));
        assert!(!r.matches_param("rm -rf / ; cat"));
        let r = rule("Read|Write", None);
        assert!(!r.matches_tool("ReadX"));
        assert!(!r.matches_tool("XWrite"));
        // fullmatch semantics: a later alternative can complete the match.
        let r = rule("Bash", Some("a|ab"));
        assert!(r.matches_param("ab"));
    }

    #[test]
    fn python_features_work() {
        let r = rule("Bash", Some(r"git (?!push).*"));
        assert!(r.matches_param("git status"));
        assert!(!r.matches_param("git push"));
        let r = rule("Bash", Some(r"(\w+) \1"));
        assert!(r.matches_param("ab ab"));
        assert!(!r.matches_param("ab cd"));
    }

    #[test]
    fn broken_or_unanchorable_patterns_are_refused() {
        for p in ["a)|(b", "(", "[a", r"a\", "(?x)ls # comment", "(?ix:a)"] {
            let err = CompiledRule::compile(
                &ToolRule {
                    tool: "Bash".into(),
                    params: Some(p.into()),
                },
                RuleList::Guest,
                3,
            );
            assert!(err.is_err(), "{p}");
        }
        let err = CompiledRule::compile(
            &ToolRule {
                tool: "(".into(),
                params: None,
            },
            RuleList::Owner,
            1,
        )
        .unwrap_err();
        assert!(err.to_string().contains("owner rule #2"), "{err}");
    }

    #[test]
    fn display_names_the_rule() {
        let r = rule("Bash", Some("ls.*"));
        assert_eq!(
            r.to_string(),
            r#"owner rule #1 {tool: Bash, params: "ls.*"}"#
        );
    }
}
