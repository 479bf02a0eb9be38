//! [`ToolPolicy`]: an agent's compiled allow-lists, and the decision for one tool call with
//! its [`Explanation`].
//!
//! Decision (0.5.x §4.4 steps 1, 2 and 4; `skip_owner_approval` and the chat round-trip are
//! the broker's):
//! 1. `ToolSearch` is always allowed.
//! 2. The call is auto-allowed iff every extracted param matches some rule of the caller's
//!    list (built-ins first) — and, if the splitter found opaque constructs, a rule without
//!    `params` covers the tool. An empty list allows nothing.
//! 3. Otherwise an owner's call goes to the owners in chat and a guest's call is refused.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use acg_config::ToolRule;

use crate::bash::Opaque;
use crate::input::ToolInput;
use crate::params::{extract_params, extract_patterns, Extraction};
use crate::rules::{built_in_rules, CompiledRule, RuleList};
use crate::PolicyError;

/// Whose allow-list applies to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A configured owner: owner rules, then approval in chat.
    Owner,
    /// Anyone else: guest rules, nothing else (also the role of an unknown session).
    Guest,
}

impl Role {
    /// `owner` / `guest`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Guest => "guest",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PolicyError;
    /// Accepts `owner` and `guest` in any case.
    fn from_str(s: &str) -> Result<Role, PolicyError> {
        match s.to_ascii_lowercase().as_str() {
            "owner" => Ok(Role::Owner),
            "guest" => Ok(Role::Guest),
            _ => Err(PolicyError::UnknownRole(s.to_string())),
        }
    }
}

/// What happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Runs without asking (`ToolSearch`, or rules approve every param).
    AutoAllowed,
    /// An owner's call no rule approves: the owners are asked in chat.
    AskOwner,
    /// A guest's call no guest rule approves: refused.
    GuestDenied,
    /// An owner's call on an agent with `skip_owner_approval`: runs without rules.
    SkipOwnerApproval,
}

impl Decision {
    /// The snake_case word (also used by the audit trail).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::AutoAllowed => "auto_allowed",
            Decision::AskOwner => "ask_owner",
            Decision::GuestDenied => "guest_denied",
            Decision::SkipOwnerApproval => "skip_owner_approval",
        }
    }

    /// Whether the call runs without anyone being asked.
    pub fn runs_without_asking(self) -> bool {
        matches!(self, Decision::AutoAllowed | Decision::SkipOwnerApproval)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Decision::AutoAllowed => "allowed without asking",
            Decision::AskOwner => "ask an owner in chat",
            Decision::GuestDenied => "refused (guest)",
            Decision::SkipOwnerApproval => "allowed without asking (skip_owner_approval)",
        })
    }
}

/// A rule as shown in an explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The list it is in.
    pub list: RuleList,
    /// 0-based index in that list.
    pub index: usize,
    /// The rule as written.
    pub rule: ToolRule,
}

impl fmt::Display for RuleRef {
    /// `owner rule #2 {tool: Bash, params: "ls.*"}` (1-based).
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

impl From<&CompiledRule> for RuleRef {
    fn from(r: &CompiledRule) -> RuleRef {
        RuleRef {
            list: r.list,
            index: r.index,
            rule: r.rule.clone(),
        }
    }
}

/// One param and the rule that approved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamMatch {
    /// The param string.
    pub param: String,
    /// The first rule that matched, or `None`.
    pub rule: Option<RuleRef>,
}

/// Why a call gets its decision: every param with its rule, the opaque constructs, the
/// decision and a one-line reason. Its `Display` is what `agent-chat-gateway policy check`
/// prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The role whose list applied.
    pub role: Role,
    /// The tool name as the agent sent it.
    pub tool: String,
    /// The input as matched for non-special tools (`json.dumps` form) — for display.
    pub input: String,
    /// Each param and its rule.
    pub params: Vec<ParamMatch>,
    /// Constructs no `params` rule may approve.
    pub opaque: Vec<Opaque>,
    /// A rule without `params` that covers this tool (approves opaque calls too).
    pub tool_wide_rule: Option<RuleRef>,
    /// The outcome.
    pub decision: Decision,
    /// One line saying why.
    pub reason: String,
    /// Extra facts about the agent's settings (from [`crate::check_from_config`]).
    pub notes: Vec<String>,
}

impl Explanation {
    /// Whether the call runs without anyone being asked.
    pub fn is_auto_allowed(&self) -> bool {
        self.decision.runs_without_asking()
    }

    /// The param strings (for the audit trail).
    pub fn param_strings(&self) -> Vec<String> {
        self.params.iter().map(|p| p.param.clone()).collect()
    }

