//! Alert rules: a TOML file of `[[rule]]`s matched against every stored record, and
//! `[[webhook]]`s that receive each alert. A rule matches when every condition it names holds.
//!
//! ```toml
//! [[rule]]
//! name = "destructive-sql"
//! severity = "critical"               # free text, default "warning"
//! identity = ["claude"]               # any of these identities
//! kind = ["sql"]                      # any of these record kinds
//! pattern = "(?i)\\bprod\\b"          # regular expression on the record's `text`
//! sql_class = ["drop", "truncate", "delete_without_where", "update_without_where"]
//!
//! [[rule]]
//! name = "kubectl-delete-in-prod"
//! kubectl_verb = ["delete"]
//! namespace = ["prod"]
//!
//! [[webhook]]
//! url = "http://alerts.example:8080/recorder"
//! secret = "shared HMAC key"          # or secret_file = "/etc/recorder/webhook.key"
//! ```
use std::{path::Path, sync::Arc};

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast;

use super::{Event, webhook};
use crate::{metrics::Registry, proto::v1, store::StoredRecord};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the alert rules {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid alert rules {path}: {message}")]
    Parse { path: String, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "rule")]
    rules: Vec<RuleConfig>,
    #[serde(default, rename = "webhook")]
    webhooks: Vec<webhook::WebhookConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleConfig {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "default_severity")]
    severity: String,
    #[serde(default)]
    identity: Vec<String>,
    #[serde(default)]
    kind: Vec<String>,
    pattern: Option<String>,
    #[serde(default)]
    sql_class: Vec<SqlClass>,
    #[serde(default)]
    kubectl_verb: Vec<String>,
    #[serde(default)]
    namespace: Vec<String>,
}

fn default_severity() -> String {
    "warning".to_string()
}

/// Statement classes worth an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlClass {
    Drop,
    Truncate,
    DeleteWithoutWhere,
    UpdateWithoutWhere,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub description: String,
    pub severity: String,
    identity: Vec<String>,
    kind: Vec<String>,
    pattern: Option<Regex>,
    sql_class: Vec<SqlClass>,
    kubectl_verb: Vec<String>,
    namespace: Vec<String>,
}

#[derive(Debug)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub webhooks: Vec<webhook::Webhook>,
}

impl Rules {
    pub fn load(path: &Path) -> Result<Self, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new("."))).map_err(|message| {
            RulesError::Parse {
                path: path.display().to_string(),
                message,
            }
        })
    }

    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for r in file.rules {
            if r.name.is_empty() {
                return Err("a rule has an empty name".into());
            }
            for k in &r.kind {
                k.parse::<crate::record::Kind>()
                    .map_err(|e| format!("rule {:?}: {e}", r.name))?;
            }
            let pattern = match &r.pattern {
                Some(p) => Some(
                    Regex::new(p).map_err(|e| format!("rule {:?}: bad pattern: {e}", r.name))?,
                ),
                None => None,
            };
            rules.push(Rule {
                name: r.name,
                description: r.description,
                severity: r.severity,
                identity: r.identity,
                kind: r.kind,
                pattern,
                sql_class: r.sql_class,
                kubectl_verb: r.kubectl_verb,
                namespace: r.namespace,
            });
        }
        let webhooks = file
            .webhooks
            .into_iter()
            .map(|w| w.resolve(base))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules, webhooks })
    }
}

impl Rule {
    /// Whether the record (its index fields and its parsed line) matches every condition.
    pub fn matches(&self, rec: &StoredRecord, line: &Value) -> bool {
        let text = line.get("text").and_then(Value::as_str).unwrap_or("");
        let field = |name: &str| line.get(name).and_then(Value::as_str).unwrap_or("");
        (self.identity.is_empty() || self.identity.contains(&rec.fields.identity))
            && (self.kind.is_empty() || self.kind.contains(&rec.fields.kind))
            && self.pattern.as_ref().is_none_or(|p| p.is_match(text))
            && (self.sql_class.is_empty()
                || (rec.fields.kind == "sql"
                    && classify_sql(text).is_some_and(|c| self.sql_class.contains(&c))))
            && (self.kubectl_verb.is_empty()
                || (rec.fields.kind == "k8s"
                    && self.kubectl_verb.iter().any(|v| v == field("verb"))))
            && (self.namespace.is_empty()
                || (rec.fields.kind == "k8s"
                    && self.namespace.iter().any(|n| n == field("namespace"))))
    }
}

