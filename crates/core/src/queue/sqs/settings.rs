//! Where and how to reach SQS: the queue URL, the endpoint, the region and
//! the credentials, read once by a service's loader through an [`Env`].
//!
//! They follow the standard AWS variables, with three conveniences for
//! local use: `AWS_KEY`/`AWS_SECRET` as aliases, the endpoint taken from a
//! non-AWS `QUEUE_URL` when `AWS_ENDPOINT_URL` is unset, and dummy
//! credentials for local endpoints — so the SDK never falls back to probing
//! the EC2 metadata service on a developer's machine. The secret key is a
//! [`SecretString`]: it prints as `[REDACTED]`.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::{Credentials, Region};
use secrecy::{ExposeSecret, SecretString};

use crate::config::Env;

/// Where and how to reach SQS.
#[derive(Debug, Clone, Default)]
pub struct SqsSettings {
    pub queue_url: String,
    /// `AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Static credentials, the access key id and the secret key, from
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or the
    /// `AWS_KEY`/`AWS_SECRET` aliases.
    pub credentials: Option<(String, SecretString)>,
}

impl SqsSettings {
    /// The queue at `queue_url`, reached as the standard variables (and the
    /// aliases) in `env` say.
    pub fn load(env: &Env, queue_url: String) -> Self {
        let credentials = match (
            env.var("AWS_ACCESS_KEY_ID").or_else(|| env.var("AWS_KEY")),
            env.secret("AWS_SECRET_ACCESS_KEY")
                .or_else(|| env.secret("AWS_SECRET")),
        ) {
            (Some(id), Some(secret)) => Some((id.trim().to_owned(), secret)),
            _ => None,
        };
        Self {
            queue_url,
            endpoint_url: env
                .var("AWS_ENDPOINT_URL_SQS")
                .or_else(|| env.var("AWS_ENDPOINT_URL")),
            region: env
                .var("AWS_REGION")
                .or_else(|| env.var("AWS_DEFAULT_REGION")),
            credentials,
        }
    }

    pub(super) fn is_aws_host(url: &str) -> bool {
        origin(url).is_some_and(|o| o.ends_with(".amazonaws.com") || o.contains(".amazonaws.com:"))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    Some(&url[..end])
}

/// `sqs.<region>.amazonaws.com` → region.
fn region_from_url(url: &str) -> Option<String> {
    let host = origin(url)?.split("://").nth(1)?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(region)) if host.contains("amazonaws.com") => Some(region.to_owned()),
        _ => None,
    }
}

/// Client-side timeouts: connecting fails fast, and an attempt outlives the
/// longest long poll (20 s).
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build()
}

/// Builds an SDK client from settings.
pub async fn client(settings: &SqsSettings) -> Client {
    let endpoint = settings.endpoint_url.clone().or_else(|| {
        (!SqsSettings::is_aws_host(&settings.queue_url))
            .then(|| origin(&settings.queue_url).map(str::to_owned))
            .flatten()
    });
    let is_local = endpoint
        .as_deref()
        .is_some_and(|e| !SqsSettings::is_aws_host(e));
    let region = settings
        .region
        .clone()
        .or_else(|| region_from_url(&settings.queue_url))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region))
        .timeout_config(timeouts());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    // Emulators accept anything; dummy ones keep the SDK off the metadata service.
    let credentials = match &settings.credentials {
        Some((id, secret)) => Some((id.as_str(), secret.expose_secret(), "sluice-environment")),
        None if is_local => Some(("test", "test", "sluice-local")),
        None => None,
    };
    if let Some((id, secret, source)) = credentials {
        loader = loader.credentials_provider(Credentials::new(id, secret, None, None, source));
    }
    Client::new(&loader.load().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_and_regions() {
        assert_eq!(
            origin("http://localhost:4566/000000000000/q"),
            Some("http://localhost:4566")
        );
        assert_eq!(
            region_from_url("https://sqs.eu-west-1.amazonaws.com/123/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(region_from_url("http://localhost:4566/0/q"), None);
        assert!(SqsSettings::is_aws_host(
            "https://sqs.eu-west-1.amazonaws.com/123/q"
        ));
        assert!(!SqsSettings::is_aws_host("http://127.0.0.1:9324/0/q"));
    }

    #[test]
    fn loads_from_a_list_with_the_aliases_and_never_shows_the_secret() {
        let url = "http://localhost:4566/000000000000/q".to_owned();
        let env = Env::from_pairs([
            ("AWS_KEY", "id"),
            ("AWS_SECRET", "s3cret"),
            ("AWS_ENDPOINT_URL", "http://localhost:4566"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]);
        let settings = SqsSettings::load(&env, url.clone());
        assert_eq!(settings.queue_url, url);
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://localhost:4566")
        );
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        let (id, secret) = settings.credentials.clone().unwrap();
        assert_eq!((id.as_str(), secret.expose_secret()), ("id", "s3cret"));
        assert!(!format!("{settings:?}").contains("s3cret"));
        // The standard names win over the aliases; half a pair is none.
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "std"),
            ("AWS_KEY", "alias"),
            ("AWS_REGION", "us-west-2"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]);
        let settings = SqsSettings::load(&env, url);
        assert_eq!(settings.region.as_deref(), Some("us-west-2"));
        assert!(settings.credentials.is_none());
    }
}
