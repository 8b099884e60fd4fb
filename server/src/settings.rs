//! One typed settings struct, loaded once from defaults, `FORECOURT_*` variables and flags
//! (flags win), then passed explicitly. The database URL can hold a password, so it stays secret.

use secrecy::{ExposeSecret, SecretString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Which database the URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the data lives. Never printed whole: [`DatabaseUrl::redacted`] is safe to log.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: SecretString,
    backend: Backend,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the database URL must start with sqlite:// or postgres:// (got {0})")]
    UnknownScheme(String),
    #[error("the data directory {dir} cannot be used: {reason}")]
    DataDir { dir: PathBuf, reason: String },
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, SettingsError> {
        let backend = if raw.starts_with("sqlite:") {
            Backend::Sqlite
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            let scheme = raw.split(':').next().unwrap_or_default();
            return Err(SettingsError::UnknownScheme(format!("{scheme}:…")));
        };
        Ok(Self { url: SecretString::from(raw.to_owned()), backend })
    }

    /// The embedded default: a SQLite file in the data directory, created on first start.
    pub fn sqlite_in(data_dir: &Path) -> Self {
        let path = data_dir.join("forecourt.db");
        Self {
            url: SecretString::from(format!("sqlite://{}?mode=rwc", path.display())),
            backend: Backend::Sqlite,
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// The URL without user information or query, for logs and error messages.
    pub fn redacted(&self) -> String {
        let raw = self.url.expose_secret();
        let (scheme, rest) = raw.split_once("://").unwrap_or(("", raw));
        let rest = rest.split('?').next().unwrap_or_default();
        let host_and_path = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
        format!("{scheme}://{host_and_path}")
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Everything `forecourt serve` needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub themes_dir: PathBuf,
    /// Where the compiled browser bundle (`pkg/`) lives.
    pub site_root: PathBuf,
    /// Seed the demo operator, retailers, sites and chargers when the database is empty.
    pub seed_demo: bool,
    pub ocpp: crate::ocpp::OcppSettings,
    /// Terminate TLS ourselves (OCPP security profile 2: Basic auth over `wss://`).
    pub tls: Option<TlsFiles>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes sure the data directory exists and is writable, so a bad one fails at start-up in one sentence.
pub fn prepare_data_dir(dir: &Path) -> Result<(), SettingsError> {
    let fail = |reason: String| SettingsError::DataDir { dir: dir.to_owned(), reason };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let probe = dir.join(".forecourt-write-check");
    std::fs::write(&probe, b"ok").map_err(|e| fail(format!("not writable ({e})")))?;
    std::fs::remove_file(&probe).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_passwords_and_queries() {
        let cases = [
            ("postgres://app:hunter2@db.internal:5432/forecourt", "postgres://db.internal:5432/forecourt"),
            ("postgres://127.0.0.1/x?password=hunter2", "postgres://127.0.0.1/x"),
            ("sqlite://data/forecourt.db?mode=rwc", "sqlite://data/forecourt.db"),
        ];
        for (raw, want) in cases {
            let url = DatabaseUrl::parse(raw).expect("valid");
            assert_eq!(url.redacted(), want);
            assert!(!format!("{url:?}").contains("hunter2"));
        }
    }

    #[test]
    fn unknown_schemes_are_refused_without_echoing_the_url() {
        let err = DatabaseUrl::parse("mysql://root:secret@x/db").expect_err("refused");
        assert!(err.to_string().contains("sqlite:// or postgres://"));
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn an_unwritable_data_dir_is_reported() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let err = prepare_data_dir(&file.path().join("sub")).expect_err("a file is not a directory");
        assert!(err.to_string().starts_with("the data directory"));
    }
}
