//! TLS to PostgreSQL: the certificate files `DATABASE_URL` names are read
//! before the first connection, and a failed handshake is told apart from a
//! database that is not up yet.
//!
//! A server whose certificate is not trusted, names another host or has
//! expired refuses every retry, so these failures are
//! [`SinkError::Configuration`]: the writer stops at start with one line
//! instead of waiting a minute as for a database that is still starting. A
//! refused or unreachable server stays transient.
//!
//! sqlx reports a failed handshake as an I/O error wrapping rustls's error;
//! rustls is a direct dependency only to recognise that error (the same
//! crate sqlx links: one version in Cargo.lock).

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{AlertDescription, CertificateError, Error as TlsError};

use crate::sink::SinkError;

/// The URL parameters naming certificate files (sqlx's spellings), and the
/// name used in messages.
const FILE_PARAMETERS: [(&[&str], &str); 3] = [
    (&["sslrootcert", "ssl-root-cert", "ssl-ca"], "sslrootcert"),
    (&["sslcert", "ssl-cert"], "sslcert"),
    (&["sslkey", "ssl-key"], "sslkey"),
];

/// Reads every certificate file the URL names, so a missing or unreadable
/// one stops the writer at start; sqlx would read it at each connection and
/// report an I/O error that looks like a network fault. `sslrootcert` must
/// hold PEM certificates. A URL that does not parse is left to sqlx.
pub(super) fn check_files(url: &str) -> Result<(), SinkError> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    for (key, value) in parsed.query_pairs() {
        let Some((_, name)) = FILE_PARAMETERS
            .iter()
            .find(|(spellings, _)| spellings.contains(&key.as_ref()))
        else {
            continue;
        };
        let path = Path::new(value.as_ref());
        let bytes = std::fs::read(path).map_err(|e| {
            SinkError::Configuration(format!("{name} {}: cannot be read ({e})", path.display()))
        })?;
        if *name == "sslrootcert" && !holds_pem_certificates(&bytes) {
            return Err(SinkError::Configuration(format!(
                "{name} {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
    }
    Ok(())
}

fn holds_pem_certificates(bytes: &[u8]) -> bool {
    let mut certificates = CertificateDer::pem_slice_iter(bytes).peekable();
    certificates.peek().is_some() && certificates.all(|c| c.is_ok())
}

/// The reason, when `err` is a TLS failure (or a setting sqlx cannot use)
/// that no retry will fix.
pub(super) fn configuration_error(err: &sqlx::Error) -> Option<String> {
    match err {
        // sqlx's own TLS errors: the server has no TLS while sslmode asks for
        // it, or a certificate file it could not use.
        sqlx::Error::Tls(e) => Some(format!("TLS: {e}")),
        // e.g. sslcert without sslkey.
        sqlx::Error::Configuration(e) => Some(format!("settings: {e}")),
        sqlx::Error::Io(e) => {
            let mut source = e.get_ref().map(|inner| inner as &dyn std::error::Error);
            while let Some(current) = source {
                if let Some(tls) = current.downcast_ref::<TlsError>() {
                    return is_configuration(tls).then(|| describe(tls));
                }
                source = current.source();
            }
            None
        }
        _ => None,
    }
}

/// Handshake failures about certificates, names and versions; anything
/// else rustls reports (a corrupt record, a decryption failure) may be the
/// network, and stays transient.
fn is_configuration(e: &TlsError) -> bool {
    use AlertDescription as A;
    match e {
        TlsError::InvalidCertificate(_)
        | TlsError::NoCertificatesPresented
        | TlsError::UnsupportedNameType
        | TlsError::InvalidCertRevocationList(_)
        | TlsError::PeerIncompatible(_) => true,
        // The server refused us: it wants a client certificate, or ours.
        TlsError::AlertReceived(alert) => matches!(
            alert,
            A::HandshakeFailure
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::ProtocolVersion
                | A::InsufficientSecurity
                | A::CertificateRequired
                | A::UnrecognisedName
        ),
        _ => false,
    }
}

fn describe(e: &TlsError) -> String {
    use CertificateError as C;
    let what = match e {
        TlsError::InvalidCertificate(C::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted CA; set sslrootcert to the file of the CA that signed it"
        }
        TlsError::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the server's certificate does not name the host in DATABASE_URL (verify-full checks it); connect by a name the certificate lists, or use verify-ca"
        }
        TlsError::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired"
        }
        TlsError::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet (check the clocks)"
        }
        TlsError::InvalidCertificate(C::Revoked) => "the server's certificate is revoked",
        TlsError::InvalidCertificate(_) => "the server's certificate is refused",
        TlsError::AlertReceived(_) => "the server refused the handshake",
        _ => "no TLS version or cipher suite both sides accept",
    };
    format!("TLS handshake failed: {what} ({e})")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use CertificateError as C;

    /// rustls picks the process's provider from its crate features and
    /// panics when the build holds two (sqlx's ring next to the AWS SDK's
    /// aws-lc-rs made `sslmode=verify-ca` panic). `ClientConfig::builder`
    /// asks for exactly that default.
    #[test]
    fn the_build_carries_exactly_one_crypto_provider() {
        let result = std::panic::catch_unwind(rustls::ClientConfig::builder);
        assert!(
            result.is_ok(),
            "rustls could not pick its crypto provider: a dependency enabled a second one (cargo tree -i rustls -e features)"
        );
    }

    fn io(e: TlsError) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn certificate_failures_are_configuration() {
        let unknown = configuration_error(&io(TlsError::InvalidCertificate(C::UnknownIssuer)));
        assert!(unknown.unwrap().contains("sslrootcert"));
        let name = configuration_error(&io(TlsError::InvalidCertificate(C::NotValidForName)));
        assert!(name.unwrap().contains("verify-full"));
        let expired = configuration_error(&io(TlsError::InvalidCertificate(C::Expired)));
        assert!(expired.unwrap().contains("expired"));
        let alert = configuration_error(&io(TlsError::AlertReceived(
            AlertDescription::CertificateRequired,
        )));
        assert!(alert.is_some());
        let no_tls = configuration_error(&sqlx::Error::Tls("server does not support TLS".into()));
        assert!(no_tls.unwrap().contains("does not support TLS"));
    }

    #[test]
    fn network_failures_stay_transient() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::TimedOut,
        ] {
            let e = sqlx::Error::Io(std::io::Error::from(kind));
            assert_eq!(configuration_error(&e), None, "{kind:?}");
        }
        assert_eq!(configuration_error(&io(TlsError::DecryptError)), None);
        assert_eq!(configuration_error(&sqlx::Error::PoolTimedOut), None);
    }

    #[test]
    fn certificate_files_are_read_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let url = format!(
            "postgres://u:secret@h/db?sslmode=verify-full&sslrootcert={}",
            missing.display()
        );
        let Err(SinkError::Configuration(text)) = check_files(&url) else {
            panic!("a missing sslrootcert is a configuration error");
        };
        assert!(text.starts_with("sslrootcert "), "{text}");
        assert!(!text.contains("secret"), "{text}");

        let not_pem = dir.path().join("not-pem.crt");
        std::fs::write(&not_pem, "hello").unwrap();
        let url = format!("postgres://h/db?ssl-root-cert={}", not_pem.display());
        let Err(SinkError::Configuration(text)) = check_files(&url) else {
            panic!("an sslrootcert without certificates is a configuration error");
        };
        assert!(text.contains("no PEM certificate"), "{text}");

        let key = dir.path().join("missing.key");
        let url = format!("postgres://h/db?sslkey={}", key.display());
        assert!(matches!(
            check_files(&url),
            Err(SinkError::Configuration(t)) if t.starts_with("sslkey ")
        ));
        assert!(check_files("postgres://h/db?sslmode=require").is_ok());
    }
}
