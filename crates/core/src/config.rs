//! Parsing and validating settings shared by both binaries.
//!
//! Every error names the variable and what is expected in one line, because a
//! misconfigured service should stop with a sentence an operator can act on,
//! not a backtrace. Values are never echoed back when they may be secret;
//! the ones that are secret are held in `secrecy` types, which print as
//! `[REDACTED]`.
//!
//! Each service has one loader (its `configuration.rs`) that reads an
//! [`Env`] once and validates everything; what both share is here.

mod env;
mod flags;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

pub use env::{Env, parse_bytes};
pub use flags::Flags;
/// For readers of a secret setting, without a `secrecy` dependency of their own.
pub use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {expected}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub expected: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, expected: impl Into<String>) -> Self {
        Self {
            variable,
            expected: expected.into(),
        }
    }
}

/// The database a writer loads into, chosen by the URL's scheme. A
/// PostgreSQL URL may carry a password: it is a secret, shown only
/// [`redacted`](DatabaseUrl::redacted).
#[derive(Debug, Clone)]
pub enum DatabaseUrl {
    Postgres(SecretString),
    Sqlite(PathBuf),
}

impl PartialEq for DatabaseUrl {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Postgres(a), Self::Postgres(b)) => a.expose_secret() == b.expose_secret(),
            (Self::Sqlite(a), Self::Sqlite(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for DatabaseUrl {}

/// The file of a `sqlite:` URL, given what follows the scheme
/// (`///abs/path`, `//rel/path` or `rel/path`, a `?query` ignored);
/// `None` when it names no file.
fn sqlite_path(rest: &str) -> Option<PathBuf> {
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.ends_with('/')).then(|| PathBuf::from(path))
}

const DATABASE_URL_EXPECTED: &str =
    "expected postgres://user:pass@host:5432/db or sqlite:///path/to/file.db";

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("is empty; {DATABASE_URL_EXPECTED}"),
            ));
        }
        if let Some(rest) = raw.strip_prefix("sqlite:") {
            return sqlite_path(rest).map(DatabaseUrl::Sqlite).ok_or_else(|| {
                ConfigError::new(
                    "DATABASE_URL",
                    format!("names no SQLite file; {DATABASE_URL_EXPECTED}"),
                )
            });
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            let after_scheme = raw.split_once("://").map(|(_, r)| r).unwrap_or_default();
            let host_part = after_scheme
                .rsplit_once('@')
                .map_or(after_scheme, |(_, h)| h);
            let host = host_part.split(['/', '?']).next().unwrap_or_default();
            if host.is_empty() && !after_scheme.contains("host=") {
                return Err(ConfigError::new(
                    "DATABASE_URL",
                    format!("has no host; {DATABASE_URL_EXPECTED}"),
                ));
            }
            return Ok(DatabaseUrl::Postgres(raw.into()));
        }
        // Do not echo the URL: it may carry a password.
        let scheme = raw.split_once(':').map_or("none", |(s, _)| s);
        let scheme: String = scheme.chars().take(20).collect();
        Err(ConfigError::new(
            "DATABASE_URL",
            format!("unsupported scheme '{scheme}'; {DATABASE_URL_EXPECTED}"),
        ))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DatabaseUrl::Postgres(_) => "postgres",
            DatabaseUrl::Sqlite(_) => "sqlite",
        }
    }

    /// The URL for error lines, without its password (in the user part or
    /// a `password` parameter): the host, database, `sslmode` and
    /// `sslrootcert` tell an operator which connection failed.
    pub fn redacted(&self) -> String {
        let raw = match self {
            DatabaseUrl::Sqlite(path) => return format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(raw) => raw.expose_secret(),
        };
        let Ok(mut url) = url::Url::parse(raw) else {
            return "postgres://…".to_owned();
        };
        if url.password().is_some() {
            let _ = url.set_password(None);
        }
        // Decoded, for reading: a path shows as a path.
        let kept: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| !k.to_ascii_lowercase().contains("password"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        url.set_query(None);
        if kept.is_empty() {
            url.to_string()
        } else {
            format!("{url}?{}", kept.join("&"))
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(ConfigError::new("LOG_FORMAT", "expected text or json")),
        }
    }
}

