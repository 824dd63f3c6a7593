//! `sluice top`: a live terminal view of running ingest and writer services,
//! read from their `/metrics`.
//!
//! Why: between "is it up" and a Grafana dashboard there is the operator at
//! a terminal who wants to see, right now, whether events come in, rows go
//! out, the queue grows and how far behind the writers are. `top` scrapes
//! the addresses it is given (any number of each, e.g. a writer per host)
//! every `--interval` and draws rates and sparklines; `q` quits.
//!
//! A scraper task fetches every address each round and hands the round to
//! the drawing loop, which runs on a blocking thread (terminal input is
//! blocking) and redraws on each round, key or resize.
//!
//! Files: `prom` (reading the text format), `stats` (totals, rates,
//! percentiles, histories), `ui` (drawing).

mod prom;
mod stats;
mod ui;

use std::time::{Duration, Instant};

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use stats::{Stats, Totals};
use ui::TargetState;

#[derive(Debug, Args)]
pub struct TopArgs {
    /// An ingest service to watch: http://host:port (its /metrics is read).
    /// Repeat for several.
    #[arg(long = "ingest", value_name = "URL")]
    ingest: Vec<String>,
    /// A writer to watch: http://host:port (its /metrics is read). Repeat
    /// for several.
    #[arg(long = "writer", value_name = "URL")]
    writer: Vec<String>,
    /// Seconds between scrapes (0.2 to 60).
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error("sluice top needs a terminal: {0}")]
    Terminal(std::io::Error),
}

/// One address to scrape.
#[derive(Debug, Clone)]
struct Target {
    role: &'static str,
    shown: String,
    metrics: reqwest::Url,
}

/// What one round of scrapes found, in the order of the targets.
struct Round {
    at: Instant,
    results: Vec<Result<prom::Scrape, String>>,
}

pub async fn run(args: TopArgs) -> Result<(), TopError> {
    let targets = targets(&args)?;
    if !(0.2..=60.0).contains(&args.interval) {
        return Err(TopError::Flag {
            flag: "--interval",
            reason: "expected 0.2 to 60 seconds".into(),
        });
    }
    let every = Duration::from_secs_f64(args.interval);
    let (tx, rx) = mpsc::channel(4);
    let scraper = tokio::spawn(scrape(targets.clone(), every, tx));
    let result = tokio::task::spawn_blocking(move || show(targets, rx, args.interval)).await;
    scraper.abort();
    match result {
        Ok(result) => result,
        Err(e) => Err(TopError::Terminal(std::io::Error::other(e.to_string()))),
    }
}

/// The targets of the flags, each a valid http(s) URL of a `/metrics`.
fn targets(args: &TopArgs) -> Result<Vec<Target>, TopError> {
    if args.ingest.is_empty() && args.writer.is_empty() {
        return Err(TopError::Flag {
            flag: "--ingest/--writer",
            reason: "give at least one address to watch, e.g. --ingest http://127.0.0.1:8080 --writer http://127.0.0.1:9090".into(),
        });
    }
    let mut out = Vec::new();
    for (role, flag, list) in [
        ("ingest", "--ingest", &args.ingest),
        ("writer", "--writer", &args.writer),
    ] {
        for raw in list {
            let metrics = metrics_url(raw).ok_or_else(|| TopError::Flag {
                flag,
                reason: format!("expected http://host:port, got {raw:?}"),
            })?;
            out.push(Target {
                role,
                shown: raw.trim().to_owned(),
                metrics,
            });
        }
    }
    Ok(out)
}

/// `host:port` or `http://host:port[/path]` to the URL of its metrics
/// (`/metrics` unless a path is given).
fn metrics_url(raw: &str) -> Option<reqwest::Url> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let mut url = reqwest::Url::parse(&with_scheme).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/metrics");
    }
    Some(url)
}

/// Scrapes every target each `every` until the receiver is gone.
async fn scrape(targets: Vec<Target>, every: Duration, tx: mpsc::Sender<Round>) {
    let client = match reqwest::Client::builder()
        .timeout(every.max(Duration::from_secs(1)))
        .build()
    {
        Ok(client) => client,
        Err(_) => return,
    };
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let fetches: Vec<_> = targets
            .iter()
            .map(|t| tokio::spawn(fetch(client.clone(), t.metrics.clone())))
            .collect();
        let mut results = Vec::with_capacity(fetches.len());
        for fetch in fetches {
            results.push(fetch.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        let round = Round {
            at: Instant::now(),
            results,
        };
        if tx.send(round).await.is_err() {
            return;
        }
    }
}

async fn fetch(client: reqwest::Client, url: reqwest::Url) -> Result<prom::Scrape, String> {
    let response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            "no answer".to_owned()
        } else if e.is_connect() {
            "cannot connect".to_owned()
        } else {
            "request failed".to_owned()
        }
    })?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status().as_u16()));
    }
    let text = response.text().await.map_err(|_| "body unreadable")?;
    Ok(prom::parse(&text))
}

/// The drawing loop (blocking): until `q`, Esc or Ctrl-C.
fn show(targets: Vec<Target>, mut rx: mpsc::Receiver<Round>, every: f64) -> Result<(), TopError> {
    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let mut stats = Stats::default();
    let mut states: Vec<TargetState> = targets
        .iter()
        .map(|t| TargetState {
            role: t.role,
            url: t.shown.clone(),
            error: Some("waiting".into()),
        })
        .collect();
    let result = loop {
        while let Ok(round) = rx.try_recv() {
            take(&targets, round, &mut stats, &mut states);
        }
        if let Err(e) = terminal.draw(|frame| ui::draw(frame, &stats, &states, every)) {
            break Err(TopError::Terminal(e));
        }
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                        break Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => break Err(TopError::Terminal(e)),
            },
            Err(e) => break Err(TopError::Terminal(e)),
        }
    };
    ratatui::restore();
    result
}

/// Folds one round into the figures and the targets' states.
fn take(targets: &[Target], round: Round, stats: &mut Stats, states: &mut [TargetState]) {
    let mut ingests = Vec::new();
    let mut writers = Vec::new();
    for ((target, result), state) in targets.iter().zip(&round.results).zip(states.iter_mut()) {
        match result {
            Ok(scrape) => {
                state.error = None;
                match target.role {
                    "ingest" => ingests.push(scrape),
                    _ => writers.push(scrape),
                }
            }
            Err(e) => state.error = Some(e.clone()),
        }
    }
    stats.update(round.at, Totals::of(&ingests, &writers));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_metrics_urls() {
        let url = |s: &str| metrics_url(s).map(|u| u.to_string());
        assert_eq!(
            url("127.0.0.1:9090").as_deref(),
            Some("http://127.0.0.1:9090/metrics")
        );
        assert_eq!(
            url("http://localhost:8080/").as_deref(),
            Some("http://localhost:8080/metrics")
        );
        assert_eq!(
            url("https://w.example:1/custom").as_deref(),
            Some("https://w.example:1/custom")
        );
        assert_eq!(url("ftp://x:1"), None);
        assert_eq!(url(""), None);
    }
}
