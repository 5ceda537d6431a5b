//! The `switchyard` binary: runs a node (`serve`, with the behaviour in `switchyard-server`), and
//! manages one over its API (`workspaces`, `connections`, `rules`, `events`, ..., built on
//! `switchyard-client`). Flags fall back to environment variables.

mod cli;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use cli::Group;
use std::net::SocketAddr;
use switchyard_server::config::Config;
use switchyard_server::{Application, Role};

#[derive(Parser)]
#[command(name = "switchyard", version, about = "The outbound integration layer for SaaS products")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: the HTTP API and/or the dispatcher.
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Re-seal every secret under a new master key while servers keep running (see
    /// docs/security.md). Embedded default: generates the key into the data folder's key file.
    /// Otherwise: SWITCHYARD_MASTER_KEY is the new key, SWITCHYARD_PREVIOUS_MASTER_KEYS the old ones.
    RotateMasterKey(RotateArgs),
    /// Print the OpenAPI document generated from the handlers.
    Openapi,
    /// Render templates for a server (started by `serve`, one process per worker; not for people).
    #[command(hide = true)]
    RenderWorker {
        /// Bytes of address space the worker may add to what it holds at start.
        memory_bytes: u64,
    },
    /// Benchmark this binary: starts it as the server under test beside a loopback receiver and a
    /// load generator, prints a table and writes a JSON report (see docs/benchmarks.md).
    Bench(BenchArgs),
    /// Soak this binary: steady ingestion and delivery while nodes are killed with SIGKILL and
    /// restarted; fails if any accepted event misses a delivery (see docs/reliability.md).
    Soak(SoakArgs),
    /// Manage workspaces.
    #[command(alias = "workspace")]
    Workspaces(Group<cli::WorkspaceCmd>),
    /// Manage a workspace's publishable keys.
    #[command(name = "keys", alias = "publishable-keys")]
    Keys(Group<cli::KeyCmd>),
    /// Manage a workspace's connections, and browse the integration catalog.
    #[command(alias = "connection")]
    Connections(Group<cli::ConnectionCmd>),
    /// Manage a workspace's rules.
    #[command(alias = "rule")]
    Rules(Group<cli::RuleCmd>),
    /// List, show, emit and follow events.
    #[command(alias = "event")]
    Events(Group<cli::EventCmd>),
    /// List, show and replay deliveries.
    #[command(alias = "delivery")]
    Deliveries(Group<cli::DeliveryCmd>),
    /// Mint, list and end sessions of the embedded pages.
    #[command(alias = "session")]
    Sessions(Group<cli::SessionCmd>),
    /// List and declare a workspace's event types.
    #[command(name = "event-types")]
    EventTypes(Group<cli::EventTypeCmd>),
    /// Set, list and delete a workspace's secrets (the values blueprints' ${secret:NAME} stand for).
    #[command(alias = "secret")]
    Secrets(Group<cli::SecretCmd>),
    /// Manage plans: named sets of limits that workspaces are put on (installation keys).
    #[command(alias = "plan")]
    Plans(Group<cli::PlanCmd>),
    /// Blueprints: one integration design for many workspaces (see docs/blueprints.md).
    #[command(alias = "blueprints")]
    Blueprint {
        #[command(subcommand)]
        command: cli::blueprint::BlueprintCmd,
    },
    /// A workspace's month against its limits (or, with --installation, the installation's).
    Usage(cli::UsageArgs),
    /// Save and show the server, keys and workspace the commands above use.
    #[command(alias = "profiles")]
    Profile(Group<cli::ProfileCmd>),
    /// Serve the Model Context Protocol over standard input and output for an AI agent: its tools
    /// call the API of --url with --api-key (a read-only or workspace-scoped key limits them).
    Mcp {
        #[command(flatten)]
        target: cli::Target,
    },
    /// Print a shell completion script: `switchyard completions bash > /etc/bash_completion.d/switchyard`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Args)]
struct BenchArgs {
    /// Tiny sizes: proves the harness works in seconds; the figures mean nothing.
    #[arg(long)]
    smoke: bool,
    /// Repetitions of each measurement; the report gives medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run against PostgreSQL: a server URL on which a fresh database is made per node.
    #[arg(long)]
    postgres: Option<String>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "bench-report.json")]
    out: std::path::PathBuf,
    /// The server binary to measure (default: this one), to compare two builds with one harness.
    #[arg(long)]
    server: Option<std::path::PathBuf>,
    /// Measure only (h): latency while a million old events (with their deliveries and attempts)
    /// are pruned by retention.
    #[arg(long)]
    retention: bool,
    /// Measure only (i): ingestion with a plan in force (a monthly cap and events per second)
    /// against none, alternated in one sitting.
    #[arg(long, conflicts_with = "retention")]
    plan: bool,
    /// Measure only (j): memory and API latency while delivering to hostile destinations (resets,
    /// trickles, 10 GB answers, garbage, stalled TLS) at once.
    #[arg(long, conflicts_with_all = ["retention", "plan"])]
    hostile: bool,
    /// Measure only (k) and (l), beside the ceiling and ingest alone: ingestion and delivery at
    /// once at default settings (fan-out 3), and one connection at its defaults.
    #[arg(long, conflicts_with_all = ["retention", "plan", "hostile"])]
    mixed: bool,
    /// With --hostile: how many destinations (default 1,000; 20 with --smoke).
    #[arg(long, requires = "hostile")]
    destinations: Option<usize>,
}