/// Everything that stops a service at start, each shown as one line naming
/// the setting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// `doing` says what failed: "reach the queue", "open the queue and
    /// its dead-letter queue", ….
    #[error("QUEUE_URL: cannot {doing} at {url}: {reason}")]
    Queue {
        doing: &'static str,
        url: String,
        reason: String,
    },
    /// Already says which database, never its password.
    #[error("DATABASE_URL: {0}")]
    Database(String),
    #[error("{variable}: cannot listen on {addr}: {reason}")]
    Listen {
        variable: &'static str,
        addr: SocketAddr,
        reason: String,
    },
}

impl StartError {
    /// For `map_err`: the queue at `url` could not be `doing`'s object.
    pub fn queue<E: std::fmt::Display>(
        doing: &'static str,
        url: &impl std::fmt::Display,
    ) -> impl FnOnce(E) -> Self {
        let url = url.to_string();
        move |e| Self::Queue {
            doing,
            url,
            reason: e.to_string(),
        }
    }

    pub fn listen(variable: &'static str, addr: SocketAddr, e: &std::io::Error) -> Self {
        Self::Listen {
            variable,
            addr,
            reason: e.to_string(),
        }
    }
}

/// How every Sluice binary stops on something it cannot use: the error as one
/// `error: …` line on stderr, exit code 2 — never a panic or a backtrace.
pub fn refuse(error: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("error: {error}");
    std::process::ExitCode::from(2)
}

/// How every Sluice binary starts: `.env` (a malformed one stops it), then
/// `run` on a multi-threaded Tokio runtime, to its exit code.
pub fn start<F, Fut>(run: F) -> std::process::ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = std::process::ExitCode>,
{
    // A missing .env is normal; a malformed one stops the program.
    if let Err(line) = load_dotenv() {
        return refuse(line);
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => refuse(format!("cannot start the async runtime: {e}")),
    }
}

/// A binary's exit: 0, or [`refuse`] with the error.
pub fn exit_code<E: std::fmt::Display>(result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => refuse(e),
    }
}

/// Loads `.env` from the working directory when there is one. dotenvy's own
/// message quotes the offending line, which may hold a secret, so the error
/// says where the file breaks, not what it holds. First, every variable
/// must be UTF-8 ([`check_utf8_env`]): checked before `.env` is read, since
/// dotenvy treats a non-UTF-8 variable as unset and would fill it in.
pub fn load_dotenv() -> Result<(), String> {
    check_utf8_env().map_err(|e| e.to_string())?;
    dotenv_file()
}

/// `.env` is read by every binary first; `.env.example` lists every variable
/// they read (a test keeps it exact), so it is also the list checked here.
const ENV_EXAMPLE: &str = include_str!("../../../.env.example");

/// Read by some binary but not something to put in `.env`.
const OTHER_VARIABLES: [&str; 3] = [
    "USER",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH",
];

/// Every environment variable a Sluice binary reads.
pub fn variables() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ENV_EXAMPLE
        .lines()
        .filter_map(|line| {
            let line = line.trim_start_matches('#').trim_start();
            let (name, _) = line.split_once('=')?;
            let ok = !name.is_empty()
                && name.starts_with(|c: char| c.is_ascii_uppercase())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            ok.then_some(name)
        })
        .chain(OTHER_VARIABLES)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Fails closed on a variable whose value is not valid UTF-8: the standard
/// library (and clap) would read it as unset, so a token or a limit given
/// with a stray byte would be silently ignored.
pub fn check_utf8_env() -> Result<(), ConfigError> {
    for name in variables() {
        if std::env::var_os(name).is_some_and(|v| v.to_str().is_none()) {
            return Err(ConfigError::new(
                name,
                "is not valid UTF-8; every setting must be UTF-8 text",
            ));
        }
    }
    Ok(())
}

