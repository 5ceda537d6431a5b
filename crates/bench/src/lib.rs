//! `switchyard bench`: a benchmark harness that starts the real server binary, a fast loopback
//! receiver and a load generator, and reports throughput, latency and memory, each beside the
//! machine's ceiling (the same load generator against a trivial HTTP server).
//!
//! - [`node`]: the server under test, as a child process (its RSS is read from /proc).
//! - [`receiver`]: destinations: one that answers 200 at once and timestamps arrivals, one that hangs.
//! - [`load`]: closed-loop (N connections as fast as they go) and open-loop (fixed rate) senders.
//! - [`mixed`]: (k) ingestion and delivery at once at default settings, the headline, and (l) one
//!   connection at its defaults.
//! - [`scenarios`]: the measurements (a)–(g), and [`report`]: medians, the table and the JSON file.
//! - [`retention`] (h), [`plan`] (i) and [`hostile`] (j): run alone, by their own flags.

pub mod hostile;
pub mod load;
pub mod mixed;
pub mod node;
pub mod plan;
pub mod receiver;
pub mod report;
pub mod retention;
pub mod scenarios;
pub mod soak;

use std::path::PathBuf;
use std::time::Duration;

/// What to run, and how big.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `switchyard` binary to start (normally the running executable).
    pub binary: PathBuf,
    /// A PostgreSQL server to run against (a fresh database per node); SQLite when absent.
    pub postgres: Option<String>,
    /// Repetitions of each measurement; the report gives medians.
    pub runs: usize,
    pub sizes: Sizes,
    /// Where the JSON report goes.
    pub out: PathBuf,
}

/// Every size and duration, so a smoke run can shrink them all.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub concurrency: usize,
    pub ingest_duration: Duration,
    pub bulk_size: usize,
    pub e2e_events: usize,
    /// (k): how long the senders run.
    pub mixed_duration: Duration,
    pub fan_out: usize,
    pub latency_rate: u32,
    pub latency_duration: Duration,
    pub noisy_backlog: usize,
    pub queued_deliveries: usize,
    /// Pause after a burst of writes before measuring the steady state beside it.
    pub settle: Duration,
    /// (g): rules on `*` in the amplifying workspace, and its queued backlog (replayed whole).
    pub amplifier_rules: usize,
    pub amplifier_backlog_requests: usize,
    /// (h): old events (each with a delivery and an attempt) deleted while the latency is measured.
    pub retention_events: usize,
    /// (j): hostile destinations delivered to at once, and for how long.
    pub hostile_destinations: usize,
    pub hostile_duration: Duration,
}

impl Sizes {
    /// The sizes the targets are stated for.
    pub fn full() -> Self {
        Self {
            concurrency: 64,
            ingest_duration: Duration::from_secs(5),
            bulk_size: 100,
            e2e_events: 20_000,
            mixed_duration: Duration::from_secs(10),
            fan_out: 3,
            latency_rate: 1_000,
            latency_duration: Duration::from_secs(10),
            noisy_backlog: 100_000,
            queued_deliveries: 1_000_000,
            settle: Duration::from_secs(3),
            amplifier_rules: 1_000,
            // 37 requests of 10 events × 1,000 rules: the 370,000-delivery replay of issue 10.
            amplifier_backlog_requests: 37,
            retention_events: 1_000_000,
            hostile_destinations: 1_000,
            hostile_duration: Duration::from_secs(120),
        }
    }

    /// A run of a few seconds that proves the harness works (CI); its figures mean nothing.
    pub fn smoke() -> Self {
        Self {
            concurrency: 4,
            ingest_duration: Duration::from_millis(500),
            bulk_size: 10,
            e2e_events: 50,
            mixed_duration: Duration::from_millis(500),
            fan_out: 3,
            latency_rate: 50,
            latency_duration: Duration::from_millis(500),
            noisy_backlog: 200,
            queued_deliveries: 1_000,
            settle: Duration::from_millis(100),
            amplifier_rules: 5,
            amplifier_backlog_requests: 2,
            retention_events: 2_000,
            hostile_destinations: 20,
            hostile_duration: Duration::from_secs(3),
        }
    }
}