#[derive(Args)]
struct SoakArgs {
    /// How long to send and kill, in seconds.
    #[arg(long, default_value_t = 1800)]
    seconds: u64,
    /// Events per second, in all (each fans out to three webhook connections).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Kill a node after a random pause of this many seconds, `LOW-HIGH`.
    #[arg(long, default_value = "20-60", value_parser = parse_seconds_range)]
    kill_every: (std::time::Duration, std::time::Duration),
    /// Run a cluster on a fresh database of this PostgreSQL server (default: one node on SQLite).
    #[arg(long)]
    postgres: Option<String>,
    /// Nodes in the PostgreSQL cluster; they are killed in turn.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds a killed cluster node stays down.
    #[arg(long, default_value_t = 5)]
    down_for: u64,
    /// The share of deliveries the receiver fails with a 503, so that retries are part of the run.
    #[arg(long, default_value_t = 0.02)]
    fail_ratio: f64,
    /// Seconds to wait, once sending stops, for every delivery to arrive.
    #[arg(long, default_value_t = 300)]
    drain: u64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "soak-report.json")]
    out: std::path::PathBuf,
    /// The server binary to soak (default: this one).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

fn parse_seconds_range(s: &str) -> Result<(std::time::Duration, std::time::Duration), String> {
    let (lo, hi) = s.split_once('-').unwrap_or((s, s));
    let secs = |v: &str| v.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).map(std::time::Duration::from_secs_f64);
    match (secs(lo), secs(hi)) {
        (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err("expected seconds as LOW-HIGH, e.g. 20-60".into()),
    }
}

#[derive(Args)]
struct DatabaseArgs {
    /// sqlite://PATH (embedded, created on first start) or postgres://...
    #[arg(long, env = "SWITCHYARD_DATABASE_URL", default_value = "sqlite://switchyard-data/switchyard.db")]
    database_url: String,
}

