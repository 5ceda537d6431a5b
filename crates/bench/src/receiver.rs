//! Destinations for the benchmark: a fast one that answers 200 at once and timestamps arrivals,
//! and one that accepts connections but never answers.

use axum::body::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Counts arrivals; while recording, keeps each arrival's latency (now − the payload's `sent_us`).
#[derive(Default)]
pub struct Arrivals {
    pub count: AtomicU64,
    pub last_us: AtomicU64,
    pub recording: AtomicBool,
    pub latencies_us: Mutex<Vec<u64>>,
}

impl Arrivals {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Starts a fresh latency recording.
    pub fn record(&self, on: bool) {
        self.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.recording.store(on, Ordering::Release);
    }

    pub fn take_latencies(&self) -> Vec<u64> {
        self.recording.store(false, Ordering::Release);
        std::mem::take(&mut *self.latencies_us.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Finds `"sent_us":<digits>` without parsing the whole body.
fn sent_us(body: &[u8]) -> Option<u64> {
    let key = b"\"sent_us\":";
    let start = body.windows(key.len()).position(|w| w == key)? + key.len();
    let digits: Vec<u8> = body[start..].iter().skip_while(|b| **b == b' ').take_while(|b| b.is_ascii_digit()).copied().collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// A receiver answering 200 at once. Returns its URL.
pub async fn fast(arrivals: Arc<Arrivals>) -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let arrivals = arrivals.clone();
        async move {
            let now = now_micros();
            if arrivals.recording.load(Ordering::Acquire) {
                if let Some(sent) = sent_us(&body) {
                    arrivals.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).push(now.saturating_sub(sent));
                }
            }
            arrivals.last_us.fetch_max(now, Ordering::AcqRel);
            arrivals.count.fetch_add(1, Ordering::AcqRel);
            "ok"
        }
    });
    serve(app).await
}

/// A receiver that never answers.
pub async fn hanging() -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(std::future::pending::<&'static str>);
    serve(app).await
}

/// A trivial HTTP server answering 202 with a small JSON body, to measure the machine's ceiling.
pub async fn trivial() -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(|_body: Bytes| async {
        (axum::http::StatusCode::ACCEPTED, [("content-type", "application/json")], r#"{"id":"evt_0","status":"accepted"}"#)
    });
    serve(app).await
}

async fn serve(app: axum::Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Ok(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_send_time_is_found_in_an_envelope() {
        assert_eq!(super::sent_us(br#"{"id":"e","data":{"sent_us":1234,"x":1}}"#), Some(1234));
        assert_eq!(super::sent_us(br#"{"data":{"sent_us": 99}}"#), Some(99));
        assert_eq!(super::sent_us(br#"{"data":{}}"#), None);
    }
}
