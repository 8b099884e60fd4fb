//! The command line: `forecourt serve | migrate | user create`.

use crate::db::{catalog, users};
use crate::settings::{DatabaseUrl, LogFormat, Settings};
use crate::{auth, seed, serve, telemetry};
use anyhow::Context;
use app::domain::{ChargerId, Role, Slug};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Forecourt: EV charging for retail sites whose grid connection cannot grow.
#[derive(Debug, Parser)]
#[command(name = "forecourt", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Directory for the embedded database and other local state.
    #[arg(long, env = "FORECOURT_DATA_DIR", default_value = "data", global = true)]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: SQLite in the data dir].
    #[arg(long, env = "FORECOURT_DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// Log output format.
    #[arg(long, env = "FORECOURT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: driver pages, dashboards, APIs and the OCPP endpoint.
    Serve(ServeArgs),
    /// Create or update the database schema, then exit.
    Migrate,
    /// Manage operator and retailer accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Play chargers over real WebSockets against a running server (demo and load).
    Simulate(SimulateArgs),
    /// Drive the load balancer through an lb-workload/1 day (../shared/lb-bench) and print its metrics.
    LbBench(LbBenchArgs),
}

#[derive(Debug, Args)]
struct LbBenchArgs {
    /// The workload file (lb-workload/1 JSON, from lb-bench's gen_workload.py).
    workload: PathBuf,
    /// Write our pilots here, in the referee's replay format.
    #[arg(short = 'o', long)]
    out: Option<PathBuf>,
    /// Meter readings arrive this many steps late.
    #[arg(long, default_value_t = 0)]
    meter_lag: u64,
    /// Each car's readings arrive this many steps late (the referee gives its algorithms the present).
    #[arg(long, default_value_t = 0)]
    car_meter_lag: u64,
    /// Limits take effect this many steps after they are decided.
    #[arg(long, default_value_t = 0)]
    latency_steps: u64,
    /// What a new session draws before its first limit lands (its TxDefaultProfile), amps.
    #[arg(long, default_value_t = 0)]
    default_a: u32,
    /// The chargers take no default profile per connector (as some makes): each keeps the
    /// charger-wide `--default-a`, and a new car draws it until its first limit lands.
    #[arg(long)]
    no_connector_defaults: bool,
    /// Tell the balancer each car's maximum current at session start.
    #[arg(long)]
    ev_max_known: bool,
    /// Tell the balancer each car's phase count at session start.
    #[arg(long)]
    ev_phases_known: bool,
    /// Batteries take less above 80 % state of charge (the referee's `--battery taper`).
    #[arg(long)]
    taper: bool,
    /// Ignore departure times and energy needs.
    #[arg(long)]
    no_need: bool,
    /// How fast the store load may rise, amps per minute (the bound used between meter readings).
    #[arg(long)]
    rise: Option<u32>,
    /// How far the store load may rise between readings at most, amps.
    #[arg(long)]
    max_rise: Option<u32>,
    /// Minimum seconds a session stays paused or running before the 6 A rotation moves it.
    #[arg(long)]
    dwell_s: Option<u64>,
    /// An idle connector's own default goes back up once the room for it has lasted this many seconds.
    #[arg(long)]
    idle_raise_after_s: Option<u64>,
    /// Limit changes smaller than this many tenths of an amp are not sent.
    #[arg(long)]
    hysteresis_da: Option<u32>,
    /// A car's maximum is learned once it draws this many tenths of an amp less than offered.
    #[arg(long)]
    learn_margin_da: Option<u32>,
    /// Chargers answer up to this many steps later still (our own safety testing; the referee cannot replay it).
    #[arg(long, default_value_t = 0)]
    jitter: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Each charger loses its connection this many times a day on average (5 to 30 steps each).
    #[arg(long, default_value_t = 0)]
    outages_per_day: u32,
    /// Every charger loses its connection at once, at step FROM for STEPS steps (FROM:STEPS,
    /// repeatable): the site's link to us down while its store meter still reports.
    #[arg(long, value_name = "FROM:STEPS", value_parser = parse_all_away)]
    all_away: Vec<(u64, u64)>,
    /// Our limits are leases of this many steps, renewed when half gone (0 = they never expire).
    #[arg(long)]
    lease_steps: Option<u64>,
    /// Never shorten leases (by default a store seen climbing further within a lease than the
    /// plan allows for gets half of it, or 0.3, as the live policy, but at least four round trips).
    #[arg(long)]
    keep_leases: bool,
    /// One recompute per event instead of one per step's batch of events.
    #[arg(long)]
    per_event: bool,
    /// Earlier days of the same site (lb-workload/1 files): their store load is the meter
    /// history the store's rise is learned from (a day or more; else the configured rise applies).
    #[arg(long = "store-history", value_name = "WORKLOAD")]
    store_history: Vec<PathBuf>,
    /// Use only the configured store rise (--rise, --max-rise), never a learned one.
    #[arg(long)]
    fixed_rise: bool,
    /// The references the store's rise is learned over, as WINDOW_STEPS:RANK, comma-separated
    /// (the rank-th highest reading of that many steps; default: our policy, 1:1,10:3).
    #[arg(long)]
    lenses: Option<String>,
    /// How far above the worst rise seen the store's learned allowance is, percent (default:
    /// our policy, 10).
    #[arg(long)]
    rise_headroom: Option<u32>,
    /// Never schedule handovers ahead: a decrease is in force as soon as it lands, and the
    /// increase it pays for waits for its acknowledgement.
    #[arg(long)]
    no_handover: bool,
}

