//! `[retention]` in the collector's configuration file: how long records are kept, by age
//! rules per identity and kind; legal holds that stop any deletion; and an archive where a
//! segment is copied before it goes. Unknown keys are errors, so a typo never shortens what is
//! kept.
use std::{collections::BTreeMap, time::Duration};

use recorder_record::{Kind, Record};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("[retention]: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a record no rule names is kept; absent: kept until a rule names it.
    pub default_days: Option<u32>,
    /// How often the collector looks for segments it may delete.
    #[serde(default = "default_every")]
    pub check_every_secs: u64,
    /// On PostgreSQL: how many log indexes make one segment, the unit deleted.
    #[serde(default = "default_segment_records")]
    pub segment_records: u64,
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    #[serde(default, rename = "hold")]
    pub holds: Vec<Hold>,
    pub archive: Option<ArchiveConfig>,
}

fn default_every() -> u64 {
    3600
}

fn default_segment_records() -> u64 {
    65_536
}

/// Records of `identity` (any if absent) and of `kinds` (any if empty) are kept `days` days.
/// The first rule that matches a record decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub identity: Option<String>,
    #[serde(default)]
    pub kinds: Vec<String>,
    pub days: u32,
}

/// A legal hold: no segment holding a record of this identity, or of this session, is deleted
/// while the hold is in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub identity: Option<String>,
    pub session: Option<String>,
    /// With `session`: the host the session ran on (sessions are per host).
    pub host: Option<String>,
    /// Why (a case number): logged when the hold keeps a segment.
    pub reason: String,
}

/// Where segments are copied before deletion: an `object_store` URL (`s3://bucket/prefix`,
/// `gs://…`, `az://…`, `file:///path`) and the store's options (for S3: `endpoint`, `region`,
/// `allow_http`, `access_key_id`…; the AWS_* environment variables are read too).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub url: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl RetentionConfig {
    pub fn every(&self) -> Duration {
        Duration::from_secs(self.check_every_secs.max(1))
    }

    /// How many days `record` is kept, and the rule that says so (None: kept until a rule names
    /// it).
    pub fn keep_days(&self, record: &Record) -> Option<(u32, String)> {
        for (n, rule) in self.rules.iter().enumerate() {
            if rule.matches(record) {
                return Some((rule.days, format!("rule {} ({})", n + 1, rule.describe())));
            }
        }
        self.default_days
            .map(|d| (d, format!("default_days = {d}")))
    }

    /// The hold that covers `record`, if any.
    pub fn hold_on(&self, record: &Record) -> Option<&Hold> {
        self.holds.iter().find(|h| {
            h.identity.as_deref().is_some_and(|i| i == record.identity)
                || (h.session.as_deref().is_some_and(|s| s == record.session)
                    && h.host.as_deref().is_none_or(|host| host == record.host))
        })
    }

    fn check(&self) -> Result<(), String> {
        for (n, rule) in self.rules.iter().enumerate() {
            for kind in &rule.kinds {
                kind.parse::<Kind>()
                    .map_err(|e| format!("rule {}: kinds: {e}", n + 1))?;
            }
            if rule.days == 0 {
                return Err(format!(
                    "rule {}: days = 0 would delete records as they arrive; give 1 or more",
                    n + 1
                ));
            }
        }
        if self.segment_records == 0 {
            return Err("segment_records = 0: give the number of log indexes per segment".into());
        }
        if self.default_days == Some(0) {
            return Err("default_days = 0 would delete records as they arrive".into());
        }
        for (n, hold) in self.holds.iter().enumerate() {
            if hold.identity.is_none() && hold.session.is_none() {
                return Err(format!("hold {}: name an identity or a session", n + 1));
            }
            if hold.host.is_some() && hold.session.is_none() {
                return Err(format!("hold {}: host is only for a session's hold", n + 1));
            }
        }
        if self.rules.is_empty() && self.default_days.is_none() {
            return Err("no rule and no default_days: nothing would ever be deleted; remove [retention] or give a rule".into());
        }
        Ok(())
    }
}

impl Rule {
    fn matches(&self, record: &Record) -> bool {
        self.identity
            .as_deref()
            .is_none_or(|i| i == record.identity)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == record.kind().as_str()))
    }

    fn describe(&self) -> String {
        let who = self
            .identity
            .as_deref()
            .map_or("every identity".to_string(), |i| format!("identity {i}"));
        let what = if self.kinds.is_empty() {
            "every kind".to_string()
        } else {
            self.kinds.join(", ")
        };
        format!("{who}, {what}: {} days", self.days)
    }
}

/// The `[retention]` table of a configuration file, if it has one.
pub fn parse(text: &str) -> Result<Option<RetentionConfig>, ConfigError> {
    #[derive(Deserialize)]
    struct File {
        retention: Option<toml::Value>,
    }
    let file: File = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
    let Some(table) = file.retention else {
        return Ok(None);
    };
    let config: RetentionConfig = table.try_into().map_err(|e| ConfigError(e.to_string()))?;
    config.check().map_err(ConfigError)?;
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(identity: &str, kind: &str, session: &str) -> Record {
        Record::parse(format!(
            r#"{{"kind":"{kind}","time":"2026-01-01T00:00:00.000000000Z","host":"h","identity":"{identity}","session":"{session}","pid":1,"exec_id":"e","text":"SELECT 1"}}"#
        ).as_bytes())
        .unwrap()
    }

    #[test]
    fn first_matching_rule_decides_then_the_default() {
        let cfg = parse(
            r#"
            [retention]
            default_days = 90
            [[retention.rule]]
            identity = "claude"
            kinds = ["sql"]
            days = 400
            [[retention.hold]]
            session = "s-9"
            reason = "case 12"
            "#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.keep_days(&record("claude", "sql", "s")).unwrap().0, 400);
        assert_eq!(cfg.keep_days(&record("claude", "exec", "s")).unwrap().0, 90);
        assert_eq!(cfg.keep_days(&record("other", "sql", "s")).unwrap().0, 90);
        assert!(cfg.hold_on(&record("other", "sql", "s-9")).is_some());
        assert!(cfg.hold_on(&record("other", "sql", "s-8")).is_none());
    }

    #[test]
    fn mistakes_are_named() {
        for (text, why) in [
            (
                "[retention]\ndefault_days = 9\nkeep = 3",
                "unknown field `keep`",
            ),
            (
                "[retention]\n[[retention.rule]]\nkinds=[\"sq\"]\ndays=3",
                "unknown record kind",
            ),
            ("[retention]\ndefault_days = 0", "default_days = 0"),
            (
                "[retention]\ndefault_days = 9\n[[retention.hold]]\nreason=\"x\"",
                "name an identity or a session",
            ),
            (
                "[retention]\ncheck_every_secs = 5",
                "nothing would ever be deleted",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(parse("[[export]]\nname=\"x\"").unwrap().is_none());
    }
}