    /// The rules that approved the call, one per distinct rule (for the audit trail's
    /// `rule` field), e.g. `owner rule #2 {tool: Bash, params: "ls.*"}`.
    pub fn approving_rules(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(r) = &self.tool_wide_rule {
            if !self.opaque.is_empty() {
                out.push(r.to_string());
            }
        }
        for p in &self.params {
            if let Some(r) = &p.rule {
                let s = r.to_string();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        out
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Tool call: {} as {}", self.tool, self.role)?;
        writeln!(f, "Input: {}", self.input)?;
        writeln!(f, "Params:")?;
        for (i, p) in self.params.iter().enumerate() {
            match &p.rule {
                Some(r) => writeln!(f, "  {}. {:?} — matched {}", i + 1, p.param, r)?,
                None => writeln!(f, "  {}. {:?} — no rule matched", i + 1, p.param)?,
            }
        }
        if !self.opaque.is_empty() {
            writeln!(f, "Never approved by a params rule:")?;
            for o in &self.opaque {
                writeln!(f, "  - {:?}: {}", o.snippet, o.reason)?;
            }
            match &self.tool_wide_rule {
                Some(r) => writeln!(f, "  (covered by {r}, which has no params)")?,
                None => writeln!(f, "  (no rule without params covers this tool)")?,
            }
        }
        for n in &self.notes {
            writeln!(f, "Note: {n}")?;
        }
        write!(f, "Decision: {} — {}", self.decision, self.reason)
    }
}

/// An agent's compiled allow-lists (built-in rules first).
#[derive(Debug, Clone)]
pub struct ToolPolicy {
    owner: Vec<CompiledRule>,
    guest: Vec<CompiledRule>,
}

impl ToolPolicy {
    /// Compiles the owner and guest lists (presets already expanded, as in
    /// `AgentConfig.owner_allowed_tools`) behind the built-in rules. Fails on a pattern that
    /// does not compile or uses verbose mode.
    pub fn new(
        owner_rules: &[ToolRule],
        guest_rules: &[ToolRule],
    ) -> Result<ToolPolicy, PolicyError> {
        let compile =
            |rules: &[ToolRule], list: RuleList| -> Result<Vec<CompiledRule>, PolicyError> {
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| CompiledRule::compile(r, list, i))
                    .collect()
            };
        let mut owner = compile(&built_in_rules(true), RuleList::BuiltIn)?;
        owner.extend(compile(owner_rules, RuleList::Owner)?);
        let mut guest = compile(&built_in_rules(false), RuleList::BuiltIn)?;
        guest.extend(compile(guest_rules, RuleList::Guest)?);
        Ok(ToolPolicy { owner, guest })
    }

    /// The rules that apply to `role`, built-ins first.
    pub fn rules(&self, role: Role) -> &[CompiledRule] {
        match role {
            Role::Owner => &self.owner,
            Role::Guest => &self.guest,
        }
    }

    /// The decision for a Claude tool call (see the module doc).
    pub fn decide(&self, role: Role, tool_name: &str, input: &ToolInput, cwd: &Path) -> Decision {
        self.explain(role, tool_name, input, cwd).decision
    }

    /// The decision for a Claude tool call with the reasons: each param with its rule.
    pub fn explain(
        &self,
        role: Role,
        tool_name: &str,
        input: &ToolInput,
        cwd: &Path,
    ) -> Explanation {
        let shown = input.to_python_json();
        if tool_name == "ToolSearch" {
            return Explanation {
                role,
                tool: tool_name.to_string(),
                input: shown,
                params: Vec::new(),
                opaque: Vec::new(),
                tool_wide_rule: None,
                decision: Decision::AutoAllowed,
                reason: "ToolSearch is always allowed".to_string(),
                notes: Vec::new(),
            };
        }
        let extraction = extract_params(tool_name, input, cwd);
        self.judge(role, tool_name, shown, extraction)
    }

    /// The decision for an OpenCode permission request (`permission` is its tool name,
    /// `patterns` its param strings; bash patterns are split again).
    pub fn explain_patterns(
        &self,
        role: Role,
        permission: &str,
        patterns: &[String],
    ) -> Explanation {
        let shown = ToolInput::Array(patterns.iter().cloned().map(ToolInput::String).collect())
            .to_python_json();
        let extraction = extract_patterns(permission, patterns);
        self.judge(role, permission, shown, extraction)
    }

    fn judge(
        &self,
        role: Role,
        tool_name: &str,
        shown: String,
        extraction: Extraction,
    ) -> Explanation {
        let rules: Vec<&CompiledRule> = self
            .rules(role)
            .iter()
            .filter(|r| r.matches_tool(tool_name))
            .collect();
        let params: Vec<ParamMatch> = extraction
            .params
            .into_iter()
            .map(|param| {
                let rule = rules
                    .iter()
                    .find(|r| r.matches_param(&param))
                    .map(|r| RuleRef::from(*r));
                ParamMatch { param, rule }
            })
            .collect();
        let tool_wide_rule = rules
            .iter()
            .find(|r| r.is_tool_wide())
            .map(|r| RuleRef::from(*r));
        let unmatched: Vec<usize> = params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.rule.is_none())
            .map(|(i, _)| i)
            .collect();
        let opaque_blocks = !extraction.opaque.is_empty() && tool_wide_rule.is_none();
        let allowed = unmatched.is_empty() && !opaque_blocks;
        let decision = match (allowed, role) {
            (true, _) => Decision::AutoAllowed,
            (false, Role::Owner) => Decision::AskOwner,
            (false, Role::Guest) => Decision::GuestDenied,
        };
        let reason = if allowed {
            if !extraction.opaque.is_empty() {
                "a rule without params allows every call of this tool".to_string()
            } else {
                "every param matched a rule".to_string()
            }
        } else {
            let why = if rules.is_empty() {
                format!("no {} rule is about tool {tool_name}", role)
            } else if let Some(&first) = unmatched.first() {
                let more = if unmatched.len() > 1 {
                    format!(" (and {} more)", unmatched.len() - 1)
                } else {
                    String::new()
                };
                format!(
                    "param {} {:?} matched no rule{more}",
                    first + 1,
                    shorten(&params[first].param)
                )
            } else {
                let o = &extraction.opaque[0];
                format!("{:?}: {}", o.snippet, o.reason)
            };
            match role {
                Role::Owner => format!("{why}; an owner is asked"),
                Role::Guest => format!("{why}; guests cannot be asked for approval"),
            }
        };
        Explanation {
            role,
            tool: tool_name.to_string(),
            input: shown,
            params,
            opaque: extraction.opaque,
            tool_wide_rule,
            decision,
            reason,
            notes: Vec::new(),
        }
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(59).collect();
        out.push('…');
        out
    }
}