fn dotenv_file() -> Result<(), String> {
    // glibc reads it only as the process starts, before `.env` is read: in
    // `.env` it would be silently ignored.
    if let Ok(entries) = dotenvy::dotenv_iter()
        && entries
            .flatten()
            .any(|(name, _)| name == "MALLOC_ARENA_MAX")
    {
        return Err(
            "MALLOC_ARENA_MAX: has no effect in .env (glibc reads it as the process \
                    starts); set it in the environment"
                .to_owned(),
        );
    }
    match dotenvy::dotenv() {
        Err(dotenvy::Error::LineParse(_, index)) => Err(format!(
            ".env: a line does not parse (at character {index}); expected NAME=value"
        )),
        Err(e) if !e.not_found() => Err(format!(
            ".env: cannot be read ({})",
            e.to_string().lines().next().unwrap_or_default()
        )),
        _ => Ok(()),
    }
}

/// What every service reads: how it logs, and where it listens.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// The service's `*_ADDR`.
    pub addr: SocketAddr,
    /// Which variable that is, for the error when it cannot be bound.
    pub addr_variable: &'static str,
}

impl Service {
    /// `LOG_FORMAT`, and the listen address from `addr_variable` or `default`.
    pub fn load(
        env: &Env,
        addr_variable: &'static str,
        default: &str,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            log_format: log_format(env)?,
            addr: listen_addr(env, addr_variable, default)?,
            addr_variable,
        })
    }

    /// For `map_err` on binding [`Service::addr`]: one line naming the
    /// variable and the address.
    pub fn cannot_listen(&self) -> impl FnOnce(std::io::Error) -> StartError {
        let Self {
            addr,
            addr_variable,
            ..
        } = *self;
        move |e| StartError::listen(addr_variable, addr, &e)
    }
}

/// A service ready to run: its listener bound, and the `parts` it runs on
/// (its queue, settings, …). What each service's `Application` is, so that
/// binding and reporting the address are written once.
pub struct Bound<T> {
    pub listener: tokio::net::TcpListener,
    pub parts: T,
}

impl<T> Bound<T> {
    pub async fn bind(addr: SocketAddr, parts: T) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self { listener, parts })
    }

    /// The address bound to (`127.0.0.1:0` in the unlikely case the OS
    /// cannot say): what tests bound to port 0 connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

/// `LOG_FORMAT`: text (the default) or json.
pub fn log_format(env: &Env) -> Result<LogFormat, ConfigError> {
    env.var("LOG_FORMAT").unwrap_or_default().parse()
}

/// A listen address, host:port, from `variable` or `default`.
pub fn listen_addr(
    env: &Env,
    variable: &'static str,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let raw = env.var(variable).unwrap_or_else(|| default.to_owned());
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::new(variable, format!("expected host:port such as {default}")))
}

/// Where the queue is: SQS (or an SQS-speaking emulator), or the embedded
/// SQLite queue for a single machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueUrl {
    /// An `http(s)://` SQS queue URL.
    Sqs(String),
    /// The file of an embedded queue (`sqlite:///abs/path`, `sqlite://rel/path`, `sqlite:rel/path`).
    Sqlite(PathBuf),
}

