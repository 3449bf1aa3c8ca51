//! The rules: where a secret is in a piece of text. A rule is a regular expression; its group
//! named `secret` (or, without one, the whole match) is what becomes a marker. A rule may be
//! kept to some fields, to some identities, and may need a check on what it found (card
//! numbers: the Luhn sum).
use regex::Regex;

/// A field of a record that redaction reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `exec` argv, each argument (the command line `text` is rebuilt from it).
    Argv,
    /// A command line: `exec`/`k8s` text, a `shell` line.
    Text,
    /// An SQL statement's text.
    SqlText,
    /// An SQL statement's bound parameters.
    SqlParams,
    /// An SQL statement's result (errors quote values).
    SqlResult,
    /// A Kubernetes API call's path (query strings carry tokens).
    K8sPath,
    /// A notice's detail.
    Detail,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::Argv,
        Field::Text,
        Field::SqlText,
        Field::SqlParams,
        Field::SqlResult,
        Field::K8sPath,
        Field::Detail,
    ];

    /// As written in the configuration and in a record's `redacted` list.
    pub fn name(self) -> &'static str {
        match self {
            Field::Argv => "argv",
            Field::Text => "text",
            Field::SqlText => "sql.text",
            Field::SqlParams => "sql.params",
            Field::SqlResult => "sql.result",
            Field::K8sPath => "k8s.path",
            Field::Detail => "detail",
        }
    }

    pub fn parse(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// What a match must also pass to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    /// A card number: 13 to 19 digits (spaces and dashes between them) with a valid Luhn sum.
    Luhn,
    /// Not a file path (`/…`, `./…`, `../…`, `~/…`): a flag naming where a secret is kept
    /// (`--password-file=/run/secrets/db`) is not the secret.
    NotAPath,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub regex: Regex,
    /// Empty: every field.
    pub fields: Vec<Field>,
    /// Empty: every identity.
    pub identities: Vec<String>,
    pub check: Check,
}

impl Rule {
    pub fn applies(&self, field: Field, identity: &str) -> bool {
        (self.fields.is_empty() || self.fields.contains(&field))
            && (self.identities.is_empty() || self.identities.iter().any(|i| i == identity))
    }

    pub fn accepts(&self, found: &str) -> bool {
        match self.check {
            Check::None => true,
            Check::Luhn => luhn(found),
            Check::NotAPath => !["/", "./", "../", "~/"]
                .iter()
                .any(|p| found.starts_with(p)),
        }
    }
}

/// Names a secret-bearing flag or variable: password, token, secret, API/access/private key.
pub(crate) const SECRET_NAME: &str = r"(?:password|passwd|passphrase|pwd|token|secret|api[_\-]?key|access[_\-]?key|private[_\-]?key|auth[_\-]?key)";

/// MySQL and MariaDB clients, which take `-pSECRET`.
pub(crate) const MYSQL_CLIENTS: [&str; 9] = [
    "mysql",
    "mariadb",
    "mysqldump",
    "mariadb-dump",
    "mysqladmin",
    "mariadb-admin",
    "mysqlimport",
    "mysqlcheck",
    "mysqlshow",
];

/// Whether `argv` runs a MySQL or MariaDB client (by its program's file name).
pub(crate) fn is_mysql_client(argv: &[String]) -> bool {
    argv.first()
        .is_some_and(|a| MYSQL_CLIENTS.contains(&a.rsplit('/').next().unwrap_or(a)))
}

/// The default rules, in the order they are tried.
#[expect(clippy::too_many_lines, reason = "one table of rules, one row each")]
pub fn defaults() -> Vec<Rule> {
    let sql_string = r#"(?P<secret>'(?:[^'\\]|''|\\.)*'|"(?:[^"\\]|""|\\.)*")"#;
    let mysql = MYSQL_CLIENTS.join("|");
    let all: &[Field] = &[];
    let sql: &[Field] = &[Field::SqlText, Field::SqlParams];
    let table: [(&str, String, &[Field], Check); 14] = [
        (
            "url_credentials",
            r#"(?i)\b[a-z][a-z0-9+.\-]*://[^\s:/@?#'"]*:(?P<secret>[^\s@/?#'"]+)@"#.into(),
            all,
            Check::None,
        ),
        (
            "authorization_header",
            r#"(?i)\b(?:proxy-)?authorization\s*:\s*(?:(?:bearer|basic|token|digest|negotiate)\s+)?(?P<secret>[^\s'"]+)"#.into(),
            all,
            Check::None,
        ),
        (
            "secret_assignment",
            format!(
                r#"(?i)[a-z0-9_.\-]*{SECRET_NAME}[a-z0-9_.\-]*["']?\s*[=:]\s*["']?(?P<secret>[^\s'",;&|)}}]+)"#
            ),
            all,
            Check::NotAPath,
        ),
        (
            "secret_flag",
            format!(
                r#"(?i)(?:^|\s)--?[a-z0-9_\-]*{SECRET_NAME}[a-z0-9_\-]*\s+["']?(?P<secret>[^\s'"\-][^\s'"]*)"#
            ),
            &[Field::Text, Field::Detail],
            Check::NotAPath,
        ),
        (
            "mysql_password_flag",
            format!(
                r#"(?:^|[\s;&|(/])(?:{mysql})\s(?:[^;&|\n]*?\s)?-p(?P<secret>[^\s'";&|]+)"#
            ),
            &[Field::Text, Field::Detail],
            Check::None,
        ),
        (
            "pem_private_key",
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)-----END[A-Z0-9 ]*PRIVATE KEY-----"
                .into(),
            all,
            Check::None,
        ),
        (
            "aws_access_key_id",
            r"\b(?:AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b".into(),
            all,
            Check::None,
        ),
        (
            "github_token",
            r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b".into(),
            all,
            Check::None,
        ),
        (
            "slack_token",
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,}".into(),
            all,
            Check::None,
        ),
        (
            "jwt",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}".into(),
            all,
            Check::None,
        ),
        (
            "gcp_api_key",
            r"\bAIza[0-9A-Za-z_\-]{35}\b".into(),
            all,
            Check::None,
        ),
        (
            "sql_password",
            format!(
                r"(?i)\b(?:password|identified\s+by|identified\s+with\s+\S+\s+by)\s*=?\s*(?:password\s*\(\s*)?{sql_string}"
            ),
            all,
            Check::None,
        ),
        (
            "sql_set_password",
            format!(r"(?i)\bset\s+password\b[^=;]*=\s*(?:password\s*\(\s*)?{sql_string}"),
            all,
            Check::None,
        ),
        (
            "card_number",
            r"\b\d(?:[ \-]?\d){12,18}\b".into(),
            sql,
            Check::Luhn,
        ),
    ];
    table
        .into_iter()
        .map(|(name, pattern, fields, check)| Rule {
            name: name.to_string(),
            // The patterns above are fixed and tested: they compile.
            regex: Regex::new(&pattern).unwrap_or_else(|e| panic!("rule {name}: {e}")),
            fields: fields.to_vec(),
            identities: Vec::new(),
            check,
        })
        .collect()
}

/// The Luhn sum of the digits of `s` (spaces and dashes ignored), for 13 to 19 digits.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
