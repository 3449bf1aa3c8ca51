//! When a rule fires. A rule's conditions (identity, kind, pattern, SQL class…) choose the
//! records it looks at; its `type` says what about them raises an alert:
//!
//! - `match` (the default): every chosen record.
//! - `threshold`: more than `count` chosen records within `window_secs`, per identity or per
//!   session (`per`); fires once, then again only after a full window.
//! - `schedule`: a chosen record outside the allowed `days` and `hours` in `timezone`.
//! - `first_seen`: a command, table, Kubernetes resource or namespace (`of`) the identity was
//!   never seen using, once its `learning_days` have passed (counted from the identity's first
//!   record). What was learned comes from the stored log, read at start.
//!
//! Time is the records' own time, never the clock: a rule tried on a stored log with
//! `recorder alerts test` fires exactly as it would have live.
use std::collections::{HashMap, HashSet, VecDeque};

use recorder_protocol::sql::lexer::{self, Dialect};
use recorder_record::{Body, DbSystem, Record};
use serde::Deserialize;

const NS_PER_SEC: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RuleType {
    #[default]
    Match,
    Threshold,
    Schedule,
    FirstSeen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Per {
    Identity,
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Seen {
    Command,
    Table,
    K8sResource,
    Namespace,
}

/// The trigger fields of a `[[rule]]` (all optional in the file; each type checks its own).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TriggerConfig {
    #[serde(default, rename = "type")]
    pub(crate) kind: RuleType,
    pub(crate) count: Option<u64>,
    pub(crate) window_secs: Option<u64>,
    pub(crate) per: Option<Per>,
    pub(crate) days: Option<Vec<String>>,
    pub(crate) hours: Option<String>,
    pub(crate) timezone: Option<String>,
    pub(crate) of: Option<Seen>,
    pub(crate) learning_days: Option<u64>,
}

#[derive(Debug)]
pub(crate) enum Trigger {
    Each,
    Threshold {
        count: u64,
        window_ns: i128,
        per: Per,
    },
    Schedule {
        /// Monday first.
        days: [bool; 7],
        /// Minutes of the day: allowed from `from` (inclusive) to `to` (exclusive).
        from: u16,
        to: u16,
        tz: jiff::tz::TimeZone,
        text: String,
    },
    FirstSeen {
        of: Seen,
        learning_ns: i128,
    },
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl TriggerConfig {
    pub(crate) fn build(self) -> Result<Trigger, String> {
        let extra = |allowed: &[&str]| -> Result<(), String> {
            let given = [
                ("count", self.count.is_some()),
                ("window_secs", self.window_secs.is_some()),
                ("per", self.per.is_some()),
                ("days", self.days.is_some()),
                ("hours", self.hours.is_some()),
                ("timezone", self.timezone.is_some()),
                ("of", self.of.is_some()),
                ("learning_days", self.learning_days.is_some()),
            ];
            match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
                Some((k, _)) => Err(format!("{k} does not apply to type = {:?}", self.kind)),
                None => Ok(()),
            }
        };
        match self.kind {
            RuleType::Match => {
                extra(&[])?;
                Ok(Trigger::Each)
            }
            RuleType::Threshold => {
                extra(&["count", "window_secs", "per"])?;
                let count = self.count.ok_or("type = \"threshold\" needs count")?;
                let window = self
                    .window_secs
                    .filter(|&w| w > 0)
                    .ok_or("type = \"threshold\" needs window_secs (above 0)")?;
                Ok(Trigger::Threshold {
                    count,
                    window_ns: i128::from(window) * NS_PER_SEC,
                    per: self.per.unwrap_or(Per::Identity),
                })
            }
            RuleType::Schedule => {
                extra(&["days", "hours", "timezone"])?;
                let mut days = [false; 7];
                let listed = self
                    .days
                    .clone()
                    .unwrap_or_else(|| DAYS.iter().map(|d| (*d).to_string()).collect());
                for d in &listed {
                    let i = DAYS
                        .iter()
                        .position(|x| x.eq_ignore_ascii_case(d))
                        .ok_or_else(|| format!("days: {d:?} is not one of {}", DAYS.join(", ")))?;
                    days[i] = true;
                }
                let hours = self.hours.clone().unwrap_or_else(|| "00:00-24:00".into());
                let (from, to) = parse_hours(&hours)?;
                let zone = self.timezone.clone().unwrap_or_else(|| "UTC".into());
                let tz = jiff::tz::TimeZone::get(&zone)
                    .map_err(|e| format!("timezone {zone:?}: {e}"))?;
                Ok(Trigger::Schedule {
                    days,
                    from,
                    to,
                    tz,
                    text: format!("{} {hours} {zone}", listed.join(",")),
                })
            }
            RuleType::FirstSeen => {
                extra(&["of", "learning_days"])?;
                let of = self
                    .of
                    .ok_or("type = \"first_seen\" needs of = \"command\", \"table\", \"k8s_resource\" or \"namespace\"")?;
                Ok(Trigger::FirstSeen {
                    of,
                    learning_ns: i128::from(self.learning_days.unwrap_or(7)) * 86_400 * NS_PER_SEC,
                })
            }
        }
    }
}

/// `HH:MM-HH:MM` as minutes of the day; `24:00` ends the day.
fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("hours {text:?}: give HH:MM-HH:MM, e.g. \"09:00-18:00\"");
    let minutes = |s: &str| -> Result<u16, String> {
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m >= 60 || h > 24 || (h == 24 && m > 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (from, to) = text.split_once('-').ok_or_else(bad)?;
    let (from, to) = (minutes(from)?, minutes(to)?);
    if from >= to {
        return Err(format!("{}: the start must be before the end", bad()));
    }
    Ok((from, to))
}

/// What made a rule fire: a text for people and the log indices of the records.
pub(crate) struct Fired {
    pub(crate) detail: String,
    pub(crate) records: Vec<u64>,
}

/// A threshold's chosen records in the window, (time, log index), and when it last fired.
type Window = (VecDeque<(i128, u64)>, Option<i128>);

/// What stateful triggers remember, per rule.
#[derive(Default)]
pub(crate) struct State {
    /// Threshold: a window per identity or session.
    windows: HashMap<String, Window>,
    /// First seen: per identity, its first record's time and the values seen.
    seen: HashMap<String, (i128, HashSet<String>)>,
}

impl Trigger {
    /// Whether a chosen record (`index`, `record`) fires, given and updating `state`. With
    /// `learn_only` (reading the stored history at start) state is updated and nothing fires.
    pub(crate) fn fire(
        &self,
        state: &mut State,
        index: u64,
        record: &Record,
        learn_only: bool,
    ) -> Option<Fired> {
        let time = record.time.unix_ns();
        match self {
            Trigger::Each => (!learn_only).then(|| Fired {
                detail: String::new(),
                records: vec![index],
            }),
            Trigger::Threshold {
                count,
                window_ns,
                per,
            } => {
                let key = match per {
                    Per::Identity => format!("identity {}", record.identity),
                    Per::Session => format!("session {} of {}", record.session, record.host),
                };
                let (window, last) = state.windows.entry(key.clone()).or_default();
                window.push_back((time, index));
                while window.front().is_some_and(|&(t, _)| t <= time - window_ns) {
                    window.pop_front();
                }
                let over = window.len() as u64 > *count;
                let rested = last.is_none_or(|l| time - l >= *window_ns);
                if over && rested && !learn_only {
                    *last = Some(time);
                    Some(Fired {
                        detail: format!(
                            "{} records in {} s for {key} (more than {count})",
                            window.len(),
                            window_ns / NS_PER_SEC
                        ),
                        records: window.iter().map(|&(_, i)| i).collect(),
                    })
                } else {
                    None
                }
            }
            Trigger::Schedule {
                days,
                from,
                to,
                tz,
                text,
            } => {
                if learn_only {
                    return None;
                }
                let ts = jiff::Timestamp::from_nanosecond(time).ok()?;
                let local = ts.to_zoned(tz.clone());
                let day = local.weekday().to_monday_zero_offset() as usize;
                let minute = u16::from(local.hour() as u8) * 60 + u16::from(local.minute() as u8);
                let allowed = days[day] && minute >= *from && minute < *to;
                (!allowed).then(|| Fired {
                    detail: format!(
                        "at {} {}, outside {text}",
                        DAYS[day],
                        local.strftime("%Y-%m-%d %H:%M:%S %Z")
                    ),
                    records: vec![index],
                })
            }
            Trigger::FirstSeen { of, learning_ns } => {
                let values = seen_values(*of, record);
                if values.is_empty() {
                    return None;
                }
                let (first, known) = state
                    .seen
                    .entry(record.identity.clone())
                    .or_insert_with(|| (time, HashSet::new()));
                *first = (*first).min(time);
                let learning = time < *first + learning_ns;
                let new: Vec<String> = values
                    .into_iter()
                    .filter(|v| known.insert(v.clone()))
                    .collect();
                if new.is_empty() || learning || learn_only {
                    return None;
                }
                Some(Fired {
                    detail: format!(
                        "first {} for identity {}: {}",
                        match of {
                            Seen::Command => "command",
                            Seen::Table => "table",
                            Seen::K8sResource => "Kubernetes resource",
                            Seen::Namespace => "Kubernetes namespace",
                        },
                        record.identity,
                        new.join(", ")
                    ),
                    records: vec![index],
                })
            }
        }
    }

    /// Whether this trigger learns from the stored history at start.
    pub(crate) fn learns(&self) -> bool {
        matches!(self, Trigger::FirstSeen { .. })
    }
}

/// The values a first-seen rule looks at in a record.
fn seen_values(of: Seen, record: &Record) -> Vec<String> {
    match (of, &record.body) {
        (Seen::Command, Body::Exec(e)) => e
            .argv
            .first()
            .or(Some(&e.exe))
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
            .filter(|a| !a.is_empty())
            .into_iter()
            .collect(),
        (Seen::Table, Body::Sql(q)) => lexer::tables(
            &q.text,
            match q.db_system {
                DbSystem::Postgresql => Dialect::Postgresql,
                DbSystem::Mysql => Dialect::Mysql,
            },
        ),
        (Seen::K8sResource, Body::K8s(k)) => k.resource.clone().into_iter().collect(),
        (Seen::Namespace, Body::K8s(k)) => k.namespace.clone().into_iter().collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use recorder_store::StoredRecord;

    use crate::{alerts::Engine, rules::Rules};

    fn engine(rules: &str) -> Engine {
        Engine::new(
            Rules::parse(rules, Path::new(".")).unwrap().rules,
            Vec::new(),
        )
    }

    /// A record of `kind` with `fields`, at `time` (RFC 3339), log index `index`.
    fn rec(index: u64, time: &str, identity: &str, kind: &str, fields: &str) -> Arc<StoredRecord> {
        let line = format!(
            r#"{{"kind":"{kind}","time":"{time}","host":"h","identity":"{identity}","session":"s-{identity}","pid":1,"exec_id":"e",{fields}}}"#
        );
        Arc::new(StoredRecord {
            index,
            host: "h".into(),
            boot: "b".into(),
            sequence: index + 1,
            prev: [0; 32],
            record: recorder_record::Record::parse(line.as_bytes()).unwrap(),
            line: line.into_bytes(),
        })
    }

    fn select(index: u64, second: u64, identity: &str) -> Arc<StoredRecord> {
        rec(
            index,
            &format!("2026-11-28T10:{:02}:{:02}Z", second / 60, second % 60),
            identity,
            "sql",
            r#""db.system":"postgresql","text":"SELECT * FROM t","status":"ok","result":"SELECT 1""#,
        )
    }

    #[test]
    fn threshold_fires_once_above_the_count_within_the_window_per_identity() {
        let e = engine(
            "[[rule]]\nname = \"reads\"\ntype = \"threshold\"\nkind = [\"sql\"]\npattern = \"(?i)^select\"\ncount = 3\nwindow_secs = 60\n",
        );
        // 3 in 60 s: nothing; the 4th within 60 s of the first fires, naming all four.
        let mut fired = Vec::new();
        for (i, second) in [0, 10, 20].into_iter().enumerate() {
            assert!(e.alerts(&select(i as u64, second, "claude")).is_empty());
        }
        // Another identity's records count for it alone.
        for i in 0..3 {
            assert!(e.alerts(&select(100 + i, 25, "other")).is_empty());
        }
        fired.extend(e.alerts(&select(3, 30, "claude")));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].records, [0, 1, 2, 3]);
        assert!(
            fired[0]
                .detail
                .contains("4 records in 60 s for identity claude"),
            "{}",
            fired[0].detail
        );
        // Still above the count in the same window: no second alert.
        assert!(e.alerts(&select(4, 40, "claude")).is_empty());
        // Spread out (one every 30 s): never more than 3 in a window.
        let e2 = engine(
            "[[rule]]\nname = \"reads\"\ntype = \"threshold\"\ncount = 3\nwindow_secs = 60\n",
        );
        for i in 0..20 {
            assert!(
                e2.alerts(&select(i, i * 30, "claude")).is_empty(),
                "record {i}"
            );
        }
        // Still over the count, but within a window of the alert: quiet; a full window after
        // it, it fires again.
        for (i, second) in [(6, 61), (7, 62), (8, 63)] {
            assert!(
                e.alerts(&select(i, second, "claude")).is_empty(),
                "{second}"
            );
        }
        let again = e.alerts(&select(9, 95, "claude"));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].records, [4, 6, 7, 8, 9]);
    }

    #[test]
    fn schedule_fires_outside_the_days_and_hours_in_the_time_zone() {
        let e = engine(
            "[[rule]]\nname = \"office-hours\"\ntype = \"schedule\"\nidentity = [\"claude\"]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\nhours = \"09:00-18:00\"\ntimezone = \"Europe/Paris\"\n",
        );
        let at = |i, time: &str| e.alerts(&rec(i, time, "claude", "shell", r#""text":"ls""#));
        // 2026-11-27 is a Friday; Paris is UTC+1 in November.
        assert!(at(0, "2026-11-27T08:00:00Z").is_empty(), "09:00 in Paris");
        assert!(
            at(1, "2026-11-27T16:59:59Z").is_empty(),
            "17:59:59 in Paris"
        );
        let late = at(2, "2026-11-27T17:00:00Z");
        assert_eq!(late.len(), 1, "18:00 in Paris");
        assert!(
            late[0].detail.contains("at fri 2026-11-27 18:00:00 CET"),
            "{}",
            late[0].detail
        );
        assert_eq!(at(3, "2026-11-27T07:59:00Z").len(), 1, "08:59 in Paris");
        assert_eq!(at(4, "2026-11-28T10:00:00Z").len(), 1, "Saturday");
        // Other identities are not the rule's.
        assert!(
            e.alerts(&rec(
                5,
                "2026-11-28T10:00:00Z",
                "other",
                "shell",
                r#""text":"ls""#
            ))
            .is_empty()
        );
    }

    #[test]
    fn first_seen_learns_then_fires_on_new_values_only() {
        let e = engine(
            "[[rule]]\nname = \"new-table\"\ntype = \"first_seen\"\nof = \"table\"\nlearning_days = 1\n\n\
             [[rule]]\nname = \"new-command\"\ntype = \"first_seen\"\nof = \"command\"\nlearning_days = 1\n",
        );
        let sql = |i, time: &str, text: &str| {
            e.alerts(&rec(
                i,
                time,
                "claude",
                "sql",
                &format!(r#""db.system":"postgresql","text":"{text}","status":"ok","result":"""#),
            ))
        };
        // Learning day: nothing fires.
        assert!(sql(0, "2026-11-01T10:00:00Z", "SELECT * FROM orders").is_empty());
        assert!(
            sql(
                1,
                "2026-11-01T11:00:00Z",
                "SELECT * FROM items JOIN orders ON true"
            )
            .is_empty()
        );
        // After it: a known table is quiet; a new one fires once.
        assert!(sql(2, "2026-11-03T10:00:00Z", "select 1 from Orders").is_empty());
        let new = sql(
            3,
            "2026-11-03T10:01:00Z",
            "SELECT number FROM payments.cards",
        );
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].rule, "new-table");
        assert!(
            new[0]
                .detail
                .contains("first table for identity claude: payments.cards"),
            "{}",
            new[0].detail
        );
        assert!(
            sql(
                4,
                "2026-11-03T10:02:00Z",
                "SELECT number FROM payments.cards"
            )
            .is_empty()
        );
        // Quoted text is not a table.
        assert!(sql(5, "2026-11-03T10:03:00Z", "SELECT 'from secrets'").is_empty());
        // Commands: argv[0]'s file name.
        let exec = |i, time: &str, argv: &str| {
            e.alerts(&rec(i, time, "claude", "exec", &format!(r#""argv":{argv},"text":"x","exe":"/bin/x","cwd":"/","uid":0,"ppid":1,"parent_exec_id":"p","cgroup":"/""#)))
        };
        assert!(
            exec(6, "2026-11-03T10:04:00Z", r#"["/usr/bin/git","status"]"#).is_empty(),
            "first record of this rule: learning"
        );
        assert!(exec(7, "2026-11-05T10:00:00Z", r#"["git","log"]"#).is_empty());
        let nc = exec(8, "2026-11-05T10:01:00Z", r#"["nc","-l","4444"]"#);
        assert_eq!(nc.len(), 1);
        assert_eq!(nc[0].records, [8]);
    }

    #[test]
    fn history_teaches_first_seen_without_alerts() {
        let e = engine(
            "[[rule]]\nname = \"new-table\"\ntype = \"first_seen\"\nof = \"table\"\nlearning_days = 0\n",
        );
        let r = |i, text: &str| {
            rec(
                i,
                "2026-11-03T10:00:00Z",
                "claude",
                "sql",
                &format!(r#""db.system":"postgresql","text":"{text}","status":"ok","result":"""#),
            )
        };
        e.learn(&r(0, "SELECT * FROM orders"));
        assert!(e.alerts(&r(1, "SELECT * FROM orders")).is_empty());
        assert_eq!(e.alerts(&r(2, "SELECT * FROM users")).len(), 1);
    }

    #[test]
    fn trigger_mistakes_are_named() {
        let err = |rules: &str| Rules::parse(rules, Path::new(".")).unwrap_err();
        assert!(
            err("[[rule]]\nname = \"a\"\ntype = \"threshold\"\nwindow_secs = 60\n")
                .contains("needs count")
        );
        assert!(
            err("[[rule]]\nname = \"a\"\ncount = 5\n")
                .contains("count does not apply to type = Match")
        );
        assert!(
            err("[[rule]]\nname = \"a\"\ntype = \"schedule\"\nhours = \"18:00-09:00\"\n")
                .contains("the start must be before the end")
        );
        assert!(
            err("[[rule]]\nname = \"a\"\ntype = \"schedule\"\ntimezone = \"Mars/Olympus\"\n")
                .contains("timezone \"Mars/Olympus\"")
        );
        assert!(
            err("[[rule]]\nname = \"a\"\ntype = \"schedule\"\ndays = [\"monday\"]\n")
                .contains("\"monday\" is not one of")
        );
        assert!(err("[[rule]]\nname = \"a\"\ntype = \"first_seen\"\n").contains("needs of ="));
        assert!(err("[[rule]]\nname = \"a\"\ntype = \"sometimes\"\n").contains("unknown variant"));
    }
}