/// Runs every measurement `runs` times and writes the report.
pub async fn run(config: BenchConfig) -> anyhow::Result<report::Report> {
    let mut runs = Vec::with_capacity(config.runs);
    for i in 0..config.runs {
        eprintln!("run {}/{}", i + 1, config.runs);
        runs.push(scenarios::run_once(&config).await?);
    }
    let report = report::Report::from_runs(&config, runs);
    report.print();
    std::fs::write(&config.out, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("wrote {}", config.out.display());
    Ok(report)
}

/// (h) alone, `runs` times: prints each run and the medians, and writes the runs as JSON.
pub async fn run_retention(config: &BenchConfig) -> anyhow::Result<Vec<retention::RetentionFigures>> {
    let mut runs = Vec::with_capacity(config.runs);
    for i in 0..config.runs {
        eprintln!("retention, run {}/{}", i + 1, config.runs);
        runs.push(retention::run(config).await?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "retention: {} old events (and their deliveries and attempts) pruned in {:.1} s (median); emit to arrival at {}/s during the prune p50 {:.2} ms, p99 {:.2} ms; afterwards p50 {:.2} ms, p99 {:.2} ms",
        runs[0].events,
        median(runs.iter().map(|r| r.prune_s).collect()),
        runs[0].rate,
        median(runs.iter().map(|r| r.during_ms.p50).collect()),
        median(runs.iter().map(|r| r.during_ms.p99).collect()),
        median(runs.iter().map(|r| r.after_ms.p50).collect()),
        median(runs.iter().map(|r| r.after_ms.p99).collect()),
    );
    std::fs::write(&config.out, serde_json::to_vec_pretty(&runs)?)?;
    eprintln!("wrote {}", config.out.display());
    Ok(runs)
}

/// (i) alone, `runs` times: ingestion with and without a plan, the medians and their ratios.
pub async fn run_plan(config: &BenchConfig) -> anyhow::Result<Vec<plan::PlanFigures>> {
    let mut runs = Vec::with_capacity(config.runs);
    for i in 0..config.runs {
        eprintln!("plan, run {}/{}", i + 1, config.runs);
        runs.push(plan::run_once(config, i).await?);
    }
    let median = |f: fn(&plan::PlanFigures) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ceiling = median(|r| r.ceiling_rps);
    let (single, single_plan) = (median(|r| r.single_eps), median(|r| r.single_eps_with_plan));
    let (bulk, bulk_plan) = (median(|r| r.bulk_eps), median(|r| r.bulk_eps_with_plan));
    println!(
        "plan: ceiling {ceiling:.0} requests/s; single events {single:.0}/s ({:.3} of the ceiling), with a plan {single_plan:.0}/s ({:.3}): {:.3} of without; bulk {bulk:.0}/s, with a plan {bulk_plan:.0}/s: {:.3} of without (medians of {} runs)",
        single / ceiling,
        single_plan / ceiling,
        single_plan / single,
        bulk_plan / bulk,
        runs.len()
    );
    std::fs::write(&config.out, serde_json::to_vec_pretty(&runs)?)?;
    eprintln!("wrote {}", config.out.display());
    Ok(runs)
}

/// (j) alone, `runs` times: memory and API latency while delivering to hostile destinations.
pub async fn run_hostile(config: &BenchConfig) -> anyhow::Result<Vec<hostile::HostileFigures>> {
    let s = &config.sizes;
    let mut runs = Vec::with_capacity(config.runs);
    for i in 0..config.runs {
        eprintln!("hostile destinations, run {}/{}", i + 1, config.runs);
        runs.push(hostile::run_once(config, s.hostile_destinations, s.hostile_duration).await?);
    }
    let median = |f: fn(&hostile::HostileFigures) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "hostile: {} destinations at once for {:.0} s: RSS idle {:.1} MiB, peak {:.1} MiB ({:.2}× idle), at the end {:.1} MiB; at most {:.0} connections open to them; /healthz meanwhile p50 {:.2} ms, p99 {:.2} ms (medians of {} runs)",
        s.hostile_destinations,
        median(|r| r.seconds),
        median(|r| r.rss_idle_mib),
        median(|r| r.rss_peak_mib),
        median(|r| r.rss_peak_mib / r.rss_idle_mib),
        median(|r| r.rss_end_mib),
        median(|r| r.most_open as f64),
        median(|r| r.health_ms.p50),
        median(|r| r.health_ms.p99),
        runs.len()
    );
    std::fs::write(&config.out, serde_json::to_vec_pretty(&runs)?)?;
    eprintln!("wrote {}", config.out.display());
    Ok(runs)
}

/// (k) and (l) alone, `runs` times, beside the ceiling and single-event ingest alone (a): the
/// figures issue 16's targets are stated in, quickly.
pub async fn run_mixed(config: &BenchConfig) -> anyhow::Result<Vec<MixedRun>> {
    let s = &config.sizes;
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).tcp_nodelay(true).build()?;
    let mut runs = Vec::with_capacity(config.runs);
    for i in 0..config.runs {
        eprintln!("mixed, run {}/{}", i + 1, config.runs);
        let trivial = receiver::trivial().await?;
        let ceiling_rps = load::closed_loop(&client, &trivial, "x", s.concurrency, s.ingest_duration, 1, scenarios::single_body).await?;
        eprintln!("  ceiling: {ceiling_rps:.0} requests/s");
        let node = node::Node::start(&config.binary, config.postgres.as_deref()).await?;
        let (key, _) = node.workspace("ingest", &[], serde_json::json!({})).await?;
        let url = format!("{}/api/v1/events", node.base);
        let ingest_single_eps =
            load::closed_loop(&node.client, &url, &key, s.concurrency, s.ingest_duration, 1, scenarios::single_body).await?;
        eprintln!("  ingest alone, single: {ingest_single_eps:.0} events/s");
        drop(node);
        let (mixed, one_connection_dps, stages) = scenarios::mixed_and_one(config).await?;
        runs.push(MixedRun { ceiling_rps, ingest_single_eps, mixed, one_connection_dps, stages });
    }
    let m = |f: fn(&MixedRun) -> f64| report::median(runs.iter().map(f).collect());
    let ceiling = m(|r| r.ceiling_rps);
    let ingest = m(|r| r.ingest_single_eps);
    let mixed: Vec<_> = runs.iter().map(|r| r.mixed).collect();
    println!("\n(k) and (l): {} store, median of {} run(s)\n", if config.postgres.is_some() { "postgres" } else { "sqlite" }, runs.len());
    println!("| measurement | figure | vs ceiling |");
    println!("| --- | --- | --- |");
    println!("| (f) ceiling | {ceiling:.0} requests/s | 1.00 |");
    println!("| (a) ingest alone, single-event requests | {ingest:.0} events/s | {:.3} |", ingest / ceiling.max(1.0));
    let stages: Vec<_> = runs.iter().map(|r| r.stages).collect();
    report::print_mixed(&report::median_mixed(&mixed), m(|r| r.one_connection_dps), &report::median_stages(&stages), ceiling);
    std::fs::write(&config.out, serde_json::to_vec_pretty(&runs)?)?;
    eprintln!("wrote {}", config.out.display());
    Ok(runs)
}

/// One run of [`run_mixed`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct MixedRun {
    pub ceiling_rps: f64,
    pub ingest_single_eps: f64,
    pub mixed: mixed::MixedFigures,
    pub one_connection_dps: f64,
    pub stages: mixed::Stages,
}
