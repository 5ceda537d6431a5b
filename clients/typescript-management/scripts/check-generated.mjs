// Fails when src/schema.ts is not what `npm run generate` makes of docs/openapi.json today: the
// client and the server's document have drifted apart. Regenerate, review and commit.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "switchyard-schema-"));
try {
  const fresh = join(dir, "schema.ts");
  execFileSync("npx", ["openapi-typescript", "../../docs/openapi.json", "--output", fresh], { stdio: ["ignore", "ignore", "inherit"] });
  if (readFileSync(fresh, "utf8") !== readFileSync(new URL("../src/schema.ts", import.meta.url), "utf8")) {
    console.error("src/schema.ts is out of date with docs/openapi.json: run `npm run generate` in clients/typescript-management and commit it");
    process.exit(1);
  }
  console.log("src/schema.ts matches docs/openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
