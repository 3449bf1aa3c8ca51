//! The capture loop: ring buffer -> decode -> records -> sinks. One thread, so records leave in
//! the order the kernel produced them.
use std::{
    collections::HashMap,
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use recorder_common::{DATA_HELD, DataHead, EXEC_HELD, EventKind, ExecHead};

use recorder_api::metrics::{Counter, Registry};
use recorder_record::{Kind, Record};

use crate::{
    approve::{ApprovalPlan, Holds},
    capture::{
        builder::{Clock, RecordBuilder, boot_ns_now, boot_tag},
        decode::{RawEvent, decode},
        http::{ApiOutput, HttpTracker},
        residents,
        sql::{SqlOutput, SqlTracker},
        text::render_path,
        unhooked::{TlsWatch, UnhookedTls},
    },
    config::TlsProbes,
    identity::Identities,
    loader::Probes,
    pods::PodIdentities,
    probes::{openssl::OpenSslProbes, programs::ProgramProbes},
    sink::Sink,
};

/// What an exec (from the kernel, or of a process adopted in place) touches.
struct ExecParts<'a> {
    builder: &'a mut RecordBuilder,
    identities: &'a mut Identities,
    sinks: &'a mut Sinks,
    openssl: &'a mut OpenSslProbes,
    programs: &'a mut ProgramProbes,
    probes: &'a mut Probes,
    holds: &'a mut Option<Holds>,
}

/// An exec: the executable's probes considered, its records written; if the kernel held it,
/// the approval rules looked at.
fn on_exec(head: &ExecHead, argv: &[u8], parts: &mut ExecParts<'_>) {
    let exe = render_path(&head.exe);
    parts.openssl.on_exec(parts.probes, head.header.pid, &exe);
    parts.programs.on_exec(parts.probes, head.header.pid, &exe);
    let records = parts.builder.exec(head, argv, parts.identities);
    for record in &records {
        parts.sinks.emit(record);
    }
    if head.flags & EXEC_HELD != 0 {
        let exec = records.iter().find(|r| r.kind() == Kind::Exec);
        match (parts.holds.as_mut(), exec) {
            (Some(holds), Some(exec)) => {
                if let Some(pending) = holds.exec_held(exec, parts.builder) {
                    hold(parts.sinks, holds, &pending);
                }
            }
            // Held with no rules to look at (cannot happen: the kernel holds only what the
            // rules ask for): never leave it stopped.
            _ => {
                recorder_approval::holds::signal(head.header.pid, libc::SIGCONT);
            }
        }
    }
}

/// Socket or TLS bytes: to the trackers, and to the approval rules if the kernel held them.
fn on_data(
    head: &DataHead,
    payload: &[u8],
    trackers: &mut Trackers,
    holds: &mut Option<Holds>,
    sinks: &mut Sinks,
    builder: &RecordBuilder,
    identities: &Identities,
) {
    tracing::trace!(
        pid = head.header.pid,
        source = head.source,
        direction = head.direction,
        fd = head.fd,
        sock = head.sock.sock,
        cookie = head.sock.cookie,
        syscall = head.syscall,
        tls = head.tls,
        total = head.total,
        offset = head.offset,
        len = head.len,
        flags = head.flags,
        "data"
    );
    let mut outs = TrackerOutputs::default();
    trackers.on_data(head, payload, &mut outs);
    sinks.emit_tracked(builder, identities, outs);
    if head.flags & DATA_HELD != 0 && head.is_last_chunk() {
        on_held_write(head, trackers, holds, sinks, builder, identities);
    }
}

/// A TLS write the kernel held (its last event just went to the trackers): the statements and
/// requests it completes looked at by the approval rules.
fn on_held_write(
    head: &DataHead,
    trackers: &mut Trackers,
    holds: &mut Option<Holds>,
    sinks: &mut Sinks,
    builder: &RecordBuilder,
    identities: &Identities,
) {
    let Some(holds) = holds.as_mut() else {
        // Held with no rules to look at (cannot happen): never leave it stopped.
        recorder_approval::holds::signal(head.header.pid, libc::SIGCONT);
        return;
    };
    let template = builder.data_process(head, identities);
    let statements = trackers.sql.take_sent(head);
    let requests = trackers.http.take_sent(head);
    if let Some(pending) = holds.write_held(&template, statements.as_ref(), &requests, builder) {
        hold(sinks, holds, &pending);
    }
}