#[derive(Args)]
struct RotateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Embedded default: seconds to wait after writing the new key, for running servers to
    /// start sealing with it (they re-read the key file every second).
    #[arg(long, default_value_t = 3)]
    settle_seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Api,
    Worker,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    database: DatabaseArgs,
    /// api: HTTP only; worker: dispatch only; all: both.
    #[arg(long, env = "SWITCHYARD_ROLE", value_enum, default_value = "all")]
    role: RoleArg,
    /// Allow destinations on loopback, private, link-local and other non-public addresses.
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_DESTINATIONS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    allow_private_destinations: bool,
    /// Log format.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Most delivery attempts in flight on this node.
    #[arg(long, env = "SWITCHYARD_DISPATCH_CONCURRENCY", default_value_t = 512)]
    dispatch_concurrency: usize,
    /// Alone on the store (SQLite), hand fresh deliveries to the dispatcher as they are stored,
    /// leased already, instead of claiming them in a transaction of their own.
    #[arg(long, env = "SWITCHYARD_HAND_OVER_AT_INGEST", default_value_t = true, action = clap::ArgAction::Set)]
    hand_over_at_ingest: bool,
    /// Idle poll interval of the dispatcher, in milliseconds (new events wake it at once).
    #[arg(long, env = "SWITCHYARD_POLL_INTERVAL_MS", default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Database connections in this node's pool (PostgreSQL).
    #[arg(long, env = "SWITCHYARD_DATABASE_POOL_SIZE", default_value_t = 16)]
    database_pool_size: u32,
    /// Longest a database statement may run, in milliseconds (PostgreSQL).
    #[arg(long, env = "SWITCHYARD_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    statement_timeout_ms: u64,
    /// Added to a connection's timeout to make the lease on each attempt, in milliseconds. A node
    /// that dies holding leases has its deliveries taken over once they expire.
    #[arg(long, env = "SWITCHYARD_LEASE_MARGIN_MS", default_value_t = 10_000)]
    lease_margin_ms: u64,
    /// Delete events (with their deliveries and attempts) older than this many days once all their
    /// deliveries have finished; 0 keeps history forever.
    #[arg(long, env = "SWITCHYARD_RETENTION_DAYS", default_value_t = 0)]
    retention_days: u64,
    /// Delete audit log entries older than this many days; 0 keeps them forever.
    #[arg(long, env = "SWITCHYARD_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    audit_retention_days: u64,
    /// Disable a connection once every attempt to it has failed for this many hours (its
    /// deliveries wait until it is resumed); 0 never disables one.
    #[arg(long, env = "SWITCHYARD_DISABLE_FAILING_AFTER_HOURS", default_value_t = 120)]
    disable_failing_after_hours: u64,
    /// The operator's workspace (ws_...): every workspace's operational notifications
    /// (switchyard.connection.failing, ...) are also emitted there, for its rules to deliver.
    #[arg(long, env = "SWITCHYARD_NOTIFY_WORKSPACE")]
    notify_workspace: Option<String>,
    /// Proxies trusted to name the client in X-Forwarded-For (comma-separated addresses or CIDR
    /// ranges); the audit log and address limits then see the client, not the proxy.
    #[arg(long, env = "SWITCHYARD_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<switchyard_server::config::IpNet>,
    /// How long a console sign-in lasts, in hours.
    #[arg(long, env = "SWITCHYARD_CONSOLE_SESSION_HOURS", default_value_t = 12)]
    console_session_hours: u64,
    /// Seconds to let attempts in flight finish on shutdown before handing their leases back.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    shutdown_grace_seconds: u64,
    /// Longest wait for a request's head (its first byte to its last header), in milliseconds; at most 30000.
    #[arg(long, env = "SWITCHYARD_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// Keep-alive connections with nothing moving for this long are closed, in milliseconds.
    #[arg(long, env = "SWITCHYARD_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    http_idle_timeout_ms: u64,
    /// Longest a request body may take to arrive whole, in milliseconds; a slower one gets 408.
    #[arg(long, env = "SWITCHYARD_HTTP_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    http_body_timeout_ms: u64,
    /// Most HTTP connections open at once; past it, new ones get 503 and are closed.
    #[arg(long, env = "SWITCHYARD_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    http_max_connections: usize,
    /// Most deliveries one ingestion request may create (events times the rules each matches).
    #[arg(long, env = "SWITCHYARD_MAX_DELIVERIES_PER_REQUEST", default_value_t = 10_000)]
    max_deliveries_per_request: usize,
    /// Worker processes rendering rules' templates, and so renders at once on this node.
    #[arg(long, env = "SWITCHYARD_TEMPLATE_WORKERS", default_value_t = 2)]
    template_workers: usize,
    /// Memory one template render may use, in MiB; a render that needs more fails its delivery.
    #[arg(long, env = "SWITCHYARD_TEMPLATE_MEMORY_MIB", default_value_t = 256)]
    template_memory_mib: u64,
    /// Longest one template render may take, in milliseconds; a slower one fails its delivery.
    #[arg(long, env = "SWITCHYARD_TEMPLATE_TIME_LIMIT_MS", default_value_t = 2_000)]
    template_time_limit_ms: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::RenderWorker { memory_bytes } = cli.command {
        // Before any runtime: the worker's address space is capped at what it holds now plus this.
        return match switchyard_destinations::sandbox::worker_main(memory_bytes) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(cli::exit::FAILED, &e.to_string()),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return fail(cli::exit::FAILED, &e.to_string()),
    };
    let managed = match cli.command {
        Command::Workspaces(g) => runtime.block_on(cli::workspaces(g)),
        Command::Keys(g) => runtime.block_on(cli::keys(g)),
        Command::Connections(g) => runtime.block_on(cli::connections(g)),
        Command::Rules(g) => runtime.block_on(cli::rules(g)),
        Command::Events(g) => runtime.block_on(cli::events(g)),
        Command::Deliveries(g) => runtime.block_on(cli::deliveries(g)),
        Command::Sessions(g) => runtime.block_on(cli::sessions(g)),
        Command::EventTypes(g) => runtime.block_on(cli::event_types(g)),
        Command::Secrets(g) => runtime.block_on(cli::secrets(g)),
        Command::Profile(g) => cli::profiles(g),
        Command::Plans(g) => runtime.block_on(cli::plans(g)),
        Command::Usage(args) => runtime.block_on(cli::usage(args)),
        Command::Blueprint { command } => cli::blueprint::run(command, &runtime),
        Command::Mcp { target } => runtime.block_on(async {
            let profile = cli::profile::resolve(&target)?;
            let client = cli::admin_client(&profile)?;
            switchyard_mcp::serve_stdio(client).await.map_err(|e| cli::Failure { code: cli::exit::FAILED, message: e })
        }),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "switchyard", &mut std::io::stdout());
            Ok(())
        }
        other => {
            return match runtime.block_on(run_node_command(other)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => fail(cli::exit::FAILED, &format!("{e:#}")),
            }
        }
    };
    match managed {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => fail(failure.code, &failure.message),
    }
}

