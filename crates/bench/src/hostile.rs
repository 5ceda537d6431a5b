//! (j) Hostile destinations: loopback servers that misbehave on the wire (reset mid-answer, trickle,
//! answer 10 GB, speak something other than HTTP, redirect to themselves, garble or stall a TLS
//! handshake, accept and never read), and the measurement of a node delivering to many of them at
//! once: its memory, and how its API answers meanwhile. The e2e tests use the same servers.

use crate::node::Node;
use crate::scenarios::Percentiles;
use crate::BenchConfig;
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sends the status line and part of the body, then resets the connection.
    ResetMidResponse,
    /// Sends its headers, then the body one byte a second.
    TrickleBody,
    /// Sends the status line, then its headers one byte a second.
    TrickleHeaders,
    /// Answers 200 with a 10 GB body, as fast as it is read.
    TenGigabytes,
    /// Sends headers without end.
    EndlessHeaders,
    /// Answers with something that is not HTTP.
    InvalidHttp,
    /// Redirects to itself.
    RedirectLoop,
    /// Answers the TLS client hello with garbage.
    TlsGarbage,
    /// Takes the TLS client hello and never answers.
    TlsSilent,
    /// Accepts the connection and never reads from it or writes to it.
    NeverReads,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::ResetMidResponse,
        Fault::TrickleBody,
        Fault::TrickleHeaders,
        Fault::TenGigabytes,
        Fault::EndlessHeaders,
        Fault::InvalidHttp,
        Fault::RedirectLoop,
        Fault::TlsGarbage,
        Fault::TlsSilent,
        Fault::NeverReads,
    ];

    fn tls(self) -> bool {
        matches!(self, Fault::TlsGarbage | Fault::TlsSilent)
    }
}

/// A running hostile server and what it saw.
pub struct Hostile {
    pub fault: Fault,
    addr: String,
    /// Requests (or TLS hellos, or bare connections for [`Fault::NeverReads`]) it has seen.
    pub seen: Arc<AtomicUsize>,
    /// Bytes it managed to write.
    pub written: Arc<AtomicU64>,
    /// Connections open to it now.
    pub open: Arc<AtomicUsize>,
}

impl Hostile {
    pub async fn start(fault: Fault) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let hostile = Self { fault, addr, seen: Default::default(), written: Default::default(), open: Default::default() };
        let (seen, written, open) = (hostile.seen.clone(), hostile.written.clone(), hostile.open.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, written, open) = (seen.clone(), written.clone(), open.clone());
                tokio::spawn(async move {
                    open.fetch_add(1, Ordering::Relaxed);
                    let _ = misbehave(fault, stream, &seen, &written).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(hostile)
    }

    pub fn url(&self) -> String {
        format!("{}://{}/hook", if self.fault.tls() { "https" } else { "http" }, self.addr)
    }
}

/// How long the servers that stall keep a connection: longer than any attempt may take.
const STALL: Duration = Duration::from_secs(600);

/// How long [`Fault::NeverReads`] holds each connection.
const NEVER_READ_FOR: Duration = Duration::from_secs(45);

/// Reads until the end of the request's headers (or the first packet of a TLS handshake).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.first() == Some(&0x16) || buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(());
        }
    }
}

async fn write_counted(stream: &mut TcpStream, bytes: &[u8], written: &AtomicU64) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    Ok(())
}

