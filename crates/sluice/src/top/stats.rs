//! From scrapes to what `sluice top` shows: totals summed over the
//! services, rates between two rounds, lag percentiles from histogram
//! buckets, and a short history of each figure for its sparkline.
//!
//! Ingest figures are read from the `--ingest` addresses only and writer
//! figures from the `--writer` ones: `sluice up` serves one registry at both,
//! and reading every metric everywhere would count it twice. Queue depth is
//! the largest any writer reports, not the sum: every writer of a queue
//! reports the same queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use sluice_ingest::metrics as ingest;
use sluice_writer::metrics as writer;

use super::prom::{Sample, Scrape};

/// Writer lag, `received_at` to commit, as a histogram (lane names fixed in
/// the project's shared metric list).
pub const LAG_SECONDS: &str = "sluice_writer_lag_seconds";
/// Queue depth gauge, label `state` = `visible` | `in_flight` | `dead_letter`.
pub const QUEUE_MESSAGES: &str = "sluice_writer_queue_messages";

/// Samples kept for each sparkline.
pub const HISTORY: usize = 240;
/// Lag percentiles cover the observations of about this long.
const LAG_WINDOW: Duration = Duration::from_secs(10);

/// Messages by state, as the writers report them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Depth {
    pub visible: Option<f64>,
    pub in_flight: Option<f64>,
    pub dead_letter: Option<f64>,
}

/// Cumulative figures of one round; `None` where no service reported one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub events_accepted: Option<f64>,
    /// Ingest's 5xx answers and queue errors.
    pub ingest_errors: Option<f64>,
    pub rows_written: Option<f64>,
    pub rejected: Option<f64>,
    pub writer_errors: Option<f64>,
    pub depth: Depth,
    /// `(le, cumulative count)` of the lag histogram, summed over writers.
    pub lag_buckets: Option<Vec<(f64, f64)>>,
}

/// Adds two optional figures: absent only when both are.
fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Totals {
    /// The totals of the scrapes that answered.
    pub fn of(ingests: &[&Scrape], writers: &[&Scrape]) -> Self {
        let mut t = Totals::default();
        for s in ingests {
            t.events_accepted = add(t.events_accepted, s.sum(ingest::EVENTS_ACCEPTED));
            let server_errors = s.sum_where(ingest::REQUESTS, |x| {
                x.label("status").is_some_and(|c| c.starts_with('5'))
            });
            let errors = add(server_errors, s.sum(ingest::QUEUE_ERRORS));
            t.ingest_errors = add(t.ingest_errors, errors);
        }
        for s in writers {
            t.rows_written = add(t.rows_written, s.sum(writer::ROWS_WRITTEN));
            t.rejected = add(t.rejected, s.sum(writer::REJECTED_RECORDS));
            t.writer_errors = add(t.writer_errors, s.sum(writer::ERRORS));
            let state = |name: &str| {
                s.named(QUEUE_MESSAGES)
                    .filter(|x| x.label("state") == Some(name))
                    .map(|x| x.value)
                    .reduce(|a, b| a + b)
            };
            t.depth.visible = max(t.depth.visible, state("visible"));
            t.depth.in_flight = max(t.depth.in_flight, state("in_flight"));
            t.depth.dead_letter = max(t.depth.dead_letter, state("dead_letter"));
            if let Some(buckets) = buckets(s.named(&format!("{LAG_SECONDS}_bucket"))) {
                t.lag_buckets = Some(match t.lag_buckets.take() {
                    Some(sum) => merge(&sum, &buckets),
                    None => buckets,
                });
            }
        }
        t
    }
}

/// `(le, count)` pairs of bucket samples, summed per bound, sorted by bound.
fn buckets<'a>(samples: impl Iterator<Item = &'a Sample>) -> Option<Vec<(f64, f64)>> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for sample in samples {
        let Some(le) = sample.label("le").and_then(parse_le) else {
            continue;
        };
        match out.iter_mut().find(|(b, _)| *b == le) {
            Some((_, count)) => *count += sample.value,
            None => out.push((le, sample.value)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    (!out.is_empty()).then_some(out)
}

fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => text.parse().ok().filter(|v: &f64| !v.is_nan()),
    }
}

