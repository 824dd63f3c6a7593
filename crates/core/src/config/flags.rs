//! The command-line flags both services take. A flag wins over its
//! variable: [`Flags::over`] lays them over the environment, so the
//! service's loader reads one [`Env`] and never a CLI struct.

use super::Env;

/// `--queue-url`, `--addr` and `--log-format`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// SQS queue URL, or sqlite:///path/queue.db for the embedded queue
    /// [default: $QUEUE_URL].
    #[arg(long, global = true)]
    pub queue_url: Option<String>,
    /// Listen address, host:port [default: the service's *_ADDR variable].
    #[arg(long, global = true)]
    pub addr: Option<String>,
    /// text or json [default: $LOG_FORMAT, else text].
    #[arg(long, global = true)]
    pub log_format: Option<String>,
}

impl Flags {
    /// `env` with these flags winning; `addr_variable` is the service's own
    /// listen address variable.
    pub fn over(self, env: Env, addr_variable: &'static str) -> Env {
        env.with("QUEUE_URL", self.queue_url)
            .with(addr_variable, self.addr)
            .with("LOG_FORMAT", self.log_format)
    }
}
