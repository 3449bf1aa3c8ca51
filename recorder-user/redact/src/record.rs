//! Redacting one record: each field the rules read, in place, and the list of what changed.
use recorder_protocol::sql::lexer::{self, Dialect};
use recorder_record::{Body, DbSystem, Record, shell};
use regex::{Regex, RegexSet};

use crate::{
    Marker, RedactError, RedactionConfig, RuleConfig,
    rules::{self, Check, Field, Rule, SECRET_NAME},
};

/// What one record's redaction did: the index (in [`Redactor::rule_names`]) of the rule behind
/// each value redacted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hits(pub Vec<usize>);

struct TableRule {
    index: usize,
    tables: Vec<String>,
    identities: Vec<String>,
}

struct WholeRule {
    index: usize,
    fields: Vec<Field>,
    identities: Vec<String>,
}

pub struct Redactor {
    marker: Marker,
    /// Every rule's name, by index: the string rules first, then table and whole-field rules.
    names: Vec<String>,
    rules: Vec<Rule>,
    /// The string rules' patterns together: one pass tells which rules can match a value.
    set: RegexSet,
    tables: Vec<TableRule>,
    whole: Vec<WholeRule>,
    /// `--password VALUE` as two arguments: the flag, then the secret.
    secret_flag: Regex,
    secret_flag_rule: Option<usize>,
    mysql_rule: Option<usize>,
}

fn rule_error(name: &str, why: impl Into<String>) -> RedactError {
    RedactError::Rule {
        name: name.to_string(),
        why: why.into(),
    }
}

/// One operator rule's shape: a name of its own, and one kind of rule.
fn check_rule(
    c: &RuleConfig,
    defaults: &[Rule],
    config: &RedactionConfig,
) -> Result<(), RedactError> {
    if c.name.is_empty() {
        return Err(rule_error("", "every rule needs a name"));
    }
    if defaults.iter().any(|r| r.name == c.name)
        || config.rules.iter().filter(|o| o.name == c.name).count() > 1
    {
        return Err(rule_error(&c.name, "two rules have this name"));
    }
    let kinds = usize::from(c.pattern.is_some())
        + usize::from(!c.tables.is_empty())
        + usize::from(!c.whole_fields.is_empty());
    if kinds != 1 {
        return Err(rule_error(
            &c.name,
            "give exactly one of `pattern`, `tables` or `whole_fields`",
        ));
    }
    if c.pattern.is_none() && !c.fields.is_empty() {
        return Err(rule_error(&c.name, "`fields` goes with `pattern` only"));
    }
    if !c.whole_fields.is_empty() && c.identity.is_empty() {
        return Err(rule_error(
            &c.name,
            "`whole_fields` needs the `identity` whose fields are redacted",
        ));
    }
    Ok(())
}

fn fields(name: &str, list: &[String]) -> Result<Vec<Field>, RedactError> {
    list.iter()
        .map(|f| {
            Field::parse(f).ok_or_else(|| {
                rule_error(
                    name,
                    format!(
                        "unknown field {f:?} (expected one of {})",
                        Field::ALL.map(Field::name).join(", ")
                    ),
                )
            })
        })
        .collect()
}