/// A held action a rule needs an approval for: its `pending` record is written (redacted: the
/// request to the collector carries the text as recorded), then the collector is asked.
fn hold(sinks: &mut Sinks, holds: &mut Holds, pending: &Record) {
    let record = sinks.redact(pending).unwrap_or_else(|| pending.clone());
    sinks.write(&record);
    holds.ask(record);
}

/// Records reach the sinks' files at most this long after the event.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const LOSS_POLL_EVERY: Duration = Duration::from_millis(250);
const IDENTITY_REFRESH_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Pipeline {
    identities: Identities,
    probes: Probes,
    ring: RingBuf<MapData>,
    builder: RecordBuilder,
    sinks: Sinks,
    /// Loss counts already reported, per (identity, kind).
    reported_loss: HashMap<(u32, u32), u64>,
    decode_errors: Counter,
    trackers: Trackers,
    openssl: OpenSslProbes,
    programs: ProgramProbes,
    /// The pod watch, when identities are selected by pod.
    pods: Option<PodIdentities>,
    /// Approval holds, when there are approval rules.
    holds: Option<Holds>,
}

/// The connection trackers: every socket and TLS byte of watched processes goes to each, and
/// each keeps the connections that speak its protocol.
#[derive(Default)]
struct Trackers {
    sql: SqlTracker,
    http: HttpTracker,
    tls: TlsWatch,
}

/// Where records go, what is taken out of them first, and which actions wait for an operator
/// before they happen (and are recorded so).
pub(crate) struct Output {
    pub(crate) sinks: Vec<Box<dyn Sink>>,
    pub(crate) redactor: Option<recorder_redact::Redactor>,
    pub(crate) approval: Option<ApprovalPlan>,
}

/// The sinks, with the counters of what went to them.
struct Sinks {
    all: Vec<Box<dyn Sink>>,
    by_kind: Vec<(Kind, Counter)>,
    sink_errors: Counter,
    /// Secrets out before any sink sees a record; a counter per rule.
    redactor: Option<(recorder_redact::Redactor, Vec<Counter>)>,
}

impl Pipeline {
    pub(crate) fn new(
        host: String,
        identities: Identities,
        mut probes: Probes,
        ring: RingBuf<MapData>,
        output: Output,
        tls_probes: TlsProbes,
        pods: Option<PodIdentities>,
    ) -> std::io::Result<Self> {
        // Before the agent says it is ready: the lines and TLS plaintext of bash and kubectl
        // processes that start right after readiness must not be missed.
        let openssl = OpenSslProbes::start(tls_probes, &mut probes);
        let programs = ProgramProbes::start(&mut probes);
        let registry = Registry::global();
        let by_kind = Kind::ALL
            .into_iter()
            .map(|k| {
                (
                    k,
                    registry.counter(
                        "recorder_records_total",
                        "Records produced, by kind.",
                        &[("kind", k.as_str())],
                    ),
                )
            })
            .collect();
        let builder = RecordBuilder::new(host, boot_tag(), Clock::now());
        let (holds, resolved) = match output.approval {
            Some(plan) => {
                let (holds, resolved) = Holds::start(plan, &builder)?;
                probes
                    .set_holds(&holds.kernel_flags(&identities))
                    .map_err(std::io::Error::other)?;
                (Some(holds), resolved)
            }
            None => (None, Vec::new()),
        };
        let mut pipeline = Self {
            identities,
            probes,
            ring,
            builder,
            sinks: Sinks {
                all: output.sinks,
                by_kind,
                sink_errors: registry.counter(
                    "recorder_sink_errors_total",
                    "Failed writes to a sink (JSONL file, spool).",
                    &[],
                ),
                redactor: output.redactor.map(|r| {
                    let counters = r
                        .rule_names()
                        .iter()
                        .map(|name| {
                            registry.counter(
                                "recorder_redacted_values_total",
                                "Values replaced by a redaction marker before the record was written, by rule.",
                                &[("rule", name)],
                            )
                        })
                        .collect();
                    (r, counters)
                }),
            },
            reported_loss: HashMap::new(),
            trackers: Trackers::default(),
            openssl,
            programs,
            pods,
            decode_errors: registry.counter(
                "recorder_decode_errors_total",
                "Ring buffer items that could not be decoded.",
                &[],
            ),
            holds,
        };
        for record in &resolved {
            pipeline.sinks.emit(record);
        }
        Ok(pipeline)
    }