/// Bucket lists added bound by bound.
fn merge(a: &[(f64, f64)], b: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = a.to_vec();
    for &(le, count) in b {
        match out.iter_mut().find(|(x, _)| *x == le) {
            Some((_, c)) => *c += count,
            None => out.push((le, count)),
        }
    }
    out.sort_by(|x, y| x.0.total_cmp(&y.0));
    out
}

/// `newer - older`, bound by bound (a bound missing from `older` counts 0).
fn delta(newer: &[(f64, f64)], older: &[(f64, f64)]) -> Vec<(f64, f64)> {
    newer
        .iter()
        .map(|&(le, count)| {
            let before = older.iter().find(|(x, _)| *x == le).map_or(0.0, |b| b.1);
            (le, (count - before).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated within the bucket
/// it falls in as PromQL's `histogram_quantile` does; `None` with no
/// observations. One past the last finite bound is that bound.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            if count <= below {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below) / (count - below));
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

/// One figure: its latest value and its recent history.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub now: Option<f64>,
    /// Scaled to whole numbers for the sparkline; absent values are 0.
    pub history: VecDeque<u64>,
}

impl Series {
    fn push(&mut self, value: Option<f64>, scale: f64) {
        self.now = value;
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        let scaled = value.map_or(0.0, |v| (v * scale).round());
        self.history
            .push_back(if scaled.is_finite() && scaled > 0.0 {
                scaled as u64
            } else {
                0
            });
    }
}

/// Everything the view draws.
#[derive(Debug, Default)]
pub struct Stats {
    pub events_per_sec: Series,
    pub rows_per_sec: Series,
    pub errors_per_sec: Series,
    pub rejected_per_sec: Series,
    pub visible: Series,
    /// Seconds.
    pub lag_p99: Series,
    pub lag_p50: Option<f64>,
    pub latest: Totals,
    /// Rounds within the lag window, oldest first.
    recent: VecDeque<(Instant, Totals)>,
}

impl Stats {
    /// Takes one round's totals, taken at `at`.
    pub fn update(&mut self, at: Instant, totals: Totals) {
        if let Some((then, prev)) = self.recent.back() {
            let secs = at.saturating_duration_since(*then).as_secs_f64();
            let rate = |now: Option<f64>, before: Option<f64>| rate(now, before, secs);
            self.events_per_sec
                .push(rate(totals.events_accepted, prev.events_accepted), 10.0);
            self.rows_per_sec
                .push(rate(totals.rows_written, prev.rows_written), 10.0);
            let errors = add(totals.ingest_errors, totals.writer_errors);
            let errors_before = add(prev.ingest_errors, prev.writer_errors);
            self.errors_per_sec.push(rate(errors, errors_before), 10.0);
            self.rejected_per_sec
                .push(rate(totals.rejected, prev.rejected), 10.0);
        }
        self.visible.push(totals.depth.visible, 1.0);
        self.recent.push_back((at, totals.clone()));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| at.saturating_duration_since(*t) > LAG_WINDOW)
        {
            self.recent.pop_front();
        }
        let (p50, p99) = self.lag();
        self.lag_p50 = p50;
        self.lag_p99.push(p99, 1000.0);
        self.latest = totals;
    }

    /// Lag p50 and p99 over the window; since the start when nothing was
    /// committed within it.
    fn lag(&self) -> (Option<f64>, Option<f64>) {
        let Some(newest) = self.recent.back().and_then(|(_, t)| t.lag_buckets.clone()) else {
            return (None, None);
        };
        let oldest = self.recent.front().and_then(|(_, t)| t.lag_buckets.clone());
        let window = oldest.map_or_else(|| newest.clone(), |o| delta(&newest, &o));
        let use_window = window.last().is_some_and(|(_, n)| *n > 0.0);
        let buckets = if use_window { &window } else { &newest };
        (quantile(buckets, 0.5), quantile(buckets, 0.99))
    }
}

/// Per second between two readings of a counter; a reset (a restart) counts
/// from zero.
fn rate(now: Option<f64>, before: Option<f64>, secs: f64) -> Option<f64> {
    let (now, before) = (now?, before?);
    if secs <= 0.0 {
        return None;
    }
    let grown = if now >= before { now - before } else { now };
    Some(grown / secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::prom::parse;

    const INGEST: &str = "sluice_ingest_events_accepted_total 100\n\
        sluice_ingest_requests_total{status=\"202\"} 10\n\
        sluice_ingest_requests_total{status=\"503\"} 2\n";
    const WRITER: &str = "sluice_writer_rows_written_total{table=\"user_logins\"} 90\n\
        sluice_writer_rows_written_total{table=\"rejected_records\"} 5\n\
        sluice_writer_rejected_records_total 5\n\
        sluice_writer_errors_total{kind=\"db_transient\"} 1\n\
        sluice_writer_queue_messages{state=\"visible\"} 7\n\
        sluice_writer_queue_messages{state=\"in_flight\"} 3\n\
        sluice_writer_lag_seconds_bucket{le=\"0.1\"} 10\n\
        sluice_writer_lag_seconds_bucket{le=\"1\"} 90\n\
        sluice_writer_lag_seconds_bucket{le=\"+Inf\"} 100\n";

    #[test]
    fn totals_read_each_side_and_take_the_largest_depth() {
        let (i, w) = (parse(INGEST), parse(WRITER));
        let other = parse("sluice_writer_queue_messages{state=\"visible\"} 9\n");
        let t = Totals::of(&[&i], &[&w, &other]);
        assert_eq!(t.events_accepted, Some(100.0));
        assert_eq!(t.ingest_errors, Some(2.0));
        assert_eq!(t.rows_written, Some(95.0));
        assert_eq!(t.rejected, Some(5.0));
        assert_eq!(t.writer_errors, Some(1.0));
        assert_eq!(t.depth.visible, Some(9.0));
        assert_eq!(t.depth.in_flight, Some(3.0));
        assert_eq!(t.depth.dead_letter, None, "absent, not zero");
        // The writer side does not read ingest's metrics, and vice versa.
        let t = Totals::of(&[&w], &[&i]);
        assert_eq!((t.events_accepted, t.rows_written), (None, None));
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let b = [(0.1, 10.0), (1.0, 90.0), (f64::INFINITY, 100.0)];
        assert!((quantile(&b, 0.5).unwrap() - 0.55).abs() < 1e-9);
        // In the +Inf bucket: the largest finite bound.
        assert_eq!(quantile(&b, 0.99), Some(1.0));
        assert!((quantile(&b, 0.05).unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(quantile(&[(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn rates_between_rounds_and_lag_over_the_window() {
        let mut stats = Stats::default();
        let start = Instant::now();
        stats.update(start, Totals::of(&[&parse(INGEST)], &[&parse(WRITER)]));
        assert_eq!(stats.events_per_sec.now, None, "one round has no rate");
        assert!(stats.lag_p99.now.is_some(), "lag since the start");
        let later = INGEST.replace(" 100\n", " 300\n");
        let writer_later = WRITER
            .replace("user_logins\"} 90", "user_logins\"} 290")
            .replace("le=\"0.1\"} 10\n", "le=\"0.1\"} 110\n")
            .replace("le=\"1\"} 90\n", "le=\"1\"} 190\n")
            .replace("le=\"+Inf\"} 100", "le=\"+Inf\"} 200");
        stats.update(
            start + Duration::from_secs(2),
            Totals::of(&[&parse(&later)], &[&parse(&writer_later)]),
        );
        assert_eq!(stats.events_per_sec.now, Some(100.0));
        assert_eq!(stats.rows_per_sec.now, Some(100.0));
        assert_eq!(stats.errors_per_sec.now, Some(0.0));
        assert_eq!(stats.visible.now, Some(7.0));
        // The window's 100 new observations all fell under 0.1 s.
        assert!(stats.lag_p99.now.unwrap() <= 0.1, "{:?}", stats.lag_p99.now);
        assert_eq!(stats.events_per_sec.history.back(), Some(&1000));
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        assert_eq!(rate(Some(5.0), Some(100.0), 1.0), Some(5.0));
        assert_eq!(rate(Some(5.0), None, 1.0), None);
    }
}
