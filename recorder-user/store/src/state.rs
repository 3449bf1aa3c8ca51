//! The store's saved state (`index/state.json`), written after each checkpoint: the tree size
//! and where the log ended then, each stream's end and each session's summary. A start reads
//! it and then only the records appended after it, instead of the whole log. Written to a
//! temporary file and renamed, so it is whole or absent; a missing or unreadable one means a
//! full read of the log.
use std::{collections::HashMap, fs, io::Write as _, path::Path};

use recorder_record::hex;
use serde::{Deserialize, Serialize};

use crate::{
    index::{HostGap, SessionSummary},
    record_index::INDEX_DIR,
    scan::StreamState,
};

const STATE_FILE: &str = "state.json";
// 2: sessions count failed actions and gaps; host-wide gaps are kept.
const VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    pub tree_size: u64,
    /// Where the log ended: the segment and its length.
    pub end_segment: u32,
    pub end_offset: u64,
    pub streams: Vec<SavedStream>,
    pub sessions: Vec<SessionSummary>,
    pub host_gaps: Vec<HostGap>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedStream {
    pub host: String,
    pub boot: String,
    pub last_sequence: Option<u64>,
    /// Hex.
    pub last_leaf: String,
    pub records: u64,
}

impl SavedState {
    pub fn streams(&self) -> Option<HashMap<(String, String), StreamState>> {
        self.streams
            .iter()
            .map(|s| {
                let leaf = hex::decode(&s.last_leaf)?.try_into().ok()?;
                Some((
                    (s.host.clone(), s.boot.clone()),
                    StreamState {
                        last_sequence: s.last_sequence,
                        last_leaf: leaf,
                        records: s.records,
                    },
                ))
            })
            .collect()
    }

    pub fn saved_streams(streams: &HashMap<(String, String), StreamState>) -> Vec<SavedStream> {
        streams
            .iter()
            .map(|((host, boot), s)| SavedStream {
                host: host.clone(),
                boot: boot.clone(),
                last_sequence: s.last_sequence,
                last_leaf: hex::encode(&s.last_leaf),
                records: s.records,
            })
            .collect()
    }

    /// The saved state, if there is a readable one of this version.
    pub fn load(data: &Path) -> Option<Self> {
        let path = data.join(INDEX_DIR).join(STATE_FILE);
        let text = fs::read(&path).ok()?;
        match serde_json::from_slice::<Self>(&text) {
            Ok(s) if s.version == VERSION => Some(s),
            Ok(s) => {
                tracing::warn!(
                    version = s.version,
                    "saved state of another version; reading the whole log"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "unreadable saved state; reading the whole log");
                None
            }
        }
    }

    pub fn save(&self, data: &Path) -> std::io::Result<()> {
        let dir = data.join(INDEX_DIR);
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(STATE_FILE))?;
        fs::File::open(&dir)?.sync_all()
    }

    pub fn version() -> u32 {
        VERSION
    }
}
