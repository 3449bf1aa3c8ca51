//! Spool frames: what the agent writes before anything leaves the host.
//!
//! ```text
//! segment = "RECSPL01" | frame*          (file name: the first sequence it holds, 20 digits)
//! frame   = u32 LE line length | u64 LE sequence | line | u32 LE CRC-32 of the 12 header bytes and the line
//! ```

use recorder_record::MAX_LINE;

pub const HEADER: &[u8; 8] = b"RECSPL01";
pub const OVERHEAD: usize = 4 + 8 + 4;

pub fn encode(sequence: u64, line: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(line.len() as u32).to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(line);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("cut short ({have} of {need} bytes)")]
    Truncated { have: usize, need: usize },
    #[error("impossible line length {0}")]
    BadLength(usize),
    #[error("checksum mismatch")]
    Checksum,
}

/// Decodes the frame at the start of `buf`: (sequence, line, frame length).
pub fn decode(buf: &[u8]) -> Result<(u64, &[u8], usize), DecodeError> {
    if buf.len() < 12 {
        return Err(DecodeError::Truncated {
            have: buf.len(),
            need: 12,
        });
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_LINE {
        return Err(DecodeError::BadLength(len));
    }
    let total = OVERHEAD + len;
    if buf.len() < total {
        return Err(DecodeError::Truncated {
            have: buf.len(),
            need: total,
        });
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&buf[4..12]);
    let body = &buf[..12 + len];
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[12 + len..total]);
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(DecodeError::Checksum);
    }
    Ok((u64::from_le_bytes(seq), &buf[12..12 + len], total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let mut buf = Vec::new();
        encode(9, b"{\"kind\":\"exec\"}", &mut buf);
        encode(10, b"", &mut buf);
        let (seq, line, n) = decode(&buf).unwrap();
        assert_eq!((seq, line), (9, &b"{\"kind\":\"exec\"}"[..]));
        let (seq, line, m) = decode(&buf[n..]).unwrap();
        assert_eq!((seq, line, n + m), (10, &b""[..], buf.len()));
        for cut in 0..n {
            assert!(
                matches!(decode(&buf[..cut]), Err(DecodeError::Truncated { .. })),
                "cut {cut}"
            );
        }
        for i in 0..n {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                decode(&bad).is_err() || decode(&bad).unwrap().0 != 9,
                "flip at {i}"
            );
        }
    }
}
