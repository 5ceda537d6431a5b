// The events client against a real switchyard server (SWITCHYARD_BIN, default the debug build),
// through a loopback proxy that can answer 503, drop the connection after the server answered,
// or stall, for one request at a time.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Switchyard, SwitchyardError } from "../dist/esm/index.js";

const root = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
const ADMIN = "sk_typescript_client_test_admin_key_0123";
let server, proxy, base, pk, workspace;

async function free() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function admin(method, path, body) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.json();
}

/** Events stored in the workspace, newest first (all pages). */
async function stored() {
  let all = [];
  let cursor = "";
  for (;;) {
    const page = await admin("GET", `/workspaces/${workspace}/events?limit=200${cursor ? `&cursor=${cursor}` : ""}`);
    all = all.concat(page.data);
    if (!page.next_cursor) return all;
    cursor = page.next_cursor;
  }
}

/**
 * A proxy in front of the server. `plan` is a list of what to do with the next requests, in order:
 * "503" (answer 503 without forwarding), "drop" (forward, then close the connection without
 * answering), "stall" (never answer); anything else, or an empty plan, forwards.
 */
function startProxy(target) {
  const seen = [];
  let plan = [];
  const s = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      seen.push({ url: req.url, key: req.headers["idempotency-key"], body });
      const step = plan.shift();
      if (step === "503") {
        res.writeHead(503, { "Content-Type": "application/json", "Retry-After": "0" });
        return res.end('{"error":{"code":"unavailable","message":"injected"}}');
      }
      if (step === "stall") return;
      const upstream = httpRequest(`${target}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
        let answer = "";
        up.on("data", (d) => { answer += d; });
        up.on("end", () => {
          if (step === "drop") return req.socket.destroy();
          res.writeHead(up.statusCode, up.headers);
          res.end(answer);
        });
      });
      upstream.end(body);
    });
  });
  return new Promise((ok) => s.listen(0, "127.0.0.1", () => ok({
    url: `http://127.0.0.1:${s.address().port}`,
    seen,
    plan: (steps) => { plan = steps; seen.length = 0; },
    stop: () => new Promise((r) => { s.closeAllConnections(); s.close(r); }),
  })));
}

