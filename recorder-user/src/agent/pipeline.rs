//! The capture loop: ring buffer -> decode -> records -> sinks. One thread, so records leave in
//! the order the kernel produced them.
use std::{
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use recorder_common::EventKind;

use super::{loader::Probes, openssl::OpenSslTracker};
use crate::{
    capture::{
        decode::{RawEvent, decode},
        records::{Clock, RecordBuilder, boot_ns_now, boot_tag},
        sql::{SqlOutput, SqlTracker},
        text::render_path,
    },
    identity::Identities,
    metrics::{Counter, Registry},
    record::{Kind, Record},
    sink::Sink,
};

/// Records reach the sinks' files at most this long after the event.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
const LOSS_POLL_EVERY: Duration = Duration::from_millis(250);
const IDENTITY_REFRESH_EVERY: Duration = Duration::from_secs(1);

pub struct Pipeline {
    identities: Identities,
    probes: Probes,
    ring: RingBuf<MapData>,
    builder: RecordBuilder,
    out: Output,
    /// Loss counts already reported, per (identity, kind).
    reported_loss: std::collections::HashMap<(u32, u32), u64>,
    decode_errors: Counter,
    sql: SqlTracker,
    openssl: OpenSslTracker,
}

/// The sinks, with the counters of what went to them.
struct Output {
    sinks: Vec<Box<dyn Sink>>,
    by_kind: Vec<(Kind, Counter)>,
    sink_errors: Counter,
}

impl Pipeline {
    pub fn new(
        host: String,
        identities: Identities,
        mut probes: Probes,
        ring: RingBuf<MapData>,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Self {
        // Before the agent says it is ready: TLS plaintext of processes that start right after
        // readiness must not be missed.
        let mut openssl = OpenSslTracker::default();
        openssl.attach_system(&mut probes);
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
        Self {
            identities,
            probes,
            ring,
            builder: RecordBuilder::new(host, boot_tag(), Clock::now()),
            out: Output {
                sinks,
                by_kind,
                sink_errors: registry.counter(
                    "recorder_sink_errors_total",
                    "Failed writes to a sink (JSONL file, spool).",
                    &[],
                ),
            },
            reported_loss: Default::default(),
            sql: SqlTracker::default(),
            openssl,
            decode_errors: registry.counter(
                "recorder_decode_errors_total",
                "Ring buffer items that could not be decoded.",
                &[],
            ),
        }
    }

    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        let fd = self.ring.as_raw_fd();
        let (mut last_flush, mut last_loss, mut last_refresh) =
            (Instant::now(), Instant::now(), Instant::now());
        let mut pending = false;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; a timeout keeps the periodic work going when idle.
            unsafe { libc::poll(&mut pfd, 1, 50) };
            pending |= self.drain();
            if stopping || last_loss.elapsed() >= LOSS_POLL_EVERY {
                pending |= self.report_loss();
                self.openssl.tick(&mut self.probes);
                let mut outputs = Vec::new();
                self.sql.tick(&mut outputs);
                pending |= !outputs.is_empty();
                self.out.emit_sql(&self.builder, &self.identities, &outputs);
                last_loss = Instant::now();
            }
            if pending && (stopping || last_flush.elapsed() >= FLUSH_EVERY) {
                self.out.flush();
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
                self.out.flush();
                return Ok(());
            }
        }
    }

    /// Reads everything the ring buffer holds. Returns whether any record was produced.
    fn drain(&mut self) -> bool {
        let Self {
            ring,
            builder,
            identities,
            out,
            decode_errors,
            sql,
            openssl,
            probes,
            ..
        } = self;
        let mut produced = false;
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(RawEvent::Exec(head, argv)) => {
                    openssl.on_exec(head.header.pid);
                    for record in builder.exec(&head, argv, identities) {
                        out.emit(&record);
                    }
                }
                Ok(RawEvent::Exit(ev)) => {
                    // Statements still pending on its connections come before its exit.
                    let mut outputs = Vec::new();
                    sql.on_exit(ev.header.pid, &mut outputs);
                    out.emit_sql(builder, identities, &outputs);
                    out.emit(&builder.exit(&ev, identities));
                }
                Ok(RawEvent::Close(ev)) => {
                    let mut outputs = Vec::new();
                    sql.on_close(ev.header.pid, ev.sock, &mut outputs);
                    out.emit_sql(builder, identities, &outputs);
                }
                Ok(RawEvent::Data(head, payload)) => {
                    tracing::trace!(
                        pid = head.header.pid,
                        source = head.source,
                        direction = head.direction,
                        fd = head.fd,
                        sock = head.sock.sock,
                        tls = head.tls,
                        total = head.total,
                        offset = head.offset,
                        len = head.len,
                        flags = head.flags,
                        "data"
                    );
                    let mut outputs = Vec::new();
                    sql.on_data(&head, payload, &mut outputs);
                    out.emit_sql(builder, identities, &outputs);
                }
                Ok(RawEvent::Library(ev)) => {
                    let path = render_path(&ev.path);
                    openssl.consider_mapped(probes, ev.header.pid, &path);
                }
                Ok(RawEvent::IoUring(ev)) => {
                    out.emit(&builder.process_notice(
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
                    out.emit(&builder.notice(
                        boot_ns_now(),
                        "",
                        "undecodable_event",
                        e.to_string(),
                    ));
                }
            }
            produced = true;
        }
        produced
    }

    /// Turns new kernel loss counts into `loss` records.
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
                self.out.emit(&record);
                produced = true;
            }
        }
        produced
    }
}

impl Output {
    /// Records for what the SQL tracker produced, in order.
    fn emit_sql(
        &mut self,
        builder: &RecordBuilder,
        identities: &Identities,
        outputs: &[SqlOutput],
    ) {
        for output in outputs {
            self.emit(&builder.sql(output, identities));
        }
    }

    fn emit(&mut self, record: &Record) {
        if let Some((_, c)) = self.by_kind.iter().find(|(k, _)| *k == record.kind) {
            c.inc();
        }
        for sink in &mut self.sinks {
            if let Err(e) = sink.write(record) {
                self.sink_errors.inc();
                tracing::error!("writing a record: {e:#}");
            }
        }
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.flush() {
                self.sink_errors.inc();
                tracing::error!("flushing records: {e:#}");
            }
        }
    }
}
