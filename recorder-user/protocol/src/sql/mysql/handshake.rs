//! Connection phase: the server greeting (protocol 10) and the client's HandshakeResponse41 or
//! SSL request. Only capabilities, user and database are taken; the authentication data is
//! skipped over unread.

use super::{
    CLIENT_CONNECT_WITH_DB, CLIENT_MYSQL, CLIENT_PLUGIN_AUTH_LENENC_DATA, CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION, CLIENT_SSL,
};
use crate::sql::Malformed;
use crate::wire::{Reader, lossy};

/// What the client's first packet says.
#[derive(Debug)]
pub(crate) struct ClientHandshake {
    /// Client capabilities, MariaDB's extended ones in the upper 32 bits.
    pub(crate) caps: u64,
    /// A short SSL request: TLS follows on the raw stream.
    pub(crate) ssl_request: bool,
    pub(crate) user: Option<String>,
    pub(crate) database: Option<String>,
}

/// Server capabilities from a protocol-10 greeting payload.
pub(crate) fn greeting(payload: &[u8]) -> Result<u64, Malformed> {
    let mut r = Reader::new(payload);
    if r.u8() != Some(10) {
        return Err(Malformed::MysqlGreetingVersion);
    }
    let parsed = (|| {
        r.cstr()?;
        let (_conn, _scramble, _filler) = (r.u32_le()?, r.take(8)?, r.u8()?);
        let low = r.u16_le()?;
        let (_charset, _status, high) = (r.u8()?, r.u16_le()?, r.u16_le()?);
        let (_auth_len, _reserved, ext) = (r.u8()?, r.take(6)?, r.u32_le()?);
        let mut caps = u64::from(low) | (u64::from(high) << 16);
        // MariaDB clears CLIENT_MYSQL and puts its extended capabilities in the last reserved
        // bytes.
        if caps & CLIENT_MYSQL == 0 {
            caps |= u64::from(ext) << 32;
        }
        Some(caps)
    })();
    parsed.ok_or(Malformed::MysqlGreeting)
}

/// The client's HandshakeResponse41 or SSL request payload.
pub(crate) fn client_handshake(payload: &[u8]) -> Result<ClientHandshake, Malformed> {
    let mut r = Reader::new(payload);
    let (Some(caps), Some(_max_packet), Some(_charset), Some(filler)) =
        (r.u32_le(), r.u32_le(), r.u8(), r.take(23))
    else {
        return Err(Malformed::MysqlHandshake);
    };
    let mut caps = u64::from(caps);
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return Err(Malformed::MysqlPre41);
    }
    if caps & CLIENT_MYSQL == 0
        && let Some(&[a, b, c, d]) = filler.get(19..23)
    {
        caps |= u64::from(u32::from_le_bytes([a, b, c, d])) << 32;
    }
    let mut hs = ClientHandshake {
        caps,
        ssl_request: false,
        user: None,
        database: None,
    };
    if caps & CLIENT_SSL != 0 && r.is_empty() {
        hs.ssl_request = true;
        return Ok(hs);
    }
    hs.user = r.cstr().map(lossy);
    let auth_skipped = if caps & CLIENT_PLUGIN_AUTH_LENENC_DATA != 0 {
        r.lenenc_bytes().is_some()
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        r.u8().and_then(|n| r.take(usize::from(n))).is_some()
    } else {
        r.cstr().is_some()
    };
    if auth_skipped && caps & CLIENT_CONNECT_WITH_DB != 0 {
        hs.database = r.cstr().map(lossy).filter(|d| !d.is_empty());
    }
    Ok(hs)
}

/// Whether `first` (the first server bytes of a connection) is a MySQL protocol-10 greeting.
pub fn looks_like_greeting(first: &[u8]) -> bool {
    let mut r = Reader::new(first);
    let (Some(&[a, b, c]), Some(0), Some(10)) = (r.take(3), r.u8(), r.u8()) else {
        return false;
    };
    let len = u32::from_le_bytes([a, b, c, 0]);
    let version: Vec<u8> = r
        .rest()
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .take(64)
        .collect();
    (20..=1024).contains(&len)
        && !version.is_empty()
        && version.iter().all(|b| (0x20..0x7f).contains(b))
}

/// Whether `first` (client bytes) is a HandshakeResponse41 or SSL request: the start of the
/// plaintext of a TLS connection, or a connection whose greeting was missed.
pub fn looks_like_handshake_response(first: &[u8]) -> bool {
    let mut r = Reader::new(first);
    let (Some(&[a, b, c]), Some(seq)) = (r.take(3), r.u8()) else {
        return false;
    };
    let len = u32::from_le_bytes([a, b, c, 0]);
    (1..=3).contains(&seq) && (32..=65_536).contains(&len) && is_client_handshake(r.rest())
}

/// Whether a client payload has the shape of HandshakeResponse41: protocol 41 capability and
/// a zero filler (MariaDB uses only its last 4 bytes).
pub(crate) fn is_client_handshake(payload: &[u8]) -> bool {
    let mut r = Reader::new(payload);
    let (Some(caps), Some(_max), Some(_charset), Some(filler)) =
        (r.u32_le(), r.u32_le(), r.u8(), r.take(23))
    else {
        return false;
    };
    u64::from(caps) & CLIENT_PROTOCOL_41 != 0 && filler.iter().take(19).all(|&b| b == 0)
}