/// `600:15` as (600, 15): from step 600, for 15 steps.
fn parse_all_away(text: &str) -> Result<(u64, u64), String> {
    let (from, steps) = text.split_once(':').ok_or("expected FROM:STEPS")?;
    let number = |x: &str| x.trim().parse::<u64>().map_err(|e| format!("{x:?}: {e}"));
    Ok((number(from)?, number(steps)?))
}

/// `1:1,10:3` as [(1, 1), (10, 3)]: lenses of (window in steps, rank).
fn parse_lenses(text: &str) -> Result<Vec<(u64, usize)>, String> {
    text.split(',')
        .map(|lens| {
            let (window, rank) =
                lens.split_once(':').ok_or_else(|| format!("'{lens}' is not WINDOW_STEPS:RANK"))?;
            let window: u64 =
                window.trim().parse().map_err(|_| format!("'{window}' is not a number of steps"))?;
            let rank: usize = rank.trim().parse().map_err(|_| format!("'{rank}' is not a rank"))?;
            if window == 0 || rank == 0 {
                return Err(format!("'{lens}': window and rank start at 1"));
            }
            Ok((window, rank))
        })
        .collect()
}

#[derive(Debug, Args)]
struct SimulateArgs {
    /// The OCPP endpoint, without the charger id.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ocpp")]
    url: String,
    /// A charger to play, as ID:CONNECTORS (repeatable). Default: the demo chargers.
    #[arg(long = "charger", value_name = "ID:CONNECTORS")]
    chargers: Vec<String>,
    /// Instead of named chargers, play this many (PREFIX00001…, one connector each): for load.
    #[arg(long)]
    load: Option<u32>,
    #[arg(long, default_value = "SIM-")]
    load_prefix: String,
    /// The chargers' password (HTTP Basic auth).
    #[arg(long, env = "FORECOURT_SIM_PASSWORD", default_value = seed::CHARGER_PASSWORD, hide_env_values = true)]
    password: String,
    /// OCPP version to speak: 1.6 or 2.0.1.
    #[arg(long, default_value = "1.6")]
    ocpp: String,
    /// The id tag drivers present.
    #[arg(long, default_value = seed::ACCEPTED_TAG)]
    id_tag: String,
    /// Seconds between meter values during a session, until the central system sets the interval
    /// (1.6 MeterValueSampleInterval, 2.0.1 SampledDataCtrlr.TxUpdatedInterval).
    #[arg(long, default_value_t = 10.0)]
    meter_interval: f64,
    /// Keep `--meter-interval` whatever the central system asks (load benchmarks set their own rate).
    #[arg(long)]
    fixed_meter_interval: bool,
    /// Mean seconds a connector waits for its next car.
    #[arg(long, default_value_t = 60.0)]
    mean_idle: f64,
    /// Mean seconds a car stays.
    #[arg(long, default_value_t = 300.0)]
    mean_session: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many seconds and print what was measured.
    #[arg(long)]
    duration: Option<u64>,
    /// Count calls and latencies only after this many seconds (leave out the connection burst).
    #[arg(long, default_value_t = 0)]
    warmup: u64,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FORECOURT_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Directory of retailer themes (themes/<slug>/theme.toml).
    #[arg(long, env = "FORECOURT_THEMES_DIR", default_value = "themes")]
    themes_dir: PathBuf,
    /// Directory holding the compiled browser bundle (pkg/).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Do not seed the demo network into an empty database.
    #[arg(long, env = "FORECOURT_NO_DEMO")]
    no_demo: bool,
    /// OCPP: heartbeat interval asked of chargers at boot, in seconds.
    #[arg(long, env = "FORECOURT_HEARTBEAT_INTERVAL", default_value_t = 300)]
    heartbeat_interval: u64,
    /// OCPP: ping a quiet connection after this many seconds; twice that silent and it is dead.
    #[arg(long, env = "FORECOURT_PING_INTERVAL", default_value_t = 30)]
    ping_interval: u64,
    /// OCPP: seconds to wait for a charger to answer a command.
    #[arg(long, env = "FORECOURT_CALL_TIMEOUT", default_value_t = 30)]
    call_timeout: u64,
    /// OCPP: seconds a connector may report Available while a transaction is open before it is closed as a ghost.
    #[arg(long, env = "FORECOURT_GHOST_GRACE", default_value_t = 300)]
    ghost_grace: u64,
    /// PEM certificate chain: serve https:// and wss:// ourselves (OCPP security profile 2). Needs --tls-key.
    #[arg(long, env = "FORECOURT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "FORECOURT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// OCPP: what happens to an unknown charger when no site registers chargers automatically.
    #[arg(long, env = "FORECOURT_UNKNOWN_CHARGERS", value_enum, default_value_t = crate::ocpp::UnknownChargers::Pending)]
    unknown_chargers: crate::ocpp::UnknownChargers,
    /// OCPP: days the raw frame log is kept.
    #[arg(long, env = "FORECOURT_FRAME_RETENTION_DAYS", default_value_t = 14)]
    frame_retention_days: u64,
    /// OCPP: the largest message a charger may send, KiB (a larger one closes its connection).
    #[arg(long, env = "FORECOURT_OCPP_MAX_MESSAGE_KIB", default_value_t = 512)]
    ocpp_max_message_kib: usize,
    /// OCPP: the highest connector (2.0.1: EVSE) number a charger may report.
    #[arg(long, env = "FORECOURT_MAX_CONNECTORS", default_value_t = 16)]
    max_connectors: u32,
    /// OCPP: the most unknown chargers waiting for an operator at once (new ones are refused, 503).
    #[arg(long, env = "FORECOURT_MAX_PENDING_CHARGERS", default_value_t = 1000)]
    max_pending_chargers: u64,
    /// OCPP: the most connections one address may hold at once (chargers behind one router share it).
    #[arg(long, env = "FORECOURT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 200)]
    max_connections_per_address: u32,
    /// OCPP: messages a charger may send a second on average; faster ones wait their turn.
    #[arg(long, env = "FORECOURT_OCPP_MESSAGES_PER_S", default_value_t = 20)]
    ocpp_messages_per_s: u32,
    /// OCPP: new chargers (self-registered, or waiting for an operator) one address may bring in an hour.
    #[arg(long, env = "FORECOURT_NEW_CHARGERS_PER_ADDRESS", default_value_t = 100)]
    new_chargers_per_address: u32,
    /// OCPP: password checks waiting at once past which a charger's handshake is turned away (429).
    #[arg(long, env = "FORECOURT_MAX_ARGON2_QUEUE", default_value_t = 64)]
    max_argon2_queue: usize,
    /// OCPP: messages a charger may send at once before pacing starts.
    #[arg(long, env = "FORECOURT_OCPP_MESSAGE_BURST", default_value_t = 60)]
    ocpp_message_burst: u32,
    /// A bearer token /metrics asks for (without one, /metrics is open: keep it off the internet).
    #[arg(long, env = "FORECOURT_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Mail server for password resets and invitations: smtps://user:pass@host, smtp://host:port?tls=required
    /// (or plain smtp://host:port on a trusted network). Without it, invitation links are only handed out by the API.
    #[arg(long, env = "FORECOURT_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// The sender of those mails.
    #[arg(long, env = "FORECOURT_MAIL_FROM", default_value = "Forecourt <no-reply@forecourt.local>")]
    mail_from: String,
    /// The server as people reach it, for the links in mails (default: http://ADDR).
    #[arg(long, env = "FORECOURT_PUBLIC_URL")]
    public_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from FORECOURT_USER_PASSWORD or, failing that, one line of standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// The retailer's slug, for the retailer roles.
        #[arg(long, required_if_eq_any([("role", "retailer-admin"), ("role", "retailer-viewer")]))]
        retailer: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    /// Runs the network: everything, users and sites included.
    OperatorAdmin,
    /// Reads the network, sends commands, steers sessions; manages nothing.
    OperatorSupport,
    /// A retailer's manager (needs --retailer).
    RetailerAdmin,
    /// Reads a retailer's figures (needs --retailer).
    RetailerViewer,
}