    /// Takes the pod watch's news: containers to watch (before the caller says it is ready, so
    /// the pods listed at start are watched from then on), and API server notices.
    pub(crate) fn poll_pods(&mut self) -> bool {
        let Some(pods) = &mut self.pods else {
            return false;
        };
        let (notices, new_containers) =
            pods.poll(&mut self.identities, &mut self.probes, &mut self.builder);
        for notice in &notices {
            self.sinks.emit(notice);
        }
        // Processes already running in a container just watched (its main process, always):
        // adopted now, not at a fork that may never come.
        let adopted = self.adopt_residents(&new_containers);
        !notices.is_empty() || adopted
    }

    /// Adopts the processes already running in the identities' own cgroups (before the caller
    /// says it is ready): a process that never forks again, such as an agent restarted under a
    /// long-running client, is tracked from the start.
    pub(crate) fn adopt_configured(&mut self) -> bool {
        let dirs = self.identities.configured_dirs();
        self.adopt_residents(&dirs)
    }

    /// Tracks the processes of `dirs` (cgroup directory, identity) and writes their adopted
    /// exec records. Returns whether any was adopted.
    fn adopt_residents(&mut self, dirs: &[(std::path::PathBuf, u32)]) -> bool {
        let mut adopted = false;
        let mount = self.identities.mount.clone();
        for (dir, identity) in dirs {
            for resident in residents::adopt_all(&mut self.probes, &mount, dir, *identity) {
                on_exec(
                    &resident.head,
                    &resident.argv,
                    &mut ExecParts {
                        builder: &mut self.builder,
                        identities: &mut self.identities,
                        sinks: &mut self.sinks,
                        openssl: &mut self.openssl,
                        programs: &mut self.programs,
                        probes: &mut self.probes,
                        holds: &mut self.holds,
                    },
                );
                adopted = true;
            }
        }
        adopted
    }

