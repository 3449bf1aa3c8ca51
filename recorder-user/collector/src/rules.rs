//! Alert rules: a TOML file of `[[rule]]`s matched against every stored record, and
//! `[[webhook]]`s that receive each alert. A rule matches when every condition it names holds;
//! its `type` (triggers.rs) says whether each match fires or what about the matches does.
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
//! [[rule]]
//! name = "many-selects"
//! type = "threshold"                  # or "schedule", "first_seen"; default "match"
//! kind = ["sql"]
//! pattern = "(?i)^\\s*select"
//! count = 500
//! window_secs = 60
//!
//! [[webhook]]
//! url = "http://alerts.example:8080/recorder"
//! secret = "shared HMAC key"          # or secret_file = "/etc/recorder/webhook.key"
//!
//! # Receives each new approval request (approvals.rs), not alerts; same fields.
//! [[approval_webhook]]
//! url = "https://chatops.example/recorder/approvals"
//! secret_file = "approvals.key"
//! ```
use std::path::Path;

use recorder_protocol::sql::lexer::{self, Dialect, StatementClass};
use recorder_record::{Body, DbSystem, Kind, Record};
use regex::Regex;
use serde::Deserialize;

use crate::{
    triggers::{Per, RuleType, Seen, Trigger, TriggerConfig},
    webhook::{Webhook, WebhookConfig},
};

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read the alert rules {path}")]
    Read {
        path: String,
        #[source]
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
    webhooks: Vec<WebhookConfig>,
    #[serde(default, rename = "approval_webhook")]
    approval_webhooks: Vec<WebhookConfig>,
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
    // When it fires (triggers.rs).
    #[serde(default, rename = "type")]
    kind_of_rule: RuleType,
    count: Option<u64>,
    window_secs: Option<u64>,
    per: Option<Per>,
    days: Option<Vec<String>>,
    hours: Option<String>,
    timezone: Option<String>,
    of: Option<Seen>,
    learning_days: Option<u64>,
}

fn default_severity() -> String {
    "warning".to_string()
}

/// The statement classes a rule can name, as written in the rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SqlClass {
    Drop,
    Truncate,
    DeleteWithoutWhere,
    UpdateWithoutWhere,
}

impl From<StatementClass> for SqlClass {
    fn from(class: StatementClass) -> Self {
        match class {
            StatementClass::Drop => SqlClass::Drop,
            StatementClass::Truncate => SqlClass::Truncate,
            StatementClass::DeleteWithoutWhere => SqlClass::DeleteWithoutWhere,
            StatementClass::UpdateWithoutWhere => SqlClass::UpdateWithoutWhere,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) severity: String,
    identity: Vec<String>,
    kind: Vec<Kind>,
    pattern: Option<Regex>,
    sql_class: Vec<SqlClass>,
    kubectl_verb: Vec<String>,
    namespace: Vec<String>,
    pub(crate) trigger: Trigger,
}

/// The file: its `[[rule]]`s, its `[[webhook]]`s (alerts) and `[[approval_webhook]]`s.
#[derive(Debug)]
#[expect(
    clippy::struct_field_names,
    reason = "`rules.rules` are the file's `[[rule]]` tables"
)]
pub(crate) struct Rules {
    pub(crate) rules: Vec<Rule>,
    pub(crate) webhooks: Vec<Webhook>,
    pub(crate) approval_webhooks: Vec<Webhook>,
}

impl Rules {
    pub(crate) fn load(path: &Path) -> Result<Self, RulesError> {
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

    pub(crate) fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for r in file.rules {
            if r.name.is_empty() {
                return Err("a rule has an empty name".into());
            }
            let kind = r
                .kind
                .iter()
                .map(|k| {
                    k.parse::<Kind>()
                        .map_err(|e| format!("rule {:?}: {e}", r.name))
                })
                .collect::<Result<_, _>>()?;
            let pattern = match &r.pattern {
                Some(p) => Some(
                    Regex::new(p).map_err(|e| format!("rule {:?}: bad pattern: {e}", r.name))?,
                ),
                None => None,
            };
            let trigger = TriggerConfig {
                kind: r.kind_of_rule,
                count: r.count,
                window_secs: r.window_secs,
                per: r.per,
                days: r.days,
                hours: r.hours,
                timezone: r.timezone,
                of: r.of,
                learning_days: r.learning_days,
            }
            .build()
            .map_err(|e| format!("rule {:?}: {e}", r.name))?;
            rules.push(Rule {
                trigger,
                name: r.name,
                description: r.description,
                severity: r.severity,
                identity: r.identity,
                kind,
                pattern,
                sql_class: r.sql_class,
                kubectl_verb: r.kubectl_verb,
                namespace: r.namespace,
            });
        }
        let resolve = |hooks: Vec<WebhookConfig>| {
            hooks
                .into_iter()
                .map(|w| w.resolve(base))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            rules,
            webhooks: resolve(file.webhooks)?,
            approval_webhooks: resolve(file.approval_webhooks)?,
        })
    }
}

