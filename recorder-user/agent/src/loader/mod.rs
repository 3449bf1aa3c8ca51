//! Loading the eBPF object: kernel offsets from BTF, map sizes, attach the tracepoints, and the
//! typed handles to the maps the agent writes (watched cgroups) and reads (loss counters).
use std::{num::NonZeroU32, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, RingBuf},
    programs::{
        BtfTracePoint, TracePoint, UProbe,
        uprobe::{UProbeAttachLocation, UProbeLinkId, UProbeScope},
    },
};
use recorder_common::{KernelOffsets, LOSS_KINDS, MAX_IDENTITIES, ProcInfo, Settings, names};

use crate::{
    config::SocketCaptureSetting,
    probes::{gobin::GoTlsFunctions, openssl_sites::OpenSslEntry, reaper::Reaper},
};

/// Set to 1, the data programs return at once: `cargo xtask bench --floor` measures what the
/// hooks cost with nothing done in them.
const FLOOR_ENV: &str = "RECORDER_BENCH_FLOOR";

/// Where tracefs is (mounted there by the agent when the system did not).
const TRACEFS: &str = "/sys/kernel/tracing";

mod btf;

use btf::{Btf, BtfError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this recorder was built without its eBPF programs (RECORDER_SKIP_EBPF); rebuild with \
         `cargo xtask build`"
    )]
    NoObject,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(
        "loading the eBPF object failed: {0} (the agent needs root: CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN)"
    )]
    Ebpf(#[from] aya::EbpfError),
    #[error("starting the probe reaper thread: {0}")]
    Thread(std::io::Error),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("reading the kernel BTF for aya: {0}")]
    AyaBtf(#[from] aya::BtfError),
    #[error("counting CPUs: {0}")]
    Cpus(String),
    #[error("mounting tracefs at /sys/kernel/tracing failed: {0}")]
    Tracefs(std::io::Error),
}

/// How socket data is captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketCapture {
    /// `sock_send_length`/`sock_recv_length` (Linux 6.3 and later): processes that are not
    /// watched pay one map lookup per socket operation, and nothing per system call.
    Tracepoints,
    /// System-call tracepoints: every task of the host takes the slow system-call path.
    Syscalls,
}

impl SocketCapture {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SocketCapture::Tracepoints => "socket_tracepoints",
            SocketCapture::Syscalls => "syscall_tracepoints",
        }
    }
}

/// What the running kernel lets the agent capture with, chosen at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CaptureMode {
    pub(crate) sockets: SocketCapture,
    /// Libraries being mapped are seen at `mmap:vm_unmapped_area` (else at `sys_enter_mmap`).
    pub(crate) mappings_off_syscalls: bool,
}

impl CaptureMode {
    /// The socket tracepoints where the kernel has them (and the configuration allows them);
    /// the system-call tracepoints otherwise, said in the log.
    fn choose(setting: SocketCaptureSetting) -> Self {
        let events = Path::new(TRACEFS).join("events");
        let has = |category: &str, name: &str| events.join(category).join(name).is_dir();
        let sockets_available = names::SOCKET_TRACEPOINTS
            .iter()
            .all(|name| has("sock", name));
        let (mmap_category, mmap_name) = names::MAPPING_TRACEPOINT;
        let mappings_available = has(mmap_category, mmap_name);
        let sockets = match setting {
            SocketCaptureSetting::Auto if sockets_available => SocketCapture::Tracepoints,
            SocketCaptureSetting::Auto => {
                tracing::warn!(
                    "this kernel has no sock:sock_send_length/sock_recv_length tracepoints \
                     (Linux 6.3 and later have them): capturing socket data at the system-call \
                     tracepoints, which slows every system call of every process on the host"
                );
                SocketCapture::Syscalls
            }
            SocketCaptureSetting::Syscalls => {
                tracing::warn!(
                    "socket_capture = \"syscalls\": capturing socket data at the system-call \
                     tracepoints, which slows every system call of every process on the host"
                );
                SocketCapture::Syscalls
            }
        };
        if sockets == SocketCapture::Tracepoints && !mappings_available {
            tracing::warn!(
                "this kernel has no mmap:vm_unmapped_area tracepoint: libraries being mapped are \
                 seen at sys_enter_mmap, which slows every system call of every process"
            );
        }
        Self {
            sockets,
            // The system-call capture has its own program for mappings.
            mappings_off_syscalls: mappings_available && sockets == SocketCapture::Tracepoints,
        }
    }
}

