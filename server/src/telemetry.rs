//! Logging set-up: human lines or JSON, filtered by `RUST_LOG` (default `info`).

use crate::settings::LogFormat;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests starting several servers in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Human => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).try_init(),
    };
}
