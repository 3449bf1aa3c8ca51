//! The record: one JSON object per event, the contract of `--jsonl` output, of the spool and of
//! the collector's store (see docs/records.md). Common fields are typed; kind-specific fields are
//! kept as a JSON map so every consumer (replay, watch, export) passes them through unchanged.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Exec,
    Exit,
    Shell,
    Sql,
    K8s,
    Loss,
    Notice,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Exec,
        Kind::Exit,
        Kind::Shell,
        Kind::Sql,
        Kind::K8s,
        Kind::Loss,
        Kind::Notice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Exit => "exit",
            Kind::Shell => "shell",
            Kind::Sql => "sql",
            Kind::K8s => "k8s",
            Kind::Loss => "loss",
            Kind::Notice => "notice",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown record kind {s:?} (expected one of exec, exit, shell, sql, k8s, loss, notice)"))
    }
}

/// One record. Serialises to the JSON line the BRIEF specifies: the common fields, then the
/// kind's own fields. Records about no process (`loss`, some `notice`) have `pid` 0 and empty
/// `session`/`exec_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub kind: Kind,
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub host: String,
    pub identity: String,
    pub session: String,
    pub pid: u32,
    pub exec_id: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Record {
    /// The record as one JSON line (no trailing newline).
    pub fn to_line(&self) -> String {
        // Serialising a struct of strings, numbers and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A kind-specific field, if present.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 UTC with nanoseconds,
/// e.g. `2026-11-28T10:14:23.123456789Z`.
pub fn rfc3339_nanos(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (y, mo, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{nanos:09}Z");
    }
    // Written digit by digit: every record carries a time, and `format!` was a tenth of the
    // agent's work per SQL statement.
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut out[0..4], y as u64);
    put_digits(&mut out[5..7], mo as u64);
    put_digits(&mut out[8..10], d as u64);
    put_digits(&mut out[11..13], h as u64);
    put_digits(&mut out[14..16], m as u64);
    put_digits(&mut out[17..19], s as u64);
    put_digits(&mut out[20..29], nanos as u64);
    out.iter().map(|&b| b as char).collect()
}

/// Writes `value` as decimal digits filling `out`, zero-padded (higher digits are dropped).
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-28T10:14:23.000000007Z
        assert_eq!(
            rfc3339_nanos(1_795_860_863_000_000_007),
            "2026-11-28T10:14:23.000000007Z"
        );
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn record_round_trips_and_keeps_common_fields_first() {
        let mut fields = Map::new();
        fields.insert("argv".into(), serde_json::json!(["ls", "-l"]));
        let rec = Record {
            kind: Kind::Exec,
            time: rfc3339_nanos(0),
            host: "h".into(),
            identity: "agent-a".into(),
            session: "s1".into(),
            pid: 42,
            exec_id: "e1".into(),
            fields,
        };
        let line = rec.to_line();
        assert!(
            line.starts_with(r#"{"kind":"exec","time":"1970-01-01T00:00:00.000000000Z""#),
            "{line}"
        );
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn kind_parses_from_its_name() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), k);
        }
        assert!("nope".parse::<Kind>().is_err());
    }
}
