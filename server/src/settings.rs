//! One typed settings struct, loaded once from defaults, `FORECOURT_*` variables and flags
//! (flags win), then passed explicitly. The database URL can hold a password, so it stays secret.

pub use crate::db::url::{Backend, DatabaseUrl};
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

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the data directory {dir} cannot be used: {reason}")]
    DataDir { dir: PathBuf, reason: String },
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
    pub mail: MailSettings,
    /// `/metrics` asks for this bearer token, when set.
    pub metrics_token: Option<Secret>,
}

/// A setting that must never reach a log: shown as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Mail to people: where it goes out, as whom, and where its links point.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// No server: nothing is mailed (invitation links are handed out by the API instead).
    pub smtp_url: Option<crate::mail::SmtpUrl>,
    pub from: String,
    /// `None`: the address the server is bound to (fine on one machine; set it behind a proxy).
    pub public_url: Option<String>,
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
    fn an_unwritable_data_dir_is_reported() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let err = prepare_data_dir(&file.path().join("sub")).expect_err("a file is not a directory");
        assert!(err.to_string().starts_with("the data directory"));
    }
}