impl Rule {
    /// Whether the record matches every condition the rule names.
    pub(crate) fn matches(&self, record: &Record) -> bool {
        let (sql, k8s) = match &record.body {
            Body::Sql(sql) => (Some(sql), None),
            Body::K8s(k8s) => (None, Some(k8s)),
            _ => (None, None),
        };
        (self.identity.is_empty() || self.identity.contains(&record.identity))
            && (self.kind.is_empty() || self.kind.contains(&record.kind()))
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| p.is_match(record.body.text()))
            && (self.sql_class.is_empty()
                || sql.is_some_and(|sql| {
                    let dialect = match sql.db_system {
                        DbSystem::Postgresql => Dialect::Postgresql,
                        DbSystem::Mysql => Dialect::Mysql,
                    };
                    lexer::classify(&sql.text, dialect)
                        .is_some_and(|c| self.sql_class.contains(&c.into()))
                }))
            && (self.kubectl_verb.is_empty()
                || k8s.is_some_and(|k| self.kubectl_verb.contains(&k.verb)))
            && (self.namespace.is_empty()
                || k8s.is_some_and(|k| {
                    k.namespace
                        .as_ref()
                        .is_some_and(|n| self.namespace.contains(n))
                }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(rules: &'a Rules, line: &str) -> Vec<&'a str> {
        let record = Record::parse(line.as_bytes()).unwrap();
        rules
            .rules
            .iter()
            .filter(|x| x.matches(&record))
            .map(|x| x.name.as_str())
            .collect()
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
        let hits = |line: String| names(&rules, &line);
        assert_eq!(
            hits(format!(
                r#"{{"kind":"sql",{common},"identity":"claude","text":"DROP TABLE t"}}"#
            )),
            ["destructive-sql"]
        );
        assert!(
            hits(format!(
                r#"{{"kind":"sql",{common},"identity":"other","text":"DROP TABLE t"}}"#
            ))
            .is_empty()
        );
        assert!(
            hits(format!(
                r#"{{"kind":"sql",{common},"identity":"claude","text":"DELETE FROM t WHERE a=1"}}"#
            ))
            .is_empty()
        );
        assert_eq!(
            hits(format!(
                r#"{{"kind":"exec",{common},"identity":"x","text":"rm -rf / --no-preserve-root"}}"#
            )),
            ["rm"]
        );
        assert!(
            hits(format!(
                r#"{{"kind":"shell",{common},"identity":"x","text":"rm -rf /"}}"#
            ))
            .is_empty()
        );
        assert_eq!(
            hits(format!(
                r#"{{"kind":"k8s",{common},"identity":"x","text":"kubectl delete pod a -n prod","verb":"delete","namespace":"prod"}}"#
            )),
            ["k8s-delete-prod"]
        );
        assert!(
            hits(format!(
                r#"{{"kind":"k8s",{common},"identity":"x","verb":"delete","namespace":"dev"}}"#
            ))
            .is_empty()
        );
    }

    #[test]
    fn sql_classes_read_quotes_as_the_statement_s_server_does() {
        let rules = Rules::parse(
            "[[rule]]\nname = \"blind-update\"\nsql_class = [\"update_without_where\"]\n",
            Path::new("."),
        )
        .unwrap();
        let sql = |system: &str, text: &str| {
            let record = serde_json::json!({
                "kind": "sql", "time": "2026-11-28T10:00:00Z", "host": "h",
                "db.system": system, "text": text,
            });
            names(&rules, &record.to_string())
        };
        for (system, text) in [
            ("postgresql", "UPDATE t SET a = $$it's$$ WHERE id = 1"),
            ("postgresql", "UPDATE t SET a = E'it\\'s' WHERE id = 1"),
            ("mysql", "UPDATE t SET a = 'it\\'s' WHERE id = 1"),
        ] {
            assert!(sql(system, text).is_empty(), "{system}: {text}");
        }
        assert_eq!(sql("postgresql", "UPDATE t SET a = 'x'"), ["blind-update"]);
        assert_eq!(sql("mysql", "UPDATE t SET a = 'it\\'s'"), ["blind-update"]);
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
        let e =
            Rules::parse("[[approval_webhook]]\nurl = \"http://x\"\n", Path::new(".")).unwrap_err();
        assert!(e.contains("secret"), "{e}");
    }

    #[test]
    fn a_file_of_approval_webhooks_alone_is_fine() {
        let rules = Rules::parse(
            "[[approval_webhook]]\nurl = \"http://127.0.0.1:9/a\"\nsecret = \"k\"\n",
            Path::new("."),
        )
        .unwrap();
        assert!(rules.rules.is_empty() && rules.webhooks.is_empty());
        assert_eq!(rules.approval_webhooks.len(), 1);
    }
}
