//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): just enough to find the byte
//! offset of a struct member, following typedef/const/volatile and descending into anonymous
//! struct/union members. The eBPF programs get every kernel offset from here at load time.
use std::{collections::HashMap, path::Path};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read the kernel BTF at {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF)"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the kernel BTF at {path} is malformed: {why}")]
    Malformed { path: String, why: String },
    #[error("the kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("the kernel BTF has no member {member} in struct {strukt}")]
    NoMember { strukt: String, member: String },
    #[error("member {strukt}.{member} is a bitfield; only whole members can be read")]
    Bitfield { strukt: String, member: String },
}

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Debug, Clone)]
struct Member {
    name: String,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

#[derive(Debug, Clone)]
struct Type {
    kind: u32,
    name: String,
    /// For modifiers and typedefs: the referenced type.
    target: u32,
    members: Vec<Member>,
}

/// Parsed BTF types, indexed by type id (id 0 is `void`).
pub(super) struct Btf {
    types: Vec<Type>,
    structs: HashMap<String, u32>,
}

impl Btf {
    /// Reads the running kernel's BTF.
    #[cfg(test)]
    pub(super) fn from_kernel() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub(super) fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data).map_err(|why| BtfError::Malformed {
            path: path.display().to_string(),
            why,
        })
    }

    /// Parses a raw BTF blob (little-endian, as on this architecture).
    pub(super) fn parse(data: &[u8]) -> Result<Self, String> {
        let mut r = Reader { data, pos: 0 };
        let magic = r.u16()?;
        if magic != 0xeb9f {
            return Err(format!("bad magic {magic:#x}"));
        }
        let _version = r.u8()?;
        let _flags = r.u8()?;
        let hdr_len = r.u32()? as usize;
        let type_off = r.u32()? as usize;
        let type_len = r.u32()? as usize;
        let str_off = r.u32()? as usize;
        let str_len = r.u32()? as usize;
        let section = |off: usize, len: usize| -> Result<&[u8], String> {
            let start = hdr_len.checked_add(off).ok_or("section offset overflows")?;
            let end = start.checked_add(len).ok_or("section length overflows")?;
            data.get(start..end)
                .ok_or_else(|| "section out of bounds".to_string())
        };
        let types_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;
        let name_at = |off: u32| -> String {
            let tail = strings.get(off as usize..).unwrap_or_default();
            let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
            String::from_utf8_lossy(&tail[..end]).into_owned()
        };

        let mut types = vec![Type {
            kind: 0,
            name: String::new(),
            target: 0,
            members: vec![],
        }];
        let mut r = Reader {
            data: types_data,
            pos: 0,
        };
        while r.pos < types_data.len() {
            let name_off = r.u32()?;
            let info = r.u32()?;
            let size_or_type = r.u32()?;
            let vlen = info & 0xffff;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31;
            let mut members = Vec::new();
            match kind {
                1 | 14 | 17 => r.skip(4)?, // INT, VAR, DECL_TAG
                3 => r.skip(12)?,          // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let m_name = r.u32()?;
                        let m_type = r.u32()?;
                        let m_off = r.u32()?;
                        let (bit_offset, bitfield_size) = if kind_flag == 1 {
                            (m_off & 0xff_ffff, m_off >> 24)
                        } else {
                            (m_off, 0)
                        };
                        members.push(Member {
                            name: name_at(m_name),
                            type_id: m_type,
                            bit_offset,
                            bitfield_size,
                        });
                    }
                }
                6 | 13 => r.skip(8 * vlen as usize)?, // ENUM, FUNC_PROTO
                15 | 19 => r.skip(12 * vlen as usize)?, // DATASEC, ENUM64
                2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => {}
                other => return Err(format!("unknown BTF kind {other} at type {}", types.len())),
            }
            types.push(Type {
                kind,
                name: name_at(name_off),
                target: size_or_type,
                members,
            });
        }
        let mut structs = HashMap::new();
        for (id, t) in types.iter().enumerate() {
            // The first complete definition wins (forward declarations are a different kind).
            if t.kind == KIND_STRUCT && !t.name.is_empty() {
                structs.entry(t.name.clone()).or_insert(id as u32);
            }
        }
        Ok(Self { types, structs })
    }

    /// Byte offset of `member` in `struct strukt`, looking inside anonymous members.
    pub(super) fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.to_string()))?;
        let no_member = || BtfError::NoMember {
            strukt: strukt.to_string(),
            member: member.to_string(),
        };
        let (bits, bitfield) = self.find(id, member, 0).ok_or_else(no_member)?;
        if bitfield != 0 || bits % 8 != 0 {
            return Err(BtfError::Bitfield {
                strukt: strukt.to_string(),
                member: member.to_string(),
            });
        }
        Ok(bits / 8)
    }

    /// Depth-first search through named and anonymous members; returns (bit offset, bitfield size).
    fn find(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        let t = self.types.get(id as usize)?;
        for m in &t.members {
            if m.name == member {
                return Some((m.bit_offset, m.bitfield_size));
            }
        }
        for m in t.members.iter().filter(|m| m.name.is_empty()) {
            let inner = self.resolve(m.type_id);
            if let Some((bits, size)) = self.find(inner, member, depth + 1) {
                return Some((m.bit_offset + bits, size));
            }
        }
        None
    }

    /// Follows typedefs and type modifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.target;
                }
                _ => break,
            }
        }
        id
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self
            .data
            .get(self.pos..self.pos + N)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        self.pos += N;
        Ok(bytes.try_into().unwrap_or([0; N]))
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.pos + n > self.data.len() {
            return Err(format!("truncated at byte {}", self.pos));
        }
        self.pos += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob by hand: a struct with a named member, an anonymous union holding the
    /// target through a typedef, and a bitfield.
    fn blob() -> Vec<u8> {
        let strings = b"\0outer\0a\0inner_t\0b\0bits\0";
        let s = |name: &str| {
            strings
                .windows(name.len() + 1)
                .position(|w| &w[..name.len()] == name.as_bytes() && w[name.len()] == 0)
                .unwrap() as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                types.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int
        push(&[0, 1 << 24, 4, 32]);
        // 2: union { int b; } (anonymous), size 4
        push(&[0, (KIND_UNION << 24) | 1, 4, s("b"), 1, 0]);
        // 3: typedef inner_t -> 2
        push(&[s("inner_t"), KIND_TYPEDEF << 24, 2]);
        // 4: struct outer { int a; inner_t (anon); int bits:3 } with kind_flag for bitfields
        push(&[
            s("outer"),
            (1 << 31) | (KIND_STRUCT << 24) | 3,
            16,
            s("a"),
            1,
            0,
            0,
            3,
            64,
            s("bits"),
            1,
            // A 3-bit field at bit offset 96 (0x60).
            (3 << 24) | 0x60,
        ]);
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&24u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_direct_anonymous_and_rejects_bitfields() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 8);
        assert!(matches!(
            btf.member_offset("outer", "bits"),
            Err(BtfError::Bitfield { .. })
        ));
        assert!(matches!(
            btf.member_offset("outer", "zz"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", "a"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        assert!(Btf::parse(b"").is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut b = blob();
        b.truncate(40);
        assert!(Btf::parse(&b).is_err());
    }

    /// The running kernel's BTF has the members the programs need, inside anonymous members
    /// where this kernel puts them (`mm_struct.arg_start`).
    #[test]
    fn reads_the_running_kernel() {
        let btf = Btf::from_kernel().expect("this machine has /sys/kernel/btf/vmlinux");
        let arg_start = btf.member_offset("mm_struct", "arg_start").unwrap();
        let arg_end = btf.member_offset("mm_struct", "arg_end").unwrap();
        assert_eq!(arg_end, arg_start + 8);
        assert!(btf.member_offset("task_struct", "tgid").unwrap() > 0);
        assert!(btf.member_offset("inode", "i_nlink").is_ok());
    }
}
