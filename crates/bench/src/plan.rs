//! (i) The cost of a plan: ingestion (a) with and without a plan in force, alternated in one sitting.
//!
//! Each run starts two fresh nodes in turn (which goes first alternates from run to run, so a
//! machine that drifts favours neither): one with no plans file, one whose default plan has a
//! monthly cap and an events-per-second limit too high to refuse anything. Every event then takes
//! the capped and paced paths (the month's count, the workspace's bucket, its `RateLimit`
//! headers) without being refused. The ceiling is measured once per run, beside them.

use crate::load::closed_loop;
use crate::node::Node;
use crate::{receiver, scenarios, BenchConfig};
use serde::Serialize;
use serde_json::json;

/// The plans file of the "with a plan" node.
const PLANS: &str = r#"default_plan = "bench"

[plans.bench]
events_per_month = 1000000000000
events_per_second = 1000000
events_burst = 10000000
"#;

#[derive(Debug, Clone, Serialize)]
pub struct PlanFigures {
    pub ceiling_rps: f64,
    pub single_eps: f64,
    pub single_eps_with_plan: f64,
    pub bulk_eps: f64,
    pub bulk_eps_with_plan: f64,
}

/// Accepted events/s, single and bulk, on a fresh node started with `env`.
async fn ingest(config: &BenchConfig, env: &[(&str, &str)]) -> anyhow::Result<(f64, f64)> {
    let s = &config.sizes;
    let node = Node::start_with(&config.binary, config.postgres.as_deref(), env).await?;
    let (key, _) = node.workspace("ingest", &[], json!({})).await?;
    let url = format!("{}/api/v1/events", node.base);
    let single = closed_loop(&node.client, &url, &key, s.concurrency, s.ingest_duration, 1, scenarios::single_body).await?;
    let bulk_url = format!("{}/api/v1/events/bulk", node.base);
    let size = s.bulk_size as u64;
    let bulk =
        closed_loop(&node.client, &bulk_url, &key, s.concurrency, s.ingest_duration, size, move |i| scenarios::bulk_body(i, size)).await?;
    Ok((single, bulk))
}

pub async fn run_once(config: &BenchConfig, run: usize) -> anyhow::Result<PlanFigures> {
    let s = &config.sizes;
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).tcp_nodelay(true).build()?;
    let trivial = receiver::trivial().await?;
    let ceiling_rps = closed_loop(&client, &trivial, "x", s.concurrency, s.ingest_duration, 1, scenarios::single_body).await?;
    let dir = tempfile::tempdir()?;
    let plans = dir.path().join("plans.toml");
    std::fs::write(&plans, PLANS)?;
    let plans = plans.display().to_string();
    let with_plan = [("SWITCHYARD_PLANS_FILE", plans.as_str())];
    let (without, with) = if run.is_multiple_of(2) {
        let without = ingest(config, &[]).await?;
        (without, ingest(config, &with_plan).await?)
    } else {
        let with = ingest(config, &with_plan).await?;
        (ingest(config, &[]).await?, with)
    };
    let figures =
        PlanFigures { ceiling_rps, single_eps: without.0, single_eps_with_plan: with.0, bulk_eps: without.1, bulk_eps_with_plan: with.1 };
    eprintln!(
        "  ceiling {ceiling_rps:.0} requests/s; single: {:.0} events/s, with a plan {:.0}; bulk: {:.0}, with a plan {:.0}",
        figures.single_eps, figures.single_eps_with_plan, figures.bulk_eps, figures.bulk_eps_with_plan
    );
    Ok(figures)
}
