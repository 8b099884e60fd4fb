//! Logging set-up: human lines or JSON, filtered by `RUST_LOG` (default `info`).

use crate::settings::LogFormat;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Where log lines go: standard output for the server, standard error for a command whose
/// standard output is its result (`lb-bench` prints a JSON report there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    Stdout,
    Stderr,
}

pub fn init(format: LogFormat, to: LogTo) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let registry = tracing_subscriber::registry().with(filter);
    let writer = move || -> Box<dyn std::io::Write> {
        match to {
            LogTo::Stdout => Box::new(std::io::stdout()),
            LogTo::Stderr => Box::new(std::io::stderr()),
        }
    };
    // A second init (tests starting several servers in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => registry.with(fmt::layer().with_target(false).with_writer(writer)).try_init(),
        LogFormat::Json => {
            registry.with(fmt::layer().json().flatten_event(true).with_writer(writer)).try_init()
        }
    };
}
