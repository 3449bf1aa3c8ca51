//! Bound parameter values of a Bind message, rendered as text. Text-format values are kept as
//! sent; binary ones are decoded for the common types whose OID the Parse declared, and shown as
//! `\x` hex otherwise.

use std::fmt::Write as _;

use crate::sql::{MAX_PARAM_BYTES, MAX_PARAMS, hex_of, text_of};
use crate::wire::Reader;

const BOOL: u32 = 16;
const CHAR: u32 = 18;
const NAME: u32 = 19;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const JSON: u32 = 114;
const XML: u32 = 142;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;

/// Reads the parameter formats and values of a Bind (after the two names). Returns the values,
/// whether any was cut, and whether the section parsed completely.
pub(crate) fn bind_parameters(
    r: &mut Reader<'_>,
    types: &[u32],
) -> (Vec<Option<String>>, bool, bool) {
    let mut params = Vec::new();
    let mut cut = false;
    let Some(formats) = read_formats(r) else {
        return (params, cut, false);
    };
    let Some(count) = r.i16_be().filter(|n| *n >= 0) else {
        return (params, cut, false);
    };
    for i in 0..count as usize {
        let binary = match formats.as_slice() {
            [] => false,
            [one] => *one == 1,
            many => many.get(i).is_some_and(|f| *f == 1),
        };
        let value = match r.i32_be() {
            Some(-1) => None,
            Some(len) if len >= 0 => match r.take(len as usize) {
                Some(bytes) => Some(bytes),
                None => return (params, true, false),
            },
            _ => return (params, cut, false),
        };
        if i >= MAX_PARAMS {
            cut = true;
            continue;
        }
        let rendered = value.map(|bytes| {
            let oid = types.get(i).copied().unwrap_or(0);
            let (text, over) = if binary {
                binary_value(oid, bytes)
            } else {
                text_of(bytes, MAX_PARAM_BYTES)
            };
            cut |= over;
            text
        });
        params.push(rendered);
    }
    (params, cut, true)
}

fn read_formats(r: &mut Reader<'_>) -> Option<Vec<i16>> {
    let n = r.i16_be().filter(|n| *n >= 0)?;
    // Each format is 2 bytes; checking the length first bounds the allocation by the input.
    let raw = r.take(2 * n as usize)?;
    Some(
        raw.chunks_exact(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// Renders a binary-format value of type `oid`, in PostgreSQL's text output form where known.
pub(crate) fn binary_value(oid: u32, bytes: &[u8]) -> (String, bool) {
    let fixed = |n: usize| (bytes.len() == n).then_some(bytes);
    let decoded = match oid {
        BOOL => fixed(1).map(|b| if b.first() == Some(&0) { "f" } else { "t" }.to_string()),
        INT2 => fixed(2).map(|b| i16::from_be_bytes([b[0], b[1]]).to_string()),
        INT4 => fixed(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        OID => fixed(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        INT8 => fixed(8).map(|b| i64::from_be_bytes(eight(b)).to_string()),
        FLOAT4 => fixed(4).map(|b| f32::from_be_bytes([b[0], b[1], b[2], b[3]]).to_string()),
        FLOAT8 => fixed(8).map(|b| f64::from_be_bytes(eight(b)).to_string()),
        DATE => fixed(4).map(|b| date(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        TIMESTAMP => fixed(8).map(|b| timestamp(i64::from_be_bytes(eight(b)), "")),
        TIMESTAMPTZ => fixed(8).map(|b| timestamp(i64::from_be_bytes(eight(b)), "+00")),
        UUID => fixed(16).map(uuid),
        TEXT | VARCHAR | BPCHAR | NAME | CHAR | JSON | XML | 0 => utf8(bytes),
        // jsonb's binary form is a version byte (1) and the JSON text.
        JSONB => match bytes.split_first() {
            Some((1, json)) => utf8(json),
            _ => None,
        },
        // bytea (and every type not decoded here): hex, as bytea's own output.
        _ => None,
    };
    match decoded {
        Some(text) => text_of(text.as_bytes(), MAX_PARAM_BYTES),
        None => hex_of(bytes),
    }
}

fn eight(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.iter_mut().zip(b).for_each(|(d, s)| *d = *s);
    a
}

fn utf8(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

fn uuid(b: &[u8]) -> String {
    let mut hex = String::with_capacity(2 * b.len());
    for x in b {
        let _ = write!(hex, "{x:02x}");
    }
    let part = |a: usize, z: usize| hex.get(a..z).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

/// Days since 2000-01-01 (PostgreSQL's epoch) as YYYY-MM-DD.
fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => {
            let (y, m, dd) = civil_from_days(i64::from(d) + 10_957);
            format!("{y:04}-{m:02}-{dd:02}")
        }
    }
}

/// Microseconds since 2000-01-01 00:00:00.
fn timestamp(us: i64, zone: &str) -> String {
    match us {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        us => {
            let days = us.div_euclid(86_400_000_000);
            let of_day = us.rem_euclid(86_400_000_000);
            let (y, m, d) = civil_from_days(days + 10_957);
            let (s, frac) = (of_day / 1_000_000, of_day % 1_000_000);
            let mut out = format!(
                "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
            if frac != 0 {
                out.push_str(format!(".{frac:06}").trim_end_matches('0'));
            }
            out.push_str(zone);
            out
        }
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_values_render_like_postgres_text_output() {
        assert_eq!(binary_value(INT8, &42i64.to_be_bytes()).0, "42");
        assert_eq!(binary_value(INT2, &(-7i16).to_be_bytes()).0, "-7");
        assert_eq!(binary_value(BOOL, &[1]).0, "t");
        assert_eq!(binary_value(FLOAT8, &1.5f64.to_be_bytes()).0, "1.5");
        assert_eq!(binary_value(DATE, &0i32.to_be_bytes()).0, "2000-01-01");
        assert_eq!(binary_value(DATE, &(-1i32).to_be_bytes()).0, "1999-12-31");
        let ts = (86_400i64 * 366 + 3661) * 1_000_000 + 500_000;
        assert_eq!(
            binary_value(TIMESTAMP, &ts.to_be_bytes()).0,
            "2001-01-01 01:01:01.5"
        );
        assert_eq!(binary_value(JSONB, b"\x01{\"a\":1}").0, "{\"a\":1}");
        assert_eq!(binary_value(17, &[0xde, 0xad]).0, "\\xdead");
        // A wrong length for the declared type is shown as it is, in hex.
        assert_eq!(binary_value(INT4, &[1, 2]).0, "\\x0102");
        assert_eq!(binary_value(9999, &[0xff]).0, "\\xff");
    }
}