    pub(crate) fn run(mut self, stop: &AtomicBool) {
        let fd = self.ring.as_raw_fd();
        let (mut last_flush, mut last_loss, mut last_refresh) =
            (Instant::now(), Instant::now(), Instant::now());
        // Records may wait from before the loop (processes adopted at start): flush them soon.
        let mut pending = true;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a timeout keeps the periodic work going when idle.
            unsafe { libc::poll(&raw mut pfd, 1, 50) };
            pending |= self.drain();
            pending |= self.poll_holds(stopping);
            pending |= self.poll_pods();
            if stopping || last_loss.elapsed() >= LOSS_POLL_EVERY {
                pending |= self.report_loss();
                self.publish_program_stats();
                self.openssl.tick(&mut self.probes);
                self.programs.tick(&mut self.probes);
                let mut outs = TrackerOutputs::default();
                self.trackers.tick(&mut outs);
                pending |= self
                    .sinks
                    .emit_tracked(&self.builder, &self.identities, outs);
                last_loss = Instant::now();
            }
            if pending && (stopping || last_flush.elapsed() >= FLUSH_EVERY) {
                self.sinks.flush();
                pending = false;
                last_flush = Instant::now();
            }
            if last_refresh.elapsed() >= IDENTITY_REFRESH_EVERY {
                if self.identities.refresh()
                    && let Err(e) = self.probes.set_watched(&self.identities.watched())
                {
                    tracing::error!("updating the watched cgroups: {e}");
                }
                // Follow wall-clock adjustments (NTP) in the record times.
                self.builder.clock = Clock::now();
                last_refresh = Instant::now();
            }
            if stopping {
                self.sinks.flush();
                return;
            }
        }
    }

    /// Reads everything the ring buffer holds. Returns whether any record was produced.
    fn drain(&mut self) -> bool {
        let Self {
            ring,
            builder,
            identities,
            sinks,
            decode_errors,
            trackers,
            openssl,
            programs,
            probes,
            holds,
            ..
        } = self;
        let mut produced = false;
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(RawEvent::Exec(head, argv)) => on_exec(
                    &head,
                    argv,
                    &mut ExecParts {
                        builder,
                        identities,
                        sinks,
                        openssl,
                        programs,
                        probes,
                        holds,
                    },
                ),
                Ok(RawEvent::Exit(ev)) => {
                    // Statements and requests still pending on its connections come before its
                    // exit.
                    let mut outs = TrackerOutputs::default();
                    trackers.on_exit(ev.header.pid, &mut outs);
                    sinks.emit_tracked(builder, identities, outs);
                    sinks.emit(&builder.exit(&ev, identities));
                    if let Some(holds) = holds.as_mut() {
                        for record in holds.on_exit(ev.header.pid, builder) {
                            sinks.emit(&record);
                        }
                    }
                    openssl.on_exit(probes, ev.header.pid);
                }
                Ok(RawEvent::Close(ev)) => {
                    let mut outs = TrackerOutputs::default();
                    trackers.on_close(ev.header.pid, ev.sock, &mut outs);
                    sinks.emit_tracked(builder, identities, outs);
                }
                Ok(RawEvent::Shell(ev, line)) => sinks.emit(&builder.shell(&ev, line, identities)),
                Ok(RawEvent::Fork(ev)) => openssl.on_fork(probes, ev.parent, ev.header.pid),
                Ok(RawEvent::Data(head, payload)) => {
                    on_data(&head, payload, trackers, holds, sinks, builder, identities);
                }
                Ok(RawEvent::Library(ev)) => {
                    let path = render_path(&ev.path);
                    tracing::debug!(
                        pid = ev.header.pid,
                        path,
                        lag_us = boot_ns_now().saturating_sub(ev.header.ktime) / 1000,
                        "library mapped"
                    );
                    openssl.consider_mapped(probes, ev.header.pid, &path);
                }
                Ok(RawEvent::IoUring(ev)) => {
                    sinks.emit(&builder.process_notice(
                        &ev.header,
                        &ev.exec,
                        &ev.session,
                        identities,
                        "io_uring",
                        format!(
                            "pid {} set up an io_uring: reads and writes it submits through the ring are not captured",
                            ev.header.pid
                        ),
                    ));
                }
                Err(e) => {
                    decode_errors.inc();
                    sinks.emit(&builder.notice(
                        boot_ns_now(),
                        "",
                        "undecodable_event",
                        e.to_string(),
                    ));
                }
            }
            produced = true;
        }
        if let Some(holds) = holds.as_mut() {
            holds.release();
        }
        produced
    }

    /// Operators' decisions and deadlines; at stop, every hold resolved. Returns whether any
    /// record was produced.
    fn poll_holds(&mut self, stopping: bool) -> bool {
        let Some(holds) = self.holds.as_mut() else {
            return false;
        };
        let records = if stopping {
            holds.shutdown(&self.builder)
        } else {
            holds.poll(&self.builder)
        };
        for record in &records {
            self.sinks.emit(record);
        }
        !records.is_empty()
    }

    /// Turns new kernel loss counts into `loss` records.
    /// The kernel's run-time statistics of each eBPF program, as metrics: what capture costs
    /// inside the kernel, per program (0 unless `kernel.bpf_stats_enabled` is 1).
    fn publish_program_stats(&self) {
        let registry = Registry::global();
        for (name, nanos, runs) in self.probes.program_stats() {
            let labels = [("program", name.as_str())];
            registry
                .gauge(
                    "recorder_bpf_program_run_ns",
                    "Nanoseconds the kernel spent running this eBPF program since it was loaded \
                     (0 unless sysctl kernel.bpf_stats_enabled=1).",
                    &labels,
                )
                .set(nanos);
            registry
                .gauge(
                    "recorder_bpf_program_runs",
                    "Times the kernel ran this eBPF program since it was loaded (0 unless \
                     sysctl kernel.bpf_stats_enabled=1).",
                    &labels,
                )
                .set(runs);
        }
    }

    fn report_loss(&mut self) -> bool {
        let mut produced = false;
        for (identity, kind, total) in self.probes.loss_counts(self.identities.list.len() as u32) {
            let seen = self.reported_loss.entry((identity, kind)).or_insert(0);
            if total > *seen {
                let Some(kind_enum) = EventKind::from_u32(kind) else {
                    continue;
                };
                let name = self.identities.name(identity).to_string();
                let record = self
                    .builder
                    .loss(boot_ns_now(), &name, kind_enum, total - *seen);
                Registry::global()
                    .counter(
                        "recorder_lost_events_total",
                        "Events dropped in the kernel (ring buffer full).",
                        &[("identity", &name), ("kind", kind_enum.name())],
                    )
                    .add(total - *seen);
                *seen = total;
                self.sinks.emit(&record);
                produced = true;
            }
        }
        produced
    }
}

