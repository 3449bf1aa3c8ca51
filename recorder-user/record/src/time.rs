//! Record times: Unix nanoseconds, written as RFC 3339 in UTC with nanoseconds
//! (`2026-11-28T10:14:23.123456789Z`), so that text order is time order.
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A point in time as Unix nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i128);

impl Timestamp {
    /// The wall clock now.
    pub fn now() -> Self {
        Self(now_unix_ns())
    }

    pub fn unix_ns(self) -> i128 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rfc3339_nanos(self.0))
    }
}

impl std::str::FromStr for Timestamp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_rfc3339(s)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is not an RFC 3339 time"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339_nanos(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
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
    put_digits(&mut out[5..7], mo.into());
    put_digits(&mut out[8..10], d.into());
    put_digits(&mut out[11..13], h as u64);
    put_digits(&mut out[14..16], m as u64);
    put_digits(&mut out[17..19], s as u64);
    put_digits(&mut out[20..29], nanos.into());
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

/// Parses an RFC 3339 time (`2026-11-28T10:14:23.123Z`, `...+02:00`) to Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = frac[..digits].parse::<i128>().ok()? * 10i128.pow(9 - digits as u32);
        rest = &frac[digits..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && &rest[3..4] == ":" =>
        {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Now as Unix nanoseconds.
pub fn now_unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
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
    fn parses_rfc3339() {
        for ns in [0i128, 1_795_860_863_000_000_007, 951_782_400_123_000_000] {
            assert_eq!(parse_rfc3339(&rfc3339_nanos(ns)), Some(ns));
        }
        assert_eq!(
            parse_rfc3339("2026-11-28T12:14:23+02:00"),
            Some(1_795_860_863_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-28T10:14:23.5Z"),
            Some(1_795_860_863_500_000_000)
        );
        assert_eq!(parse_rfc3339("2026-13-28T10:14:23Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn timestamps_read_and_write_as_rfc3339() {
        let t: Timestamp = serde_json::from_str("\"2026-11-28T10:14:23.000000007Z\"").unwrap();
        assert_eq!(t, Timestamp(1_795_860_863_000_000_007));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-28T10:14:23.000000007Z\""
        );
        let e = serde_json::from_str::<Timestamp>("\"noon\"").unwrap_err();
        assert!(e.to_string().contains("not an RFC 3339 time"), "{e}");
    }
}
