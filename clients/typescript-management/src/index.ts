// A typed client for Switchyard's management API: `paths` and `components` are generated from the
// server's OpenAPI document (src/schema.ts, by `npm run generate`), and openapi-fetch makes every
// call checked against them: paths, path and query parameters, request bodies and answers.
//
//   const sy = createManagementClient("https://switchyard.example.com", process.env.SWITCHYARD_API_KEY!);
//   const { data, error } = await sy.POST("/api/v1/workspaces", { body: { name: "acme-prod" } });
//
// Each call resolves to `{ data }` on success or `{ error }` (the API's `{"error": {...}}` body) and
// `response` either way; it rejects only when no answer came.

import createClient from "openapi-fetch";
import type { Client, ClientOptions } from "openapi-fetch";
import type { components, operations, paths } from "./schema.js";

export type { components, operations, paths };
/** The API's named shapes: `Schemas["ConnectionOut"]`, `Schemas["ErrorBody"]`, ... */
export type Schemas = components["schemas"];
export type ManagementClient = Client<paths>;

/**
 * A client of one server with one credential: an API key (`sk_...`) or a session token. `options`
 * may give a custom `fetch`, more headers, or other openapi-fetch settings.
 */
export function createManagementClient(baseUrl: string, apiKey: string, options: Omit<ClientOptions, "baseUrl"> = {}): ManagementClient {
  if (!/^https?:\/\//.test(baseUrl)) throw new TypeError(`baseUrl must start with http:// or https://, not ${JSON.stringify(baseUrl)}`);
  const headers = { ...(options.headers as Record<string, string> | undefined), Authorization: `Bearer ${apiKey}` };
  return createClient<paths>({ ...options, baseUrl: baseUrl.replace(/\/+$/, ""), headers });
}
