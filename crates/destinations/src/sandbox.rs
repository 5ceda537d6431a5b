//! Where templates render: in worker processes with a memory ceiling and a time limit, so that no
//! template, however hostile, can crash, stall or exhaust the server.
//!
//! minijinja's fuel bounds the instructions a render spends, not the bytes one instruction may
//! allocate (`a ~ a` doubles a string in one step), nor the time spent in a filter over a long
//! string. No allocator can refuse memory to one thread without aborting the whole process, so a
//! [`Renderer::Sandbox`] renders in separate processes (`switchyard render-worker`), each with its
//! address space capped (`RLIMIT_AS`) and one render at a time:
//!
//! - a render that needs more memory than the budget ends its worker (the allocation fails);
//! - a render that runs past the time limit has its worker killed;
//! - a compiler or renderer that overflows its stack ends its worker.
//!
//! Each of these is reported as the render's error (and so a permanent failure of the delivery),
//! and the next render gets a fresh worker. The server itself never runs a tenant's template.
//!
//! [`Renderer::InProcess`] renders on the blocking thread pool with fuel and the output cap only:
//! for tests and for embedding where templates are trusted.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// What one render may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space a worker may add to what it holds when it starts.
    pub memory_bytes: u64,
    /// Wall time of one render, compiling included.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_bytes: 256 << 20, time: Duration::from_secs(2) }
    }
}

/// The program that renders: run with `args`, it must call [`worker_main`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// Why a render produced nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template failed or broke a limit: the same template over the same event fails again.
    #[error("{0}")]
    Template(String),
    /// The renderer could not be started or reached: a later attempt may succeed.
    #[error("{0}")]
    Unavailable(String),
}

/// Renders templates; see the module's documentation.
#[derive(Clone)]
pub enum Renderer {
    InProcess,
    Sandbox(Arc<Pool>),
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InProcess => f.write_str("Renderer::InProcess"),
            Self::Sandbox(p) => write!(f, "Renderer::Sandbox({} workers, {:?})", p.size, p.limits),
        }
    }
}

impl Renderer {
    /// A pool of `workers` processes started on demand with `command`.
    pub fn sandbox(command: WorkerCommand, workers: usize, limits: Limits) -> Self {
        let size = workers.max(1);
        Self::Sandbox(Arc::new(Pool { command, limits, size, idle: Mutex::new(Vec::new()), slots: tokio::sync::Semaphore::new(size) }))
    }

    /// Renders `source` over `context`, HTML-escaping printed values when `html` is set (see
    /// [`crate::template`]).
    pub async fn render(&self, html: bool, source: &str, context: &serde_json::Value) -> Result<String, RenderError> {
        match self {
            Self::InProcess => {
                let (source, context) = (source.to_owned(), context.clone());
                match tokio::task::spawn_blocking(move || crate::template::render_as(html, &source, &context)).await {
                    Ok(rendered) => rendered.map_err(RenderError::Template),
                    Err(_) => Err(RenderError::Template("the template renderer failed".to_owned())),
                }
            }
            Self::Sandbox(pool) => pool.render(&Request { html, source, context }).await,
        }
    }
}

/// Worker processes, each rendering one template at a time.
pub struct Pool {
    command: WorkerCommand,
    limits: Limits,
    size: usize,
    idle: Mutex<Vec<Worker>>,
    slots: tokio::sync::Semaphore,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// The end of what the worker printed to standard error: why it stopped, if it did.
    stderr: Arc<Mutex<String>>,
}

