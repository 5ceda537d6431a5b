// The operator console in a real browser: team sign-in through a real OpenID provider
// (oidc-provider from the npm registry) and every refusal of it, the admin-key sign-in where no
// provider is configured, the cookie and CSRF defences, each console page (axe-clean, screenshots
// in light and dark), and a workspace's own pages inside the console.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { join } from "node:path";
import { ADMIN_KEY, adminClient, axeViolations, freePort, launchBrowser, SCREENSHOTS, startIdentityProvider, startServer } from "./harness.mjs";
import { mkdirSync } from "node:fs";

const SECRET = "console-oidc-client-secret-0123456789";
let provider, teamServer, keyServer, browser, attacker;

/** The test identity provider, asking for an e-mail address at login. */
function startProvider(callback) {
  const clients = [{ client_id: "switchyard-console", client_secret: SECRET, redirect_uris: [callback], auth_method: "basic" }];
  return startIdentityProvider({ clients, env: { LOGIN_FORM: "true" } });
}

before(async () => {
  const port = await freePort();
  provider = await startProvider(`http://localhost:${port}/console/oidc/callback`);
  teamServer = await startServer({
    port,
    env: {
      SWITCHYARD_OIDC_ISSUER: provider.issuer,
      SWITCHYARD_OIDC_CLIENT_ID: "switchyard-console",
      SWITCHYARD_OIDC_CLIENT_SECRET: SECRET,
      SWITCHYARD_OIDC_NAME: "Test IdP",
      SWITCHYARD_OIDC_OWNERS: "ada@example.com",
      SWITCHYARD_OIDC_VIEWERS: "@viewers.example.com",
    },
  });
  keyServer = await startServer();
  browser = await launchBrowser();
  // A page of another site, for cross-site attempts.
  attacker = createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end("<!doctype html><html lang=\"en\"><head><title>elsewhere</title></head><body><h1>elsewhere</h1></body></html>");
  });
  await new Promise((r) => attacker.listen(0, "127.0.0.1", r));
});

after(async () => {
  await browser?.close();
  await teamServer?.stop();
  await keyServer?.stop();
  provider?.stop();
  await new Promise((r) => attacker?.close(r) ?? r());
});

async function context(scheme = "light") {
  const ctx = await browser.newContext({ colorScheme: scheme, viewport: { width: 1280, height: 1000 } });
  const page = await ctx.newPage();
  return { ctx, page };
}

/** Signs in through the provider as `email`; returns the page where the flow ended. */
async function teamSignIn(page, email) {
  await page.goto(`${teamServer.base}/console`);
  await page.getByRole("link", { name: "Sign in with Test IdP" }).click();
  await page.getByLabel("E-mail").fill(email);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.waitForURL((url) => url.pathname.startsWith("/console"), { timeout: 15000 });
}

async function shot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await new Promise((r) => setTimeout(r, 300));
  await page.screenshot({ path: join(SCREENSHOTS, `console-${name}.png`), fullPage: true });
}

