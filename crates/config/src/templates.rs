//! `connector_templates:` / `agent_templates:` / `watcher_templates:` and `inherits:`.
//!
//! A template is a named partial entry. An entry that says `inherits: <name>` gets the template
//! deep-merged underneath it: mappings merge key by key (the entry wins), while lists, scalars
//! and an explicit `null` in the entry replace the template's value outright. Templates cannot
//! inherit from each other, may not set the keys that identify one entry, and their
//! `description` is only a note for the reader (it is dropped before merging).

use std::collections::BTreeMap;

use crate::keys::{self, Key};
use crate::load::{Ctx, Site};
use crate::yaml::{Entry, Node, Value};

/// One kind of template block, parsed and checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Templates {
    /// The top-level key (`agent_templates`), used in messages.
    pub key: &'static str,
    /// Template name → its mapping (without `description`, unknown keys removed).
    pub items: BTreeMap<String, Node>,
}

/// How a template block is checked: which keys its templates may hold.
pub(crate) struct TemplateRules {
    /// `agent_templates` etc.
    pub key: &'static str,
    /// Keys accepted inside a template (the entry's table).
    pub table: &'static [Key],
    /// Keys that identify one entry and so may not be shared.
    pub forbidden: &'static [&'static str],
}

impl Templates {
    /// Reads and checks the `rules.key` block of the top-level mapping.
    pub(crate) fn parse(ctx: &mut Ctx, root: &Node, rules: &TemplateRules) -> Templates {
        let mut templates = Templates {
            key: rules.key,
            items: BTreeMap::new(),
        };
        let Some(entry) = root.entry(rules.key) else {
            return templates;
        };
        let block = &entry.value;
        if block.is_null() {
            return templates;
        }
        let Some(items) = block.as_map() else {
            ctx.error(
                &Site::top(),
                Some(rules.key),
                Some(block.at),
                format!(
                    "config.yaml '{}:' must be a mapping (got {}).",
                    rules.key,
                    block.type_name()
                ),
            );
            return templates;
        };
        for item in items {
            if let Some(t) = check_template(ctx, rules, item) {
                templates.items.insert(item.key.clone(), t);
            }
        }
        templates
    }
}

/// Checks one named template; returns its usable mapping (None when it cannot be used).
fn check_template(ctx: &mut Ctx, rules: &TemplateRules, item: &Entry) -> Option<Node> {
    let name = &item.key;
    let site = Site::new(format!("{}.{name}", rules.key), String::new());
    let Some(entries) = item.value.as_map() else {
        ctx.error(
            &site,
            None,
            Some(item.value.at),
            format!(
                "{}['{name}'] must be a mapping (got {}).",
                rules.key,
                item.value.type_name()
            ),
        );
        return None;
    };
    let mut usable = true;
    let mut kept = Vec::new();
    for e in entries {
        if e.key == "inherits" {
            ctx.error(
                &site,
                Some("inherits"),
                Some(e.key_at),
                format!(
                    "{}['{name}'] must not set 'inherits': a template cannot inherit from another template.",
                    rules.key
                ),
            );
            usable = false;
        } else if rules.forbidden.contains(&e.key.as_str()) {
            ctx.error(
                &site,
                Some(&e.key),
                Some(e.key_at),
                format!(
                    "{}['{name}'] must not set '{}': it identifies a single entry, so set it on the entry itself.",
                    rules.key, e.key
                ),
            );
            usable = false;
        } else if e.key == "description" {
            // A note for the reader; never merged into entries.
        } else if keys::find(rules.table, &e.key).is_none() {
            ctx.error(
                &site,
                Some(&e.key),
                Some(e.key_at),
                keys::unknown_key_message(&e.key, rules.table),
            );
        } else {
            ctx.check_keys_below(&site, e, rules.table, "", None);
            kept.push(e.clone());
        }
    }
    usable.then(|| Node::new(Value::Map(kept), item.value.at))
}

/// Who is inheriting, for the messages: `Agent 'claude'`, `Watcher entry 'index 2'`.
pub(crate) struct Inheritor<'a> {
    /// `Agent`, `Connector entry`, `Watcher entry`.
    pub kind: &'a str,
    /// The agent's name or `index <i>`.
    pub label: String,
}