#[derive(Serialize)]
struct Request<'a> {
    html: bool,
    source: &'a str,
    context: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct OwnedRequest {
    html: bool,
    source: String,
    context: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
enum Response {
    Ok(String),
    Err(String),
}

/// The largest frame either side accepts: a request holds one template and one event.
const MAX_FRAME: usize = 16 << 20;

impl Pool {
    async fn render(&self, request: &Request<'_>) -> Result<String, RenderError> {
        let frame =
            serde_json::to_vec(request).map_err(|e| RenderError::Template(format!("the template context could not be encoded: {e}")))?;
        let _slot = self.slots.acquire().await.map_err(|_| RenderError::Unavailable("the template renderer is shut down".to_owned()))?;
        // An idle worker that has gone (killed from outside) is replaced, not blamed on this render.
        let idle = std::iter::from_fn(|| self.idle.lock().expect("pool lock").pop()).find_map(|mut w| match w.child.try_wait() {
            Ok(None) => Some(w),
            _ => None,
        });
        let mut worker = match idle {
            Some(w) => w,
            None => self.spawn().map_err(|e| {
                tracing::error!(error = %e, program = %self.command.program.display(), "could not start a template worker");
                RenderError::Unavailable("the template renderer could not start".to_owned())
            })?,
        };
        match tokio::time::timeout(self.limits.time, exchange(&mut worker, &frame)).await {
            Ok(Ok(Response::Ok(out))) => {
                self.idle.lock().expect("pool lock").push(worker);
                Ok(out)
            }
            Ok(Ok(Response::Err(e))) => {
                self.idle.lock().expect("pool lock").push(worker);
                Err(RenderError::Template(e))
            }
            // The worker ended during the render: the template's doing (memory, stack, a panic).
            Ok(Err(_)) => Err(RenderError::Template(self.why_it_stopped(worker).await)),
            Err(_) => {
                let _ = worker.child.start_kill();
                let _ = worker.child.wait().await;
                Err(RenderError::Template(format!("rendering took longer than the limit of {} ms", self.limits.time.as_millis())))
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Worker> {
        let mut child = Command::new(&self.command.program)
            .args(&self.command.args)
            .arg(self.limits.memory_bytes.to_string())
            // The node's environment holds its master and admin keys: a worker gets none of it.
            .env_clear()
            // One malloc arena: the address-space cap is then about the template, not arenas.
            .env("MALLOC_ARENA_MAX", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let mut stderr_pipe = child.stderr.take().expect("piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let tail = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stderr_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().expect("stderr lock");
                t.push_str(&String::from_utf8_lossy(&buf[..n]));
                if t.len() > 4096 {
                    let cut = t.len() - 2048;
                    let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(t.len());
                    t.drain(..cut);
                }
            }
        });
        Ok(Worker { child, stdin, stdout, stderr })
    }

    /// The error of a render whose worker ended.
    async fn why_it_stopped(&self, mut worker: Worker) -> String {
        let status = worker.child.wait().await;
        // Let the stderr reader catch up with what the worker printed as it ended.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let said = worker.stderr.lock().expect("stderr lock").clone();
        let mib = self.limits.memory_bytes >> 20;
        if said.contains("memory allocation") || said.contains("capacity overflow") {
            format!("the template needs more memory than the limit of {mib} MiB")
        } else if said.contains("overflowed its stack") {
            "the template nests too deeply to render".to_owned()
        } else {
            tracing::warn!(status = ?status.ok(), "a template worker stopped during a render");
            "the template renderer stopped during the render".to_owned()
        }
    }
}

async fn exchange(worker: &mut Worker, frame: &[u8]) -> std::io::Result<Response> {
    worker.stdin.write_all(&(frame.len() as u32).to_le_bytes()).await?;
    worker.stdin.write_all(frame).await?;
    worker.stdin.flush().await?;
    let mut len = [0u8; 4];
    worker.stdout.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other("oversized answer"));
    }
    let mut buf = vec![0u8; len];
    worker.stdout.read_exact(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(std::io::Error::other)
}

/// The stack of the thread that compiles and renders in a worker.
const WORKER_STACK: usize = 64 << 20;

/// The worker's side: caps the process's address space at what it holds plus `memory_bytes`
/// (the last argument), then renders the requests read from standard input until it closes.
pub fn worker_main(memory_bytes: u64) -> std::io::Result<()> {
    let thread = std::thread::Builder::new().name("render".into()).stack_size(WORKER_STACK).spawn(move || {
        // Touch the allocator on this thread first, so its arena exists before the cap.
        drop(std::hint::black_box(vec![0u8; 4096]));
        cap_address_space(memory_bytes)?;
        let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
        loop {
            let mut len = [0u8; 4];
            match input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let len = u32::from_le_bytes(len) as usize;
            if len > MAX_FRAME {
                return Err(std::io::Error::other("oversized request"));
            }
            let mut buf = vec![0u8; len];
            input.read_exact(&mut buf)?;
            let response = match serde_json::from_slice::<OwnedRequest>(&buf) {
                Ok(r) => match crate::template::render_as(r.html, &r.source, &r.context) {
                    Ok(out) => Response::Ok(out),
                    Err(e) => Response::Err(e),
                },
                Err(e) => Response::Err(format!("bad render request: {e}")),
            };
            let frame = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
            output.write_all(&(frame.len() as u32).to_le_bytes())?;
            output.write_all(&frame)?;
            output.flush()?;
        }
    })?;
    thread.join().unwrap_or_else(|_| Err(std::io::Error::other("the render thread panicked")))
}

#[cfg(target_os = "linux")]
fn cap_address_space(memory_bytes: u64) -> std::io::Result<()> {
    // What the process holds now: its virtual size, from /proc/self/statm (in pages).
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().next().and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf and setrlimit only read and write the values passed.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let limit = pages * page + memory_bytes;
    let cap = libc::rlimit { rlim_cur: limit, rlim_max: limit };
    let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: as above.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn cap_address_space(_memory_bytes: u64) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renderer that cannot start is a passing failure (the delivery is retried), never the
    /// template's fault. (Renders in real workers are tested against the binary, which is the
    /// worker: crates/switchyard/tests/hardening.rs.)
    #[tokio::test]
    async fn a_worker_that_cannot_start_is_a_passing_failure() {
        let command = WorkerCommand { program: "/nonexistent/switchyard".into(), args: vec!["render-worker".into()] };
        let renderer = Renderer::sandbox(command, 1, Limits::default());
        let e = renderer.render(false, "{{ event }}", &serde_json::json!({"event": "x"})).await.unwrap_err();
        assert_eq!(e, RenderError::Unavailable("the template renderer could not start".into()));
    }

    #[tokio::test]
    async fn in_process_rendering_reports_template_errors_as_the_template_s() {
        let e = Renderer::InProcess.render(false, "{{ x | nosuchfilter }}", &serde_json::json!({})).await.unwrap_err();
        assert!(matches!(e, RenderError::Template(_)), "{e:?}");
        assert_eq!(Renderer::InProcess.render(true, "<b>{{ x }}</b>", &serde_json::json!({"x": "<i>"})).await.unwrap(), "<b>&lt;i&gt;</b>");
    }
}