impl GlobalArgs {
    fn database(&self) -> anyhow::Result<DatabaseUrl> {
        Ok(match &self.database_url {
            Some(url) => DatabaseUrl::parse(url)?,
            None => DatabaseUrl::sqlite_in(&self.data_dir),
        })
    }

    fn settings(&self, serve: Option<&ServeArgs>) -> anyhow::Result<Settings> {
        let defaults = ServeArgs::parse_defaults();
        let serve = serve.unwrap_or(&defaults);
        Ok(Settings {
            addr: serve.addr,
            data_dir: self.data_dir.clone(),
            database: self.database()?,
            themes_dir: serve.themes_dir.clone(),
            site_root: serve.site_root.clone(),
            seed_demo: !serve.no_demo,
            ocpp: crate::ocpp::OcppSettings {
                heartbeat_interval: Duration::from_secs(serve.heartbeat_interval.max(1)),
                ping_interval: Duration::from_secs(serve.ping_interval.max(1)),
                call_timeout: Duration::from_secs(serve.call_timeout.max(1)),
                ghost_grace: Duration::from_secs(serve.ghost_grace),
                frame_retention: Duration::from_secs(serve.frame_retention_days * 24 * 3600),
                unknown_chargers: serve.unknown_chargers,
                max_message_bytes: serve.ocpp_max_message_kib.max(4) * 1024,
                max_connectors: serve.max_connectors.max(1),
                max_pending_chargers: serve.max_pending_chargers,
                max_connections_per_address: serve.max_connections_per_address.max(1),
                max_messages_per_s: serve.ocpp_messages_per_s.max(1),
                message_burst: serve.ocpp_message_burst.max(1),
                max_argon2_queue: serve.max_argon2_queue.max(1),
                new_chargers_per_address_hour: serve.new_chargers_per_address.max(1),
            },
            tls: match (&serve.tls_cert, &serve.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(crate::settings::TlsFiles { cert: cert.clone(), key: key.clone() })
                }
                _ => None,
            },
            metrics_token: serve.metrics_token.clone().map(crate::settings::Secret),
            mail: crate::settings::MailSettings {
                smtp_url: serve.smtp_url.as_deref().map(crate::mail::SmtpUrl::parse).transpose()?,
                from: serve.mail_from.clone(),
                public_url: serve.public_url.clone(),
            },
        })
    }
}