async fn misbehave(fault: Fault, mut stream: TcpStream, seen: &AtomicUsize, written: &AtomicU64) -> std::io::Result<()> {
    if fault == Fault::NeverReads {
        seen.fetch_add(1, Ordering::SeqCst);
        // Held open and unread for longer than any attempt's timeout (unread, it cannot tell when
        // the other side has gone).
        tokio::time::sleep(NEVER_READ_FOR).await;
        return Ok(());
    }
    read_request(&mut stream).await?;
    seen.fetch_add(1, Ordering::SeqCst);
    let second = Duration::from_secs(1);
    match fault {
        Fault::ResetMidResponse => {
            write_counted(&mut stream, b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial", written).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            stream.set_zero_linger()?; // so that dropping it sends a reset, not a FIN
        }
        Fault::TrickleBody => {
            write_counted(&mut stream, b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n", written).await?;
            loop {
                write_counted(&mut stream, b"x", written).await?;
                tokio::time::sleep(second).await;
            }
        }
        Fault::TrickleHeaders => {
            write_counted(&mut stream, b"HTTP/1.1 200 OK\r\nx-slow: ", written).await?;
            loop {
                write_counted(&mut stream, b"a", written).await?;
                tokio::time::sleep(second).await;
            }
        }
        Fault::TenGigabytes => {
            write_counted(&mut stream, b"HTTP/1.1 200 OK\r\ncontent-length: 10737418240\r\n\r\n", written).await?;
            let zeros = vec![b'0'; 64 * 1024];
            for _ in 0..(10u64 << 30) / zeros.len() as u64 {
                write_counted(&mut stream, &zeros, written).await?;
            }
        }
        Fault::EndlessHeaders => {
            write_counted(&mut stream, b"HTTP/1.1 200 OK\r\n", written).await?;
            let line = format!("x-filler: {}\r\n", "a".repeat(1000));
            loop {
                write_counted(&mut stream, line.as_bytes(), written).await?;
            }
        }
        Fault::InvalidHttp => {
            write_counted(&mut stream, b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02\xff\xfe garbage\r\n\r\n", written).await?;
            stall(&mut stream).await;
        }
        Fault::RedirectLoop => {
            write_counted(&mut stream, b"HTTP/1.1 302 Found\r\nlocation: /hook\r\ncontent-length: 0\r\n\r\n", written).await?;
            stall(&mut stream).await;
        }
        Fault::TlsGarbage => {
            let garbage: Vec<u8> = (0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            write_counted(&mut stream, &garbage, written).await?;
            stall(&mut stream).await;
        }
        Fault::TlsSilent | Fault::NeverReads => stall(&mut stream).await,
    }
    Ok(())
}

/// Keeps the connection until the other side closes it (or [`STALL`] passes), reading what comes.
async fn stall(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(STALL, async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} }).await;
}

/// (j) figures: memory in MiB, latencies in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct HostileFigures {
    pub destinations: usize,
    pub seconds: f64,
    pub events: u64,
    pub rss_idle_mib: f64,
    pub rss_peak_mib: f64,
    pub rss_end_mib: f64,
    /// The most connections open to the destinations at one moment.
    pub most_open: usize,
    /// Destinations that saw at least one attempt.
    pub reached: usize,
    /// Requests the destinations saw in all.
    pub attempts: usize,
    /// `GET /healthz` from beside, while it lasted.
    pub health_ms: Percentiles,
    /// (seconds since the start, RSS in MiB), every 10 s: a plateau is what bounded looks like.
    pub rss_series_mib: Vec<(f64, f64)>,
}

/// Destinations per workspace: one connection and rule on `*` each.
const PER_WORKSPACE: usize = 100;

/// One run: `destinations` hostile servers (every fault in turn), each a webhook connection at
/// default settings; each workspace emits an event a second for `duration`. The node may run an
/// attempt to every destination at once (`SWITCHYARD_DISPATCH_CONCURRENCY` above their number).
pub async fn run_once(config: &BenchConfig, destinations: usize, duration: Duration) -> anyhow::Result<HostileFigures> {
    let mut servers = Vec::with_capacity(destinations);
    for i in 0..destinations {
        servers.push(Hostile::start(Fault::ALL[i % Fault::ALL.len()]).await?);
    }
    let concurrency = (destinations + 64).to_string();
    let node = Node::start_with(&config.binary, config.postgres.as_deref(), &[("SWITCHYARD_DISPATCH_CONCURRENCY", &concurrency)]).await?;
    let mut keys = Vec::new();
    for (n, group) in servers.chunks(PER_WORKSPACE).enumerate() {
        let urls: Vec<String> = group.iter().map(Hostile::url).collect();
        keys.push(node.workspace(&format!("hostile-{n}"), &urls, json!({})).await?.0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = node.rss().0;

    let started = Instant::now();
    let (mut events, mut peak, mut most_open, mut health, mut series) = (0u64, 0u64, 0usize, Vec::new(), Vec::new());
    let mut next_sample = started;
    let url = format!("{}/api/v1/events", node.base);
    let mut next_emit = started;
    while started.elapsed() < duration {
        if Instant::now() >= next_emit {
            for key in &keys {
                let body = json!({"event": "hostile.test", "payload": {"n": events}});
                let r = node.client.post(&url).bearer_auth(key).json(&body).send().await?;
                anyhow::ensure!(r.status() == reqwest::StatusCode::ACCEPTED, "ingestion answered {}", r.status());
                events += 1;
            }
            next_emit += Duration::from_secs(1);
        }
        let asked = Instant::now();
        let r = node.client.get(format!("{}/healthz", node.base)).send().await?;
        anyhow::ensure!(r.status().is_success(), "healthz answered {}", r.status());
        health.push(asked.elapsed().as_micros() as u64);
        let rss = node.rss().0;
        peak = peak.max(rss);
        if Instant::now() >= next_sample {
            series.push((started.elapsed().as_secs_f64().round(), (rss as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0));
            next_sample += Duration::from_secs(10);
        }
        most_open = most_open.max(servers.iter().map(|s| s.open.load(Ordering::Relaxed)).sum());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (rss_end, hwm) = node.rss();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let figures = HostileFigures {
        destinations,
        seconds,
        events,
        rss_idle_mib: mib(rss_idle),
        rss_peak_mib: mib(peak.max(hwm)),
        rss_end_mib: mib(rss_end),
        most_open,
        reached: servers.iter().filter(|s| s.seen.load(Ordering::SeqCst) > 0).count(),
        attempts: servers.iter().map(|s| s.seen.load(Ordering::SeqCst)).sum(),
        health_ms: Percentiles::of(health)?,
        rss_series_mib: series,
    };
    eprintln!(
        "  {} hostile destinations for {:.0} s: RSS idle {:.1} MiB, peak {:.1} MiB, at the end {:.1} MiB; at most {} connections open to them; {} reached, {} attempts; /healthz p50 {:.2} ms, p99 {:.2} ms",
        figures.destinations,
        figures.seconds,
        figures.rss_idle_mib,
        figures.rss_peak_mib,
        figures.rss_end_mib,
        figures.most_open,
        figures.reached,
        figures.attempts,
        figures.health_ms.p50,
        figures.health_ms.p99
    );
    let series: Vec<String> = figures.rss_series_mib.iter().map(|(t, m)| format!("{t:.0} s: {m:.1}")).collect();
    eprintln!("  RSS (MiB) over time: {}", series.join(", "));
    Ok(figures)
}
