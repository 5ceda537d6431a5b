// Switchyard's MCP server driven by the official TypeScript MCP SDK (@modelcontextprotocol/sdk,
// from the npm registry; not written here): `switchyard mcp` over stdio, and `/mcp` over
// streamable HTTP on a real server (SWITCHYARD_BIN, default the debug build). Lists the tools,
// calls each kind (read, create, change, delete, test, emit, replay), and checks that a read-only
// key's agent can look but is refused any change.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const root = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const bin = process.env.SWITCHYARD_BIN || join(root, "target/debug/switchyard");
const ADMIN = "sk_mcp_test_admin_key_0123456789abcdef";
let server, base, readOnlyKey, hook;

async function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function api(method, path, body, key = ADMIN) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(res.ok, `${method} ${path}: ${res.status}`);
  return res.status === 204 ? null : res.json();
}

/** A loopback destination that counts what it receives. */
function startHook() {
  const received = [];
  const s = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      received.push(JSON.parse(body));
      res.end("ok");
    });
  });
  return new Promise((ok) =>
    s.listen(0, "127.0.0.1", () =>
      ok({ url: `http://127.0.0.1:${s.address().port}/hook`, received, stop: () => new Promise((r) => s.close(r)) }),
    ),
  );
}

async function until(what, check) {
  for (let i = 0; i < 400; i++) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** An SDK client over stdio: `switchyard mcp` with this key. */
async function stdioClient(key) {
  const transport = new StdioClientTransport({
    command: bin,
    args: ["mcp"],
    env: { PATH: process.env.PATH, SWITCHYARD_URL: base, SWITCHYARD_API_KEY: key, SWITCHYARD_CONFIG: join(tmpdir(), "switchyard-mcp-test-none.toml") },
    stderr: "inherit",
  });
  const client = new Client({ name: "switchyard-tests", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

/** An SDK client over streamable HTTP: `/mcp` with this key (or none). */
async function httpClient(key) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers } });
  const client = new Client({ name: "switchyard-tests", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

/** Calls a tool that must succeed; returns its JSON answer. */
async function call(client, name, args) {
  const result = await client.callTool({ name, arguments: args });
  assert.ok(!result.isError, `${name} failed: ${result.content?.[0]?.text}`);
  const text = result.content[0].text;
  return text === "done" ? null : JSON.parse(text);
}

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), "switchyard-mcp-"));
  const child = spawn(bin, ["serve", "--database-url", `sqlite://${join(dir, "db.sqlite")}`, "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, SWITCHYARD_ADMIN_KEY: ADMIN, SWITCHYARD_LOG: "warn", SWITCHYARD_ALLOW_PRIVATE_DESTINATIONS: "true", SWITCHYARD_POLL_INTERVAL_MS: "100" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  server = {
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      /* not yet */
    }
    if (i > 200) throw new Error("the server did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
  readOnlyKey = (await api("POST", "/api-keys", { name: "agent, read only", scope: "read_only" })).key;
  hook = await startHook();
});

after(async () => {
  await hook?.stop();
  await server?.stop();
});

