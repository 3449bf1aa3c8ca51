//! Identities: names given to sets of cgroups. Resolves the configured cgroup paths and systemd
//! units to cgroup v2 ids (the inode numbers of the cgroup directories, which is what
//! `bpf_get_current_cgroup_id()` returns), and cgroup ids back to paths for the records.
pub(crate) mod cgroupfs;

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::config::{CgroupSpec, IdentityConfig};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Cgroupfs(#[from] cgroupfs::CgroupfsError),
    #[error(
        "identity {identity:?}: cgroup {path} does not exist (the cgroup v2 hierarchy is mounted at {mount})"
    )]
    NoSuchCgroup {
        identity: String,
        path: String,
        mount: String,
    },
    #[error(
        "identity {identity:?}: {path} is not inside the cgroup v2 hierarchy mounted at {mount}"
    )]
    OutsideHierarchy {
        identity: String,
        path: String,
        mount: String,
    },
    #[error(
        "identity {identity:?}: systemd unit {unit} has no cgroup under {mount} (is the unit running?)"
    )]
    NoSuchUnit {
        identity: String,
        unit: String,
        mount: String,
    },
    #[error("too many identities ({0}; at most {max})", max = recorder_common::MAX_IDENTITIES)]
    TooMany(usize),
}

/// One configured identity with its resolved cgroup.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    pub spec: CgroupSpec,
    /// Resolved directory, id and depth below the mount (root = 0).
    pub dir: PathBuf,
    pub cgroup_id: u64,
    pub level: u32,
}

/// All identities, indexed as the kernel sees them (identity index = position).
pub(crate) struct Identities {
    pub mount: PathBuf,
    pub list: Vec<Identity>,
    paths: CgroupPaths,
}

impl Identities {
    /// Resolves every configured identity; any that cannot be resolved is an error.
    pub(crate) fn resolve(configs: &[IdentityConfig]) -> Result<Self, IdentityError> {
        if configs.len() > recorder_common::MAX_IDENTITIES as usize {
            return Err(IdentityError::TooMany(configs.len()));
        }
        let mount = cgroupfs::v2_mount()?;
        let mut list = Vec::new();
        for config in configs {
            // `spec()` was checked when the configuration was read.
            let spec = config.spec().map_err(|_| IdentityError::NoSuchCgroup {
                identity: config.name.clone(),
                path: String::new(),
                mount: mount.display().to_string(),
            })?;
            let dir = locate(&mount, &config.name, &spec)?;
            let (cgroup_id, level) = id_and_level(&mount, &dir, &config.name)?;
            list.push(Identity {
                name: config.name.clone(),
                spec,
                dir,
                cgroup_id,
                level,
            });
        }
        let paths = CgroupPaths::new(mount.clone());
        Ok(Self { mount, list, paths })
    }

    /// `(cgroup id, level, identity index)` for the kernel's watched map.
    pub(crate) fn watched(&self) -> Vec<(u64, u32, u32)> {
        self.list
            .iter()
            .enumerate()
            .map(|(i, id)| (id.cgroup_id, id.level, i as u32))
            .collect()
    }

    /// Re-resolves every identity (a restarted unit gets a new cgroup, hence a new id). Returns
    /// true when something changed. Identities that vanished keep their last id.
    pub(crate) fn refresh(&mut self) -> bool {
        let mut changed = false;
        for identity in &mut self.list {
            let Ok(dir) = locate(&self.mount, &identity.name, &identity.spec) else {
                continue;
            };
            let Ok((id, level)) = id_and_level(&self.mount, &dir, &identity.name) else {
                continue;
            };
            if id != identity.cgroup_id {
                tracing::info!(identity = %identity.name, dir = %dir.display(), "identity cgroup re-created; watching the new one");
                *identity = Identity {
                    dir,
                    cgroup_id: id,
                    level,
                    ..identity.clone()
                };
                changed = true;
            }
        }
        changed
    }

    /// Identities with fixed names and cgroup paths, touching no cgroup file system (tests).
    #[cfg(test)]
    pub(crate) fn fixed(names: &[&str], paths: &[(u64, &str)]) -> Self {
        let mount = PathBuf::from("/sys/fs/cgroup");
        let list = names
            .iter()
            .map(|name| Identity {
                name: (*name).to_string(),
                spec: CgroupSpec::Path((*name).to_string()),
                dir: mount.join(name),
                cgroup_id: 0,
                level: 1,
            })
            .collect();
        let mut paths_by_id = CgroupPaths::new(mount.clone());
        paths_by_id.known = paths
            .iter()
            .map(|(id, p)| (*id, (*p).to_string()))
            .collect();
        paths_by_id.last_walk = Some(Instant::now() + Duration::from_hours(1));
        Self {
            mount,
            list,
            paths: paths_by_id,
        }
    }

    pub(crate) fn name(&self, index: u32) -> &str {
        self.list
            .get(index as usize)
            .map_or("unknown", |i| i.name.as_str())
    }

    /// The cgroup path (as in /proc/PID/cgroup: `/a/b`, relative to the v2 mount) of an id.
    pub(crate) fn cgroup_path(&mut self, id: u64) -> String {
        self.paths.path(id)
    }
}

fn locate(mount: &Path, name: &str, spec: &CgroupSpec) -> Result<PathBuf, IdentityError> {
    let shown = mount.display().to_string();
    match spec {
        CgroupSpec::Path(path) => {
            let p = Path::new(path);
            let dir = if p.is_absolute() {
                p.to_path_buf()
            } else {
                mount.join(p)
            };
            let canonical = dir
                .canonicalize()
                .map_err(|_| IdentityError::NoSuchCgroup {
                    identity: name.to_string(),
                    path: dir.display().to_string(),
                    mount: shown.clone(),
                })?;
            if !canonical.starts_with(mount) || !canonical.is_dir() {
                return Err(IdentityError::OutsideHierarchy {
                    identity: name.to_string(),
                    path: dir.display().to_string(),
                    mount: shown,
                });
            }
            Ok(canonical)
        }
        CgroupSpec::Unit(unit) => {
            cgroupfs::find_dir_named(mount, unit).ok_or_else(|| IdentityError::NoSuchUnit {
                identity: name.to_string(),
                unit: unit.clone(),
                mount: shown,
            })
        }
    }
}

fn id_and_level(mount: &Path, dir: &Path, name: &str) -> Result<(u64, u32), IdentityError> {
    let meta = std::fs::metadata(dir).map_err(|_| IdentityError::NoSuchCgroup {
        identity: name.to_string(),
        path: dir.display().to_string(),
        mount: mount.display().to_string(),
    })?;
    let level = dir
        .strip_prefix(mount)
        .map_or(0, |rel| rel.components().count() as u32);
    Ok((meta.ino(), level))
}

/// cgroup id -> path, from walks of the hierarchy (re-walked on a miss, at most twice a second).
struct CgroupPaths {
    mount: PathBuf,
    known: HashMap<u64, String>,
    last_walk: Option<Instant>,
}

impl CgroupPaths {
    fn new(mount: PathBuf) -> Self {
        Self {
            mount,
            known: HashMap::new(),
            last_walk: None,
        }
    }

    fn path(&mut self, id: u64) -> String {
        if let Some(p) = self.known.get(&id) {
            return p.clone();
        }
        let stale = self
            .last_walk
            .is_none_or(|t| t.elapsed() > Duration::from_millis(500));
        if stale {
            self.known = cgroupfs::walk_ids(&self.mount);
            self.last_walk = Some(Instant::now());
        }
        self.known
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("cgroup-id:{id}"))
    }
}
