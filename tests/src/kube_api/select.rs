//! `fieldSelector` and `labelSelector`, parsed once per request and applied to lists and to each
//! change a watch sees, with kube-apiserver's semantics.
use serde_json::Value;

/// Which objects a list or watch is about: a namespace (None: all) and both selectors.
pub(super) struct Filter {
    namespace: Option<String>,
    fields: Vec<FieldTerm>,
    labels: Vec<LabelTerm>,
}

/// `path=value`, `path==value` or `path!=value`; `path` is dotted (`spec.nodeName`).
struct FieldTerm {
    path: Vec<String>,
    equal: bool,
    value: String,
}

enum LabelTerm {
    /// `key`, `key=v`, `key in (a,b)`: the label is present and, when values are given, one of them.
    In(String, Option<Vec<String>>),
    /// `!key`, `key!=v`, `key notin (a,b)`: absent, or not one of the values.
    NotIn(String, Option<Vec<String>>),
}

impl Filter {
    /// Errors carry the message of the 400 the request gets.
    pub fn new(
        namespace: Option<&str>,
        fields: Option<&str>,
        labels: Option<&str>,
    ) -> Result<Self, String> {
        Ok(Filter {
            namespace: namespace.map(str::to_string),
            fields: fields.map_or(Ok(Vec::new()), parse_fields)?,
            labels: labels.map_or(Ok(Vec::new()), parse_labels)?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str().unwrap_or_default() != ns
        {
            return false;
        }
        let fields_match = self.fields.iter().all(|t| {
            let found = t.path.iter().fold(obj, |v, key| &v[key.as_str()]);
            // An unset field compares as "" (`spec.nodeName=` selects unscheduled pods).
            let found = match found {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (found == t.value) == t.equal
        });
        let labels = &meta["labels"];
        fields_match
            && self.labels.iter().all(|t| match t {
                LabelTerm::In(key, values) => labels[key]
                    .as_str()
                    .is_some_and(|v| values.as_ref().is_none_or(|vs| vs.iter().any(|w| w == v))),
                LabelTerm::NotIn(key, values) => labels[key]
                    .as_str()
                    .is_none_or(|v| values.as_ref().is_some_and(|vs| vs.iter().all(|w| w != v))),
            })
    }
}

fn parse_fields(selector: &str) -> Result<Vec<FieldTerm>, String> {
    selector
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|term| {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                ));
            };
            Ok(FieldTerm {
                path: path.trim().split('.').map(str::to_string).collect(),
                equal,
                value: value.trim().to_string(),
            })
        })
        .collect()
}

fn parse_labels(selector: &str) -> Result<Vec<LabelTerm>, String> {
    // Terms are comma-separated, but so are the values inside `in (...)`.
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    let bad = |term: &str| format!("unable to parse requirement: '{term}' in '{selector}'");
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((head, rest)) = term.split_once('(') {
                let values: Vec<String> = rest
                    .strip_suffix(')')
                    .ok_or_else(|| bad(term))?
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect();
                let head = head.trim_end();
                return if let Some(key) = head.strip_suffix("notin") {
                    Ok(LabelTerm::NotIn(key.trim().to_string(), Some(values)))
                } else if let Some(key) = head.strip_suffix("in") {
                    Ok(LabelTerm::In(key.trim().to_string(), Some(values)))
                } else {
                    Err(bad(term))
                };
            }
            let one = |v: &str| Some(vec![v.trim().to_string()]);
            Ok(if let Some(key) = term.strip_prefix('!') {
                LabelTerm::NotIn(key.trim().to_string(), None)
            } else if let Some((k, v)) = term.split_once("!=") {
                LabelTerm::NotIn(k.trim().to_string(), one(v))
            } else if let Some((k, v)) = term.split_once("==") {
                LabelTerm::In(k.trim().to_string(), one(v))
            } else if let Some((k, v)) = term.split_once('=') {
                LabelTerm::In(k.trim().to_string(), one(v))
            } else {
                LabelTerm::In(term.to_string(), None)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(ns: &str, node: &str, labels: &Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": ns, "labels": labels},
               "spec": {"nodeName": node}})
    }

    fn matches(fields: Option<&str>, labels: Option<&str>, obj: &Value) -> bool {
        Filter::new(None, fields, labels).unwrap().matches(obj)
    }

    #[test]
    fn field_selectors_compare_dotted_paths() {
        let p = pod("team-a", "node-1", &json!({}));
        assert!(matches(Some("spec.nodeName=node-1"), None, &p));
        assert!(matches(
            Some("spec.nodeName==node-1,metadata.namespace=team-a"),
            None,
            &p
        ));
        assert!(!matches(Some("spec.nodeName=node-2"), None, &p));
        assert!(matches(Some("spec.nodeName!=node-2"), None, &p));
        assert!(!matches(
            Some("metadata.name=p,metadata.namespace!=team-a"),
            None,
            &p
        ));
        let unscheduled = json!({"metadata": {"name": "q"}, "spec": {}});
        assert!(matches(Some("spec.nodeName="), None, &unscheduled));
        assert!(Filter::new(None, Some("spec.nodeName"), None).is_err());
    }

    #[test]
    fn label_selectors_follow_set_semantics() {
        let p = pod("team-a", "n", &json!({"app": "web", "tier": "front"}));
        for (selector, want) in [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (db, web)", true),
            ("app in (db)", false),
            ("app notin (db,cache)", true),
            ("tier notin (front)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app in (web),tier", true),
        ] {
            assert_eq!(matches(None, Some(selector), &p), want, "{selector}");
        }
        assert!(Filter::new(None, None, Some("app in (web")).is_err());
    }

    #[test]
    fn the_namespace_is_part_of_the_filter() {
        let p = pod("team-a", "n", &json!({}));
        assert!(Filter::new(Some("team-a"), None, None).unwrap().matches(&p));
        assert!(!Filter::new(Some("team-b"), None, None).unwrap().matches(&p));
    }
}
