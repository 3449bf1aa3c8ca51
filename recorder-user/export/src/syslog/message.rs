//! One record as an RFC 5424 message, framed by octet counting (RFC 6587 3.4.1 over TCP, RFC
//! 5425 over TLS): `LEN SP <PRI>1 TIMESTAMP HOSTNAME recorder - KIND [recorder@32473 ...] JSON`.
//!
//! The structured data carries what a SIEM indexes on (event id, identity, session, kind, log
//! index, pod); the message is the record's JSON line, unchanged, so nothing is lost in the
//! mapping. 32473 is the enterprise number RFC 5612 reserves for examples and documentation:
//! receivers treat the element as opaque.
use std::io::Write as _;

use recorder_record::Kind;
use recorder_store::StoredRecord;

/// The SD-ID of the recorder's structured data element.
pub(crate) const SD_ID: &str = "recorder@32473";

/// Severity by kind: data gaps are notices, everything else informational.
fn severity(kind: Kind) -> u8 {
    match kind {
        Kind::Loss | Kind::Notice => 5,
        _ => 6,
    }
}

/// Appends the octet-counted frame of `rec` to `out`.
pub(crate) fn frame(rec: &StoredRecord, facility: u8, out: &mut Vec<u8>) {
    let mut msg = Vec::with_capacity(rec.line.len() + 256);
    let r = &rec.record;
    let kind = r.kind();
    // Writing to a Vec cannot fail.
    let _ = write!(
        msg,
        "<{}>1 {} {} recorder - {} [{SD_ID}",
        u16::from(facility) * 8 + u16::from(severity(kind)),
        timestamp(&r.time.to_string()),
        header_field(&rec.host, 255),
        kind.as_str(),
    );
    param(
        &mut msg,
        "event_id",
        &format!("{}/{}/{}", rec.host, rec.boot, rec.sequence),
    );
    param(&mut msg, "log_index", &rec.index.to_string());
    param(&mut msg, "identity", &r.identity);
    param(&mut msg, "session", &r.session);
    param(&mut msg, "kind", kind.as_str());
    if r.pid != 0 {
        param(&mut msg, "pid", &r.pid.to_string());
    }
    if let Some(w) = &r.workload {
        param(&mut msg, "k8s_namespace", &w.namespace);
        param(&mut msg, "k8s_pod", &w.pod_name);
    }
    msg.extend_from_slice(b"] ");
    msg.extend_from_slice(&rec.line);
    let _ = write!(out, "{} ", msg.len());
    out.extend_from_slice(&msg);
}

/// RFC 5424 allows six digits of fractional seconds; the record's time (UTC, `Z`) has nine.
fn timestamp(rfc3339: &str) -> String {
    match rfc3339.find('.') {
        Some(dot) => {
            let end = (dot + 7).min(rfc3339.len().saturating_sub(1));
            format!("{}Z", &rfc3339[..end])
        }
        None => rfc3339.to_string(),
    }
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if empty.
fn header_field(value: &str, max: usize) -> String {
    let s: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if s.is_empty() { "-".into() } else { s }
}

/// ` name="value"` with `"`, `\` and `]` escaped (RFC 5424 6.3.3).
fn param(out: &mut Vec<u8>, name: &str, value: &str) {
    let _ = write!(out, " {name}=\"");
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push(b'\\');
        }
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder_record::Record;

    fn stored(line: &str) -> StoredRecord {
        StoredRecord {
            index: 7,
            host: "web-1".into(),
            boot: "b1".into(),
            sequence: 3,
            prev: [0; 32],
            record: Record::parse(line.as_bytes()).unwrap(),
            line: line.as_bytes().to_vec(),
        }
    }

    #[test]
    fn frames_a_record_as_rfc5424() {
        let line = r#"{"kind":"shell","time":"2026-11-28T10:00:00.123456789Z","host":"web-1","identity":"claude","session":"s\"]1","pid":42,"exec_id":"b1-1","text":"ls"}"#;
        let mut out = Vec::new();
        frame(&stored(line), 16, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert_eq!(
            msg,
            format!(
                "<134>1 2026-11-28T10:00:00.123456Z web-1 recorder - shell [recorder@32473 \
                 event_id=\"web-1/b1/3\" log_index=\"7\" identity=\"claude\" session=\"s\\\"\\]1\" \
                 kind=\"shell\" pid=\"42\"] {line}"
            )
        );
    }

    #[test]
    fn header_fields_stay_printable() {
        assert_eq!(header_field("a b\u{e9}", 255), "a_b_");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(timestamp("2026-11-28T10:00:00Z"), "2026-11-28T10:00:00Z");
        assert_eq!(
            timestamp("2026-11-28T10:00:00.5Z"),
            "2026-11-28T10:00:00.5Z"
        );
    }
}
