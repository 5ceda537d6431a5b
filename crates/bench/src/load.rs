//! Load generators: closed loop (a number of connections sending as fast as answers come back)
//! and open loop (a fixed rate, independent of how fast answers come, so slowness shows as latency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends `body()` to `url` from `concurrency` connections for `duration`; returns accepted
/// requests per second.
pub async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    concurrency: usize,
    duration: Duration,
    per_request: u64,
    body: impl Fn(u64) -> bytes::Bytes + Send + Sync + 'static,
) -> anyhow::Result<f64> {
    let body = Arc::new(body);
    let accepted = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency as u64 {
        let (client, url, key, body, accepted, failed) =
            (client.clone(), url.to_owned(), key.to_owned(), body.clone(), accepted.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w << 32;
            while Instant::now() < deadline {
                i += 1;
                let sent = client.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body(i)).send().await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        accepted.fetch_add(per_request, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        eprintln!("  {failures} requests failed");
    }
    Ok(accepted.load(Ordering::Relaxed) as f64 / elapsed)
}

/// Sends one request every 1/rate seconds for `duration`, each on its own task.
pub async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    rate: u32,
    duration: Duration,
    body: impl Fn(u64) -> bytes::Bytes,
) -> anyhow::Result<u64> {
    Ok(open_loop_timed(client, url, key, rate, duration, body).await?.0)
}

/// [`open_loop`], also returning each request's time to its answer, in microseconds.
pub async fn open_loop_timed(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    rate: u32,
    duration: Duration,
    body: impl Fn(u64) -> bytes::Bytes,
) -> anyhow::Result<(u64, Vec<u64>)> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + duration;
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let request = client.post(url).bearer_auth(key).header("content-type", "application/json").body(body(sent));
        tasks.spawn(async move {
            let began = Instant::now();
            let ok = request.send().await.map(|r| r.status().is_success()).unwrap_or(false);
            (ok, began.elapsed().as_micros() as u64)
        });
        sent += 1;
    }
    let mut failed = 0;
    let mut answered = Vec::with_capacity(sent as usize);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((true, micros)) => answered.push(micros),
            _ => failed += 1,
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {sent} paced requests failed");
    }
    Ok((sent, answered))
}