before(async () => {
  const port = await free();
  const dir = mkdtempSync(join(tmpdir(), "sy-ts-client-"));
  base = `http://127.0.0.1:${port}`;
  const bin = process.env.SWITCHYARD_BIN || join(root, "target", "debug", "switchyard");
  const child = spawn(bin, ["serve", "--database-url", `sqlite://${join(dir, "db.sqlite")}`, "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, SWITCHYARD_ADMIN_KEY: ADMIN, SWITCHYARD_LOG: "warn" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  server = { stop: async () => { child.kill("SIGTERM"); await new Promise((r) => child.once("exit", r)); rmSync(dir, { recursive: true, force: true }); } };
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${base}/healthz`)).ok) break; } catch { /* not yet */ }
    if (i > 200) throw new Error("the server did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  const ws = await admin("POST", "/workspaces", { name: "ts-client" });
  workspace = ws.id;
  pk = ws.publishable_key.key;
  proxy = await startProxy(base);
});

after(async () => {
  await proxy?.stop();
  await server?.stop();
});

describe("emit", () => {
  test("one event: stored, with the key given or a generated one", async () => {
    const client = new Switchyard(pk, { baseUrl: base });
    const a = await client.emit({ event: "user.created", payload: { email: "ada@example.com" }, resource: "account", resource_id: "a1", occurred_at: new Date("2026-12-01T09:00:00Z") });
    assert.match(a.id, /^evt_/);
    assert.equal(a.duplicate, false);
    const again = await client.emit({ event: "user.created", payload: {} }, { idempotencyKey: "signup-1" });
    const repeat = await client.emit({ event: "user.created", payload: {} }, { idempotencyKey: "signup-1" });
    assert.equal(repeat.id, again.id);
    assert.equal(repeat.duplicate, true);
    const shown = await admin("GET", `/events/${a.id}`);
    assert.equal(shown.resource_id, "a1");
    assert.equal(shown.occurred_at, "2026-12-01T09:00:00.000Z");
  });

  test("a 503 is retried with the same idempotency key, and one event is stored", async () => {
    const before = (await stored()).length;
    proxy.plan(["503", "503"]);
    const client = new Switchyard(pk, { baseUrl: proxy.url, retries: 3, backoffMs: 10 });
    const a = await client.emit({ event: "order.paid", payload: { n: 1 } });
    assert.equal(proxy.seen.length, 3);
    assert.ok(proxy.seen.every((r) => r.key === proxy.seen[0].key && r.key), "the same key every time");
    assert.equal((await stored()).length, before + 1);
    assert.match(a.id, /^evt_/);
  });

  test("a connection dropped after the server stored the event: the retry finds it, nothing is stored twice", async () => {
    const before = (await stored()).length;
    proxy.plan(["drop"]);
    const client = new Switchyard(pk, { baseUrl: proxy.url, retries: 2, backoffMs: 10 });
    const a = await client.emit({ event: "order.shipped", payload: { n: 2 } });
    assert.equal(proxy.seen.length, 2);
    assert.equal(proxy.seen[1].key, proxy.seen[0].key);
    assert.equal(a.duplicate, true, "the second attempt met the first's event");
    assert.equal((await stored()).length, before + 1);
  });

  test("a stalled attempt times out and is retried; with no retries left the error says timeout", async () => {
    proxy.plan(["stall"]);
    const client = new Switchyard(pk, { baseUrl: proxy.url, timeoutMs: 300, retries: 1, backoffMs: 10 });
    const a = await client.emit({ event: "order.late", payload: {} });
    assert.match(a.id, /^evt_/);
    assert.equal(proxy.seen.length, 2);
    proxy.plan(["stall"]);
    const once = new Switchyard(pk, { baseUrl: proxy.url, timeoutMs: 200, retries: 0 });
    await assert.rejects(once.emit({ event: "order.late", payload: {} }), (e) => e instanceof SwitchyardError && e.code === "timeout" && e.status === 0 && e.attempts === 1);
  });

  test("refusals are typed errors with status, code and message, and are not retried", async () => {
    proxy.plan([]);
    const client = new Switchyard(pk, { baseUrl: proxy.url, retries: 3, backoffMs: 10 });
    await assert.rejects(client.emit({ event: "no spaces allowed", payload: {} }), (e) => {
      assert.ok(e instanceof SwitchyardError);
      assert.equal(e.status, 422);
      assert.equal(e.code, "validation_failed");
      assert.equal(e.details[0].field, "event");
      return true;
    });
    assert.equal(proxy.seen.length, 1, "a 422 is final");
    const wrong = new Switchyard("pk_wrong_0000000000000000000000000000", { baseUrl: base });
    await assert.rejects(wrong.emit({ event: "x.y" }), (e) => e.status === 401 && e.code === "unauthorized");
    const nowhere = new Switchyard(pk, { baseUrl: "http://127.0.0.1:9", retries: 1, backoffMs: 5 });
    await assert.rejects(nowhere.emit({ event: "x.y" }), (e) => e.code === "network" && e.attempts === 2);
    assert.throws(() => new Switchyard("sk_not_publishable"), TypeError);
  });
});

describe("emitBatch", () => {
  test("2,500 events go in three requests, each event keyed; results come back in order", async () => {
    const before = (await stored()).length;
    proxy.plan([]);
    const client = new Switchyard(pk, { baseUrl: proxy.url });
    const events = Array.from({ length: 2500 }, (_, i) => ({ event: "bulk.item", payload: { i } }));
    events[1234] = { event: "not valid!", payload: {} };
    const result = await client.emitBatch(events);
    assert.equal(proxy.seen.length, 3);
    assert.deepEqual(proxy.seen.map((r) => JSON.parse(r.body).length), [1000, 1000, 500]);
    assert.equal(result.accepted, 2499);
    assert.equal(result.rejected, 1);
    assert.equal(result.results.length, 2500);
    assert.deepEqual(result.results.map((r) => r.index), events.map((_, i) => i));
    assert.equal(result.results[1234].error.code, "validation_failed");
    assert.equal((await stored()).length, before + 2499);
  });

  test("a batch whose connection dropped after the server stored it is retried with the same keys, and stores each event once", async () => {
    const before = (await stored()).length;
    proxy.plan(["drop"]);
    const client = new Switchyard(pk, { baseUrl: proxy.url, backoffMs: 10 });
    const result = await client.emitBatch([{ event: "b.one" }, { event: "b.two", idempotency_key: "mine" }]);
    assert.equal(proxy.seen.length, 2);
    assert.equal(proxy.seen[0].body, proxy.seen[1].body, "the same keys on the retry");
    assert.ok(result.results.every((r) => r.duplicate), "the retry met the first attempt's events");
    assert.equal((await stored()).length, before + 2);
  });
});

test("CommonJS: require() gets the same client", () => {
  const require = createRequire(import.meta.url);
  const cjs = require("../dist/cjs/index.js");
  assert.equal(typeof cjs.Switchyard, "function");
  assert.equal(new cjs.Switchyard("pk_x", { baseUrl: "http://x" }) instanceof cjs.Switchyard, true);
});
