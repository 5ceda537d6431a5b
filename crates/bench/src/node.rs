//! The server under test: the real `switchyard serve` in a child process with its own data.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const ADMIN_KEY: &str = "sk_bench_admin_key_000000000000000000";
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub struct Node {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    /// The node's database.
    pub url: String,
    dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts a node on a fresh SQLite file, or a fresh database on the given PostgreSQL server.
    pub async fn start(binary: &std::path::Path, postgres: Option<&str>) -> anyhow::Result<Self> {
        Self::start_with(binary, postgres, &[]).await
    }

    /// [`Node::start`], with more settings from the environment.
    pub async fn start_with(binary: &std::path::Path, postgres: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = match postgres {
            Some(base) => switchyard_store::testing::fresh_database_on(base).await,
            None => format!("sqlite://{}/switchyard.db", dir.path().display()),
        };
        Self::start_on(binary, url, dir, env).await
    }

    /// Stops the node and hands back its database (and the folder that holds it, for SQLite).
    pub fn stop(mut self) -> (String, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::TempDir::new().expect("a temp dir"));
        (std::mem::take(&mut self.url), dir)
    }

    /// Starts a node on an existing database, with more settings from the environment.
    pub async fn start_on(binary: &std::path::Path, url: String, dir: tempfile::TempDir, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--allow-private-destinations"])
            .env("SWITCHYARD_DATABASE_URL", &url)
            .env("SWITCHYARD_ADMIN_KEY", ADMIN_KEY)
            .env("SWITCHYARD_MASTER_KEY", MASTER_KEY)
            // SWITCHYARD_BENCH_LOG: the nodes' log filter, to look inside a measurement
            // (`sqlx=debug` logs every statement with its time).
            .env("SWITCHYARD_LOG", std::env::var("SWITCHYARD_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("could not start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(addr) = line.strip_prefix("switchyard listening on ") {
                        break addr.trim().to_owned();
                    }
                }
                _ => bail!("the server exited before listening"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let client = reqwest::Client::builder().pool_max_idle_per_host(1024).tcp_nodelay(true).build()?;
        Ok(Self { child, base, client, url, dir })
    }

    /// Each histogram's sum and count from the node's `/metrics` (histograms without labels).
    pub async fn histograms(&self) -> anyhow::Result<std::collections::HashMap<String, (f64, f64)>> {
        let text = self.client.get(format!("{}/metrics", self.base)).send().await?.text().await?;
        let mut out: std::collections::HashMap<String, (f64, f64)> = std::collections::HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.split_once(' ') else { continue };
            let Ok(value) = value.trim().parse::<f64>() else { continue };
            if let Some(base) = name.strip_suffix("_sum") {
                out.entry(base.to_owned()).or_default().0 = value;
            } else if let Some(base) = name.strip_suffix("_count") {
                out.entry(base.to_owned()).or_default().1 = value;
            }
        }
        Ok(out)
    }

    /// (current RSS, peak RSS) in bytes, from /proc.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// An admin `POST`; past the API key's rate limit it waits as `Retry-After` says, as any
    /// script setting up many things should.
    pub async fn admin(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        for _ in 0..60 {
            let r = self.client.post(format!("{}/api/v1{path}", self.base)).bearer_auth(ADMIN_KEY).json(&body).send().await?;
            let status = r.status();
            let wait: Option<u64> = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
            let v: Value = r.json().await?;
            match wait {
                Some(wait) if status == reqwest::StatusCode::TOO_MANY_REQUESTS && v["error"]["code"] == "rate_limited" && wait <= 10 => {
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                }
                _ if !status.is_success() => bail!("POST {path} → {status}: {v}"),
                _ => return Ok(v),
            }
        }
        bail!("POST {path}: still rate-limited after a minute of waiting")
    }

    /// A workspace whose events go to each URL (one connection and rule per URL); returns its
    /// publishable key and id.
    pub async fn workspace(&self, name: &str, urls: &[String], connection: Value) -> anyhow::Result<(String, String)> {
        let ws = self.admin("/workspaces", json!({"name": name})).await?;
        let id = ws["id"].as_str().context("workspace id")?.to_owned();
        for url in urls {
            let mut body = json!({"type": "webhook", "name": "bench", "config": {"url": url, "signing": "standard"}});
            if let (Some(b), Some(extra)) = (body.as_object_mut(), connection.as_object()) {
                b.extend(extra.clone());
            }
            let conn = self.admin(&format!("/workspaces/{id}/connections"), body).await?;
            self.admin(&format!("/workspaces/{id}/rules"), json!({"name": "all", "event": "*", "connection_id": conn["id"]})).await?;
        }
        Ok((ws["publishable_key"]["key"].as_str().context("publishable key")?.to_owned(), id))
    }
}