describe("switchyard mcp (stdio)", () => {
  test("lists every tool with a description, an input schema and hints", async () => {
    const client = await stdioClient(ADMIN);
    try {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      for (const expected of [
        "list_workspaces", "create_workspace", "list_integrations", "list_connections", "create_connection", "update_connection",
        "delete_connection", "list_rules", "create_rule", "update_rule", "delete_rule", "test_rule", "emit_event", "list_events",
        "get_event", "list_deliveries", "get_delivery", "replay_delivery", "create_session", "list_sessions", "revoke_session",
        "list_event_types", "declare_event_type", "get_usage",
      ]) {
        assert.ok(names.includes(expected), `${expected} is listed`);
      }
      for (const tool of tools) {
        assert.ok(tool.description.length > 10, tool.name);
        assert.equal(tool.inputSchema.type, "object", tool.name);
        assert.equal(typeof tool.annotations.readOnlyHint, "boolean", tool.name);
      }
      const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
      assert.equal(byName.list_events.annotations.readOnlyHint, true);
      assert.equal(byName.delete_rule.annotations.destructiveHint, true);
      assert.equal(byName.create_rule.annotations.destructiveHint, false);
      assert.deepEqual(byName.create_connection.inputSchema.required.sort(), ["name", "type", "workspace_id"]);
      assert.ok(byName.emit_event.inputSchema.properties.idempotency_key.description.includes("24 hours"));
    } finally {
      await client.close();
    }
  });

  test("an agent sets up an integration, tests it, watches it arrive, replays it, and cleans up", async () => {
    const client = await stdioClient(ADMIN);
    try {
      const ws = await call(client, "create_workspace", { name: "agent-made" });
      assert.match(ws.publishable_key.key, /^pk_/);
      const webhook = await call(client, "list_integrations", { type: "webhook" });
      assert.ok(webhook.config_fields.some((f) => f.key === "url"));
      const all = await call(client, "list_integrations", {});
      assert.equal(all.data.length, 14);

      const conn = await call(client, "create_connection", { workspace_id: ws.id, type: "webhook", name: "hook", config: { url: hook.url } });
      assert.match(conn.id, /^conn_/);
      const renamed = await call(client, "update_connection", { id: conn.id, name: "Hook" });
      assert.equal(renamed.name, "Hook");
      const rule = await call(client, "create_rule", { workspace_id: ws.id, name: "signups", event: "user.*", connection_id: conn.id });
      assert.equal((await call(client, "list_rules", { workspace_id: ws.id })).data.length, 1);
      const narrowed = await call(client, "update_rule", { id: rule.id, conditions: { all: [{ path: "payload.plan", op: "eq", value: "pro" }] } });
      assert.equal(narrowed.conditions.all[0].value, "pro");
      const widened = await call(client, "update_rule", { id: rule.id, conditions: null });
      assert.equal(widened.conditions, null, "null removes the conditions");

      const tested = await call(client, "test_rule", { id: rule.id, payload: { email: "test@example.com" } });
      await until("the test delivery", () => hook.received.some((b) => b.id === tested.event_id));

      const emitted = await call(client, "emit_event", { workspace_id: ws.id, event: "user.created", payload: { email: "ada@example.com" } });
      const event = await until("the delivery to succeed", async () => {
        const e = await call(client, "get_event", { id: emitted.id });
        return e.deliveries[0]?.status === "succeeded" ? e : null;
      });
      assert.equal(event.payload.email, "ada@example.com");
      const deliveries = await call(client, "list_deliveries", { workspace_id: ws.id, status: "succeeded" });
      assert.ok(deliveries.data.length >= 2);
      const delivery = await call(client, "get_delivery", { id: event.deliveries[0].id });
      assert.equal(delivery.attempts[0].status_code, 200);
      await call(client, "replay_delivery", { id: delivery.id });
      await until("the replay", () => hook.received.filter((b) => b.id === emitted.id).length === 2);
      assert.ok((await call(client, "list_events", { workspace_id: ws.id })).data.length >= 2);

      const declared = await call(client, "declare_event_type", { workspace_id: ws.id, name: "invoice.paid", description: "An invoice was paid", example: { amount: 4200 } });
      assert.equal(declared.declared, true);
      // Names seen in traffic are counted once a second.
      await until("user.created to be seen", async () =>
        (await call(client, "list_event_types", { workspace_id: ws.id })).data.some((t) => t.name === "user.created"),
      );

      const usage = await call(client, "get_usage", { workspace_id: ws.id });
      assert.ok(usage.events.used >= 2, JSON.stringify(usage.events));
      assert.equal(usage.daily.length, 90);

      const session = await call(client, "create_session", { workspace_id: ws.id, role: "viewer", external_user_id: "u_1" });
      assert.match(session.launch_url, /\/embed\/launch\//);
      assert.equal((await call(client, "list_sessions", { workspace_id: ws.id })).data.length, 1);
      await call(client, "revoke_session", { id: session.session_id });
      assert.equal((await call(client, "list_sessions", { workspace_id: ws.id })).data.length, 0);

      await call(client, "delete_rule", { id: rule.id });
      await call(client, "delete_connection", { id: conn.id });
      assert.equal((await call(client, "list_connections", { workspace_id: ws.id })).data.length, 0);

      // A mistake comes back as a tool error the agent can read, naming the field.
      const bad = await client.callTool({ name: "create_rule", arguments: { workspace_id: ws.id, name: "x", event: "bad pattern!", connection_id: "conn_nope" } });
      assert.equal(bad.isError, true);
      assert.match(bad.content[0].text, /^422 validation_failed/);
    } finally {
      await client.close();
    }
  });

  test("a read-only key's agent may look but is refused every change", async () => {
    const ws = await api("POST", "/workspaces", { name: "read-only-target" });
    const client = await stdioClient(readOnlyKey);
    try {
      const listed = await call(client, "list_workspaces", {});
      assert.ok(listed.data.some((w) => w.id === ws.id));
      for (const [name, args] of [
        ["create_connection", { workspace_id: ws.id, type: "webhook", name: "x", config: { url: hook.url } }],
        ["emit_event", { workspace_id: ws.id, event: "user.created" }],
        ["create_workspace", { name: "not allowed" }],
      ]) {
        const refused = await client.callTool({ name, arguments: args });
        assert.equal(refused.isError, true, `${name} is refused`);
        assert.match(refused.content[0].text, /^403 forbidden/, name);
      }
      assert.equal((await api("GET", `/workspaces/${ws.id}/connections`)).data.length, 0, "nothing was made");
      assert.equal((await api("GET", `/workspaces/${ws.id}/events`)).data.length, 0);
    } finally {
      await client.close();
    }
  });
});

describe("/mcp (streamable HTTP)", () => {
  test("serves the same tools with the caller's own credential", async () => {
    const ws = await api("POST", "/workspaces", { name: "over-http" });
    const client = await httpClient(ADMIN);
    try {
      const { tools } = await client.listTools();
      assert.ok(tools.length >= 25);
      const conn = await call(client, "create_connection", { workspace_id: ws.id, type: "webhook", name: "hook", config: { url: hook.url } });
      const shown = await call(client, "get_connection", { id: conn.id });
      assert.equal(shown.name, "hook");
      // Recorded in the audit log like any API change.
      const audit = await api("GET", `/audit-log?workspace_id=${ws.id}`);
      assert.ok(audit.data.some((e) => e.action === "connection.create" && e.resource_id === conn.id), JSON.stringify(audit.data.map((e) => e.action)));
    } finally {
      await client.close();
    }
  });

  test("a read-only key is refused changes; an unknown key gets nothing; no key is refused at the door", async () => {
    const ws = await api("POST", "/workspaces", { name: "over-http-read-only" });
    const client = await httpClient(readOnlyKey);
    try {
      assert.ok((await call(client, "list_connections", { workspace_id: ws.id })).data);
      const refused = await client.callTool({ name: "create_rule", arguments: { workspace_id: ws.id, name: "x", event: "*", connection_id: "conn_x" } });
      assert.equal(refused.isError, true);
      assert.match(refused.content[0].text, /^403 forbidden/);
    } finally {
      await client.close();
    }
    const stranger = await httpClient("sk_not_a_key_of_this_server_0000000000");
    try {
      const refused = await stranger.callTool({ name: "list_workspaces", arguments: {} });
      assert.equal(refused.isError, true);
      assert.match(refused.content[0].text, /^401 unauthorized/);
    } finally {
      await stranger.close();
    }
    // Without a credential the endpoint answers 401 like the API, before the protocol starts.
    await assert.rejects(httpClient(null), /401|Authorization|nauthorized/);
    const bare = await fetch(`${base}/mcp`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    assert.equal(bare.status, 401);
    assert.equal(bare.headers.get("www-authenticate"), "Bearer");
    assert.equal((await bare.json()).error.code, "unauthorized");
  });
});
