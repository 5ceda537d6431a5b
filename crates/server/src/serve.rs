//! The HTTP listener: hyper's HTTP/1.1 server under limits that no client can outlast.
//!
//! - **Header read**: a request's head must arrive within `header_read_timeout` of its first byte.
//! - **Idle**: a connection with no request in progress and no bytes moving for `idle_timeout` is
//!   closed (a keep-alive connection left open, or a client that stops reading an answer).
//! - **Body read**: a request's body must arrive whole within `body_read_timeout` of its head;
//!   a slower one is answered `408`.
//! - **Connections**: at most `max_connections` at once. Past that, a new connection gets `503`
//!   (`unavailable`, `Retry-After: 1`) and is closed; past twice that, it is closed at once.
//!
//! Shutdown stops accepting, asks every connection to finish its request in progress, and waits
//! for them (each still under the limits above).

use axum::Router;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The listener's limits (`--http-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Raises the soft limit on open files to the hard one (as Go's runtime does), and warns when it
/// is still below what the connection cap and the dispatcher may need together.
pub fn ensure_descriptors(config: &crate::config::Config) {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit read and write only the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        // Database pool, template workers, logs and the like.
        const RESERVE: u64 = 256;
        let needed = config.http.max_connections as u64 + config.dispatcher.max_concurrency as u64 + RESERVE;
        if limit.rlim_cur < needed {
            tracing::warn!(
                open_files = limit.rlim_cur,
                needed,
                "the limit on open files is below the HTTP connection cap plus the dispatch concurrency; \
                 raise it (ulimit -n) or lower --http-max-connections"
            );
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then until every connection has finished.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Connections answered 503: bounded too, so a flood of them costs nothing more.
    let refusals = Arc::new(Semaphore::new(limits.max_connections));
    let draining = CancellationToken::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // pause briefly rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (app, draining) = (app.clone(), draining.clone());
                tokio::spawn(async move {
                    serve_connection(stream, app, limits, draining).await;
                    drop(slot);
                });
            }
            Err(_) => {
                metrics::counter!("switchyard_http_connections_refused_total").increment(1);
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    draining.cancel();
    // Every connection has ended once all the slots are free again.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

/// Answers a connection over the cap with `503` and closes it, giving the client two seconds at
/// most: one to send its request's head (clients read no answer before they have sent it), one to
/// take the answer.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncReadExt;
    let body = r#"{"error":{"code":"unavailable","message":"the server has too many open connections; retry shortly"}}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// What a connection is doing, for its watchdog.
struct Activity {
    /// Milliseconds since the connection opened, of the last byte read or written.
    last_io: AtomicU64,
    /// Milliseconds since the connection opened of the first byte of a request head not yet
    /// handed to the application; 0 when none is being read.
    head_started: AtomicU64,
    /// Requests handed to the application and not yet answered.
    busy: AtomicUsize,
    opened: Instant,
    /// Wakes the watchdog when a head starts (its deadline is nearer than the idle one).
    head: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            last_io: AtomicU64::new(1),
            head_started: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            opened: Instant::now(),
            head: tokio::sync::Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        // 1-based, so that 0 can mean "none".
        self.opened.elapsed().as_millis() as u64 + 1
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Relaxed) == 0
            && self.head_started.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            self.head.notify_one();
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    /// How long until a limit may be broken; `None` when one is broken now.
    fn time_left(&self, limits: &HttpLimits) -> Option<Duration> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            // The request's body has its own deadline, and handlers their own timeouts.
            return Some(limits.idle_timeout);
        }
        let now = self.now();
        let head = self.head_started.load(Ordering::Relaxed);
        let (since, limit) =
            if head > 0 { (head, limits.header_read_timeout) } else { (self.last_io.load(Ordering::Relaxed).max(1), limits.idle_timeout) };
        let left = (limit.as_millis() as u64).saturating_sub(now.saturating_sub(since));
        (left > 0).then(|| Duration::from_millis(left))
    }
}

async fn serve_connection(stream: TcpStream, app: Router, limits: HttpLimits, draining: CancellationToken) {
    let activity = Arc::new(Activity::new());
    let peer = stream.peer_addr().ok();
    let io = hyper_util::rt::TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            activity.request_started();
            let mut request = request.map(|body| Deadline::new(body, limits.body_read_timeout));
            if let Some(peer) = peer {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            }
            let (app, activity) = (app.clone(), activity.clone());
            async move {
                let response = app.oneshot(request).await;
                activity.request_ended();
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our watchdog times the head (hyper's own header timer would also run while idle).
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(None).keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut asked_to_finish = false;
    loop {
        let wait = match activity.time_left(&limits) {
            Some(wait) => wait,
            None => {
                metrics::counter!("switchyard_http_connections_timed_out_total").increment(1);
                return;
            }
        };
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = tokio::time::sleep(wait) => {}
            _ = activity.head.notified() => {}
            _ = draining.cancelled(), if !asked_to_finish => {
                asked_to_finish = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The socket, noting every byte that moves.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that must arrive whole before its deadline.
struct Deadline {
    body: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl Deadline {
    fn new(body: Incoming, limit: Duration) -> Self {
        Self { body, sleep: Box::pin(tokio::time::sleep(limit)), limit }
    }
}

/// The error a [`Deadline`] body ends with; `json::read_body` answers it with `408`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimedOut(pub Duration);

impl Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