describe("team sign-in through an OpenID provider", () => {
  test("an owner signs in; the cookie is HttpOnly and SameSite=Strict; signing out ends it", async () => {
    const { ctx, page } = await context();
    await page.goto(`${teamServer.base}/console`);
    await page.getByRole("heading", { name: "Switchyard console" }).waitFor();
    assert.equal(await page.getByLabel("Admin API key").count(), 0, "no key form where a provider is configured");
    await shot(page, "sign-in-provider");
    await teamSignIn(page, "ada@example.com");
    await page.getByRole("heading", { level: 1, name: "Workspaces" }).waitFor();
    await page.getByText("ada@example.com · owner").waitFor();
    const cookies = await ctx.cookies();
    const cookie = cookies.find((c) => c.name === "sy_console");
    assert.ok(cookie, "a console cookie");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    assert.equal(await page.evaluate(() => document.cookie), "", "scripts cannot read it");
    // A change without the page's CSRF token is refused, even from the console's own origin.
    const forged = await page.evaluate(async () => (await fetch("/api/v1/workspaces", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: "forged" }),
    })).status);
    assert.equal(forged, 403);
    await page.getByRole("button", { name: "Sign out", exact: true }).click();
    await page.getByText("You are signed out.").waitFor();
    const after = await page.evaluate(async () => (await fetch("/api/v1/workspaces")).status);
    assert.equal(after, 401);
    await ctx.close();
  });

  test("the provider's refusals: not on the list, unverified, tampered token, wrong nonce, a used state, a removed member", async () => {
    const admin = adminClient(teamServer.base);
    const refused = async (email, prepare, words) => {
      const { ctx, page } = await context();
      if (prepare) await prepare();
      await teamSignIn(page, email);
      await page.getByRole("alert").filter({ hasText: words }).waitFor();
      assert.ok(page.url().includes("/console/sign-in?error="), page.url());
      assert.equal((await ctx.cookies()).filter((c) => c.name === "sy_console").length, 0, "no session");
      await ctx.close();
    };
    await refused("eve@example.org", null, "not on this installation's list");
    await refused("unverified@viewers.example.com", null, "did not confirm");
    await refused("ada@example.com", () => provider.next({ tamper: "signature" }), "could not be verified");
    await refused("ada@example.com", () => provider.next({ nonce: "a-nonce-this-client-never-sent" }), "could not be verified");

    // Coming back through a callback that was already used: its state works once.
    {
      const { ctx, page } = await context();
      let callback = null;
      page.on("request", (r) => { if (r.url().includes("/console/oidc/callback")) callback = r.url(); });
      await teamSignIn(page, "vic@viewers.example.com");
      await page.getByText("vic@viewers.example.com · viewer").waitFor();
      // A viewer opens a workspace's own pages (as a viewer: no control that changes anything).
      const ws = await admin.ok("POST", "/workspaces", { name: "team-viewed" }, 201);
      await page.goto(`${teamServer.base}/console#/workspaces/${ws.id}`);
      const frame = page.frameLocator("iframe[title^='Pages of']");
      await frame.getByRole("heading", { level: 1, name: "Dashboard" }).waitFor({ timeout: 15000 });
      await frame.getByRole("link", { name: "Connections" }).click();
      await frame.getByRole("heading", { level: 1, name: "Connections" }).waitFor();
      assert.equal(await frame.getByRole("link", { name: "New connection" }).count(), 0);
      assert.equal(await page.getByRole("button", { name: "Delete workspace" }).count(), 0);
      assert.equal(await page.getByRole("button", { name: "New publishable key" }).count(), 0);
      await page.goto(callback);
      await page.getByRole("alert").filter({ hasText: "expired or was already used" }).waitFor();
      await ctx.close();
    }

    // An owner removes the viewer: their sign-ins end, and they cannot sign in again.
    const { ctx, page } = await context();
    await teamSignIn(page, "ada@example.com");
    await page.getByRole("link", { name: "Members" }).click();
    await page.getByRole("cell", { name: "vic@viewers.example.com", exact: true }).first().waitFor();
    await shot(page, "members");
    await page.getByRole("button", { name: "Remove vic@viewers.example.com" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Remove" }).click();
    await page.getByRole("button", { name: "Restore vic@viewers.example.com" }).waitFor();
    await ctx.close();
    await refused("vic@viewers.example.com", null, "removed you");

    // Each refusal is in the audit log, with its reason and no token.
    const log = await admin.ok("GET", "/audit-log?action=sign_in.failed&limit=50", undefined, 200);
    const reasons = log.data.map((e) => e.summary.reason).sort();
    assert.deepEqual(reasons, ["not_allowed", "removed", "state", "token", "token", "unverified"]);
    assert.ok(log.data.some((e) => e.actor.name === "eve@example.org"), "who tried is recorded");
    const ok = await admin.ok("GET", "/audit-log?action=sign_in.succeeded&limit=50", undefined, 200);
    assert.ok(ok.data.some((e) => e.actor.kind === "member" && e.actor.name === "ada@example.com"));
  });
});

