//! Evidence bundles: one HTML file that holds a session's evidence (records, inclusion proofs,
//! the signed checkpoint, the collector's public key) and the console's own viewer, which
//! checks all of it in the browser (WebCrypto) when the file is opened, offline, then shows the
//! session as the console does. `recorder verify --bundle` reads the same file and runs the
//! same checks in Rust.
use recorder_session::Evidence;

use crate::assets::{SESSION_JS, STYLE, VERIFY_JS};

/// The element that holds the evidence (JSON).
const OPEN: &str = r#"<script type="application/json" id="evidence">"#;
const CLOSE: &str = "</script>";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The bundle of `evidence`, as an HTML page.
pub fn write(evidence: &Evidence) -> Result<String, String> {
    let json = serde_json::to_string(evidence).map_err(|e| e.to_string())?;
    // `<` only occurs inside JSON strings, where `\u003c` means the same: the page's parser
    // can then never see the element end (or a comment start) inside the data.
    let json = json.replace('<', "\\u003c");
    let title = escape(&format!(
        "evidence: session {} on {}",
        evidence.session.session, evidence.session.host
    ));
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n\
         <header class=\"top\"><span class=\"brand\">recorder</span>\
         <span class=\"where\">{title}</span></header>\n\
         <main id=\"session\" data-bundle=\"1\"><p class=\"loading\">Checking the evidence…</p></main>\n\
         {OPEN}{json}{CLOSE}\n<script>\n{VERIFY_JS}\n</script>\n<script>\n{SESSION_JS}\n</script>\n\
         </body>\n</html>\n"
    ))
}

/// The evidence a bundle holds.
pub fn read(html: &str) -> Result<Evidence, String> {
    let start = html
        .find(OPEN)
        .ok_or("not an evidence bundle: no evidence element")?
        + OPEN.len();
    let len = html[start..]
        .find(CLOSE)
        .ok_or("the evidence element is not closed: the file is cut")?;
    serde_json::from_str(&html[start..start + len])
        .map_err(|e| format!("the evidence is not readable: {e}"))
}

#[cfg(test)]
mod tests {
    use recorder_session::{CheckpointView, EvidenceRecord, FORMAT, SessionView, Verdict};

    use super::*;

    #[test]
    fn a_bundle_gives_back_its_evidence_even_with_markup_in_a_record() {
        let line = r#"{"kind":"shell","time":"2026-12-05T10:00:00.000000000Z","host":"h","identity":"a","session":"s","pid":1,"exec_id":"e","text":"echo '</script><script>alert(1)</script><!--'"}"#;
        let evidence = Evidence {
            format: FORMAT.into(),
            made: "2026-12-05T10:00:01Z".into(),
            session: SessionView {
                host: "h".into(),
                session: "s".into(),
                identity: "a".into(),
                first_time: String::new(),
                last_time: String::new(),
                namespace: String::new(),
                pod: "<b>".into(),
            },
            verdict: Verdict::default(),
            records: vec![EvidenceRecord {
                index: 0,
                host: "h".into(),
                boot: "b".into(),
                sequence: 1,
                prev: "00".repeat(32),
                line: line.into(),
                proof: Some(Vec::new()),
            }],
            context: Vec::new(),
            checkpoint: Some(CheckpointView {
                tree_size: 1,
                root: "11".repeat(32),
                time: "t".into(),
                signature: "22".repeat(64),
            }),
            public_key: "33".repeat(32),
        };
        let html = write(&evidence).unwrap();
        // The record's markup never appears as markup in the page.
        assert!(!html.contains("</script><script>alert"));
        assert_eq!(html.matches(OPEN).count(), 1);
        assert_eq!(read(&html).unwrap(), evidence);
        assert!(
            read("<html></html>")
                .unwrap_err()
                .contains("not an evidence bundle")
        );
        let cut = &html[..html.find(OPEN).unwrap() + OPEN.len() + 10];
        assert!(read(cut).unwrap_err().contains("cut"));
    }
}
