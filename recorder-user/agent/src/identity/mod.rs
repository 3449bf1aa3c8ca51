//! Identities: names given to sets of cgroups. Resolves the configured cgroup paths and systemd
//! units to cgroup v2 ids (the inode numbers of the cgroup directories, which is what
//! `bpf_get_current_cgroup_id()` returns), and cgroup ids back to paths for the records. An
//! identity selected by pod has no cgroup of its own: the containers of its pods come and go
//! (`set_containers`), each with the workload its records carry.
pub(crate) mod cgroupfs;

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use recorder_kubernetes::{PodSelector, WatchedContainer};
use recorder_record::Workload;

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
    /// The cgroup of an identity given by path or unit; none for one selected by pod.
    pub cgroup: Option<Cgroup>,
}

/// A cgroup directory as the kernel knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cgroup {
    pub dir: PathBuf,
    /// The directory's inode number: what `bpf_get_current_ancestor_cgroup_id` returns.
    pub id: u64,
    /// Depth below the mount (the root is 0).
    pub level: u32,
}

/// A container of a selected pod: its cgroup, its identity, its workload.
#[derive(Debug, Clone)]
struct Container {
    identity: u32,
    cgroup: Cgroup,
    workload: Arc<Workload>,
}

/// All identities, indexed as the kernel sees them (identity index = position).
pub(crate) struct Identities {
    pub mount: PathBuf,
    pub list: Vec<Identity>,
    paths: CgroupPaths,
    containers: Vec<Container>,
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
            let cgroup = locate(&mount, &config.name, &spec)?
                .map(|dir| cgroup_of(&mount, dir, &config.name))
                .transpose()?;
            list.push(Identity {
                name: config.name.clone(),
                spec,
                cgroup,
            });
        }
        let paths = CgroupPaths::new(mount.clone());
        Ok(Self {
            mount,
            list,
            paths,
            containers: Vec::new(),
        })
    }

    /// The identities selected by pod, by identity index.
    pub(crate) fn pod_selectors(&self) -> Vec<(usize, PodSelector)> {
        self.list
            .iter()
            .enumerate()
            .filter_map(|(i, identity)| match &identity.spec {
                CgroupSpec::Kubernetes(selector) => Some((i, selector.clone())),
                _ => None,
            })
            .collect()
    }

    /// `(cgroup id, level, identity index)` for the kernel's watched map.
    pub(crate) fn watched(&self) -> Vec<(u64, u32, u32)> {
        let configured = self.list.iter().enumerate().filter_map(|(i, identity)| {
            let cgroup = identity.cgroup.as_ref()?;
            Some((cgroup.id, cgroup.level, i as u32))
        });
        let containers = self
            .containers
            .iter()
            .map(|c| (c.cgroup.id, c.cgroup.level, c.identity));
        configured.chain(containers).collect()
    }

    /// Replaces the selected pods' containers with `watched` (from the pod watch). Returns
    /// whether the watched cgroups changed, and the containers newly watched (cgroup directory,
    /// identity). A container whose cgroup is gone already is left out.
    pub(crate) fn set_containers(
        &mut self,
        watched: &[WatchedContainer],
    ) -> (bool, Vec<(PathBuf, u32)>) {
        let mut containers = Vec::with_capacity(watched.len());
        for container in watched {
            let name = self.name(container.identity as u32).to_string();
            let Ok(cgroup) = cgroup_of(&self.mount, container.cgroup.clone(), &name) else {
                continue;
            };
            containers.push(Container {
                identity: container.identity as u32,
                cgroup,
                workload: container.workload.clone(),
            });
        }
        let key = |c: &Container| (c.cgroup.id, c.identity);
        let mut before: Vec<_> = self.containers.iter().map(key).collect();
        let mut after: Vec<_> = containers.iter().map(key).collect();
        before.sort_unstable();
        after.sort_unstable();
        let mut added = Vec::new();
        for c in &containers {
            if !before.contains(&key(c)) {
                added.push((c.cgroup.dir.clone(), c.identity));
                tracing::info!(identity = %self.name(c.identity), pod = %c.workload.pod_name, namespace = %c.workload.namespace, container = %c.workload.container_name, cgroup = %c.cgroup.dir.display(), "watching a container");
            }
        }
        for c in &self.containers {
            if !after.contains(&key(c)) {
                tracing::info!(identity = %self.name(c.identity), pod = %c.workload.pod_name, namespace = %c.workload.namespace, container = %c.workload.container_name, "container no longer watched");
            }
        }
        // Workloads may change without the cgroups changing (a label copied onto records).
        self.containers = containers;
        (before != after, added)
    }

    /// The workload of a process in cgroup `id`: the container whose cgroup is it or holds it.
    pub(crate) fn workload(&mut self, id: u64) -> Option<Arc<Workload>> {
        if self.containers.is_empty() {
            return None;
        }
        if let Some(c) = self.containers.iter().find(|c| c.cgroup.id == id) {
            return Some(c.workload.clone());
        }
        // A cgroup below a container's (made inside the container).
        let path = self.paths.path(id);
        let inside = self.mount.join(path.trim_start_matches('/'));
        self.containers
            .iter()
            .find(|c| inside.starts_with(&c.cgroup.dir))
            .map(|c| c.workload.clone())
    }

    /// The identities' own cgroups (not the containers of selected pods): (directory, index).
    pub(crate) fn configured_dirs(&self) -> Vec<(PathBuf, u32)> {
        self.list
            .iter()
            .enumerate()
            .filter_map(|(i, identity)| Some((identity.cgroup.as_ref()?.dir.clone(), i as u32)))
            .collect()
    }

    /// The containers watched now.
    pub(crate) fn container_count(&self) -> usize {
        self.containers.len()
    }

    /// Re-resolves every identity (a restarted unit gets a new cgroup, hence a new id). Returns
    /// true when something changed. Identities that vanished keep their last id.
    pub(crate) fn refresh(&mut self) -> bool {
        let mut changed = false;
        for identity in &mut self.list {
            let Some(known) = &mut identity.cgroup else {
                continue; // selected by pod: the pod watch follows it
            };
            let Ok(Some(dir)) = locate(&self.mount, &identity.name, &identity.spec) else {
                continue;
            };
            let Ok(cgroup) = cgroup_of(&self.mount, dir, &identity.name) else {
                continue;
            };
            if cgroup.id != known.id {
                tracing::info!(identity = %identity.name, dir = %cgroup.dir.display(), "identity cgroup re-created; watching the new one");
                *known = cgroup;
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
                cgroup: Some(Cgroup {
                    dir: mount.join(name),
                    id: 0,
                    level: 1,
                }),
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
            containers: Vec::new(),
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

/// The cgroup directory of an identity given by path or unit (none for one selected by pod).
fn locate(mount: &Path, name: &str, spec: &CgroupSpec) -> Result<Option<PathBuf>, IdentityError> {
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
            Ok(Some(canonical))
        }
        CgroupSpec::Unit(unit) => {
            cgroupfs::find_dir_named(mount, unit)
                .map(Some)
                .ok_or_else(|| IdentityError::NoSuchUnit {
                    identity: name.to_string(),
                    unit: unit.clone(),
                    mount: shown,
                })
        }
        // Its cgroups are the containers of its pods, which come and go.
        CgroupSpec::Kubernetes(_) => Ok(None),
    }
}

fn cgroup_of(mount: &Path, dir: PathBuf, name: &str) -> Result<Cgroup, IdentityError> {
    let meta = std::fs::metadata(&dir).map_err(|_| IdentityError::NoSuchCgroup {
        identity: name.to_string(),
        path: dir.display().to_string(),
        mount: mount.display().to_string(),
    })?;
    let level = dir
        .strip_prefix(mount)
        .map_or(0, |rel| rel.components().count() as u32);
    Ok(Cgroup {
        dir,
        id: meta.ino(),
        level,
    })
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