/// The loaded, attached programs and the maps the agent uses.
pub(crate) struct Probes {
    /// How socket data and library mappings are captured on this kernel.
    pub(crate) capture: CaptureMode,
    ebpf: Ebpf,
    watched: HashMap<MapData, u64, u32>,
    procs: HashMap<MapData, u32, ProcInfo>,
    loss: Array<MapData, u64>,
    settings: Array<MapData, Settings>,
    tls_hooked: HashMap<MapData, u32, u32>,
    /// What the programs stop for approval, per identity.
    holds: Array<MapData, u32>,
    /// Closes detached links off the event loop, when attaching is quiet.
    reaper: Reaper,
}

/// One uprobe attached for one process.
pub(crate) struct ProbeLink {
    program: &'static str,
    link: UProbeLinkId,
}

/// The program `name` of the object, as its type.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoadError::Program {
            name,
            source: aya::programs::ProgramError::NotLoaded,
        })?
        .try_into()
        .map_err(|source| LoadError::Program { name, source })
}

/// Offsets of every kernel struct member the programs read, from the running kernel's BTF.
fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    KernelOffsets::resolve(|name, member| btf.member_offset(name, member))
}

/// Loads and attaches the tracepoint programs of `capture`'s mode: the BTF-typed ones, then
/// the tracefs ones.
fn attach_tracepoints(
    ebpf: &mut Ebpf,
    capture: CaptureMode,
    aya_btf: &aya::Btf,
) -> Result<(), LoadError> {
    let mut btf_tracepoints = names::BTF_TRACEPOINTS.to_vec();
    let mut tracepoints = names::TRACEPOINTS.to_vec();
    match capture.sockets {
        SocketCapture::Tracepoints => {
            btf_tracepoints.extend(names::SOCKET_TRACEPOINTS);
            tracepoints.push(if capture.mappings_off_syscalls {
                names::MAPPING_TRACEPOINT
            } else {
                names::SYSCALL_MMAP_TRACEPOINT
            });
        }
        SocketCapture::Syscalls => tracepoints.extend(names::SYSCALL_TRACEPOINTS),
    }
    for name in btf_tracepoints {
        let program: &mut BtfTracePoint = program(ebpf, name)?;
        let err = |source| LoadError::Program { name, source };
        program.load(name, aya_btf).map_err(err)?;
        program.attach().map_err(err)?;
    }
    for (category, name) in tracepoints {
        let program: &mut TracePoint = program(ebpf, name)?;
        let err = |source| LoadError::Program { name, source };
        program.load().map_err(err)?;
        program.attach(category, name).map_err(err)?;
    }
    Ok(())
}

/// aya attaches tracepoints and uprobes through tracefs; mount it where the system did not.
pub(crate) fn ensure_tracefs() -> Result<(), LoadError> {
    let dir = Path::new(TRACEFS);
    if dir.join("events").exists() {
        return Ok(());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("tracefs"))
    {
        return Ok(());
    }
    // mount(2) itself, not the mount program: the container image holds nothing but the agent.
    let fstype = c"tracefs";
    let target = std::ffi::CString::new(TRACEFS).expect("the tracefs path has no NUL");
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::Tracefs(std::io::Error::last_os_error()));
    }
    tracing::info!("mounted tracefs at /sys/kernel/tracing");
    Ok(())
}

