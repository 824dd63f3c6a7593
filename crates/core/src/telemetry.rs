//! Logging and metrics set-up shared by both binaries.
//!
//! Logs go to stderr as text or JSON (`LOG_FORMAT`), filtered by `RUST_LOG`.
//! Metrics are recorded through the `metrics` facade and rendered by the
//! Prometheus exporter on `/metrics`; labels are fixed vocabularies (table
//! names, error kinds), never values from records.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber. Safe to call more than once (tests):
/// later calls are no-ops.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never into files or collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Buckets of every `*_lag_seconds` histogram: a backlog lasts minutes to
/// hours, far past the latency buckets' 10 s.
pub const LAG_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    7200.0, 21600.0, 86400.0,
];

/// What kind of metric a name is, for its `# HELP` and `# TYPE` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric: its name, kind and help text.
pub type Metric = (&'static str, Kind, &'static str);

/// Declares a service's metrics. First, `zeroed:` the counters exported
/// at 0 from the start: the counter, its label, and the label's values.
/// Then the metrics, one line each: the kind, the constant holding the
/// name, the name; the doc comment above each is its `# HELP` text, so a
/// name and its description are written once, together. Makes `METRICS`,
/// and `describe()`, which the service calls once at start ([`describe`]).
#[macro_export]
macro_rules! declare_metrics {
    (
        zeroed: $($counter:ident $label:literal [$($value:literal),* $(,)?]),*;
        $($(#[doc = $help:literal])+ $kind:ident $name:ident = $metric:literal;)*
    ) => {
        $(
            $(#[doc = $help])+
            pub const $name: &str = $metric;
        )*
        /// Every metric above: name, kind, help.
        pub const METRICS: &[$crate::telemetry::Metric] = &[
            $(($name, $crate::telemetry::Kind::$kind, concat!($($help),+)),)*
        ];
        /// Installs the Prometheus recorder (if not yet), gives every
        /// metric its help text, and exports the error counters at 0.
        pub fn describe() {
            $crate::telemetry::describe(METRICS, &[$(($counter, $label, &[$($value),*])),*]);
        }
    };
}

/// Installs the recorder first (if not yet: a description given before it
/// exists goes nowhere), then gives every metric its help text, and exports
/// each `(counter, label, values)` of `zeroed` at 0 from the start, so that
/// dashboards and alerts find them and `rate()` sees the first failure.
pub fn describe(metrics: &[Metric], zeroed: &[(&'static str, &'static str, &[&'static str])]) {
    let _ = metrics_handle();
    for &(name, kind, help) in metrics {
        // A doc comment's lines each begin with a space.
        let help = help.trim();
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
    for &(name, label, values) in zeroed {
        for &value in values {
            metrics::counter!(name, label => value).increment(0);
        }
    }
}

/// Starts installing the recorder on a thread of its own, so a service can
/// connect to its queue and database meanwhile: building it calibrates
/// `quanta`'s clock, which spins a core for up to 200 ms (80 ms measured
/// in the writer, a sixth of a 200,000-row drain's CPU). Whoever needs the
/// recorder next waits for it ([`metrics_handle`]).
pub fn install_metrics_in_background() {
    std::thread::spawn(|| drop(metrics_handle()));
}

/// Installs the global Prometheus recorder, or returns the installed one's
/// handle (tests build several apps in one process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_lag_seconds".into()), LAG_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
