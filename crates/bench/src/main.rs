//! `sluice-bench`: load generator for sluice-ingest, with an end-to-end
//! check against the writer's database.
//!
//! Exit codes: 0 the run passed; 1 it failed (nothing accepted, an accepted
//! event missing or duplicated, or the check could not finish); 2 bad flags
//! or settings, or the database was not ready before the load.

mod args;
mod generate;
mod load;
mod report;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sluice_core::config::DatabaseUrl;

use crate::args::{Args, Kind};
use crate::generate::{BodyFormat, Generator, Plan};
use crate::load::LoadConfig;
use crate::report::{LoadSummary, RunInfo, Summary, VerifySummary};
use crate::verify::{Db, Expectation, Table};

/// How often the database is polled while waiting for rows.
const POLL: Duration = Duration::from_millis(100);

/// A failure before the load started (exit 2).
struct Setup(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Setup {
    fn from(e: E) -> Self {
        Setup(e.into())
    }
}

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one stops the program.
    if let Err(line) = sluice_core::config::load_dotenv() {
        eprintln!("error: {line}");
        return ExitCode::from(2);
    }
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(summary) if summary.ok => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(Setup(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<Summary, Setup> {
    let url = args::parse_url(&args.url).map_err(anyhow::Error::msg)?;
    let run_id = args.run_id.clone().unwrap_or_else(args::fresh_run_id);
    let plan = Plan::new(args.total, args.events_per_request);
    let format = BodyFormat {
        ndjson: args.ndjson,
        gzip: args.gzip,
    };
    let tables: &[Table] = match args.kind {
        Kind::Tune => &[Table::TuneEvents],
        Kind::Login => &[Table::UserLogins],
        Kind::Mixed => &[Table::TuneEvents, Table::UserLogins],
    };

    // The database first: a check that cannot run should stop the run
    // before the load, not after it.
    let db = match args.verify_url() {
        Some(raw) => {
            let parsed = DatabaseUrl::parse(raw)?;
            let db = Db::connect(&parsed).await?;
            db.preflight(tables, &verify::like_prefix_pattern(&run_id))
                .await?;
            Some(db)
        }
        None => None,
    };

    let generator = Generator::new(&run_id, args.kind, chrono::Utc::now().timestamp());
    eprintln!(
        "sluice-bench: run {run_id}: building {} {} bodies of {} {} events...",
        plan.requests(),
        format.describe(),
        plan.per_request.min(plan.total),
        args.kind.label()
    );
    let started = Instant::now();
    let bodies = {
        let generator = generator.clone();
        tokio::task::spawn_blocking(move || generate::build_bodies(&generator, &plan, format))
            .await?
    };
    let generate_secs = started.elapsed().as_secs_f64();
    let body_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
    let bodies = Arc::new(bodies);

    let config = LoadConfig {
        url: url.clone(),
        token: args.bearer().map(str::to_owned),
        concurrency: args.concurrency as usize,
        timeout: args.timeout(),
        format,
        progress_every: Some(Duration::from_secs(5)),
        retry_for: Duration::from_secs(args.retry),
        idempotency_prefix: args.idempotency_keys.then(|| run_id.clone()),
    };
    eprintln!(
        "sluice-bench: posting to {url} at concurrency {}...",
        config.concurrency
    );
    let load = load::run(&config, plan, bodies).await?;

    let mut verify_summary = None;
    let mut verify_error = None;
    if let Some(db) = &db {
        if load.events_accepted == 0 {
            verify_error = Some("no event was accepted, nothing to look for".to_owned());
        } else {
            eprintln!(
                "sluice-bench: waiting up to {} s for {} accepted events in the database...",
                args.wait_secs, load.events_accepted
            );
            let expect = Expectation {
                generator: &generator,
                plan,
                accepted_at_us: &load.accepted_at_us,
            };
            match verify::verify(db, &expect, tables, args.wait(), POLL).await {
                Ok(v) => verify_summary = Some(VerifySummary::new(&v, &load)),
                Err(e) => verify_error = Some(format!("{e:#}")),
            }
        }
    }

    let run = RunInfo {
        run_id,
        url: url.to_string(),
        kind: args.kind,
        total: plan.total,
        events_per_request: plan.per_request,
        requests: plan.requests() as u64,
        concurrency: u64::from(args.concurrency),
        ndjson: args.ndjson,
        gzip: args.gzip,
        body_mib: report::mib(body_bytes),
        generate_secs: (generate_secs * 1000.0).round() / 1000.0,
    };
    let summary = Summary::new(run, LoadSummary::new(&load), verify_summary, verify_error);
    if args.json {
        eprint!("{}", summary.human());
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.human());
    }
    Ok(summary)
}