impl std::fmt::Display for QueueUrl {
    /// The URL form, for logs: `sqlite:///abs/path` or `sqlite://rel/path`
    /// for a file (both parse back to the same path).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueUrl::Sqs(url) => f.write_str(url),
            QueueUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

const QUEUE_URL_EXPECTED: &str = "expected an SQS queue URL such as http://localhost:4566/000000000000/login-queue or an embedded queue file such as sqlite:///var/lib/sluice/queue.db";

/// `QUEUE_URL`, when set: well-formed.
pub fn queue_url(env: &Env) -> Result<Option<QueueUrl>, ConfigError> {
    env.var("QUEUE_URL")
        .map(|raw| parse_queue_url(&raw))
        .transpose()
}

/// `QUEUE_URL` (or the queue's settings) for what needs a queue: refused
/// when unset.
pub fn require_queue_url<T>(url: Option<T>) -> Result<T, ConfigError> {
    url.ok_or_else(|| ConfigError::new("QUEUE_URL", format!("is not set; {QUEUE_URL_EXPECTED}")))
}

/// Parses `QUEUE_URL`: an `http(s)://` SQS URL, or `sqlite:` and a file path
/// (the same forms as `DATABASE_URL`'s SQLite file).
pub fn parse_queue_url(raw: &str) -> Result<QueueUrl, ConfigError> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("sqlite:") {
        let Some(path) = sqlite_path(rest) else {
            return Err(ConfigError::new(
                "QUEUE_URL",
                format!("names no queue file; {QUEUE_URL_EXPECTED}"),
            ));
        };
        // SQLite opens `:memory:` in memory whatever the flags: a queue that
        // vanishes at exit, and one per process.
        if path.as_os_str() == ":memory:" {
            return Err(ConfigError::new(
                "QUEUE_URL",
                format!("an in-memory queue would lose accepted events; {QUEUE_URL_EXPECTED}"),
            ));
        }
        return Ok(QueueUrl::Sqlite(path));
    }
    if (raw.starts_with("http://") || raw.starts_with("https://")) && raw.len() > "https://".len() {
        Ok(QueueUrl::Sqs(raw.to_owned()))
    } else {
        Err(ConfigError::new("QUEUE_URL", QUEUE_URL_EXPECTED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://rel/x.db").unwrap(),
            DatabaseUrl::Sqlite("rel/x.db".into())
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:x.db").unwrap(),
            DatabaseUrl::Sqlite("x.db".into())
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u:p@localhost:5432/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        let err = DatabaseUrl::parse("mysql://root:secret@h/db").unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(!err.to_string().contains("secret"));
        assert!(DatabaseUrl::parse("postgres://").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("").is_err());
        assert!(DatabaseUrl::parse("not a url").is_err());
    }

    #[test]
    fn database_url_redacted() {
        let url = DatabaseUrl::parse(
            "postgres://app:s3cret@db.example.com:5432/sluice?sslmode=verify-full&sslrootcert=/etc/ca.pem&password=s3cret",
        )
        .unwrap();
        assert_eq!(
            url.redacted(),
            "postgres://app@db.example.com:5432/sluice?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        );
        let plain = DatabaseUrl::parse("postgres://app:s3cret@localhost/db").unwrap();
        assert_eq!(plain.redacted(), "postgres://app@localhost/db");
        let sqlite = DatabaseUrl::parse("sqlite:///var/lib/sluice/x.db").unwrap();
        assert_eq!(sqlite.redacted(), "sqlite:///var/lib/sluice/x.db");
    }

    #[test]
    fn queue_urls() {
        let sqs = "http://localhost:4566/000000000000/login-queue";
        assert_eq!(parse_queue_url(sqs).unwrap(), QueueUrl::Sqs(sqs.into()));
        assert_eq!(
            parse_queue_url(" https://sqs.eu-west-1.amazonaws.com/123/q ").unwrap(),
            QueueUrl::Sqs("https://sqs.eu-west-1.amazonaws.com/123/q".into())
        );
        for (raw, path, shown) in [
            ("sqlite:///var/q.db", "/var/q.db", "sqlite:///var/q.db"),
            ("sqlite://rel/q.db", "rel/q.db", "sqlite://rel/q.db"),
            ("sqlite:rel/q.db", "rel/q.db", "sqlite://rel/q.db"),
            ("sqlite:q.db?mode=rwc", "q.db", "sqlite://q.db"),
        ] {
            let url = parse_queue_url(raw).unwrap();
            assert_eq!(url, QueueUrl::Sqlite(path.into()), "{raw}");
            assert_eq!(url.to_string(), shown);
            assert_eq!(parse_queue_url(&url.to_string()).unwrap(), url);
        }
        for bad in [
            "",
            "sqlite://",
            "sqlite:",
            "sqlite:///tmp/",
            "sqlite::memory:",
            "sqlite://:memory:",
            "https://",
            "amqp://h/q",
            "queue.db",
        ] {
            let err = parse_queue_url(bad).unwrap_err();
            assert_eq!(err.variable, "QUEUE_URL", "{bad}");
            let line = err.to_string();
            assert!(
                line.contains("http://") && line.contains("sqlite:///"),
                "{line}"
            );
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn log_format() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("TEXT".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