/// What the trackers produced from one event or tick.
#[derive(Default)]
struct TrackerOutputs {
    sql: Vec<SqlOutput>,
    api: Vec<ApiOutput>,
    unhooked: Vec<UnhookedTls>,
}

impl Trackers {
    fn on_data(&mut self, head: &DataHead, payload: &[u8], outs: &mut TrackerOutputs) {
        self.tls.on_data(head, payload, &mut outs.unhooked);
        self.sql.on_data(head, payload, &mut outs.sql);
        self.http.on_data(head, payload, &mut outs.api);
    }

    fn on_close(&mut self, tgid: u32, sock: u64, outs: &mut TrackerOutputs) {
        self.sql.on_close(tgid, sock, &mut outs.sql);
        self.http.on_close(tgid, sock, &mut outs.api);
        self.tls.on_close(tgid, sock, &mut outs.unhooked);
    }

    fn on_exit(&mut self, tgid: u32, outs: &mut TrackerOutputs) {
        self.sql.on_exit(tgid, &mut outs.sql);
        self.http.on_exit(tgid, &mut outs.api);
        self.tls.on_exit(tgid, &mut outs.unhooked);
    }

    fn tick(&mut self, outs: &mut TrackerOutputs) {
        self.sql.tick(&mut outs.sql);
        self.http.tick(&mut outs.api);
        self.tls.tick(&mut outs.unhooked);
    }
}

impl Sinks {
    /// Records for what the trackers produced. Returns whether there were any.
    fn emit_tracked(
        &mut self,
        builder: &RecordBuilder,
        identities: &Identities,
        outs: TrackerOutputs,
    ) -> bool {
        let any = !(outs.sql.is_empty() && outs.api.is_empty() && outs.unhooked.is_empty());
        for output in outs.sql {
            self.emit(&builder.sql(output, identities));
        }
        for output in &outs.api {
            self.emit(&builder.api(output, identities));
        }
        for u in &outs.unhooked {
            self.emit(&builder.unhooked_tls(u, identities));
        }
        any
    }

    fn emit(&mut self, record: &Record) {
        let redacted = self.redact(record);
        self.write(redacted.as_ref().unwrap_or(record));
    }

    /// A copy of `record` with its secrets out, if it has any (counted per rule).
    fn redact(&self, record: &Record) -> Option<Record> {
        self.redactor.as_ref().and_then(|(redactor, counters)| {
            let (copy, hits) = redactor.redacted(record)?;
            for i in hits.0 {
                counters[i].inc();
            }
            Some(copy)
        })
    }

    /// Writes a record as it is to every sink.
    fn write(&mut self, record: &Record) {
        if let Some((_, c)) = self.by_kind.iter().find(|(k, _)| *k == record.kind()) {
            c.inc();
        }
        for sink in &mut self.all {
            if let Err(e) = sink.write(record) {
                self.sink_errors.inc();
                tracing::error!("writing a record: {e}");
            }
        }
    }

    fn flush(&mut self) {
        for sink in &mut self.all {
            if let Err(e) = sink.flush() {
                self.sink_errors.inc();
                tracing::error!("flushing records: {e}");
            }
        }
    }
}
