//! Where the data lives: a SQLite file or a PostgreSQL server, named by a URL that can hold a
//! password, so it stays secret and is only ever printed redacted.

use secrecy::{ExposeSecret, SecretString};
use std::path::Path;

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

/// A URL for a database we do not speak (the URL itself is not echoed: it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("the database URL must start with sqlite:// or postgres:// (got {0})")]
pub struct UnknownScheme(String);

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, UnknownScheme> {
        let backend = if raw.starts_with("sqlite:") {
            Backend::Sqlite
        } else if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            let scheme = raw.split(':').next().unwrap_or_default();
            return Err(UnknownScheme(format!("{scheme}:…")));
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
}
