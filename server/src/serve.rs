//! Start-up and shutdown of `forecourt serve`: every check that can fail runs before we listen,
//! and fails in one sentence.

use crate::db::ocpp as ocpp_db;
use crate::db::{catalog, Db};
use crate::http::{self, AppState};
use crate::network::Network;
use crate::ocpp::CentralSystem;
use crate::seed;
use crate::settings::{self, Backend, Settings};
use crate::themes::Themes;
use anyhow::Context;
use leptos::config::{Env, LeptosOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server listening in the background; [`Running::stop`] shuts it down gracefully.
pub struct Running {
    pub addr: SocketAddr,
    pub db: Db,
    /// Whether we terminate TLS (`https://`, `wss://`).
    pub tls: bool,
    ocpp: CentralSystem,
    stop: Box<dyn FnOnce() + Send>,
    task: JoinHandle<std::io::Result<()>>,
}

/// How long in-flight requests get to finish after a shutdown signal.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Running {
    /// Stops accepting, tells chargers we are going (a WebSocket close, not a dropped line), lets
    /// in-flight requests finish, then closes the pool.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.ocpp.shut_down();
        // Upgraded WebSockets are outside the HTTP server's graceful shutdown: give each charger's
        // link the moment it needs to send its close frame before the runtime goes away.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.ocpp.registry.connected() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        (self.stop)();
        self.task.await.context("server task panicked")?.context("server failed")?;
        self.db.close().await;
        Ok(())
    }
}

/// Opens and migrates the database the settings name (creating the data directory for SQLite).
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    if settings.database.backend() == Backend::Sqlite {
        settings::prepare_data_dir(&settings.data_dir)?;
    }
    let db = Db::connect(&settings.database).await?;
    db.migrate(&settings.database).await?;
    Ok(db)
}

pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let themes = Arc::new(Themes::load(&settings.themes_dir)?);
    let db = open_database(settings).await?;
    if settings.seed_demo {
        seed::seed_if_empty(&db).await.context("seeding the demo data")?;
    }
    let coded =
        catalog::fill_missing_presence_codes(&db).await.context("giving connectors presence codes")?;
    if coded > 0 {
        tracing::info!(connectors = coded, "connectors given presence codes (print their stickers anew)");
    }
    for (retailer, theme) in catalog::retailer_themes(&db).await? {
        if !themes.contains(&theme) {
            tracing::warn!(retailer, theme, "retailer's theme is missing; using the default theme");
        }
    }
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.addr))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let leptos = LeptosOptions::builder()
        .output_name("forecourt")
        .site_root(settings.site_root.to_string_lossy().into_owned())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .env(Env::PROD)
        .build();
    // Whatever a previous process left marked online is offline until it reconnects to us.
    let stale = ocpp_db::mark_all_offline(&db).await?;
    if stale > 0 {
        tracing::info!(chargers = stale, "marked chargers offline until they reconnect");
    }
    let network =
        Network::start(db.clone(), settings.ocpp.clone()).await.context("starting the load balancers")?;
    let ocpp = network.ocpp.clone();
    let housekeeping = {
        let ocpp = ocpp.clone();
        let db = db.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                every.tick().await;
                ocpp.housekeeping().await;
                let idle_ms = crate::access::session_life().idle_ms;
                match crate::db::users::forget_expired_sessions(&db, crate::db::now_ms(), idle_ms).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(forgotten = n, "forgot expired sign-ins"),
                    Err(err) => tracing::warn!(error = %err, "expired sign-ins not forgotten"),
                }
            }
        })
    };
    let mailer = match &settings.mail.smtp_url {
        Some(url) => Some(crate::mail::Mailer::new(url, &settings.mail.from).context("setting up mail")?),
        None => None,
    };
    let public_url = settings.mail.public_url.clone().unwrap_or_else(|| {
        let scheme = if settings.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{addr}")
    });
    let accounts = crate::accounts::Accounts::new(db.clone(), mailer, &public_url);
    let state = AppState::with_accounts(leptos, db.clone(), themes, network, accounts)
        .served_over_tls(settings.tls.is_some())
        .metrics_behind(settings.metrics_token.as_ref().map(|s| s.0.clone()));
    let router = http::router(state);
    let (stop, task): (Box<dyn FnOnce() + Send>, JoinHandle<std::io::Result<()>>) = match &settings.tls {
        None => {
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let served =
                    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                        })
                        .await;
                housekeeping.abort();
                served
            });
            (
                Box::new(move || {
                    let _ = stop.send(());
                }),
                task,
            )
        }
        Some(tls) => {
            // One process-wide crypto provider; a second install (tests) keeps the first.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                .await
                .with_context(|| {
                    format!(
                        "cannot load the TLS certificate {} and key {}",
                        tls.cert.display(),
                        tls.key.display()
                    )
                })?;
            let listener = listener.into_std().context("preparing the TLS listener")?;
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(listener, config).handle(handle.clone());
            let task = tokio::spawn(async move {
                let served = server.serve(router.into_make_service_with_connect_info::<SocketAddr>()).await;
                housekeeping.abort();
                served
            });
            (Box::new(move || handle.graceful_shutdown(Some(GRACE))), task)
        }
    };
    tracing::info!(%addr, tls = settings.tls.is_some(), database = ?settings.database, "listening");
    Ok(Running { addr, db, tls: settings.tls.is_some(), ocpp, stop, task })
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when it is
/// first polled, so call it before announcing that the server is up.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async {
            match terminate.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    }
}
