//! The compiled policy. The kernel stops every exec (or every TLS write) of an identity that has
//! an exec (or SQL / Kubernetes) rule; the agent then asks [`Policy`] which rule, if any, the
//! action meets, and lets the others go at once. Holding every exec of such an identity, not
//! only those of one program name, is deliberate: a name test in the kernel would miss a program
//! started through a link of another name, and the agent sees the real command line anyway.
use recorder_protocol::{
    k8s::api::api_request,
    sql::lexer::{Dialect, StatementClass, classify, tables},
};
use regex::Regex;

use crate::{ApprovalError, config::RuleConfig};

/// What kind of action a rule gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Exec,
    Sql,
    K8s,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Exec => "exec",
            Action::Sql => "sql",
            Action::K8s => "k8s",
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// Empty: every identity.
    identities: Vec<String>,
    what: What,
}

#[derive(Debug)]
enum What {
    /// The whole command line (program by its file name, then the arguments, space-separated).
    Exec(Regex),
    Sql {
        classes: Vec<StatementClass>,
        /// Lower case, as the servers fold unquoted names.
        tables: Vec<String>,
    },
    K8s {
        verbs: Vec<String>,
        namespaces: Vec<String>,
        resources: Vec<String>,
    },
}

impl Rule {
    fn applies_to(&self, identity: &str) -> bool {
        self.identities.is_empty() || self.identities.iter().any(|i| i == identity)
    }

    pub fn action(&self) -> Action {
        match self.what {
            What::Exec(_) => Action::Exec,
            What::Sql { .. } => Action::Sql,
            What::K8s { .. } => Action::K8s,
        }
    }
}

/// What the kernel must stop for one identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelHolds {
    pub execs: bool,
    pub tls_writes: bool,
}

#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

impl Policy {
    /// Compiles the rules; `identities` are the watched identities' names, which a rule's
    /// `identities` must name (a typo would otherwise gate nothing).
    pub fn new(configs: &[RuleConfig], identities: &[String]) -> Result<Self, ApprovalError> {
        let mut rules = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            let name = if config.name.is_empty() {
                format!("rule-{}", i + 1)
            } else {
                config.name.clone()
            };
            let err = |why: String| ApprovalError::Rule {
                rule: name.clone(),
                why,
            };
            if rules.iter().any(|r: &Rule| r.name == name) {
                return Err(err("two rules have this name".into()));
            }
            for identity in &config.identities {
                if !identities.contains(identity) {
                    return Err(err(format!(
                        "identity {identity:?} is not watched (watched: {})",
                        identities.join(", ")
                    )));
                }
            }
            let what = what_of(config).map_err(err)?;
            rules.push(Rule {
                name,
                identities: config.identities.clone(),
                what,
            });
        }
        Ok(Policy { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What the kernel must stop for `identity`.
    pub fn kernel_holds(&self, identity: &str) -> KernelHolds {
        let mut holds = KernelHolds::default();
        for rule in self.rules.iter().filter(|r| r.applies_to(identity)) {
            match rule.what {
                What::Exec(_) => holds.execs = true,
                What::Sql { .. } | What::K8s { .. } => holds.tls_writes = true,
            }
        }
        holds
    }

    /// The first rule an exec of `identity` meets. `program` is the executable's file name
    /// (`/usr/bin/terraform` → `terraform`); `args` are argv after argv[0].
    pub fn exec_rule(&self, identity: &str, program: &str, args: &[String]) -> Option<&Rule> {
        let line = exec_line(program, args);
        self.rules.iter().find(|r| {
            r.applies_to(identity) && matches!(&r.what, What::Exec(re) if re.is_match(&line))
        })
    }

    /// The first rule a statement of `identity` meets.
    pub fn sql_rule(&self, identity: &str, text: &str, dialect: Dialect) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.applies_to(identity)
                && match &r.what {
                    What::Sql {
                        classes,
                        tables: named,
                    } => {
                        classify(text, dialect).is_some_and(|c| classes.contains(&c))
                            || (!named.is_empty()
                                && tables(text, dialect)
                                    .iter()
                                    .any(|t| named.iter().any(|n| table_is(t, n))))
                    }
                    _ => false,
                }
        })
    }

    /// The first rule a Kubernetes API request of `identity` meets.
    pub fn k8s_rule(&self, identity: &str, method: &str, target: &str) -> Option<&Rule> {
        let request = api_request(method, target)?;
        self.rules.iter().find(|r| {
            r.applies_to(identity)
                && match &r.what {
                    What::K8s {
                        verbs,
                        namespaces,
                        resources,
                    } => {
                        verbs.contains(&request.verb)
                            && (namespaces.is_empty()
                                || request
                                    .namespace
                                    .as_ref()
                                    .is_some_and(|n| namespaces.contains(n)))
                            && (resources.is_empty()
                                || request
                                    .resource
                                    .as_ref()
                                    .is_some_and(|res| resources.contains(res)))
                    }
                    _ => false,
                }
        })
    }
}

