//! Gives memory back to the operating system after bursts.
//!
//! glibc's allocator keeps freed memory in its per-thread arenas for reuse, so after a burst (a
//! million queued deliveries ingested in bulk, say) a node's resident size stays near its peak
//! although the memory is free. Every two seconds this asks the allocator to return free pages
//! (`malloc_trim`), on a blocking thread since a trim of large arenas takes milliseconds.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TRIM_INTERVAL: Duration = Duration::from_secs(2);

pub async fn trim_periodically(stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TRIM_INTERVAL) => {}
        }
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim has no preconditions; it only releases free memory of glibc's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
