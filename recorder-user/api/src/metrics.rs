//! A small Prometheus registry: named counters and gauges with fixed label sets, rendered in the
//! text exposition format. Shared by the agent and the collector; cheap to update (atomics).
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

/// A monotonically increasing count.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Counter,
    Gauge,
}

struct Family {
    help: &'static str,
    kind: Type,
    /// Rendered label set (`{a="b"}` or empty) -> value.
    series: BTreeMap<String, Arc<AtomicU64>>,
}

/// All metrics of this process.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

impl Registry {
    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::default)
    }

    /// The counter `name` with these labels (created at zero on first use).
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Counter {
        Counter(self.series(name, help, Type::Counter, labels))
    }

    /// The gauge `name` with these labels (created at zero on first use).
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        Gauge(self.series(name, help, Type::Gauge, labels))
    }

    fn series(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Type,
        labels: &[(&str, &str)],
    ) -> Arc<AtomicU64> {
        let mut families = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        family
            .series
            .entry(render_labels(labels))
            .or_default()
            .clone()
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self
            .families
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::new();
        for (name, family) in families.iter() {
            let kind = if family.kind == Type::Counter {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in &family.series {
                let _ = writeln!(out, "{name}{labels} {}", value.load(Ordering::Relaxed));
            }
        }
        out
    }
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges_with_escaped_labels() {
        let r = Registry::default();
        r.counter(
            "recorder_events_total",
            "Records written.",
            &[("kind", "exec")],
        )
        .add(3);
        r.counter(
            "recorder_events_total",
            "Records written.",
            &[("kind", "exec")],
        )
        .inc();
        r.gauge("recorder_spool_bytes", "Spool size.", &[]).set(7);
        r.counter("x_total", "X.", &[("v", "a\"b")]).inc();
        let text = r.render();
        assert!(
            text.contains(
                "# TYPE recorder_events_total counter\nrecorder_events_total{kind=\"exec\"} 4\n"
            ),
            "{text}"
        );
        assert!(text.contains("recorder_spool_bytes 7\n"), "{text}");
        assert!(text.contains(r#"x_total{v="a\"b"} 1"#), "{text}");
    }
}
