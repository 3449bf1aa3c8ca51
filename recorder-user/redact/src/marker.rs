//! The marker a secret becomes: linkable, not reversible.
use ring::hmac;

/// HMAC-SHA256 under the deployment's key.
pub struct Marker {
    key: hmac::Key,
}

/// Hex digits of the keyed hash kept in a marker: 48 bits, enough to tell secrets apart in one
/// deployment, too few to confirm a guess offline without the key anyway.
const HEX_DIGITS: usize = 12;

impl Marker {
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// `[redacted:0123456789ab]`
    pub fn of(&self, secret: &str) -> String {
        let tag = hmac::sign(&self.key, secret.as_bytes());
        let mut out = String::with_capacity(11 + HEX_DIGITS);
        out.push_str("[redacted:");
        for b in &tag.as_ref()[..HEX_DIGITS / 2] {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        out.push(']');
        out
    }

    /// Whether `text` is already a marker (redacting it again would change it).
    pub fn is_marker(text: &str) -> bool {
        text.len() == 11 + HEX_DIGITS
            && text.starts_with("[redacted:")
            && text.ends_with(']')
            && text[10..10 + HEX_DIGITS]
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
    }
}
