// Compiled (not run) by `npm run build`: calls the generated types must accept, and mistakes they
// must refuse. Each @ts-expect-error fails the build if the line below it stops being an error.
import { createManagementClient, type Schemas } from "../src/index.js";

export async function typed(): Promise<void> {
  const sy = createManagementClient("http://127.0.0.1:8080", "sk_test");
  const ws = await sy.POST("/api/v1/workspaces", { body: { name: "acme-prod" } });
  if (ws.data) {
    const key: string = ws.data.publishable_key.key;
    void key;
  }
  const conns = await sy.GET("/api/v1/workspaces/{ws}/connections", { params: { path: { ws: "ws_1" }, query: { limit: 10 } } });
  const first: Schemas["ConnectionOut"] | undefined = conns.data?.data[0];
  void first;
  if (conns.error) {
    const code: string = conns.error.error.code;
    void code;
  }

  // @ts-expect-error: a workspace needs a name
  await sy.POST("/api/v1/workspaces", { body: { description: "no name" } });
  // @ts-expect-error: no such path
  await sy.GET("/api/v1/workspace");
  // @ts-expect-error: the path parameter is required
  await sy.GET("/api/v1/rules/{id}", {});
  // @ts-expect-error: limit is a number
  await sy.GET("/api/v1/workspaces", { params: { query: { limit: "ten" } } });
}
