//! Parameter values of `COM_STMT_EXECUTE` (binary protocol), rendered as text.

use std::fmt::Write as _;

use crate::sql::{MAX_PARAM_BYTES, hex_of, text_of};
use crate::wire::Reader;

pub(crate) const TYPE_NULL: u8 = 0x06;

/// Reads one binary value of column type `ty`. `None` when the bytes run out or the type is
/// unknown (then the values that follow cannot be located either).
pub(crate) fn read_value(r: &mut Reader<'_>, ty: u8, unsigned: bool) -> Option<(String, bool)> {
    let plain = |s: String| Some((s, false));
    match ty {
        0x01 => {
            let b = r.u8()?;
            plain(if unsigned {
                b.to_string()
            } else {
                (b as i8).to_string()
            })
        }
        0x02 | 0x0d => {
            let v = r.u16_le()?;
            plain(if unsigned || ty == 0x0d {
                v.to_string()
            } else {
                (v as i16).to_string()
            })
        }
        0x03 | 0x09 => {
            let v = r.u32_le()?;
            plain(if unsigned {
                v.to_string()
            } else {
                (v as i32).to_string()
            })
        }
        0x08 => {
            let v = r.u64_le()?;
            plain(if unsigned {
                v.to_string()
            } else {
                (v as i64).to_string()
            })
        }
        0x04 => plain(f32::from_bits(r.u32_le()?).to_string()),
        0x05 => plain(f64::from_bits(r.u64_le()?).to_string()),
        0x07 | 0x0a | 0x0c | 0x0e => {
            let n = usize::from(r.u8()?);
            plain(datetime(r.take(n)?))
        }
        0x0b => {
            let n = usize::from(r.u8()?);
            plain(time(r.take(n)?))
        }
        0x00 | 0x0f | 0x10 | 0xf5..=0xff => Some(string(r.lenenc_bytes()?)),
        _ => None,
    }
}

fn string(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(_) => text_of(bytes, MAX_PARAM_BYTES),
        Err(_) => hex_of(bytes),
    }
}

/// DATE/DATETIME/TIMESTAMP: length 0, 4, 7 or 11.
fn datetime(b: &[u8]) -> String {
    let mut r = Reader::new(b);
    let year = r.u16_le().unwrap_or(0);
    let (month, day) = (r.u8().unwrap_or(0), r.u8().unwrap_or(0));
    if b.len() == 4 {
        return format!("{year:04}-{month:02}-{day:02}");
    }
    let (h, m, s) = (
        r.u8().unwrap_or(0),
        r.u8().unwrap_or(0),
        r.u8().unwrap_or(0),
    );
    let mut out = format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}");
    if let Some(us) = r.u32_le().filter(|us| *us != 0) {
        let _ = write!(out, ".{us:06}");
    }
    out
}

/// TIME: length 0, 8 or 12; days fold into hours as MySQL prints them.
fn time(b: &[u8]) -> String {
    let mut r = Reader::new(b);
    let negative = r.u8().unwrap_or(0) == 1;
    let days = r.u32_le().unwrap_or(0);
    let (h, m, s) = (
        r.u8().unwrap_or(0),
        r.u8().unwrap_or(0),
        r.u8().unwrap_or(0),
    );
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut out = format!(
        "{}{hours:02}:{m:02}:{s:02}",
        if negative { "-" } else { "" }
    );
    if let Some(us) = r.u32_le().filter(|us| *us != 0) {
        let _ = write!(out, ".{us:06}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(ty: u8, unsigned: bool, bytes: &[u8]) -> Option<String> {
        read_value(&mut Reader::new(bytes), ty, unsigned).map(|v| v.0)
    }

    #[test]
    fn binary_values_render_like_mysql() {
        assert_eq!(value(0x01, false, &[0xff]).as_deref(), Some("-1"));
        assert_eq!(value(0x01, true, &[0xff]).as_deref(), Some("255"));
        assert_eq!(
            value(0x08, false, &(-5i64).to_le_bytes()).as_deref(),
            Some("-5")
        );
        assert_eq!(
            value(0x05, false, &2.25f64.to_le_bytes()).as_deref(),
            Some("2.25")
        );
        assert_eq!(value(0xfd, false, b"\x03abc").as_deref(), Some("abc"));
        assert_eq!(
            value(0xfc, false, b"\x02\xff\x00").as_deref(),
            Some("\\xff00")
        );
        assert_eq!(
            value(0x0a, false, &[4, 0xe8, 0x07, 2, 29]).as_deref(),
            Some("2024-02-29")
        );
        let dt = [7, 0xe8, 0x07, 5, 6, 7, 8, 9];
        assert_eq!(
            value(0x0c, false, &dt).as_deref(),
            Some("2024-05-06 07:08:09")
        );
        let t = [8, 1, 1, 0, 0, 0, 2, 3, 4];
        assert_eq!(value(0x0b, false, &t).as_deref(), Some("-26:03:04"));
        assert_eq!(value(0x03, false, &[1, 2]), None);
        assert_eq!(value(0x42, false, &[1, 2, 3, 4]), None);
    }
}