/// The class of a SQL statement, if it is one alerts care about. Comments and quoted text are
/// skipped, so `DELETE FROM t -- where` still counts as without WHERE.
pub fn classify_sql(sql: &str) -> Option<SqlClass> {
    let words = sql_words(sql);
    let first = words.first()?.as_str();
    let has_where = || words.iter().any(|w| w == "WHERE");
    match first {
        "DROP" => Some(SqlClass::Drop),
        "TRUNCATE" => Some(SqlClass::Truncate),
        "DELETE" if !has_where() => Some(SqlClass::DeleteWithoutWhere),
        "UPDATE" if !has_where() => Some(SqlClass::UpdateWithoutWhere),
        _ => None,
    }
}

/// Upper-cased bare words of the first statement, outside quotes and comments.
fn sql_words(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'\'' | b'"' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += 1;
                }
                i += 1;
            }
            b';' => break,
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                words.push(sql[start..i].to_ascii_uppercase());
            }
            _ => i += 1,
        }
    }
    words
}

/// An alert raised by a rule.
#[derive(Debug, Clone)]
pub struct Alert {
    pub rule: String,
    pub severity: String,
    pub description: String,
    pub time: String,
    pub record: Arc<StoredRecord>,
}

impl Alert {
    pub fn to_proto(&self) -> v1::Alert {
        v1::Alert {
            rule: self.rule.clone(),
            severity: self.severity.clone(),
            description: self.description.clone(),
            record: Some(self.record.as_ref().into()),
            time: self.time.clone(),
        }
    }

    /// The webhook body: the alert and the record as stored.
    pub fn to_json(&self) -> Value {
        let record: Value = serde_json::from_slice(&self.record.line).unwrap_or(Value::Null);
        serde_json::json!({
            "rule": self.rule,
            "severity": self.severity,
            "description": self.description,
            "time": self.time,
            "log_index": self.record.index,
            "record": record,
        })
    }
}

/// Matches records against the rules and hands alerts to the watch stream and the webhooks.
pub struct Engine {
    rules: Vec<Rule>,
    queues: Vec<webhook::Queue>,
}

impl Engine {
    /// Starts one delivery task per webhook (needs a tokio runtime).
    pub fn start(rules: Rules) -> Self {
        let queues = rules
            .webhooks
            .into_iter()
            .map(webhook::Queue::start)
            .collect();
        Self {
            rules: rules.rules,
            queues,
        }
    }

