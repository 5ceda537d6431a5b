// The browser tests' world: a real switchyard binary on SQLite, a host page on another origin
// (127.0.0.1 against the server's localhost) with a backend that mints sessions, a loopback
// receiver standing in for a destination, and Debian's Chromium driven by playwright-core,
// launched so that it reaches nothing beyond loopback.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const require = createRequire(import.meta.url);
export const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
export const ADMIN_KEY = "sk_browser_test_admin_key_0123456789";
export const SCREENSHOTS = process.env.SWITCHYARD_SCREENSHOTS || join(root, "target", "browser-screenshots");

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function waitFor(check, what, timeoutMs = 20000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The switchyard binary on its own SQLite file; its public URL is on `localhost`. */
export async function startServer({ port, env = {} } = {}) {
  const bin = process.env.SWITCHYARD_BIN || join(root, "target", "debug", "switchyard");
  port = port || (await freePort());
  const dir = mkdtempSync(join(tmpdir(), "sy-browser-"));
  const base = `http://localhost:${port}`;
  const child = spawn(bin, ["serve", "--database-url", `sqlite://${join(dir, "switchyard.db")}`, "--listen", `127.0.0.1:${port}`, "--allow-private-destinations", "--poll-interval-ms", "50"], {
    env: { ...process.env, SWITCHYARD_ADMIN_KEY: ADMIN_KEY, SWITCHYARD_PUBLIC_URL: base, SWITCHYARD_LOG: "warn", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; });
  await waitFor(async () => (await fetch(`${base}/healthz`)).ok, "the server to start");
  return {
    base,
    port,
    stderr: () => stderr,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Admin API calls, as a product's backend makes them. */
export function adminClient(base) {
  async function call(method, path, body) {
    const res = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: { Authorization: `Bearer ${ADMIN_KEY}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }
  async function ok(method, path, body, expected) {
    const r = await call(method, path, body);
    if (r.status !== expected) throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }
  return { call, ok };
}

export { freePort };

/**
 * The repository's test authorization server (oidc-provider, tests/oauth-server), with one
 * client whose redirect is `callback`. Returns the issuer and the environment that configures
 * switchyard's HubSpot provider against it.
 */
export async function startOAuthServer(callback) {
  const secret = "browser-test-oauth-client-secret-0123";
  const server = await startIdentityProvider({ clients: [{ client_id: "hubspot-app", client_secret: secret, redirect_uris: [callback], auth_method: "post" }] });
  const issuer = server.issuer;
  return {
    issuer,
    env: {
      SWITCHYARD_OAUTH_HUBSPOT_CLIENT_ID: "hubspot-app",
      SWITCHYARD_OAUTH_HUBSPOT_CLIENT_SECRET: secret,
      SWITCHYARD_OAUTH_HUBSPOT_AUTHORIZE_URL: `${issuer}/auth`,
      SWITCHYARD_OAUTH_HUBSPOT_TOKEN_URL: `${issuer}/token`,
      SWITCHYARD_OAUTH_HUBSPOT_SCOPES: "openid offline_access",
      SWITCHYARD_OAUTH_HUBSPOT_AUTHORIZE_PARAMS: "prompt=consent",
      SWITCHYARD_OAUTH_HUBSPOT_CLIENT_AUTH: "post",
    },
    stop: server.stop,
  };
}

/**
 * The repository's authorization server (oidc-provider, tests/oauth-server/server.mjs) with these
 * clients and extra environment (LOGIN_FORM, ...). `next(what)` makes its next sign-in misbehave
 * (see server.mjs).
 */
export async function startIdentityProvider({ clients, env = {} }) {
  const child = spawn("node", [join(root, "tests", "oauth-server", "server.mjs")], {
    env: { ...process.env, CLIENTS: JSON.stringify(clients), ...env },
    stdio: ["ignore", "pipe", "ignore"],
  });
  const issuer = await new Promise((ok, fail) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening (\S+)/.exec(out);
      if (m) ok(m[1]);
    });
    child.once("exit", () => fail(new Error("the authorization server stopped")));
  });
  return {
    issuer,
    next: (what) => fetch(`${issuer}/test/next-sign-in`, { method: "POST", body: JSON.stringify(what) }),
    stop: () => { child.kill(); },
  };
}

/**
 * A loopback stand-in for vendors' APIs: Slack's conversations.list (two pages) and
 * chat.postMessage, HubSpot's list search. Records every request.
 */
export async function startVendor() {
  const requests = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      const url = new URL(req.url, "http://x");
      requests.push({ method: req.method, path: url.pathname, query: url.search, headers: req.headers, body });
      const json = (v) => { res.writeHead(200, { "Content-Type": "application/json" }); res.end(JSON.stringify(v)); };
      if (url.pathname === "/api/conversations.list") {
        if (url.searchParams.get("cursor") === "next") return json({ ok: true, channels: [{ id: "C3", name: "ops" }], response_metadata: { next_cursor: "" } });
        return json({ ok: true, channels: [{ id: "C1", name: "general" }, { id: "C2", name: "alerts" }], response_metadata: { next_cursor: "next" } });
      }
      if (url.pathname === "/api/chat.postMessage") return json({ ok: true, channel: "C2", ts: "1.2" });
      if (url.pathname === "/crm/v3/lists/search") return json({ lists: [{ listId: "7", name: "Trials" }], hasMore: false, offset: 1 });
      res.writeHead(404);
      res.end("{}");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, requests, stop: () => new Promise((r) => server.close(r)) };
}

/** A loopback receiver standing in for a customer's webhook endpoint: records every request. */
export async function startReceiver() {
  const requests = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end('{"ok":true}');
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}/hook`, requests, stop: () => new Promise((r) => server.close(r)) };
}

/**
 * The product: a page on 127.0.0.1 that mounts the frame with /embed.js, and a backend that
 * mints and refreshes sessions with the admin key (`/mint?workspace=..&role=..`, `/refresh?session=..`).
 * Sessions are minted for this host's origin unless `origin` says otherwise.
 */
export async function startHost(serverBase) {
  const admin = adminClient(serverBase);
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const page = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Host product</title>
<script src="${serverBase}/embed.js"></script></head><body><h1>Host product</h1><div id="slot"></div>${body}
<script src="/host.js"></script></body></html>`;
  const hostJs = `
window.messages = []; window.navigations = []; window.refreshes = 0;
window.addEventListener("message", (e) => window.messages.push({ origin: e.origin, data: e.data }));
(async () => {
  const params = new URLSearchParams(location.search);
  if (params.get("mount") === "no") return;
  const minted = await (await fetch("/mint?" + params)).json();
  window.minted = minted;
  window.frameHandle = Switchyard.mount(document.getElementById("slot"), {
    launchUrl: minted.launch_url,
    accessToken: minted.access_token,
    title: "Integrations",
    minHeight: 300,
    onRefresh: async () => {
      window.refreshes += 1;
      const r = await (await fetch("/refresh?session=" + minted.session_id)).json();
      return r.access_token;
    },
    onNavigate: (path) => window.navigations.push(path),
  });
})();`;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, origin);
    try {
      if (url.pathname === "/host.js") {
        res.writeHead(200, { "Content-Type": "text/javascript" });
        return res.end(hostJs);
      }
      if (url.pathname === "/mint") {
        const q = url.searchParams;
        const body = {
          workspace_id: q.get("workspace"),
          role: q.get("role") || "editor",
          allowed_origins: [q.get("origin") || origin],
          ttl_seconds: Number(q.get("ttl") || 1800),
        };
        if (q.get("page")) body.launch_page = q.get("page");
        if (q.get("scopes")) body.scopes = q.get("scopes").split(",");
        if (q.get("brand")) body.branding = { name: q.get("brand"), accent_color: "#0b7285" };
        if (q.get("resource")) Object.assign(body, { resource: q.get("resource"), resource_id: q.get("resource_id") });
        const minted = await admin.ok("POST", "/sessions", body, 201);
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end(JSON.stringify(minted));
      }
      if (url.pathname === "/refresh") {
        const r = await admin.ok("POST", `/sessions/${url.searchParams.get("session")}/refresh`, { ttl_seconds: 1800 }, 200);
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end(JSON.stringify(r));
      }
      if (url.pathname === "/host.html") {
        res.writeHead(200, { "Content-Type": "text/html" });
        return res.end(page(url.searchParams.get("extra") === "attacker" ? `<iframe id="attacker" title="attacker" src="${url.searchParams.get("attacker")}"></iframe>` : ""));
      }
      if (url.pathname === "/attacker.html") {
        res.writeHead(200, { "Content-Type": "text/html" });
        return res.end(`<!doctype html><html lang="en"><head><title>attacker</title><script src="/attacker.js"></script></head><body>x</body></html>`);
      }
      if (url.pathname === "/attacker.js") {
        // From another origin inside the host page: tries to drive the embedded frame and the host helper.
        res.writeHead(200, { "Content-Type": "text/javascript" });
        return res.end(`window.addEventListener("message", (e) => {
  if (e.data !== "attack") return;
  const frame = window.parent.frames[0];
  frame.postMessage({ type: "switchyard:navigate", path: "events" }, "*");
  frame.postMessage({ type: "switchyard:auth", access_token: "st_forged_token_from_another_origin" }, "*");
  window.parent.postMessage({ type: "switchyard:resize", height: 7 }, "*");
  window.parent.postMessage({ type: "switchyard:navigate", path: "forged" }, "*");
});`);
      }
      res.writeHead(404);
      res.end();
    } catch (e) {
      res.writeHead(500, { "Content-Type": "text/plain" });
      res.end(String(e));
    }
  });
  await new Promise((r) => server.listen(port, "127.0.0.1", r));
  return { origin, url: (query) => `${origin}/host.html?${new URLSearchParams(query)}`, stop: () => new Promise((r) => server.close(r)) };
}

/** Debian's Chromium, headless, unable to resolve any name but localhost and 127.0.0.1. */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-sync",
      "--no-first-run",
      "--no-default-browser-check",
      "--metrics-recording-only",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    ],
  });
}

/** Waits until the embedded frame shows an `<h1>` with `text`; returns the frame. */
export async function frameWithHeading(page, text, timeoutMs = 15000) {
  const frameEl = await page.waitForSelector("#slot iframe", { timeout: timeoutMs });
  const frame = await frameEl.contentFrame();
  await frame.getByRole("heading", { level: 1, name: text, exact: true }).waitFor({ timeout: timeoutMs });
  return frame;
}

/** Runs axe-core in a frame; returns the serious and critical violations. */
export async function axeViolations(frame) {
  // Evaluated through the debugging protocol, which the page's CSP does not govern.
  await frame.evaluate(AXE_SOURCE);
  const result = await frame.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // Previews render 400 ms after the form settles, and the frame's height follows its content:
  // let both land, so the picture is what a customer sees.
  await new Promise((r) => setTimeout(r, 700));
  const frameEl = await page.$("#slot iframe");
  await (frameEl || page).screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

export { waitFor };