/// Resolves `inherits:` of one entry: the merged mapping without `inherits`, or None when the
/// reference is broken (reported; the entry is then not checked further, to avoid a cascade of
/// follow-up errors about fields the template would have supplied).
pub(crate) fn resolve_inherits(
    ctx: &mut Ctx,
    site: &Site,
    entry: &Node,
    templates: &Templates,
    who: &Inheritor,
) -> Option<Node> {
    let entries = entry.as_map().unwrap_or_default();
    let own: Vec<Entry> = entries
        .iter()
        .filter(|e| e.key != "inherits")
        .cloned()
        .collect();
    let own = Node::new(Value::Map(own), entry.at);
    let Some(inherits) = entry.entry("inherits") else {
        return Some(own);
    };
    if inherits.value.is_null() {
        return Some(own);
    }
    let template_name = match inherits.value.as_str() {
        Some(s) if !s.is_empty() => s,
        _ => {
            ctx.error(
                site,
                Some("inherits"),
                Some(inherits.value.at),
                format!(
                    "{} '{}': 'inherits' must be a non-empty string naming a {} entry (got {}).",
                    who.kind,
                    who.label,
                    templates.key,
                    inherits.value.py_repr()
                ),
            );
            return None;
        }
    };
    let Some(template) = templates.items.get(template_name) else {
        ctx.error(
            site,
            Some("inherits"),
            Some(inherits.value.at),
            format!(
                "{} '{}': unknown {} '{template_name}'. Available templates: {}",
                who.kind,
                who.label,
                templates.key,
                crate::load::available(templates.items.keys())
            ),
        );
        return None;
    };
    let own_type = own
        .get("type")
        .and_then(Node::as_str)
        .filter(|t| !t.is_empty());
    let template_type = template
        .get("type")
        .and_then(Node::as_str)
        .filter(|t| !t.is_empty());
    if let (Some(e), Some(t)) = (own_type, template_type) {
        if e != t {
            ctx.error(
                site,
                Some("type"),
                own.entry("type").map(|x| x.key_at),
                format!(
                    "{} '{}': type '{e}' does not match {}['{template_name}']'s own type '{t}' — an entry cannot inherit a template written for a different type.",
                    who.kind, who.label, templates.key
                ),
            );
            return None;
        }
    }
    Some(deep_merge(template, &own))
}

/// `over` merged onto `base`: mappings merge recursively (over wins), anything else in `over`
/// (lists, scalars, null) replaces. Keys keep `base`'s order; new keys follow in `over`'s order.
pub(crate) fn deep_merge(base: &Node, over: &Node) -> Node {
    let (Some(base_entries), Some(over_entries)) = (base.as_map(), over.as_map()) else {
        return over.clone();
    };
    let mut merged: Vec<Entry> = base_entries.to_vec();
    for o in over_entries {
        match merged.iter_mut().find(|m| m.key == o.key) {
            Some(m) => {
                let both_maps = m.value.as_map().is_some() && o.value.as_map().is_some();
                m.value = if both_maps {
                    deep_merge(&m.value, &o.value)
                } else {
                    o.value.clone()
                };
                m.key_at = o.key_at;
            }
            None => merged.push(o.clone()),
        }
    }
    Node::new(Value::Map(merged), over.at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn node(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn mappings_merge_recursively_entry_wins() {
        let base = node("permissions: {enabled: true, timeout: 300}\ntimeout: 400\n");
        let over = node("permissions: {timeout: 120}\n");
        let m = deep_merge(&base, &over);
        assert!(m.same_value(&node(
            "permissions: {enabled: true, timeout: 120}\ntimeout: 400\n"
        )));
    }

    #[test]
    fn lists_scalars_and_null_replace() {
        let base = node("args: [a, b]\nx: 1\nm: {k: 1}\n");
        let over = node("args: [c]\nx: ~\nm: 5\n");
        let m = deep_merge(&base, &over);
        assert!(m.same_value(&node("args: [c]\nx: ~\nm: 5\n")));
    }

    #[test]
    fn new_keys_follow_base_order() {
        let m = deep_merge(&node("a: 1\nb: 2\n"), &node("c: 3\na: 9\n"));
        let keys: Vec<&str> = m.as_map().unwrap().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn merged_values_keep_their_source_position() {
        let base = node("x: 1\ny: 2\n");
        let over = node("\n\n\ny: 3\n");
        let m = deep_merge(&base, &over);
        assert_eq!(m.get("x").unwrap().at.line, 1);
        assert_eq!(m.get("y").unwrap().at.line, 4);
    }
}