fn fail(code: u8, message: &str) -> std::process::ExitCode {
    // An outcome told already (a plan with changes) ends with its code alone.
    if !message.is_empty() {
        eprintln!("error: {message}");
    }
    std::process::ExitCode::from(code)
}

/// The commands that run or look after a node (not the management commands).
async fn run_node_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => {
            init_logging(LogFormat::Text);
            switchyard_server::migrate(&args.database_url).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Bench(args) => {
            let mut sizes = if args.smoke { switchyard_bench::Sizes::smoke() } else { switchyard_bench::Sizes::full() };
            if let Some(n) = args.destinations {
                sizes.hostile_destinations = n.max(1);
            }
            let config = switchyard_bench::BenchConfig {
                binary: match args.server {
                    Some(path) => path,
                    None => std::env::current_exe()?,
                },
                postgres: args.postgres,
                runs: args.runs.max(1),
                sizes,
                out: args.out,
            };
            if args.retention {
                return switchyard_bench::run_retention(&config).await.map(|_| ());
            }
            if args.plan {
                return switchyard_bench::run_plan(&config).await.map(|_| ());
            }
            if args.hostile {
                return switchyard_bench::run_hostile(&config).await.map(|_| ());
            }
            if args.mixed {
                return switchyard_bench::run_mixed(&config).await.map(|_| ());
            }
            switchyard_bench::run(config).await.map(|_| ())
        }
        Command::Soak(args) => {
            anyhow::ensure!((0.0..1.0).contains(&args.fail_ratio), "--fail-ratio must be at least 0 and below 1");
            let config = switchyard_bench::soak::SoakConfig {
                binary: match args.server {
                    Some(path) => path,
                    None => std::env::current_exe()?,
                },
                postgres: args.postgres,
                nodes: args.nodes,
                duration: std::time::Duration::from_secs(args.seconds),
                rate: args.rate.max(1),
                kill_every: args.kill_every,
                down_for: std::time::Duration::from_secs(args.down_for),
                fail_ratio: args.fail_ratio,
                drain: std::time::Duration::from_secs(args.drain),
                out: args.out,
            };
            let report = switchyard_bench::soak::run(&config).await?;
            anyhow::ensure!(report.missing == 0, "{} accepted deliveries never arrived", report.missing);
            Ok(())
        }
        Command::RotateMasterKey(args) => {
            init_logging(LogFormat::Text);
            let mut config = Config::new(args.database.database_url);
            master_keys_from_env(&mut config);
            let report = switchyard_server::rotate_master_key(&config, std::time::Duration::from_secs(args.settle_seconds)).await?;
            println!(
                "re-sealed {} secrets under master key {} (replaced: {})",
                report.resealed,
                report.new_key_id,
                if report.old_key_ids.is_empty() { "none".to_owned() } else { report.old_key_ids.join(", ") }
            );
            if config.master_key.is_some() {
                println!("every secret is now sealed with SWITCHYARD_MASTER_KEY: remove SWITCHYARD_PREVIOUS_MASTER_KEYS from your nodes");
            } else {
                println!("the key file now holds only the new key: back it up with the database");
            }
            Ok(())
        }
        Command::Openapi => {
            println!("{}", switchyard_server::api::openapi().to_pretty_json()?);
            Ok(())
        }
        _ => unreachable!("management commands and the render worker are handled in main"),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG").unwrap_or_else(|_| "info,sqlx=warn,tower_http=info".into());
    // The MCP SDK logs whole requests and answers (credentials, secrets) at debug: never at all.
    let filter = filter.add_directive("rmcp=error".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);
    let mut config = Config::new(args.database.database_url);
    config.listen = args.listen;
    config.role = match args.role {
        RoleArg::Api => Role::Api,
        RoleArg::Worker => Role::Worker,
        RoleArg::All => Role::All,
    };
    config.allow_private_destinations = args.allow_private_destinations;
    config.postgres.pool_size = args.database_pool_size;
    config.postgres.statement_timeout = std::time::Duration::from_millis(args.statement_timeout_ms);
    master_keys_from_env(&mut config);
    config.oauth = switchyard_server::oauth::providers::Providers::from_vars(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    config.public_url = std::env::var("SWITCHYARD_PUBLIC_URL").ok().filter(|u| !u.is_empty());
    if let Some(url) = std::env::var("SWITCHYARD_OAUTH_ZOOM_TOKEN_URL").ok().filter(|u| !u.is_empty()) {
        config.zoom_token_url = url;
    }
    config.admin_key = std::env::var("SWITCHYARD_ADMIN_KEY").ok().filter(|k| !k.is_empty());
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    config.branding = switchyard_core::model::Branding {
        accent_color: env("SWITCHYARD_BRAND_ACCENT_COLOR"),
        logo_url: env("SWITCHYARD_BRAND_LOGO_URL"),
        name: env("SWITCHYARD_BRAND_NAME"),
    };
    config.dispatcher.max_concurrency = args.dispatch_concurrency;
    config.dispatcher.hand_over_at_ingest = args.hand_over_at_ingest;
    config.dispatcher.poll_interval = std::time::Duration::from_millis(args.poll_interval_ms.max(10));
    config.shutdown_grace = std::time::Duration::from_secs(args.shutdown_grace_seconds);
    config.dispatcher.lease_margin = std::time::Duration::from_millis(args.lease_margin_ms);
    config.max_deliveries_per_request = args.max_deliveries_per_request;
    config.http = switchyard_server::serve::HttpLimits {
        header_read_timeout: std::time::Duration::from_millis(args.http_header_timeout_ms),
        idle_timeout: std::time::Duration::from_millis(args.http_idle_timeout_ms),
        body_read_timeout: std::time::Duration::from_millis(args.http_body_timeout_ms),
        max_connections: args.http_max_connections,
    };
    config.templates.worker = Some(switchyard_destinations::sandbox::WorkerCommand {
        program: std::env::current_exe().context("could not find this program to start template workers")?,
        args: vec!["render-worker".into()],
    });
    config.templates.workers = args.template_workers.max(1);
    config.templates.limits.memory_bytes = args.template_memory_mib << 20;
    config.templates.limits.time = std::time::Duration::from_millis(args.template_time_limit_ms);
    config.retention = (args.retention_days > 0).then(|| std::time::Duration::from_secs(args.retention_days * 86_400));
    config.audit_retention = (args.audit_retention_days > 0).then(|| std::time::Duration::from_secs(args.audit_retention_days * 86_400));
    config.notify_workspace = match args.notify_workspace.as_deref().filter(|w| !w.is_empty()) {
        None => None,
        Some(w) => Some(
            switchyard_core::ids::WorkspaceId::parse(w)
                .ok_or_else(|| anyhow::anyhow!("SWITCHYARD_NOTIFY_WORKSPACE: {w:?} is not a workspace id (ws_...)"))?,
        ),
    };
    config.disable_failing_after = (args.disable_failing_after_hours > 0)
        .then(|| std::time::Duration::from_secs(args.disable_failing_after_hours.saturating_mul(3_600)));
    config.trusted_proxies = args.trusted_proxies.clone();
    config.console_session_ttl = std::time::Duration::from_secs(args.console_session_hours.clamp(1, 24 * 30) * 3600);
    config.oidc = oidc_from_env();
    if let Some(path) = std::env::var_os("SWITCHYARD_PLANS_FILE").filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(&path).with_context(|| format!("could not read the plans file {}", path.to_string_lossy()))?;
        config.plans = switchyard_server::limits::PlansConfig::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("the plans file {} is not valid: {e}", path.to_string_lossy()))?;
    }

    let app = Application::build(config).await.context("switchyard could not start")?;
    if let Some(key) = &app.bootstrap_admin_key {
        println!("Created the first admin key (shown only this once; store it now):\n\n    {key}\n");
    }
    println!("switchyard listening on http://{}", app.local_addr());
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        stop.cancel();
    });
    app.run_until_stopped().await
}

