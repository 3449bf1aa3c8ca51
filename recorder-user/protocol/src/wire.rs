//! A bounds-checked reader over one message body. Every read returns `None` past the end, so
//! decoding untrusted bytes never indexes out of range.

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn i16_be(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }

    pub(crate) fn i32_be(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn u32_be(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u16_le(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A NUL-terminated string, without its NUL.
    pub(crate) fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.buf.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }

    /// MySQL length-encoded integer. `0xfb` (NULL in rows) and `0xff` are not integers.
    pub(crate) fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            b @ 0..=0xfa => Some(u64::from(b)),
            0xfc => self.u16_le().map(u64::from),
            0xfd => {
                let [a, b, c] = self.array::<3>()?;
                Some(u64::from(u32::from_le_bytes([a, b, c, 0])))
            }
            0xfe => self.u64_le(),
            _ => None,
        }
    }

    /// MySQL length-encoded string.
    pub(crate) fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.take(n)
    }
}

/// Lossy UTF-8 of a short protocol string (names, messages).
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