    /// Never blocks: webhook delivery is queued.
    pub fn evaluate(&self, rec: &Arc<StoredRecord>, events: &broadcast::Sender<Arc<Event>>) {
        if self.rules.is_empty() {
            return;
        }
        let Ok(line) = serde_json::from_slice::<Value>(&rec.line) else {
            return;
        };
        for rule in self.rules.iter().filter(|r| r.matches(rec, &line)) {
            let alert = Alert {
                rule: rule.name.clone(),
                severity: rule.severity.clone(),
                description: rule.description.clone(),
                time: crate::record::rfc3339_nanos(crate::integrity::now_unix_ns()),
                record: rec.clone(),
            };
            Registry::global()
                .counter(
                    "recorder_alerts_total",
                    "Alerts raised, by rule.",
                    &[("rule", &rule.name)],
                )
                .inc();
            tracing::info!(rule = %rule.name, index = rec.index, "alert");
            for q in &self.queues {
                q.push(&alert);
            }
            let _ = events.send(Arc::new(Event::Alert(alert)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::IndexFields;

    fn rec(line: &str) -> (StoredRecord, Value) {
        let fields = IndexFields::parse(line.as_bytes()).unwrap();
        let r = StoredRecord {
            index: 0,
            host: "h".into(),
            boot: "b".into(),
            sequence: 1,
            prev: [0; 32],
            fields,
            line: line.as_bytes().to_vec(),
        };
        (r, serde_json::from_str(line).unwrap())
    }

    #[test]
    fn classifies_sql_statements() {
        assert_eq!(classify_sql("DROP TABLE users"), Some(SqlClass::Drop));
        assert_eq!(
            classify_sql("  /* x */ truncate t"),
            Some(SqlClass::Truncate)
        );
        assert_eq!(
            classify_sql("delete from t"),
            Some(SqlClass::DeleteWithoutWhere)
        );
        assert_eq!(classify_sql("DELETE FROM t WHERE id = 1"), None);
        assert_eq!(
            classify_sql("delete from t -- where id = 1"),
            Some(SqlClass::DeleteWithoutWhere)
        );
        assert_eq!(classify_sql("delete from t where note = 'x'"), None);
        assert_eq!(
            classify_sql("update t set a = 'where'"),
            Some(SqlClass::UpdateWithoutWhere)
        );
        assert_eq!(
            classify_sql("update t set a = 1; select 1 where true"),
            Some(SqlClass::UpdateWithoutWhere)
        );
        assert_eq!(classify_sql("SELECT * FROM t"), None);
        assert_eq!(classify_sql(""), None);
        assert_eq!(classify_sql("'unterminated"), None);
    }

    #[test]
    fn rules_match_every_condition_they_name() {
        let rules = Rules::parse(
            r#"
            [[rule]]
            name = "destructive-sql"
            identity = ["claude"]
            sql_class = ["drop", "delete_without_where"]
            [[rule]]
            name = "rm"
            kind = ["exec"]
            pattern = "rm -rf /"
            [[rule]]
            name = "k8s-delete-prod"
            kubectl_verb = ["delete"]
            namespace = ["prod"]
            "#,
            Path::new("."),
        )
        .unwrap();
        let common = r#""time":"2026-11-28T10:00:00.000000000Z","host":"h","session":"s","pid":1,"exec_id":"e""#;
        let hits = |line: &str| {
            let (r, v) = rec(line);
            rules
                .rules
                .iter()
                .filter(|x| x.matches(&r, &v))
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            hits(&format!(
                r#"{{"kind":"sql",{common},"identity":"claude","text":"DROP TABLE t"}}"#
            )),
            ["destructive-sql"]
        );
        assert!(
            hits(&format!(
                r#"{{"kind":"sql",{common},"identity":"other","text":"DROP TABLE t"}}"#
            ))
            .is_empty()
        );
        assert!(
            hits(&format!(
                r#"{{"kind":"sql",{common},"identity":"claude","text":"DELETE FROM t WHERE a=1"}}"#
            ))
            .is_empty()
        );
        assert_eq!(
            hits(&format!(
                r#"{{"kind":"exec",{common},"identity":"x","text":"rm -rf / --no-preserve-root"}}"#
            )),
            ["rm"]
        );
        assert!(
            hits(&format!(
                r#"{{"kind":"shell",{common},"identity":"x","text":"rm -rf /"}}"#
            ))
            .is_empty()
        );
        assert_eq!(
            hits(&format!(
                r#"{{"kind":"k8s",{common},"identity":"x","text":"kubectl delete pod a -n prod","verb":"delete","namespace":"prod"}}"#
            )),
            ["k8s-delete-prod"]
        );
        assert!(
            hits(&format!(
                r#"{{"kind":"k8s",{common},"identity":"x","verb":"delete","namespace":"dev"}}"#
            ))
            .is_empty()
        );
    }

    #[test]
    fn bad_rule_files_say_why() {
        let e =
            Rules::parse("[[rule]]\nname = \"x\"\npattern = \"(\"\n", Path::new(".")).unwrap_err();
        assert!(e.contains("bad pattern"), "{e}");
        let e = Rules::parse(
            "[[rule]]\nname = \"x\"\nsql_class = [\"select\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
        let e = Rules::parse(
            "[[rule]]\nname = \"x\"\nkind = [\"nope\"]\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("unknown record kind"), "{e}");
        let e = Rules::parse(
            "[[webhook]]\nurl = \"ftp://x\"\nsecret = \"k\"\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.contains("http"), "{e}");
    }
}