fn master_keys_from_env(config: &mut Config) {
    config.master_key = std::env::var("SWITCHYARD_MASTER_KEY").ok().filter(|k| !k.is_empty());
    config.previous_master_keys = std::env::var("SWITCHYARD_PREVIOUS_MASTER_KEYS")
        .map(|v| v.split(',').map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Team sign-in settings (`SWITCHYARD_OIDC_*`), when an issuer is set.
fn oidc_from_env() -> Option<switchyard_server::config::OidcConfig> {
    let var = |k: &str| std::env::var(format!("SWITCHYARD_OIDC_{k}")).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let list =
        |k: &str| var(k).map(|v| v.split(',').map(|x| x.trim().to_lowercase()).filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    let values =
        |k: &str| var(k).map(|v| v.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()).unwrap_or_default();
    Some(switchyard_server::config::OidcConfig {
        issuer: var("ISSUER")?,
        client_id: var("CLIENT_ID").unwrap_or_default(),
        client_secret: var("CLIENT_SECRET").unwrap_or_default(),
        scopes: var("SCOPES").unwrap_or_else(|| "openid email profile".into()),
        display_name: var("NAME").unwrap_or_else(|| "your identity provider".into()),
        owners: list("OWNERS"),
        admins: list("ADMINS"),
        viewers: list("VIEWERS"),
        role_claim: var("ROLE_CLAIM"),
        owner_values: values("OWNER_VALUES"),
        admin_values: values("ADMIN_VALUES"),
        viewer_values: values("VIEWER_VALUES"),
    })
}