/// The text an exec pattern is matched against: the program's file name, then the arguments.
pub fn exec_line(program: &str, args: &[String]) -> String {
    let mut line = program.rsplit('/').next().unwrap_or(program).to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// `public.payments` names `payments`; `payments` names `payments`.
fn table_is(written: &str, rule: &str) -> bool {
    written == rule || written.rsplit('.').next() == Some(rule)
}

fn what_of(config: &RuleConfig) -> Result<What, String> {
    let sql = !config.sql.is_empty() || !config.tables.is_empty();
    let k8s = !config.kubernetes.is_empty();
    match (config.exec.as_deref(), sql, k8s) {
        (Some(pattern), false, false) => exec_pattern(pattern).map(What::Exec),
        (None, true, false) => {
            match config.transport.as_deref() {
                None | Some("tls") => {}
                Some(t @ ("tcp" | "unix")) => {
                    return Err(format!(
                        "statements over plain {t} cannot be held on this kernel: the kernel's stop \
                         lands after the bytes left (measured: see docs/approvals.md). Hold the \
                         client's exec instead, e.g. exec = \"psql *\" or exec = \"mysql *\""
                    ));
                }
                Some(other) => {
                    return Err(format!("transport {other:?}: expected tls"));
                }
            }
            let classes = config
                .sql
                .iter()
                .map(|c| statement_class(c))
                .collect::<Result<_, _>>()?;
            Ok(What::Sql {
                classes,
                tables: config.tables.iter().map(|t| t.to_lowercase()).collect(),
            })
        }
        (None, false, true) => {
            const VERBS: [&str; 6] = [
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
                "proxy",
            ];
            for verb in &config.kubernetes {
                if !VERBS.contains(&verb.as_str()) {
                    return Err(format!(
                        "kubernetes verb {verb:?}: expected writes ({})",
                        VERBS.join(", ")
                    ));
                }
            }
            Ok(What::K8s {
                verbs: config.kubernetes.clone(),
                namespaces: config.namespaces.clone(),
                resources: config.resources.clone(),
            })
        }
        (None, false, false) => Err("says no action: give exec, sql/tables or kubernetes".into()),
        _ => Err("gives more than one of exec, sql/tables and kubernetes: one per rule".into()),
    }
}

fn statement_class(name: &str) -> Result<StatementClass, String> {
    Ok(match name {
        "drop" => StatementClass::Drop,
        "truncate" => StatementClass::Truncate,
        "delete_without_where" => StatementClass::DeleteWithoutWhere,
        "update_without_where" => StatementClass::UpdateWithoutWhere,
        other => {
            return Err(format!(
                "sql class {other:?}: expected drop, truncate, delete_without_where or \
                 update_without_where (or name tables)"
            ));
        }
    })
}

/// A shell-like pattern over the whole command line: `*` any text, `?` one character.
fn exec_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.trim().is_empty() {
        return Err("exec pattern is empty".into());
    }
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("exec pattern {pattern:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(toml_rules: &[RuleConfig]) -> Policy {
        Policy::new(toml_rules, &["claude".into(), "other".into()]).unwrap()
    }

    fn exec(name: &str, pattern: &str) -> RuleConfig {
        RuleConfig {
            name: name.into(),
            exec: Some(pattern.into()),
            ..Default::default()
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn exec_patterns_match_the_whole_line_by_file_name() {
        let p = policy(&[exec("tf", "terraform apply*"), exec("rm", "rm -rf *")]);
        assert_eq!(
            p.exec_rule(
                "claude",
                "/usr/bin/terraform",
                &args(&["apply", "-auto-approve"])
            )
            .map(|r| r.name.as_str()),
            Some("tf")
        );
        assert!(
            p.exec_rule("claude", "terraform", &args(&["plan"]))
                .is_none()
        );
        assert_eq!(
            p.exec_rule("claude", "/bin/rm", &args(&["-rf", "/tmp/x"]))
                .map(|r| r.name.as_str()),
            Some("rm")
        );
        assert!(
            p.exec_rule("claude", "/bin/rm", &args(&["-f", "/tmp/x"]))
                .is_none()
        );
        // Regex characters in a pattern are literal.
        let p = policy(&[exec("dot", "a.b")]);
        assert!(p.exec_rule("claude", "axb", &[]).is_none());
        assert!(p.exec_rule("claude", "a.b", &[]).is_some());
    }

    #[test]
    fn rules_apply_to_their_identities_only() {
        let mut rule = exec("tf", "terraform *");
        rule.identities = vec!["claude".into()];
        let p = policy(&[rule]);
        assert!(
            p.exec_rule("claude", "terraform", &args(&["apply"]))
                .is_some()
        );
        assert!(
            p.exec_rule("other", "terraform", &args(&["apply"]))
                .is_none()
        );
        assert_eq!(
            p.kernel_holds("other"),
            KernelHolds::default(),
            "an identity no rule names is never stopped"
        );
        assert!(p.kernel_holds("claude").execs);
        assert!(!p.kernel_holds("claude").tls_writes);
    }

    #[test]
    fn sql_classes_and_tables() {
        let p = policy(&[RuleConfig {
            name: "sql".into(),
            sql: vec!["drop".into(), "delete_without_where".into()],
            tables: vec!["payments".into()],
            ..Default::default()
        }]);
        let pg = Dialect::Postgresql;
        assert!(p.sql_rule("claude", "DROP TABLE t", pg).is_some());
        assert!(p.sql_rule("claude", "  drop table t", pg).is_some());
        assert!(p.sql_rule("claude", "DELETE FROM t", pg).is_some());
        assert!(
            p.sql_rule("claude", "DELETE FROM t WHERE id = 1", pg)
                .is_none()
        );
        assert!(
            p.sql_rule("claude", "SELECT * FROM public.payments", pg)
                .is_some()
        );
        assert!(
            p.sql_rule("claude", "SELECT 'drop table payments'", pg)
                .is_none()
        );
        assert!(p.kernel_holds("claude").tls_writes);
    }

    #[test]
    fn kubernetes_writes_by_verb_and_namespace() {
        let p = policy(&[RuleConfig {
            name: "prod".into(),
            kubernetes: vec!["delete".into()],
            namespaces: vec!["prod".into()],
            ..Default::default()
        }]);
        assert!(
            p.k8s_rule("claude", "DELETE", "/api/v1/namespaces/prod/pods/web")
                .is_some()
        );
        assert!(
            p.k8s_rule("claude", "DELETE", "/api/v1/namespaces/dev/pods/web")
                .is_none()
        );
        assert!(
            p.k8s_rule("claude", "GET", "/api/v1/namespaces/prod/pods/web")
                .is_none()
        );
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let refuse = |rule: RuleConfig| {
            Policy::new(&[rule], &["claude".into()])
                .unwrap_err()
                .to_string()
        };
        let e = refuse(RuleConfig {
            name: "plain".into(),
            sql: vec!["drop".into()],
            transport: Some("tcp".into()),
            ..Default::default()
        });
        assert!(
            e.contains("cannot be held") && e.contains("exec = \"psql *\""),
            "{e}"
        );
        let e = refuse(RuleConfig {
            name: "x".into(),
            sql: vec!["select".into()],
            ..Default::default()
        });
        assert!(e.contains("sql class \"select\""), "{e}");
        let e = refuse(RuleConfig {
            name: "x".into(),
            ..Default::default()
        });
        assert!(e.contains("no action"), "{e}");
        let mut both = exec("x", "rm *");
        both.kubernetes = vec!["delete".into()];
        assert!(refuse(both).contains("more than one"));
        let mut unknown = exec("x", "rm *");
        unknown.identities = vec!["nobody".into()];
        assert!(refuse(unknown).contains("\"nobody\" is not watched"));
        let e = refuse(RuleConfig {
            name: "x".into(),
            kubernetes: vec!["get".into()],
            ..Default::default()
        });
        assert!(e.contains("verb \"get\""), "{e}");
    }
}