impl Redactor {
    /// The default rules (but those `disable`d) and the operator's, under `key`.
    pub fn new(key: &[u8], config: &RedactionConfig) -> Result<Self, RedactError> {
        let mut rules = rules::defaults();
        for name in &config.disable {
            if !rules.iter().any(|r| &r.name == name) {
                let all: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
                return Err(rule_error(
                    name,
                    format!(
                        "`disable` names no default rule (they are {})",
                        all.join(", ")
                    ),
                ));
            }
        }
        rules.retain(|r| !config.disable.contains(&r.name));
        // Pattern rules join the string rules; table and whole-field rules come after them in
        // the list of names, in the order given.
        for c in &config.rules {
            check_rule(c, &rules, config)?;
            if let Some(pattern) = &c.pattern {
                rules.push(Rule {
                    name: c.name.clone(),
                    regex: Regex::new(pattern).map_err(|e| rule_error(&c.name, e.to_string()))?,
                    fields: fields(&c.name, &c.fields)?,
                    identities: c.identity.clone(),
                    check: Check::None,
                });
            }
        }
        let mut names: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
        let (mut tables, mut whole) = (Vec::new(), Vec::new());
        for c in config.rules.iter().filter(|c| c.pattern.is_none()) {
            let index = names.len();
            names.push(c.name.clone());
            if c.tables.is_empty() {
                whole.push(WholeRule {
                    index,
                    fields: fields(&c.name, &c.whole_fields)?,
                    identities: c.identity.clone(),
                });
            } else {
                tables.push(TableRule {
                    index,
                    tables: c.tables.iter().map(|t| t.to_lowercase()).collect(),
                    identities: c.identity.clone(),
                });
            }
        }
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str()))
            .map_err(|e| rule_error("", e.to_string()))?;
        let position = |name: &str| rules.iter().position(|r| r.name == name);
        Ok(Self {
            marker: Marker::new(key),
            secret_flag_rule: position("secret_flag"),
            mysql_rule: position("mysql_password_flag"),
            secret_flag: Regex::new(&format!(r"(?i)^--?[a-z0-9_\-]*{SECRET_NAME}[a-z0-9_\-]*$"))
                .map_err(|e| rule_error("secret_flag", e.to_string()))?,
            names,
            rules,
            set,
            tables,
            whole,
        })
    }

    /// Every rule's name; a hit's index points in here.
    pub fn rule_names(&self) -> &[String] {
        &self.names
    }

    /// A redacted copy of `record` and what changed, or None when no rule finds anything in it
    /// (the common case costs no copy).
    pub fn redacted(&self, record: &Record) -> Option<(Record, Hits)> {
        if !self.may_change(record) {
            return None;
        }
        let mut copy = record.clone();
        let hits = self.redact(&mut copy);
        (!hits.0.is_empty()).then_some((copy, hits))
    }

    /// Whether any rule could change `record`: one pass of the rule set over each field.
    fn may_change(&self, record: &Record) -> bool {
        let identity = record.identity.as_str();
        if self
            .whole
            .iter()
            .any(|w| w.identities.iter().any(|i| i == identity))
        {
            return true;
        }
        let hit = |s: &str| self.set.is_match(s);
        match &record.body {
            Body::Exec(e) => {
                let mysql = rules::is_mysql_client(&e.argv);
                e.argv.iter().any(|a| {
                    hit(a) || self.secret_flag.is_match(a) || (mysql && a.starts_with("-p"))
                })
            }
            Body::Shell(s) => hit(&s.text),
            Body::K8s(k) => hit(&k.text) || k.path.as_deref().is_some_and(hit),
            Body::Sql(s) => {
                !self.tables.is_empty()
                    || hit(&s.text)
                    || hit(&s.result)
                    || s.params.iter().flatten().flatten().any(|p| hit(p))
            }
            Body::Notice(n) => hit(&n.detail),
            Body::Approval(a) => hit(&a.text) || hit(&a.detail),
            Body::Exit(_) | Body::Loss(_) => false,
        }
    }

    /// Redacts `record` in place; lists what changed in its `redacted` field.
    pub fn redact(&self, record: &mut Record) -> Hits {
        let mut hits = Hits::default();
        let mut changed: Vec<String> = Vec::new();
        let identity = record.identity.as_str();
        let whole: Vec<&WholeRule> = self
            .whole
            .iter()
            .filter(|w| w.identities.iter().any(|i| i == identity))
            .collect();
        let mut out = Out {
            identity,
            whole: &whole,
            hits: &mut hits,
            changed: &mut changed,
        };
        match &mut record.body {
            Body::Exec(e) => {
                let before = out.hits.0.len();
                for (i, arg) in e.argv.iter_mut().enumerate() {
                    self.field(arg, Field::Argv, &format!("argv[{i}]"), &mut out);
                }
                self.argv_pairs(&mut e.argv, &mut out);
                if out.hits.0.len() > before {
                    e.text = shell::command_line(&e.argv);
                    out.changed.push("text".into());
                }
            }
            Body::Shell(s) => self.field(&mut s.text, Field::Text, "text", &mut out),
            Body::K8s(k) => {
                self.field(&mut k.text, Field::Text, "text", &mut out);
                if let Some(path) = &mut k.path {
                    self.field(path, Field::K8sPath, "path", &mut out);
                }
            }
            Body::Sql(s) => {
                let dialect = match s.db_system {
                    DbSystem::Postgresql => Dialect::Postgresql,
                    DbSystem::Mysql => Dialect::Mysql,
                };
                if let Some(rule) = self.table_rule(&s.text, dialect, identity) {
                    self.sql_on_table(s, dialect, rule, &mut out);
                }
                self.field(&mut s.text, Field::SqlText, "text", &mut out);
                for (i, p) in s.params.iter_mut().flatten().enumerate() {
                    if let Some(p) = p {
                        self.field(p, Field::SqlParams, &format!("params[{i}]"), &mut out);
                    }
                }
                self.field(&mut s.result, Field::SqlResult, "result", &mut out);
            }
            Body::Notice(n) => self.field(&mut n.detail, Field::Detail, "detail", &mut out),
            // What a held action would do is the command line or the statement itself.
            Body::Approval(a) => {
                let field = if a.action == "sql" {
                    Field::SqlText
                } else {
                    Field::Text
                };
                self.field(&mut a.text, field, "text", &mut out);
                self.field(&mut a.detail, Field::Detail, "detail", &mut out);
            }
            Body::Exit(_) | Body::Loss(_) => {}
        }
        if !changed.is_empty() {
            changed.append(&mut record.redacted);
            changed.sort();
            changed.dedup();
            record.redacted = changed;
        }
        hits
    }

    /// One field's value: whole, if a whole-field rule of the identity names it, else what the
    /// string rules find in it.
    fn field(&self, value: &mut String, field: Field, name: &str, out: &mut Out<'_>) {
        if let Some(w) = out.whole.iter().find(|w| w.fields.contains(&field)) {
            if !value.is_empty() && !Marker::is_marker(value) {
                *value = self.marker.of(value);
                out.hits.0.push(w.index);
                out.changed.push(name.to_string());
            }
            return;
        }
        if let Some(new) = self.redact_str(value, field, out.identity, out.hits) {
            *value = new;
            out.changed.push(name.to_string());
        }
    }

    /// The values of `text` the rules find, as markers; None if there is none.
    fn redact_str(
        &self,
        text: &str,
        field: Field,
        identity: &str,
        hits: &mut Hits,
    ) -> Option<String> {
        let matched = self.set.matches(text);
        if !matched.matched_any() {
            return None;
        }
        let mut out: Option<String> = None;
        for i in &matched {
            let rule = &self.rules[i];
            if !rule.applies(field, identity) {
                continue;
            }
            let current = out.as_deref().unwrap_or(text);
            if let Some((new, n)) = self.apply(rule, current) {
                hits.0.extend(std::iter::repeat_n(i, n));
                out = Some(new);
            }
        }
        out
    }

    fn apply(&self, rule: &Rule, text: &str) -> Option<(String, usize)> {
        let (mut result, mut last, mut n) = (String::new(), 0, 0);
        for caps in rule.regex.captures_iter(text) {
            let Some(m) = caps.name("secret").or_else(|| caps.get(0)) else {
                continue;
            };
            let found = m.as_str();
            if found.is_empty() || found.contains("[redacted:") || !rule.accepts(found) {
                continue;
            }
            result.push_str(&text[last..m.start()]);
            result.push_str(&self.marker.of(found));
            last = m.end();
            n += 1;
        }
        if n == 0 {
            return None;
        }
        result.push_str(&text[last..]);
        Some((result, n))
    }

    /// What one argument says of the next (`--password VALUE`), and MySQL's `-pSECRET`.
    fn argv_pairs(&self, argv: &mut [String], out: &mut Out<'_>) {
        let identity = out.identity;
        let mysql = rules::is_mysql_client(argv);
        let usable = |rule: Option<usize>| {
            rule.filter(|&i| {
                self.rules[i].identities.is_empty()
                    || self.rules[i].identities.iter().any(|x| x == identity)
            })
        };
        let (flag_rule, mysql_rule) = (usable(self.secret_flag_rule), usable(self.mysql_rule));
        let mut secret_next = false;
        for (i, arg) in argv.iter_mut().enumerate() {
            if std::mem::take(&mut secret_next)
                && let Some(rule) = flag_rule
                && !arg.starts_with('-')
                && !Marker::is_marker(arg)
                && self.rules[rule].accepts(arg)
            {
                *arg = self.marker.of(arg);
                out.hits.0.push(rule);
                out.changed.push(format!("argv[{i}]"));
                continue;
            }
            if self.secret_flag.is_match(arg) {
                secret_next = true;
            } else if mysql
                && let Some(rule) = mysql_rule
                && let Some(secret) = arg.strip_prefix("-p")
                && !secret.is_empty()
                && !arg.starts_with("--")
                && !secret.contains("[redacted:")
            {
                *arg = format!("-p{}", self.marker.of(secret));
                out.hits.0.push(rule);
                out.changed.push(format!("argv[{i}]"));
            }
        }
    }

    fn table_rule(&self, sql: &str, dialect: Dialect, identity: &str) -> Option<usize> {
        if self.tables.is_empty() {
            return None;
        }
        let named = lexer::tables(sql, dialect);
        self.tables
            .iter()
            .filter(|t| t.identities.is_empty() || t.identities.iter().any(|i| i == identity))
            .find(|t| {
                named.iter().any(|n| {
                    let n = n.to_lowercase();
                    t.tables
                        .iter()
                        .any(|want| *want == n || n.rsplit('.').next() == Some(want.as_str()))
                })
            })
            .map(|t| t.index)
    }

    /// Every literal of a statement on a sensitive table, and every parameter.
    fn sql_on_table(
        &self,
        s: &mut recorder_record::Sql,
        dialect: Dialect,
        rule: usize,
        out: &mut Out<'_>,
    ) {
        let spans = lexer::literals(&s.text, dialect);
        if !spans.is_empty() {
            let mut text = String::with_capacity(s.text.len());
            let mut last = 0;
            for span in spans {
                text.push_str(&s.text[last..span.start]);
                text.push_str(&self.marker.of(&s.text[span.clone()]));
                last = span.end;
                out.hits.0.push(rule);
            }
            text.push_str(&s.text[last..]);
            s.text = text;
            out.changed.push("text".into());
        }
        for (i, p) in s.params.iter_mut().flatten().enumerate() {
            if let Some(p) = p
                && !Marker::is_marker(p)
            {
                *p = self.marker.of(p);
                out.hits.0.push(rule);
                out.changed.push(format!("params[{i}]"));
            }
        }
    }
}

/// Where one record's redaction writes what it did.
struct Out<'a> {
    identity: &'a str,
    whole: &'a [&'a WholeRule],
    hits: &'a mut Hits,
    changed: &'a mut Vec<String>,
}