impl ServeArgs {
    fn parse_defaults() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            themes_dir: PathBuf::from("themes"),
            site_root: PathBuf::from("target/site"),
            no_demo: true,
            heartbeat_interval: 300,
            ping_interval: 30,
            call_timeout: 30,
            ghost_grace: 300,
            frame_retention_days: 14,
            unknown_chargers: crate::ocpp::UnknownChargers::Pending,
            ocpp_max_message_kib: 512,
            max_connectors: 16,
            max_pending_chargers: 1000,
            max_connections_per_address: 200,
            ocpp_messages_per_s: 20,
            ocpp_message_burst: 60,
            max_argon2_queue: 64,
            new_chargers_per_address: 100,
            tls_cert: None,
            tls_key: None,
            metrics_token: None,
            smtp_url: None,
            mail_from: "Forecourt <no-reply@forecourt.local>".to_owned(),
            public_url: None,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_to = match cli.command {
        Command::LbBench(_) => telemetry::LogTo::Stderr,
        _ => telemetry::LogTo::Stdout,
    };
    telemetry::init(cli.global.log_format, log_to);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One sentence: what we were doing, then why.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => {
            let settings = cli.global.settings(Some(args))?;
            let shutdown = serve::shutdown_signal();
            let running = serve::start(&settings).await?;
            let (charger, connector) = seed::DEMO_CONNECTOR;
            let demo_code = match ChargerId::parse(charger) {
                Ok(id) => crate::db::chargers::presence_code(&running.db, &id, i64::from(connector))
                    .await
                    .ok()
                    .flatten(),
                Err(_) => None,
            };
            print_welcome(running.addr, running.tls, demo_code.as_deref());
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            running.stop().await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Simulate(args) => simulate(args).await,
        Command::LbBench(args) => lb_bench(args),
        Command::Migrate => {
            let settings = cli.global.settings(None)?;
            let db = serve::open_database(&settings).await?;
            db.close().await;
            println!("database at {} is up to date", settings.database.redacted());
            Ok(())
        }
        Command::User(UserCommand::Create { email, role, retailer }) => {
            let settings = cli.global.settings(None)?;
            let db = serve::open_database(&settings).await?;
            let retailer = match retailer {
                Some(slug) => {
                    let slug = Slug::parse(slug)?;
                    Some(
                        catalog::retailer_by_slug(&db, &slug)
                            .await?
                            .with_context(|| format!("no retailer {slug}"))?,
                    )
                }
                None => None,
            };
            let role = match (role, retailer) {
                (RoleArg::OperatorAdmin, None) => Role::OperatorAdmin,
                (RoleArg::OperatorSupport, None) => Role::OperatorSupport,
                (RoleArg::RetailerAdmin, Some(r)) => Role::RetailerAdmin(r),
                (RoleArg::RetailerViewer, Some(r)) => Role::RetailerViewer(r),
                (RoleArg::OperatorAdmin | RoleArg::OperatorSupport, Some(_)) => {
                    anyhow::bail!("an operator account belongs to no retailer: leave out --retailer")
                }
                (RoleArg::RetailerAdmin | RoleArg::RetailerViewer, None) => {
                    anyhow::bail!("--retailer is required for a retailer account")
                }
            };
            let password = read_password()?;
            let hash = auth::hash_password(&password)?;
            let id = users::create(&db, email, &hash, &role).await?;
            db.close().await;
            println!("created user {id} ({})", users::normalise_email(email));
            Ok(())
        }
    }
}

