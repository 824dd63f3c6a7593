//! The run's summary: human-readable lines, or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::Kind;
use crate::load::LoadResult;
use crate::verify::{TableCheck, Verification};

/// Percentiles of a histogram of microseconds, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencySummary {
    /// `None` for an empty histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Some(Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: round3(h.mean() / 1000.0),
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  max {}",
            fmt_ms(self.p50_ms),
            fmt_ms(self.p90_ms),
            fmt_ms(self.p99_ms),
            fmt_ms(self.max_ms)
        )
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `0.84 ms`, `212.4 ms`, `1.52 s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

pub fn mib(bytes: u64) -> f64 {
    round3(bytes as f64 / (1024.0 * 1024.0))
}

/// What the run was asked to do.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    pub url: String,
    pub kind: Kind,
    pub total: u64,
    pub events_per_request: u64,
    pub requests: u64,
    pub concurrency: u64,
    pub ndjson: bool,
    pub gzip: bool,
    /// Size of all request bodies as sent.
    pub body_mib: f64,
    pub generate_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    pub requests: u64,
    pub requests_accepted: u64,
    pub requests_failed: u64,
    pub events_sent: u64,
    pub events_accepted: u64,
    pub wall_secs: f64,
    /// Accepted events per second of wall time.
    pub events_per_sec: f64,
    pub requests_per_sec: f64,
    /// Every request that got an HTTP answer, whatever its status.
    pub latency: Option<LatencySummary>,
    pub errors: BTreeMap<String, u64>,
    pub warnings: BTreeMap<String, u64>,
}

impl LoadSummary {
    pub fn new(load: &LoadResult) -> Self {
        let secs = load.wall.as_secs_f64().max(1e-9);
        Self {
            requests: load.requests,
            requests_accepted: load.requests_accepted,
            requests_failed: load.requests_failed(),
            events_sent: load.events_sent,
            events_accepted: load.events_accepted,
            wall_secs: round3(load.wall.as_secs_f64()),
            events_per_sec: (load.events_accepted as f64 / secs).round(),
            requests_per_sec: round3(load.requests as f64 / secs),
            latency: LatencySummary::from_histogram(&load.latency),
            errors: load.errors.clone(),
            warnings: load.warnings.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    pub database: &'static str,
    pub waited_secs: f64,
    pub timed_out: bool,
    pub tables: Vec<TableCheck>,
    /// TUNE events: `loaded_at` minus when the 202 of the event's request
    /// arrived.
    pub end_to_end: Option<LatencySummary>,
    pub loaded_before_answer: u64,
    pub without_loaded_at: u64,
    /// Last `loaded_at` minus the last answer of the load.
    pub last_row_after_load_secs: Option<f64>,
    /// TUNE events found per second, from the first request to the last
    /// `loaded_at`: the pipeline's sustained rate.
    pub pipeline_events_per_sec: Option<f64>,
}

impl VerifySummary {
    pub fn new(v: &Verification, load: &LoadResult) -> Self {
        let tune_found: u64 = v
            .tables
            .iter()
            .filter(|t| t.table == "tune_events")
            .map(|t| t.found)
            .sum();
        let last = v.last_loaded_at_us;
        Self {
            database: v.database,
            waited_secs: round3(v.waited.as_secs_f64()),
            timed_out: v.timed_out,
            tables: v.tables.clone(),
            end_to_end: LatencySummary::from_histogram(&v.end_to_end),
            loaded_before_answer: v.loaded_before_answer,
            without_loaded_at: v.without_loaded_at,
            last_row_after_load_secs: last
                .map(|l| round3((l - load.finished_at_us).max(0) as f64 / 1e6)),
            pipeline_events_per_sec: last
                .map(|l| (l - load.started_at_us) as f64 / 1e6)
                .filter(|&secs| secs > 0.0)
                .map(|secs| (tune_found as f64 / secs).round()),
        }
    }
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run: RunInfo,
    pub load: LoadSummary,
    /// `None` without a database URL (or with `--no-verify`).
    pub verify: Option<VerifySummary>,
    /// Why the check could not finish, when it could not.
    pub verify_error: Option<String>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    pub ok: bool,
}

impl Summary {
    pub fn new(
        run: RunInfo,
        load: LoadSummary,
        verify: Option<VerifySummary>,
        verify_error: Option<String>,
    ) -> Self {
        let mut failures = Vec::new();
        if load.events_accepted == 0 {
            failures.push("no event was accepted".to_owned());
        }
        if let Some(e) = &verify_error {
            failures.push(format!("verification did not finish: {e}"));
        }
        for t in verify.iter().flat_map(|v| &v.tables) {
            if t.missing > 0 {
                failures.push(format!(
                    "{}: {} accepted events missing",
                    t.table, t.missing
                ));
            }
            if t.duplicated_events > 0 {
                failures.push(format!(
                    "{}: {} accepted events duplicated",
                    t.table, t.duplicated_events
                ));
            }
        }
        Self {
            ok: failures.is_empty(),
            run,
            load,
            verify,
            verify_error,
            failures,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The human-readable report.
    pub fn human(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_human(&mut out);
        out
    }

    fn write_human(&self, out: &mut String) -> std::fmt::Result {
        let r = &self.run;
        let l = &self.load;
        let kind = r.kind.label();
        let format = match (r.ndjson, r.gzip) {
            (false, false) => "JSON array",
            (false, true) => "JSON array, gzip",
            (true, false) => "NDJSON",
            (true, true) => "NDJSON, gzip",
        };
        writeln!(out, "sluice-bench run {} -> {}", r.run_id, r.url)?;
        writeln!(
            out,
            "  {} {kind} events in {} requests of {}, concurrency {}, {format} ({:.1} MiB, built in {:.2} s)",
            r.total, r.requests, r.events_per_request, r.concurrency, r.body_mib, r.generate_secs
        )?;
        writeln!(out, "load")?;
        writeln!(
            out,
            "  accepted   {} of {} events in {:.2} s: {} events/s, {:.1} requests/s",
            l.events_accepted, l.events_sent, l.wall_secs, l.events_per_sec, l.requests_per_sec
        )?;
        match &l.latency {
            Some(lat) => writeln!(out, "  latency    {}  ({} answers)", lat.line(), lat.count)?,
            None => writeln!(out, "  latency    no HTTP answer")?,
        }
        if l.errors.is_empty() {
            writeln!(out, "  errors     none")?;
        } else {
            writeln!(
                out,
                "  errors     {} of {} requests failed:",
                l.requests_failed, l.requests
            )?;
            for (kind, count) in &l.errors {
                writeln!(out, "    {count:>8}  {kind}")?;
            }
        }
        for (warning, count) in &l.warnings {
            writeln!(out, "  warning    {count} answers: {warning}")?;
        }
        if let Some(v) = &self.verify {
            writeln!(
                out,
                "verify ({}, waited {:.1} s{})",
                v.database,
                v.waited_secs,
                if v.timed_out { ", deadline passed" } else { "" }
            )?;
            for t in &v.tables {
                writeln!(
                    out,
                    "  {:<12} {}/{} accepted events found, {} missing, {} duplicated ({} duplicate rows){}",
                    t.table,
                    t.found,
                    t.expected,
                    t.missing,
                    t.duplicated_events,
                    t.duplicate_rows,
                    if t.unaccepted_rows > 0 {
                        format!(", {} rows from failed requests", t.unaccepted_rows)
                    } else {
                        String::new()
                    }
                )?;
                if !t.missing_sample.is_empty() {
                    writeln!(
                        out,
                        "               missing e.g. {}",
                        t.missing_sample.join(", ")
                    )?;
                }
            }
            if let Some(e2e) = &v.end_to_end {
                writeln!(
                    out,
                    "  end-to-end {}  (202 received -> loaded_at, {} TUNE events)",
                    e2e.line(),
                    e2e.count
                )?;
            }
            if v.loaded_before_answer > 0 {
                writeln!(
                    out,
                    "  note       {} events were committed before their 202 arrived (counted as 0)",
                    v.loaded_before_answer
                )?;
            }
            if v.without_loaded_at > 0 {
                writeln!(
                    out,
                    "  note       {} rows have no readable loaded_at",
                    v.without_loaded_at
                )?;
            }
            if let (Some(after), Some(rate)) =
                (v.last_row_after_load_secs, v.pipeline_events_per_sec)
            {
                writeln!(
                    out,
                    "  drain      last row loaded {after:.2} s after the last answer; {rate} TUNE events/s from first request to last row"
                )?;
            }
        } else if let Some(e) = &self.verify_error {
            writeln!(out, "verify: did not finish: {e}")?;
        }
        if self.ok {
            writeln!(out, "result: ok")?;
        } else {
            writeln!(out, "result: FAILED: {}", self.failures.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::latency_histogram;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = latency_histogram();
        // 1..=1000 ms, once each.
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let s = LatencySummary::from_histogram(&h).unwrap();
        assert_eq!(s.count, 1000);
        // 3 significant digits: within 0.1%.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p90_ms, 900.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.mean_ms, 500.5), "{s:?}");
        assert!(s.p50_ms <= s.p90_ms && s.p90_ms <= s.p99_ms && s.p99_ms <= s.max_ms);
    }

    #[test]
    fn one_slow_request_shows_only_at_the_top() {
        let mut h = latency_histogram();
        for _ in 0..999 {
            h.record(2_000).unwrap();
        }
        h.record(5_000_000).unwrap();
        let s = LatencySummary::from_histogram(&h).unwrap();
        assert!((s.p50_ms - 2.0).abs() < 0.01);
        assert!((s.p99_ms - 2.0).abs() < 0.01);
        assert!((s.max_ms - 5000.0).abs() < 5.0);
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        assert_eq!(LatencySummary::from_histogram(&latency_histogram()), None);
    }

    #[test]
    fn milliseconds_format() {
        assert_eq!(fmt_ms(0.844), "0.84 ms");
        assert_eq!(fmt_ms(212.44), "212.4 ms");
        assert_eq!(fmt_ms(1520.0), "1.52 s");
    }

    fn run_info() -> RunInfo {
        RunInfo {
            run_id: "r".into(),
            url: "http://127.0.0.1:8080/events".into(),
            kind: Kind::Tune,
            total: 200,
            events_per_request: 100,
            requests: 2,
            concurrency: 2,
            ndjson: false,
            gzip: true,
            body_mib: mib(3 * 1024 * 1024),
            generate_secs: 0.01,
        }
    }

    fn load_summary(accepted: u64) -> LoadSummary {
        LoadSummary {
            requests: 2,
            requests_accepted: accepted / 100,
            requests_failed: 2 - accepted / 100,
            events_sent: 200,
            events_accepted: accepted,
            wall_secs: 0.5,
            events_per_sec: accepted as f64 * 2.0,
            requests_per_sec: 4.0,
            latency: None,
            errors: if accepted < 200 {
                BTreeMap::from([("HTTP 503 queue_unavailable".to_owned(), 1)])
            } else {
                BTreeMap::new()
            },
            warnings: BTreeMap::new(),
        }
    }

    #[test]
    fn failures_decide_ok() {
        let ok = Summary::new(run_info(), load_summary(200), None, None);
        assert!(ok.ok && ok.failures.is_empty());
        assert!(ok.human().contains("result: ok"));
        assert_eq!(ok.run.body_mib, 3.0);

        // Errors alone do not fail a run: 503 under overload is a result.
        let partial = Summary::new(run_info(), load_summary(100), None, None);
        assert!(partial.ok);
        assert!(partial.human().contains("HTTP 503 queue_unavailable"));

        let nothing = Summary::new(run_info(), load_summary(0), None, None);
        assert!(!nothing.ok);

        let verify = VerifySummary {
            database: "sqlite",
            waited_secs: 1.0,
            timed_out: true,
            tables: vec![TableCheck {
                table: "tune_events",
                expected: 200,
                found: 199,
                missing: 1,
                duplicated_events: 2,
                duplicate_rows: 2,
                unaccepted_rows: 0,
                missing_sample: vec!["r-7".into()],
            }],
            end_to_end: None,
            loaded_before_answer: 0,
            without_loaded_at: 0,
            last_row_after_load_secs: None,
            pipeline_events_per_sec: None,
        };
        let failed = Summary::new(run_info(), load_summary(200), Some(verify), None);
        assert!(!failed.ok);
        assert_eq!(failed.failures.len(), 2, "{:?}", failed.failures);
        let human = failed.human();
        assert!(human.contains("missing e.g. r-7"), "{human}");
        assert!(human.contains("result: FAILED"), "{human}");

        let json: serde_json::Value = serde_json::from_str(&failed.to_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["verify"]["tables"][0]["missing"], 1);
        assert_eq!(json["run"]["kind"], "tune");
        assert_eq!(json["load"]["events_accepted"], 200);
    }
}
