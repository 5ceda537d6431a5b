// The generated management client against a real switchyard server (SWITCHYARD_BIN, default the
// debug build): calls made through the types generated from docs/openapi.json reach the routes
// they name and get the answers they declare.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createManagementClient } from "../dist/esm/index.js";

const root = resolve(fileURLToPath(new URL("../../..", import.meta.url)));
const ADMIN = "sk_management_client_test_admin_key_01";
let server, base;

before(async () => {
  const port = await new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
  base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), "switchyard-management-"));
  const bin = process.env.SWITCHYARD_BIN || join(root, "target/debug/switchyard");
  const child = spawn(bin, ["serve", "--database-url", `sqlite://${join(dir, "db.sqlite")}`, "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, SWITCHYARD_ADMIN_KEY: ADMIN, SWITCHYARD_LOG: "warn" },
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
});

after(async () => {
  await server?.stop();
});

test("a workspace, a connection and a rule, made and read through the generated types", async () => {
  const sy = createManagementClient(base + "/", ADMIN);
  const ws = await sy.POST("/api/v1/workspaces", { body: { name: "generated", description: "made by the generated client" } });
  assert.equal(ws.response.status, 201);
  assert.match(ws.data.publishable_key.key, /^pk_/);

  const conn = await sy.POST("/api/v1/workspaces/{ws}/connections", {
    params: { path: { ws: ws.data.id } },
    body: { type: "webhook", name: "hook", config: { url: "https://hooks.example.com/in" } },
  });
  assert.equal(conn.response.status, 201, JSON.stringify(conn.error));
  const rule = await sy.POST("/api/v1/workspaces/{ws}/rules", {
    params: { path: { ws: ws.data.id } },
    body: { name: "signups", event: "user.created", connection_id: conn.data.id },
  });
  assert.equal(rule.data.action, "send_webhook");

  const page = await sy.GET("/api/v1/workspaces/{ws}/rules", { params: { path: { ws: ws.data.id }, query: { limit: 1 } } });
  assert.deepEqual(page.data.data.map((r) => r.id), [rule.data.id]);
  const updated = await sy.PATCH("/api/v1/rules/{id}", { params: { path: { id: rule.data.id } }, body: { active: false } });
  assert.equal(updated.data.active, false);
  const removed = await sy.DELETE("/api/v1/rules/{id}", { params: { path: { id: rule.data.id } } });
  assert.equal(removed.response.status, 204);
});

test("errors come back in the documented shape, never as a rejection", async () => {
  const sy = createManagementClient(base, ADMIN);
  const missing = await sy.GET("/api/v1/connections/{id}", { params: { path: { id: "conn_01M8T4D0RYMW94EW0XDG43ZGQT" } } });
  assert.equal(missing.response.status, 404);
  assert.equal(missing.error.error.code, "not_found");
  const invalid = await sy.POST("/api/v1/workspaces", { body: { name: "" } });
  assert.equal(invalid.response.status, 422);
  assert.equal(invalid.error.error.details[0].field, "name");
  const stranger = createManagementClient(base, "sk_not_a_key_of_this_server_00000000");
  const refused = await stranger.GET("/api/v1/workspaces");
  assert.equal(refused.response.status, 401);
  assert.throws(() => createManagementClient("localhost:8080", ADMIN), /baseUrl/);
});

test("CommonJS require works too", async () => {
  const require = createRequire(import.meta.url);
  const { createManagementClient: fromCjs } = require("../dist/cjs/index.js");
  const { data } = await fromCjs(base, ADMIN).GET("/api/v1/workspaces");
  assert.ok(Array.isArray(data.data));
});
