//! An exporter's durable cursor: the log index it has delivered up to (every record below
//! `next` reached the receiver or was filtered out), and for a file exporter the length of its
//! open file at that point. Written to a temporary file, synced and renamed, so a crash leaves
//! the old cursor or the new one, never a torn one.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The first log index not yet delivered.
    pub next: u64,
    /// The file exporter's open file's length when `next` was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_offset: Option<u64>,
}

pub struct Cursor {
    path: PathBuf,
    pub position: Position,
}

impl Cursor {
    /// The cursor of exporter `name` under `dir` (created), or a new one at the log's start.
    pub fn open(dir: &Path, name: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.cursor.json"));
        let position = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{}: not a cursor ({e}); remove it to export from the start of the log",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Position::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self { path, position })
    }

    /// Makes `position` durable.
    pub fn save(&mut self, position: Position) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        // Writing a struct of two numbers cannot fail.
        f.write_all(&serde_json::to_vec(&position).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        self.position = position;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_names_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cursor::open(dir.path(), "siem").unwrap();
        assert_eq!(c.position, Position::default());
        let p = Position {
            next: 42,
            file_offset: Some(7),
        };
        c.save(p).unwrap();
        assert_eq!(Cursor::open(dir.path(), "siem").unwrap().position, p);
        std::fs::write(dir.path().join("siem.cursor.json"), b"{\"next\":").unwrap();
        let err = Cursor::open(dir.path(), "siem").err().unwrap();
        assert!(err.contains("not a cursor"), "{err}");
    }
}