describe("admin-key sign-in and the console's pages", () => {
  test("where no provider is configured, an admin key signs in (from the keyboard); a wrong one says so", async () => {
    const { ctx, page } = await context();
    await page.goto(`${keyServer.base}/console`);
    await page.getByLabel("Admin API key").waitFor();
    assert.deepEqual(await axeViolations(page.mainFrame()), []);
    await shot(page, "sign-in-key");
    await page.getByLabel("Admin API key").fill("sk_wrong_key_00000000000000000000");
    await page.keyboard.press("Enter");
    await page.getByRole("alert").filter({ hasText: "not an admin API key" }).waitFor();
    await page.keyboard.press("Tab");
    await page.keyboard.type(ADMIN_KEY);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: "Workspaces" }).waitFor();
    await ctx.close();
  });

  test("another site cannot use the sign-in: its requests carry no cookie", async () => {
    const { ctx, page } = await context();
    await page.goto(`${keyServer.base}/console/sign-in`);
    await page.getByLabel("Admin API key").fill(ADMIN_KEY);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Workspaces" }).waitFor();
    const before = (await adminClient(keyServer.base).ok("GET", "/workspaces", undefined, 200)).data.length;
    await page.goto(`http://127.0.0.1:${attacker.address().port}/`);
    const status = await page.evaluate(async (base) => {
      const r = await fetch(`${base}/api/v1/workspaces`, { credentials: "include" }).catch(() => null);
      await fetch(`${base}/api/v1/workspaces`, { method: "POST", mode: "no-cors", credentials: "include", body: "{\"name\":\"cross-site\"}" }).catch(() => null);
      return r ? r.status : "blocked";
    }, keyServer.base);
    assert.ok(status === "blocked" || status === 401, `cross-site read: ${status}`);
    const afterCount = (await adminClient(keyServer.base).ok("GET", "/workspaces", undefined, 200)).data.length;
    assert.equal(afterCount, before, "nothing was created cross-site");
    await ctx.close();
  });

  for (const scheme of ["light", "dark"]) {
    test(`every console page works and is free of serious axe violations (${scheme})`, async () => {
      const admin = adminClient(keyServer.base);
      const { ctx, page } = await context(scheme);
      await page.goto(`${keyServer.base}/console/sign-in`);
      await page.getByLabel("Admin API key").fill(ADMIN_KEY);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("heading", { level: 1, name: "Workspaces" }).waitFor();
      const problems = [];
      const check = async (name) => {
        await page.locator("[role=status]", { hasText: "Loading" }).waitFor({ state: "detached" }).catch(() => {});
        for (const v of await axeViolations(page.mainFrame())) problems.push(`${name}: ${v}`);
        await shot(page, `${name}-${scheme}`);
      };

      // Workspaces: create one; its publishable key is shown once.
      await page.getByLabel("Name", { exact: true }).fill(`acme-${scheme}`);
      await page.getByRole("button", { name: "Create workspace" }).click();
      await page.getByRole("heading", { name: `Publishable key of acme-${scheme}` }).waitFor();
      await check("workspaces");

      // Its page: the embedded pages in a frame, keys (rotate), sessions.
      await page.getByRole("link", { name: `acme-${scheme}` }).click();
      await page.getByRole("heading", { level: 1, name: `acme-${scheme}` }).waitFor();
      const frame = page.frameLocator("iframe[title^='Pages of']");
      await frame.getByRole("heading", { level: 1, name: "Dashboard" }).waitFor({ timeout: 15000 });
      await page.getByRole("button", { name: /^Rotate key/ }).click();
      await page.getByRole("dialog").getByRole("button", { name: "Rotate" }).click();
      await page.getByRole("heading", { name: "New publishable key" }).waitFor();
      await page.getByRole("cell", { name: "console" }).first().waitFor();
      await check("workspace");
      // Deleting a workspace, confirmed, from its page.
      const doomed = await admin.ok("POST", "/workspaces", { name: `doomed-${scheme}` }, 201);
      await page.goto(`${keyServer.base}/console#/workspaces/${doomed.id}`);
      await page.getByRole("heading", { level: 1, name: `doomed-${scheme}` }).waitFor();
      // The frame above the button grows as its pages load, moving the button; pressed from the
      // keyboard, the press cannot land where the button was a moment before.
      await frame.getByRole("heading", { level: 1, name: "Dashboard" }).waitFor({ timeout: 15000 });
      await page.getByRole("button", { name: "Delete workspace" }).focus();
      await page.keyboard.press("Enter");
      await page.getByRole("dialog").getByRole("button", { name: "Delete workspace" }).click();
      await page.getByRole("heading", { level: 1, name: "Workspaces" }).waitFor();
      assert.equal((await admin.call("GET", `/workspaces/${doomed.id}`)).status, 404);

      // API keys: a scoped key, shown once.
      await page.getByRole("link", { name: "API keys" }).click();
      await page.getByRole("heading", { level: 1, name: "API keys" }).waitFor();
      await page.getByLabel("Name", { exact: true }).fill(`ci-${scheme}`);
      await page.getByLabel("Scope", { exact: true }).selectOption("read_only");
      await page.getByRole("button", { name: "Create API key" }).click();
      await page.getByRole("heading", { name: `API key ci-${scheme}` }).waitFor();
      await check("api-keys");

      await page.getByRole("link", { name: "Members" }).click();
      await page.getByRole("heading", { level: 1, name: "Members" }).waitFor();
      await check("members-key");

      await page.getByRole("link", { name: "Audit log" }).click();
      await page.getByRole("heading", { level: 1, name: "Audit log" }).waitFor();
      await page.getByRole("cell", { name: "api_key.create" }).first().waitFor();
      await page.getByLabel("Action").fill("publishable_key.*");
      await page.getByRole("button", { name: "Filter" }).click();
      // The unfiltered list shows rotations too: wait for the filtered one to replace it (a
      // filter that does not work leaves api_key.create in place, and this wait times out).
      await page.getByRole("cell", { name: "api_key.create" }).first().waitFor({ state: "detached", timeout: 10000 });
      await page.getByRole("cell", { name: "publishable_key.rotate" }).first().waitFor();
      assert.equal(await page.getByRole("cell", { name: "api_key.create" }).count(), 0);
      await check("audit");

      await page.getByRole("link", { name: "Installation" }).click();
      await page.getByRole("heading", { level: 1, name: "Installation" }).waitFor();
      await page.getByText("live").first().waitFor();
      // The month's usage: events in all, workspaces, the busiest of them.
      await page.getByRole("heading", { name: "Usage this month" }).waitFor();
      await page.getByText(/^Events in \d{4}-\d{2}$/).waitFor();
      await check("installation");

      assert.deepEqual(problems, []);
      const keys = await admin.ok("GET", "/api-keys", undefined, 200);
      assert.ok(keys.data.some((k) => k.name === `ci-${scheme}` && k.scope === "read_only"));
      await ctx.close();
    });
  }
});
