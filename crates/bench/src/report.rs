//! Medians over runs, the printed table and the JSON report.

use crate::scenarios::{Percentiles, RunFigures};
use crate::BenchConfig;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub store: &'static str,
    pub runs: usize,
    /// Medians over the runs.
    pub median: RunFigures,
    /// Each run, for spread.
    pub all_runs: Vec<RunFigures>,
    /// Ratios to the ceiling (the same load generator against a trivial HTTP server).
    pub ingest_single_to_ceiling: f64,
    pub e2e_to_ceiling: f64,
    /// (k): events delivered everywhere, and deliveries, per second, to the ceiling.
    pub mixed_events_to_ceiling: f64,
    pub mixed_deliveries_to_ceiling: f64,
}

/// The median of each of (k)'s figures.
pub fn median_mixed(runs: &[crate::mixed::MixedFigures]) -> crate::mixed::MixedFigures {
    let m = |f: fn(&crate::mixed::MixedFigures) -> f64| median(runs.iter().map(f).collect());
    crate::mixed::MixedFigures {
        accepted_eps: m(|r| r.accepted_eps),
        deliveries_per_s: m(|r| r.deliveries_per_s),
        delivered_eps: m(|r| r.delivered_eps),
        drain_s: m(|r| r.drain_s),
        events: m(|r| r.events as f64) as u64,
    }
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

impl Report {
    pub fn from_runs(config: &BenchConfig, runs: Vec<RunFigures>) -> Self {
        let m = |f: fn(&RunFigures) -> f64| median(runs.iter().map(f).collect());
        let p = |f: fn(&RunFigures) -> Percentiles| Percentiles {
            p50: median(runs.iter().map(|r| f(r).p50).collect()),
            p95: median(runs.iter().map(|r| f(r).p95).collect()),
            p99: median(runs.iter().map(|r| f(r).p99).collect()),
            max: median(runs.iter().map(|r| f(r).max).collect()),
        };
        let mixed: Vec<_> = runs.iter().map(|r| r.mixed).collect();
        let median = RunFigures {
            ceiling_rps: m(|r| r.ceiling_rps),
            mixed: median_mixed(&mixed),
            one_connection_dps: m(|r| r.one_connection_dps),
            stages: median_stages(&runs.iter().map(|r| r.stages).collect::<Vec<_>>()),
            ingest_single_eps: m(|r| r.ingest_single_eps),
            ingest_bulk_eps: m(|r| r.ingest_bulk_eps),
            e2e_deliveries_per_s: m(|r| r.e2e_deliveries_per_s),
            latency_ms: p(|r| r.latency_ms),
            latency_accepted_ms: p(|r| r.latency_accepted_ms),
            latency_stages: median_stages(&runs.iter().map(|r| r.latency_stages).collect::<Vec<_>>()),
            noisy_latency_ms: p(|r| r.noisy_latency_ms),
            peak_rss_mib: m(|r| r.peak_rss_mib),
            queued_rss_mib: m(|r| r.queued_rss_mib),
            queued_deliveries: runs.first().map(|r| r.queued_deliveries).unwrap_or(0),
            fan_out_neighbour_ms: p(|r| r.fan_out_neighbour_ms),
            replay_neighbour_ms: p(|r| r.replay_neighbour_ms),
            replayed: runs.first().map(|r| r.replayed).unwrap_or(0),
        };
        Self {
            store: if config.postgres.is_some() { "postgres" } else { "sqlite" },
            runs: runs.len(),
            ingest_single_to_ceiling: median.ingest_single_eps / median.ceiling_rps.max(1.0),
            e2e_to_ceiling: median.e2e_deliveries_per_s / median.ceiling_rps.max(1.0),
            mixed_events_to_ceiling: median.mixed.delivered_eps / median.ceiling_rps.max(1.0),
            mixed_deliveries_to_ceiling: median.mixed.deliveries_per_s / median.ceiling_rps.max(1.0),
            median,
            all_runs: runs,
        }
    }

    pub fn print(&self) {
        let m = &self.median;
        println!("\nSwitchyard benchmark: {} store, median of {} run(s)\n", self.store, self.runs);
        println!("| measurement | figure | vs ceiling |");
        println!("| --- | --- | --- |");
        println!("| (f) ceiling: trivial HTTP server, same generator | {:.0} requests/s | 1.00 |", m.ceiling_rps);
        print_mixed(&m.mixed, m.one_connection_dps, &m.stages, m.ceiling_rps);
        println!("| (a) ingest, single-event requests | {:.0} events/s | {:.2} |", m.ingest_single_eps, self.ingest_single_to_ceiling);
        println!("| (a) ingest, bulk requests | {:.0} events/s | |", m.ingest_bulk_eps);
        println!("| (b) end to end, fan-out | {:.0} deliveries/s | {:.2} |", m.e2e_deliveries_per_s, self.e2e_to_ceiling);
        let l = m.latency_ms;
        println!("| (c) emit → arrival at a fixed rate | p50 {:.2} / p95 {:.2} / p99 {:.2} ms | |", l.p50, l.p95, l.p99);
        let a = m.latency_accepted_ms;
        println!("| (c) emit → `202` | p50 {:.2} / p95 {:.2} / p99 {:.2} ms | |", a.p50, a.p95, a.p99);
        println!("| (c) by stage (means) | {} | |", m.latency_stages);
        let n = m.noisy_latency_ms;
        let moved = if l.p99 > 0.0 { (n.p99 / l.p99 - 1.0) * 100.0 } else { 0.0 };
        println!(
            "| (d) the same beside a noisy neighbour | p50 {:.2} / p95 {:.2} / p99 {:.2} ms (p99 {moved:+.0}%) | |",
            n.p50, n.p95, n.p99
        );
        println!("| (e) peak RSS | {:.1} MiB | |", m.peak_rss_mib);
        println!("| (e) RSS with {} deliveries queued | {:.1} MiB | |", m.queued_deliveries, m.queued_rss_mib);
        let (f, r) = (m.fan_out_neighbour_ms, m.replay_neighbour_ms);
        println!("| (g) a neighbour's ingest beside a 1,000-event bulk to 1,000 rules on `*` (5 in a smoke run) | p50 {:.1} / p99 {:.1} / max {:.1} ms | |", f.p50, f.p99, f.max);
        println!(
            "| (g) a neighbour's ingest beside a replay of {} deliveries | p50 {:.1} / p99 {:.1} / max {:.1} ms | |",
            m.replayed, r.p50, r.p99, r.max
        );
    }
}

/// The rows of (k) and (l).
pub fn print_mixed(k: &crate::mixed::MixedFigures, one_connection_dps: f64, stages: &crate::mixed::Stages, ceiling_rps: f64) {
    let ratio = |x: f64| x / ceiling_rps.max(1.0);
    println!(
        "| (k) ingest and delivery at once, fan-out 3, defaults: events delivered everywhere | {:.0} events/s | {:.3} |",
        k.delivered_eps,
        ratio(k.delivered_eps)
    );
    println!("| (k) the same: deliveries | {:.0} deliveries/s | {:.3} |", k.deliveries_per_s, ratio(k.deliveries_per_s));
    println!("| (k) the same: accepted while sending; drained after | {:.0} events/s; {:.2} s | |", k.accepted_eps, k.drain_s);
    println!("| (l) one connection at its defaults | {one_connection_dps:.0} deliveries/s | {:.3} |", ratio(one_connection_dps));
    println!("| (l) by stage (means) | {stages} | |");
}

/// The median of each stage figure.
pub fn median_stages(runs: &[crate::mixed::Stages]) -> crate::mixed::Stages {
    let m = |f: fn(&crate::mixed::Stages) -> f64| median(runs.iter().map(f).collect());
    crate::mixed::Stages {
        claim_ms: m(|s| s.claim_ms),
        per_claim: m(|s| s.per_claim),
        attempt_ms: m(|s| s.attempt_ms),
        record_wait_ms: m(|s| s.record_wait_ms),
        record_ms: m(|s| s.record_ms),
        per_record: m(|s| s.per_record),
    }
}