fn lb_bench(args: &LbBenchArgs) -> anyhow::Result<()> {
    use crate::balancer::sim::{DaySim, SimOptions, Workload};
    use crate::balancer::units::Phase;
    let defaults = SimOptions::default();
    let options = SimOptions {
        meter_lag_steps: args.meter_lag,
        car_meter_lag_steps: args.car_meter_lag,
        latency_steps: args.latency_steps,
        default_a: args.default_a,
        connector_defaults: !args.no_connector_defaults,
        ev_max_known: args.ev_max_known,
        ev_phases_known: args.ev_phases_known,
        taper: args.taper,
        use_departure_and_need: !args.no_need,
        store_rise_per_min_a: args.rise.unwrap_or(defaults.store_rise_per_min_a),
        store_max_rise_a: args.max_rise.unwrap_or(defaults.store_max_rise_a),
        min_dwell_s: args.dwell_s.unwrap_or(defaults.min_dwell_s),
        idle_raise_after_s: args.idle_raise_after_s.unwrap_or(defaults.idle_raise_after_s),
        hysteresis_da: args.hysteresis_da.unwrap_or(defaults.hysteresis_da),
        learn_margin_da: args.learn_margin_da.unwrap_or(defaults.learn_margin_da),
        latency_jitter_steps: args.jitter,
        seed: args.seed,
        outages_per_day: args.outages_per_day,
        all_away: args.all_away.clone(),
        lease_steps: args.lease_steps.or(defaults.lease_steps),
        shorten_leases: !args.keep_leases,
        batch: !args.per_event,
        learn_store_rise: !args.fixed_rise,
        store_lenses: args
            .lenses
            .as_deref()
            .map(parse_lenses)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--lenses: {e}"))?
            .unwrap_or_default(),
        store_headroom_pct: args.rise_headroom,
        handover: !args.no_handover,
        ..defaults
    };
    let read = |path: &PathBuf| -> anyhow::Result<Workload> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not an lb-workload/1 file", path.display()))
    };
    let workload = read(&args.workload)?;
    let history = args.store_history.iter().map(read).collect::<anyhow::Result<Vec<_>>>()?;
    let mut sim = DaySim::new(&workload, options.clone())
        .map_err(|e| anyhow::anyhow!("the workload's site is not usable: {e}"))?;
    sim.learn_store_history(&history).map_err(|e| anyhow::anyhow!("the store history is not usable: {e}"))?;
    for warning in sim.balancer.warnings() {
        eprintln!("warning: {warning}");
    }
    // Wall time per step (all of its events) and per recompute of the allocation.
    let (mut per_step, mut per_alloc) = (Vec::new(), Vec::new());
    loop {
        let started = std::time::Instant::now();
        let Some(recomputes) = sim.step() else { break };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        per_step.push(ms);
        per_alloc.push(ms / recomputes.max(1) as f64);
    }
    let sim_rise = sim.balancer.learned_store_rise();
    let (metrics, pilots) = sim.finish();
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string(&pilots)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let summary = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        let mean = t.iter().sum::<f64>() / t.len().max(1) as f64;
        let p99 = t.get((t.len() as f64 * 0.99) as usize).copied().unwrap_or(0.0);
        (mean, p99)
    };
    let (step_mean, step_p99) = summary(per_step);
    let (alloc_mean, alloc_p99) = summary(per_alloc);
    let mut report = serde_json::to_value(&metrics)?;
    report["ms_per_step_mean"] = serde_json::json!(step_mean);
    report["ms_per_step_p99"] = serde_json::json!(step_p99);
    report["ms_per_call_mean"] = serde_json::json!(alloc_mean);
    report["ms_per_call_p99"] = serde_json::json!(alloc_p99);
    report["options"] = serde_json::to_value(&options)?;
    report["learned_store_rise_a"] = match sim_rise {
        Some(rise) => serde_json::json!(Phase::ALL.map(|p| rise.get(p).as_amps())),
        None => serde_json::Value::Null,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    use crate::ocpp::frame::OcppVersion;
    let version = match args.ocpp.as_str() {
        "1.6" => OcppVersion::V16,
        "2.0.1" => OcppVersion::V201,
        other => anyhow::bail!("--ocpp must be 1.6 or 2.0.1, not {other}"),
    };
    let chargers: Vec<(String, u32)> = if let Some(n) = args.load {
        (1..=n).map(|i| (format!("{}{i:05}", args.load_prefix), 1)).collect()
    } else if args.chargers.is_empty() {
        seed::RETAILERS
            .iter()
            .flat_map(|r| r.chargers.iter().map(|(id, n, _, _)| ((*id).to_owned(), *n)))
            .collect()
    } else {
        args.chargers
            .iter()
            .map(|spec| {
                let (id, n) = spec.split_once(':').unwrap_or((spec, "1"));
                Ok((id.to_owned(), n.parse().with_context(|| format!("connectors in {spec:?}"))?))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let positive = |secs: f64, what: &str| -> anyhow::Result<Duration> {
        anyhow::ensure!(secs.is_finite() && secs > 0.0, "{what} must be a positive number of seconds");
        Ok(Duration::from_secs_f64(secs))
    };
    let config = crate::simulate::SimConfig {
        url: args.url.clone(),
        chargers,
        password: args.password.clone(),
        version,
        id_tag: args.id_tag.clone(),
        meter_interval: positive(args.meter_interval, "--meter-interval")?,
        obey_meter_interval: !args.fixed_meter_interval,
        mean_idle: positive(args.mean_idle, "--mean-idle")?,
        mean_session: positive(args.mean_session, "--mean-session")?,
        seed: args.seed,
        duration: args.duration.map(Duration::from_secs),
        warmup: Duration::from_secs(args.warmup),
    };
    let count = config.chargers.len();
    println!("simulating {count} charger(s) over OCPP {version} against {}", config.url);
    let started = std::time::Instant::now();
    let stats = crate::simulate::run(config).await;
    let elapsed = (started.elapsed().as_secs_f64() - args.warmup as f64).max(0.001);
    let calls = stats.calls.load(std::sync::atomic::Ordering::Relaxed);
    let (p50, p99) = stats.percentiles_ms();
    println!(
        "connected {} of {count}, {} connection failures, after warm-up: {calls} calls answered ({:.0}/s), {} refused, latency p50 {p50:.1} ms p99 {p99:.1} ms",
        stats.connected.load(std::sync::atomic::Ordering::Relaxed),
        stats.failed.load(std::sync::atomic::Ordering::Relaxed),
        calls as f64 / elapsed.max(0.001),
        stats.call_errors.load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FORECOURT_USER_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn print_welcome(addr: SocketAddr, tls: bool, demo_code: Option<&str>) {
    let (http, ws) = if tls { ("https", "wss") } else { ("http", "ws") };
    let base = format!("{http}://{addr}");
    let (charger, connector) = seed::DEMO_CONNECTOR;
    println!("\nForecourt is running at {base}\n");
    // What the sticker's QR code opens: the connector's page with its presence code.
    let code = demo_code.map(|c| format!("?p={c}")).unwrap_or_default();
    println!("  Driver page (demo connector): {base}/c/{charger}/{connector}{code}");
    println!("  Retailer dashboard:           {base}/dashboard");
    println!("  Operator console:             {base}/console");
    println!("  OCPP endpoint:                {ws}://{addr}/ocpp/{{chargePointId}}");
    println!("\n  Demo logins (demo data only):");
    println!("    operator admin    {} / {}", seed::OPERATOR_EMAIL, seed::OPERATOR_PASSWORD);
    println!("    operator support  {} / {}", seed::SUPPORT_EMAIL, seed::SUPPORT_PASSWORD);
    for r in &seed::RETAILERS {
        println!("    {:<17} {} / {}", format!("{} admin", r.slug), r.login, r.password);
        println!("    {:<17} {} / {}", format!("{} viewer", r.slug), r.viewer_login, r.viewer_password);
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::parse_lenses;

    #[test]
    fn lenses_are_window_steps_and_rank() {
        assert_eq!(parse_lenses("1:1, 10:3").unwrap(), vec![(1, 1), (10, 3)]);
        assert!(parse_lenses("10").unwrap_err().contains("WINDOW_STEPS:RANK"));
        assert!(parse_lenses("0:1").unwrap_err().contains("start at 1"));
        assert!(parse_lenses("a:1").unwrap_err().contains("number of steps"));
    }
}