impl Probes {
    /// Loads and attaches everything. Returns the probes and the ring buffer to read.
    pub(crate) fn load(
        object: &[u8],
        btf_path: &Path,
        ring_buffer_kib: u32,
        socket_capture: SocketCaptureSetting,
    ) -> Result<(Self, RingBuf<MapData>), LoadError> {
        if object.is_empty() {
            return Err(LoadError::NoObject);
        }
        let offsets = kernel_offsets(&Btf::from_file(btf_path)?)?;
        ensure_tracefs()?;
        let capture = CaptureMode::choose(socket_capture);
        let use_cookies = u8::from(capture.sockets == SocketCapture::Tracepoints);
        let floor = u8::from(std::env::var_os(FLOOR_ENV).is_some_and(|v| v == "1"));
        if floor != 0 {
            tracing::warn!(
                "{FLOOR_ENV}=1: the data programs return at once and capture nothing (a \
                 benchmark's floor: the cost of the hooks alone)"
            );
        }
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| LoadError::Cpus(format!("{what}: {e}")))?;
        let wakeup_bytes = u64::from(ring_buffer_kib) * 1024 / 4;
        let mut loader = EbpfLoader::new();
        loader
            .override_global(names::OFFSETS, &offsets, true)
            .override_global(names::WAKEUP_BYTES, &wakeup_bytes, true)
            .override_global(names::USE_COOKIES, &use_cookies, true)
            .override_global(names::FLOOR, &floor, true)
            .map_max_entries(names::EVENTS, ring_buffer_kib * 1024);
        for name in names::PER_CPU_MAPS {
            loader.map_max_entries(name, cpus as u32);
        }
        let mut ebpf = loader.load(object)?;
        let aya_btf = aya::Btf::parse_file(btf_path, aya::Endianness::default())?;
        attach_tracepoints(&mut ebpf, capture, &aya_btf)?;
        // The OpenSSL probes are loaded now and attached per library as libraries are found.
        for name in names::UPROBES {
            let program: &mut UProbe = program(&mut ebpf, name)?;
            program
                .load()
                .map_err(|source| LoadError::Program { name, source })?;
        }
        let map = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name).ok_or(LoadError::Map {
                name,
                source: aya::maps::MapError::InvalidName { name: name.into() },
            })
        };
        let events =
            RingBuf::try_from(map(&mut ebpf, names::EVENTS)?).map_err(|source| LoadError::Map {
                name: names::EVENTS,
                source,
            })?;
        let watched = HashMap::try_from(map(&mut ebpf, names::WATCHED)?).map_err(|source| {
            LoadError::Map {
                name: names::WATCHED,
                source,
            }
        })?;
        let procs =
            HashMap::try_from(map(&mut ebpf, names::PROCS)?).map_err(|source| LoadError::Map {
                name: names::PROCS,
                source,
            })?;
        let loss =
            Array::try_from(map(&mut ebpf, names::LOSS)?).map_err(|source| LoadError::Map {
                name: names::LOSS,
                source,
            })?;
        let settings =
            Array::try_from(map(&mut ebpf, names::SETTINGS)?).map_err(|source| LoadError::Map {
                name: names::SETTINGS,
                source,
            })?;
        let tls_hooked =
            HashMap::try_from(map(&mut ebpf, names::TLS_HOOKED)?).map_err(|source| {
                LoadError::Map {
                    name: names::TLS_HOOKED,
                    source,
                }
            })?;
        let holds =
            Array::try_from(map(&mut ebpf, names::HOLDS)?).map_err(|source| LoadError::Map {
                name: names::HOLDS,
                source,
            })?;
        let reaper = Reaper::start().map_err(LoadError::Thread)?;
        Ok((
            Self {
                capture,
                ebpf,
                watched,
                procs,
                loss,
                settings,
                tls_hooked,
                holds,
                reaper,
            },
            events,
        ))
    }

    /// Tracks process `pid` as `info` unless the kernel already does (it adopted the process at
    /// a fork or exec meanwhile). Returns whether it was added.
    pub(crate) fn track(&mut self, pid: u32, info: ProcInfo) -> Result<bool, LoadError> {
        const BPF_NOEXIST: u64 = 1;
        match self.procs.insert(pid, info, BPF_NOEXIST) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                Ok(false)
            }
            Err(source) => Err(LoadError::Map {
                name: names::PROCS,
                source,
            }),
        }
    }

    /// Forgets process `pid` (added by [`Probes::track`], then found gone).
    pub(crate) fn untrack(&mut self, pid: u32) {
        let _ = self.procs.remove(&pid);
    }

    /// Replaces the watched set: `(cgroup id, cgroup level, identity index)`.
    /// Sets what the programs stop for approval (`HOLD_*` flags) for each identity index.
    pub(crate) fn set_holds(&mut self, flags: &[(u32, u32)]) -> Result<(), LoadError> {
        for &(identity, f) in flags {
            self.holds
                .set(identity, f, 0)
                .map_err(|source| LoadError::Map {
                    name: names::HOLDS,
                    source,
                })?;
        }
        Ok(())
    }

    pub(crate) fn set_watched(&mut self, cgroups: &[(u64, u32, u32)]) -> Result<(), LoadError> {
        let err = |source| LoadError::Map {
            name: names::WATCHED,
            source,
        };
        let wanted: std::collections::HashMap<u64, u32> =
            cgroups.iter().map(|&(id, _, ident)| (id, ident)).collect();
        let stale: Vec<u64> = self
            .watched
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains_key(k))
            .collect();
        for (&id, &identity) in &wanted {
            self.watched.insert(id, identity, 0).map_err(err)?;
        }
        for id in stale {
            self.watched.remove(&id).map_err(err)?;
        }
        let min_level = cgroups.iter().map(|c| c.1).min().unwrap_or(1);
        let max_level = cgroups.iter().map(|c| c.1).max().unwrap_or(0);
        self.settings
            .set(
                0,
                Settings {
                    min_level,
                    max_level,
                },
                0,
            )
            .map_err(|source| LoadError::Map {
                name: names::SETTINGS,
                source,
            })
    }

    /// Attaches the OpenSSL probes at `entries` (from [`openssl_entries`]) of one library, for
    /// every process or for process `pid` only (the kernel then plants its breakpoints in that
    /// process alone, so processes nobody watches never trap). Returns the probes attached, to
    /// detach when the process is gone.
    pub(crate) fn attach_openssl(
        &mut self,
        path: &Path,
        entries: &[OpenSslEntry],
        pid: Option<NonZeroU32>,
    ) -> Result<Vec<ProbeLink>, LoadError> {
        let scope = pid.map_or(UProbeScope::AllProcesses, UProbeScope::OneProcess);
        self.reaper.attaching();
        let mut links = Vec::new();
        for entry in entries {
            for name in [entry.program, names::SSL_RETURN] {
                let probe: &mut UProbe = program(&mut self.ebpf, name)?;
                match probe.attach(
                    UProbeAttachLocation::AbsoluteOffset(entry.offset),
                    path,
                    scope,
                ) {
                    Ok(link) => links.push(ProbeLink {
                        program: name,
                        link,
                    }),
                    Err(source) => {
                        self.detach(links);
                        return Err(LoadError::Program { name, source });
                    }
                }
            }
        }
        self.reaper.attaching();
        Ok(links)
    }

    /// Detaches probes attached for one process, without waiting for the kernel to let go.
    pub(crate) fn detach(&mut self, links: Vec<ProbeLink>) {
        let mut owned = Vec::with_capacity(links.len());
        for ProbeLink {
            program: name,
            link,
        } in links
        {
            match program::<UProbe>(&mut self.ebpf, name).map(|probe| probe.take_link(link)) {
                Ok(Ok(link)) => owned.push(link),
                Ok(Err(e)) => tracing::debug!("detaching {name}: {e}"),
                Err(e) => tracing::debug!("detaching {name}: {e}"),
            }
        }
        self.reaper.close(owned);
    }

    /// Marks `tgid` as carrying its own TLS probes (its forks are then reported), or not.
    pub(crate) fn set_tls_hooked(&mut self, tgid: u32, hooked: bool) {
        let result = if hooked {
            self.tls_hooked.insert(tgid, 1, 0)
        } else {
            self.tls_hooked.remove(&tgid)
        };
        if let Err(e) = result
            && hooked
        {
            tracing::warn!("TLS_HOOKED map: {e}; forks of pid {tgid} will not get TLS probes");
        }
    }

    /// Attaches the Go TLS probes to a Go program, at the file offsets found in its symbol
    /// table. Returns the number of probes attached.
    pub(crate) fn attach_go_tls(
        &mut self,
        path: &Path,
        tls: &GoTlsFunctions,
    ) -> Result<usize, LoadError> {
        let mut points: Vec<(&'static str, u64)> = vec![
            (names::GO_TLS_WRITE, tls.write.entry_offset),
            (names::GO_TLS_READ, tls.read.entry_offset),
        ];
        points.extend(
            tls.read
                .return_offsets
                .iter()
                .map(|&off| (names::GO_TLS_READ_RETURN, off)),
        );
        for &(name, offset) in &points {
            let probe: &mut UProbe = program(&mut self.ebpf, name)?;
            probe
                .attach(
                    UProbeAttachLocation::AbsoluteOffset(offset),
                    path,
                    UProbeScope::AllProcesses,
                )
                .map_err(|source| LoadError::Program { name, source })?;
        }
        Ok(points.len())
    }

    /// Attaches the `readline` return probe to a bash binary.
    pub(crate) fn attach_readline(&mut self, path: &Path) -> Result<(), LoadError> {
        let name = names::READLINE_RETURN;
        let probe: &mut UProbe = program(&mut self.ebpf, name)?;
        probe
            .attach("readline", path, UProbeScope::AllProcesses)
            .map(|_| ())
            .map_err(|source| LoadError::Program { name, source })
    }

    /// For each loaded program: the time the kernel spent running it and how many times it
    /// ran. Both stay 0 unless run-time statistics are on (`sysctl kernel.bpf_stats_enabled=1`).
    pub(crate) fn program_stats(&self) -> Vec<(String, u64, u64)> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some((
                    name.to_string(),
                    info.run_time().as_nanos() as u64,
                    info.run_count(),
                ))
            })
            .collect()
    }

    /// Events lost in the kernel so far, per identity index and kind (`EventKind as u32`).
    pub(crate) fn loss_counts(&self, identities: u32) -> Vec<(u32, u32, u64)> {
        let mut out = Vec::new();
        for identity in 0..identities.min(MAX_IDENTITIES) {
            for kind in 1..LOSS_KINDS {
                let count = self
                    .loss
                    .get(&(identity * LOSS_KINDS + kind), 0)
                    .unwrap_or(0);
                if count > 0 {
                    out.push((identity, kind, count));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use object::{Object as _, ObjectSymbol as _};
    use recorder_common::names;

    /// Every name the agent looks up is in the built object: a renamed map, global or program
    /// on the eBPF side fails here, not at load time on a host.
    #[test]
    fn the_object_has_every_name() {
        assert!(
            !crate::EBPF_OBJECT.is_empty(),
            "built with RECORDER_SKIP_EBPF=1: there is no eBPF object to check"
        );
        let file = object::File::parse(crate::EBPF_OBJECT).expect("the eBPF object is an ELF file");
        let symbols: HashSet<&str> = file.symbols().filter_map(|s| s.name().ok()).collect();
        let maps = [
            names::EVENTS,
            names::WATCHED,
            names::LOSS,
            names::SETTINGS,
            names::TLS_HOOKED,
            names::HOLDS,
            names::MMSG_CALLS,
        ];
        let globals = [
            names::OFFSETS,
            names::WAKEUP_BYTES,
            names::USE_COOKIES,
            names::FLOOR,
        ];
        let programs = names::BTF_TRACEPOINTS
            .into_iter()
            .chain(names::SOCKET_TRACEPOINTS)
            .chain([
                names::MAPPING_TRACEPOINT.1,
                names::SYSCALL_MMAP_TRACEPOINT.1,
            ])
            .chain(names::TRACEPOINTS.map(|(_, name)| name))
            .chain(names::SYSCALL_TRACEPOINTS.map(|(_, name)| name))
            .chain(names::UPROBES);
        for name in maps
            .into_iter()
            .chain(names::PER_CPU_MAPS)
            .chain(globals)
            .chain(programs)
        {
            assert!(symbols.contains(name), "the eBPF object has no {name}");
        }
    }
}
