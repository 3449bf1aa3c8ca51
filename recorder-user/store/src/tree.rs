//! The Merkle tree's nodes on disk, one file per level (`tree/00.hashes` holds the leaves,
//! `tree/01.hashes` the nodes over two leaves, and so on): node i of level L is the 32 bytes at
//! 32·i of its level's file, written once both its children exist. A proof reads O(log n) of
//! them; the frontier in memory is one hash per level. The files are derived from the log:
//! written without fsync per batch (synced before a saved state names their size), and made
//! again from the segments if they are missing or short.
use std::{
    fs::{self, File, OpenOptions},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

use crate::integrity::{
    Hash,
    merkle::{Frontier, NodeId},
};

pub const TREE_DIR: &str = "tree";

pub struct TreeFiles {
    dir: PathBuf,
    levels: Vec<Level>,
    frontier: Frontier,
}

struct Level {
    /// Opened at the first flush for a level the tree just grew into.
    file: Option<File>,
    /// Bytes in the file, including what `pending` will add.
    len: u64,
    pending: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: holds {have} bytes, a tree of {size} records needs {need}")]
    Short {
        path: PathBuf,
        have: u64,
        need: u64,
        size: u64,
    },
}

fn level_path(dir: &Path, level: usize) -> PathBuf {
    dir.join(format!("{level:02}.hashes"))
}

impl TreeFiles {
    /// Opens the tree of the first `size` records, cutting off what lies beyond (a crash after
    /// the segment but before the state, or records cut from the log's torn end).
    pub fn open(data: &Path, size: u64) -> Result<Self, TreeError> {
        let dir = data.join(TREE_DIR);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TreeError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut levels = Vec::new();
        // One level per bit of the size, and the files above it (from a larger tree) removed.
        let top = if size == 0 { 0 } else { size.ilog2() as usize };
        for level in 0..=top {
            let path = level_path(&dir, level);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            let need = (size >> level) * 32;
            let have = file.metadata().map_err(io(&path))?.len();
            if have < need {
                return Err(TreeError::Short {
                    path,
                    have,
                    need,
                    size,
                });
            }
            if have > need {
                file.set_len(need).map_err(io(&path))?;
            }
            levels.push(Level {
                file: Some(file),
                len: need,
                pending: Vec::new(),
            });
        }
        let mut level = top + 1;
        while level_path(&dir, level).exists() {
            let path = level_path(&dir, level);
            fs::remove_file(&path).map_err(io(&path))?;
            level += 1;
        }
        let mut tree = Self {
            dir,
            levels,
            frontier: Frontier::default(),
        };
        let peaks = Frontier::peak_nodes(size)
            .into_iter()
            .map(|id| tree.node(id))
            .collect::<Result<Vec<_>, _>>()?;
        tree.frontier = Frontier::from_peaks(size, peaks).unwrap_or_default();
        Ok(tree)
    }

    /// Removes every level: the tree is made again from the log.
    pub fn remove(data: &Path) -> Result<(), TreeError> {
        let dir = data.join(TREE_DIR);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TreeError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Appends a leaf (written at the next `flush`).
    pub fn push(&mut self, leaf: Hash) {
        let mut completed = vec![(0u8, leaf)];
        self.frontier
            .push_with(leaf, |id, h| completed.push((id.level, *h)));
        for (level, hash) in completed {
            let level = usize::from(level);
            if level == self.levels.len() {
                self.levels.push(Level {
                    file: None,
                    len: 0,
                    pending: Vec::new(),
                });
            }
            self.levels[level].pending.extend_from_slice(&hash);
        }
    }

    /// Writes what was pushed; `sync` also makes it durable.
    pub fn flush(&mut self, sync: bool) -> Result<(), TreeError> {
        for (n, l) in self.levels.iter_mut().enumerate() {
            let io = |source| TreeError::Io {
                path: level_path(&self.dir, n),
                source,
            };
            let file = match &mut l.file {
                Some(f) => f,
                None => l.file.insert(
                    OpenOptions::new()
                        .create(true)
                        .truncate(true)
                        .read(true)
                        .write(true)
                        .open(level_path(&self.dir, n))
                        .map_err(io)?,
                ),
            };
            if !l.pending.is_empty() {
                file.write_all_at(&l.pending, l.len).map_err(io)?;
                l.len += l.pending.len() as u64;
                l.pending.clear();
            }
            if sync {
                file.sync_data().map_err(io)?;
            }
        }
        Ok(())
    }

    /// A stored node (flushed or not).
    pub fn node(&self, id: NodeId) -> Result<Hash, TreeError> {
        let level = usize::from(id.level);
        let path = level_path(&self.dir, level);
        let Some(l) = self.levels.get(level) else {
            return Err(TreeError::Short {
                path,
                have: 0,
                need: (id.index + 1) * 32,
                size: self.size(),
            });
        };
        let at = id.index * 32;
        let written = l.len;
        let mut hash = [0u8; 32];
        if at + 32 <= written
            && let Some(file) = &l.file
        {
            file.read_exact_at(&mut hash, at)
                .map_err(|source| TreeError::Io { path, source })?;
        } else {
            let from = (at - written) as usize;
            let Some(bytes) = l.pending.get(from..from + 32) else {
                return Err(TreeError::Short {
                    path,
                    have: written + l.pending.len() as u64,
                    need: at + 32,
                    size: self.size(),
                });
            };
            hash.copy_from_slice(bytes);
        }
        Ok(hash)
    }
}
