//! The command-line arguments of the PII operations, and running them.

use clap::Args;

use super::{OpsError, forget, keys, lookup, open, operator, rekey};
use crate::configuration::Config;

/// Rows per slice (one transaction each) unless `--batch-rows` says.
const DEFAULT_BATCH_ROWS: &str = "5000";

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Print JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// The flags of every operation that sweeps the tables and may change rows
/// (`rekey`, `forget`): one definition, so they read and default alike.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Count what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Rows per transaction.
    #[arg(long, default_value = DEFAULT_BATCH_ROWS, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_rows: u32,
    /// Who is running it, for the audit log (defaults to $USER).
    #[arg(long, env = "SLUICE_OPERATOR")]
    pub operator: Option<String>,
}

/// `rekey` takes the sweep's flags alone.
pub type RekeyArgs = SweepArgs;

#[derive(Debug, Args)]
pub struct LookupArgs {
    /// The field, as the policy names it: ip, device_id, email, …
    pub field: String,
    /// The value as it arrived (never printed or logged).
    pub value: String,
    /// Also count the rows per table holding it.
    #[arg(long)]
    pub count: bool,
    /// Who is asking, for the audit log (defaults to $USER).
    #[arg(long, env = "SLUICE_OPERATOR")]
    pub operator: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// FIELD VALUE pairs, e.g. `ip 203.0.113.7 device_id 123-45-6789`.
    #[arg(required = true, num_args = 2.., value_names = ["FIELD", "VALUE"])]
    pub pairs: Vec<String>,
    /// Delete the subject's TUNE events and adjustments instead of clearing
    /// their masked values.
    #[arg(long)]
    pub delete_events: bool,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

pub async fn keys(config: &Config, args: KeysArgs) -> Result<(), OpsError> {
    let (masker, store) = open(config).await?;
    keys::run(&masker, &store, args.json).await
}

pub async fn rekey(config: &Config, args: RekeyArgs) -> Result<(), OpsError> {
    let (masker, store) = open(config).await?;
    let who = operator(args.operator);
    rekey::run(masker, &store, &who, args.dry_run, args.batch_rows as usize).await
}

pub async fn lookup(config: &Config, args: LookupArgs) -> Result<(), OpsError> {
    let who = operator(args.operator);
    if args.count {
        let (masker, store) = open(config).await?;
        lookup::run(masker, Some(&store), &who, &args.field, &args.value).await
    } else {
        // The forms need only the keys, not the database.
        let masker = config.pii.masker()?;
        lookup::run(masker, None, &who, &args.field, &args.value).await
    }
}

pub async fn forget(config: &Config, args: ForgetArgs) -> Result<(), OpsError> {
    if !args.pairs.len().is_multiple_of(2) {
        return Err(OpsError::Usage(
            "forget: expected FIELD VALUE pairs (an even number of arguments)".to_owned(),
        ));
    }
    let (masker, store) = open(config).await?;
    let pairs = args
        .pairs
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let request = forget::Request {
        pairs,
        delete_events: args.delete_events,
        dry_run: args.sweep.dry_run,
        batch_rows: args.sweep.batch_rows as usize,
    };
    forget::run(masker, &store, &operator(args.sweep.operator), request).await
}
