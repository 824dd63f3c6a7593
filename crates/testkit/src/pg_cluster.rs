//! PostgreSQL clusters of a test's own — `initdb` in a temporary folder, as
//! `scripts/services.sh` makes the shared one — for tests that stop their
//! server or need it to speak TLS; and the certificates for the latter,
//! made with the `openssl` command.
//!
//! The server binaries come from `SLUICE_TEST_PG_BIN`. initdb and postgres
//! refuse to run as root, so as root they run as the `postgres` user.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway cluster on a free loopback port, removed on drop.
pub struct Cluster {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    tls: bool,
}

impl Cluster {
    /// A plain cluster (no TLS), started.
    pub fn create(bin: &Path) -> Self {
        Self::init(bin, None)
    }

    /// A plain cluster whose data folder is in `parent` (a small disk, for
    /// the full-disk test), started.
    pub fn create_in(bin: &Path, parent: &Path) -> Self {
        Self::init_in(bin, None, Some(parent))
    }

    /// A cluster serving `server`'s certificate with `ssl=on`, started. Over
    /// TCP it admits TLS connections only (`hostssl` in pg_hba.conf), so a
    /// client that did not negotiate TLS is refused, not served in plain.
    pub fn create_tls(bin: &Path, server: &KeyPair) -> Self {
        Self::init(bin, Some(server))
    }

    fn init(bin: &Path, tls: Option<&KeyPair>) -> Self {
        Self::init_in(bin, tls, None)
    }

    fn init_in(bin: &Path, tls: Option<&KeyPair>, parent: Option<&Path>) -> Self {
        let data = match parent {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .unwrap();
        if is_root() {
            run(Command::new("chmod").arg("755").arg(data.path()));
            run(Command::new("chown")
                .args(["-R", "postgres"])
                .arg(data.path()));
        }
        let port = crate::free_port();
        let cluster = Self {
            bin: bin.to_owned(),
            data,
            port,
            tls: tls.is_some(),
        };
        run(cluster
            .as_owner("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(cluster.dir()));
        if let Some(server) = tls {
            let dir = cluster.dir();
            std::fs::write(
                dir.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .unwrap();
            if is_root() {
                run(Command::new("chown")
                    .arg("postgres")
                    .arg(dir.join("pg_hba.conf")));
            }
            cluster.install(server);
        }
        cluster.start();
        cluster
    }

    /// Puts `server`'s certificate and key where the server reads them.
    fn install(&self, server: &KeyPair) {
        let dir = self.dir();
        std::fs::copy(&server.cert, dir.join("server.crt")).unwrap();
        std::fs::copy(&server.key, dir.join("server.key")).unwrap();
        // The server refuses a key others can read.
        run(Command::new("chmod").arg("600").arg(dir.join("server.key")));
        if is_root() {
            for file in ["server.crt", "server.key"] {
                run(Command::new("chown").arg("postgres").arg(dir.join(file)));
            }
        }
    }

    /// A TLS cluster presents `server` from now on, to new connections
    /// (PostgreSQL reloads its certificate on SIGHUP).
    pub fn present(&self, server: &KeyPair) {
        assert!(self.tls, "only a TLS cluster presents a certificate");
        self.install(server);
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.dir())
            .arg("reload"));
    }

    fn dir(&self) -> PathBuf {
        self.data.path().join("pg")
    }

    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, action: &str) {
        let dir = self.dir();
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            dir.display()
        );
        if self.tls {
            // Relative to the data folder.
            opts.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        run(self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&dir)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "60", "-m", "fast", "-o", &opts, action]));
    }

    pub fn start(&self) {
        self.pg_ctl("start");
    }

    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URL (TLS without verification on a TLS cluster).
    pub fn admin_url(&self) -> String {
        let query = if self.tls { "?sslmode=require" } else { "" };
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres{query}",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.dir())
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Test certificates, valid for a few days: a CA; a server certificate it
/// signed for `localhost` and `127.0.0.1`; one it signed for another host
/// name only; and a second CA that signed neither.
pub struct Certificates {
    dir: tempfile::TempDir,
}

/// The host name of [`Certificates::other_host`].
pub const OTHER_HOST: &str = "db.example.invalid";

impl Certificates {
    pub fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certificates = Self { dir };
        certificates.make_ca("ca");
        certificates.make_ca("other-ca");
        certificates.make_server("server", "DNS:localhost,IP:127.0.0.1");
        certificates.make_server("other-host", &format!("DNS:{OTHER_HOST}"));
        certificates
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed both server certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed nothing the servers present.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.crt")
    }

    /// For `localhost` and `127.0.0.1`, signed by [`ca`](Self::ca).
    pub fn server(&self) -> KeyPair {
        self.pair("server")
    }

    /// For [`OTHER_HOST`] only, signed by [`ca`](Self::ca).
    pub fn other_host(&self) -> KeyPair {
        self.pair("other-host")
    }

    fn pair(&self, name: &str) -> KeyPair {
        KeyPair {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
        }
    }

    fn make_ca(&self, name: &str) {
        run(openssl()
            .args(["req", "-x509", "-nodes", "-days", "3"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .arg("-keyout")
            .arg(self.path(&format!("{name}.key")))
            .arg("-out")
            .arg(self.path(&format!("{name}.crt")))
            .args(["-subj", &format!("/CN=sluice test {name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    }

    fn make_server(&self, name: &str, names: &str) {
        let extensions = self.path(&format!("{name}.ext"));
        std::fs::write(
            &extensions,
            format!(
                "subjectAltName={names}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        let request = self.path(&format!("{name}.csr"));
        run(openssl()
            .args(["req", "-new", "-nodes"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .arg("-keyout")
            .arg(self.path(&format!("{name}.key")))
            .arg("-out")
            .arg(&request)
            .args(["-subj", &format!("/CN={name}")]));
        run(openssl()
            .args(["x509", "-req", "-days", "3", "-CAcreateserial"])
            .arg("-in")
            .arg(&request)
            .arg("-CA")
            .arg(self.ca())
            .arg("-CAkey")
            .arg(self.path("ca.key"))
            .arg("-extfile")
            .arg(&extensions)
            .arg("-out")
            .arg(self.path(&format!("{name}.crt"))));
    }
}

fn openssl() -> Command {
    Command::new("openssl")
}

/// Runs a command to success, or fails the test with its output.
fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
