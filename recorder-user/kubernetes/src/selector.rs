//! Kubernetes label selectors, as `kubectl get -l` reads them: requirements separated by
//! commas, each `key`, `!key`, `key=value` (or `==`), `key!=value`, `key in (a,b)` or
//! `key notin (a,b)`. A pod matches when every requirement holds; `!=` and `notin` also hold
//! when the label is absent, as in Kubernetes.
use std::collections::BTreeMap;

/// One requirement on a label.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; the empty selector matches every pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses a selector string; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text)? {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("label selector {text:?}: an empty requirement"));
            }
            requirements
                .push(requirement(part).map_err(|why| format!("label selector {text:?}: {why}"))?);
        }
        Ok(Self(requirements))
    }

    /// Whether it has no requirement (and so selects every pod).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a pod with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
            Requirement::In(k, values) => labels.get(k).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(k, values) => labels.get(k).is_none_or(|v| !values.contains(v)),
        })
    }
}

/// The selector in `kubectl`'s syntax (parses back to the same selector).
impl std::fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, requirement) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match requirement {
                Requirement::Exists(k) => write!(f, "{k}")?,
                Requirement::Absent(k) => write!(f, "!{k}")?,
                Requirement::In(k, v) if v.len() == 1 => write!(f, "{k}={}", v[0])?,
                Requirement::In(k, v) => write!(f, "{k} in ({})", v.join(","))?,
                Requirement::NotIn(k, v) if v.len() == 1 => write!(f, "{k}!={}", v[0])?,
                Requirement::NotIn(k, v) => write!(f, "{k} notin ({})", v.join(","))?,
            }
        }
        Ok(())
    }
}

/// The requirements of `text`: split on commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("label selector {text:?}: an unopened ')'"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("label selector {text:?}: an unclosed '('"));
    }
    if !text.trim().is_empty() {
        parts.push(&text[start..]);
    }
    Ok(parts)
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key_of(key.trim())?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotIn(
            key_of(key.trim())?,
            vec![value_of(value.trim())?],
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::In(
            key_of(key.trim())?,
            vec![value_of(value.trim())?],
        ));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim_start();
        let (op, set) = if let Some(set) = rest.strip_prefix("notin") {
            (false, set)
        } else if let Some(set) = rest.strip_prefix("in") {
            (true, set)
        } else {
            return Err(format!("{part:?}: expected in or notin after the key"));
        };
        let set = set
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| format!("{part:?}: the values go in parentheses: key in (a,b)"))?;
        let values = set
            .split(',')
            .map(|v| value_of(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let key = key_of(key)?;
        return Ok(if op {
            Requirement::In(key, values)
        } else {
            Requirement::NotIn(key, values)
        });
    }
    Ok(Requirement::Exists(key_of(part)?))
}

/// A label key: `[prefix/]name`, letters, digits, `-`, `_`, `.` (and the one `/`).
fn key_of(key: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key.matches('/').count() <= 1
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("{key:?} is not a label key"))
    }
}

/// A label value: letters, digits, `-`, `_`, `.`, possibly empty.
fn value_of(value: &str) -> Result<String, String> {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(value.to_string())
    } else {
        Err(format!("{value:?} is not a label value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn selects_as_kubernetes_does() {
        let s = LabelSelector::parse("app=claude,tier in (ops, batch),!debug,env!=prod").unwrap();
        assert!(s.matches(&labels(&[("app", "claude"), ("tier", "ops")])));
        assert!(s.matches(&labels(&[
            ("app", "claude"),
            ("tier", "batch"),
            ("env", "dev")
        ])));
        assert!(!s.matches(&labels(&[("app", "claude"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[
            ("app", "claude"),
            ("tier", "ops"),
            ("debug", "1")
        ])));
        assert!(!s.matches(&labels(&[
            ("app", "claude"),
            ("tier", "ops"),
            ("env", "prod")
        ])));
        assert!(!s.matches(&labels(&[("tier", "ops")])));
        let s = LabelSelector::parse("example.com/team notin (a,b), app.kubernetes.io/name == x")
            .unwrap();
        assert!(s.matches(&labels(&[("app.kubernetes.io/name", "x")])));
        assert!(!s.matches(&labels(&[
            ("app.kubernetes.io/name", "x"),
            ("example.com/team", "a")
        ])));
        assert!(LabelSelector::parse("").unwrap().matches(&labels(&[])));
        assert!(
            LabelSelector::parse("gpu")
                .unwrap()
                .matches(&labels(&[("gpu", "")]))
        );
        let text = "app=claude,tier in (ops,batch),!debug,env!=prod,team notin (a,b),gpu";
        let s = LabelSelector::parse(text).unwrap();
        assert_eq!(s.to_string(), text);
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn bad_selectors_say_why() {
        for (text, why) in [
            ("app=claude,", "empty requirement"),
            ("tier in (ops", "unclosed"),
            ("tier in ops", "parentheses"),
            ("tier within (a)", "in or notin"),
            ("app=cla ude", "label value"),
            ("a/b/c=x", "label key"),
        ] {
            let e = LabelSelector::parse(text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
