import { describe, expect, it } from "vitest";
import { agentSuite } from "./support/agent-suite.js";
import { TOKENS } from "./support/agents.js";
import { auth, request, session } from "./support/h2.js";

// What GET /metrics shows, and to whom: one agent in this process over real TLS.

describe("agent /metrics", () => {
  const suite = agentSuite("agent-metrics-");

  it('labels every method and path that matches no route as route "other"', async () => {
    const test = await suite.start();
    const client = session(test.agent.url, suite.pki.ca);
    for (let i = 0; i < 10; i++) {
      expect((await request(client, { ":path": `/nope-${i}` })).status).toBe(401);
      expect((await request(client, { ":path": `/nope-${i}`, ...auth(TOKENS.admin) })).status).toBe(404);
      const method = { ":method": `X${i}`, ":path": `/v1/artifacts/sha256:${"0".repeat(64)}` };
      expect((await request(client, { ...method, ...auth(TOKENS.admin) })).status).toBe(405);
    }
    const metrics = await request(client, { ":path": "/metrics", ...auth(TOKENS.admin) });
    client.close();
    expect(metrics.status).toBe(200);
    const series = metrics.text.split("\n").filter((line) => line.startsWith("ociapp_agent_requests_total{"));
    expect(series.some((line) => line.includes("nope") || line.includes("X1"))).toBe(false);
    expect(series).toContain(
      'ociapp_agent_requests_total{route="other",token="-",outcome="OCIAPP_UNAUTHORIZED"} 10',
    );
    expect(series).toContain(
      'ociapp_agent_requests_total{route="other",token="admin",outcome="OCIAPP_INVALID_REQUEST"} 20',
    );
    expect(series).toHaveLength(2);
  });

  it("serves /metrics only to a token with scopes.metrics", async () => {
    const test = await suite.start();
    const client = session(test.agent.url, suite.pki.ca);
    const denied = await request(client, { ":path": "/metrics", ...auth(TOKENS.narrow) });
    expect(denied).toMatchObject({ status: 403, json: { error: { code: "OCIAPP_FORBIDDEN" } } });
    expect(denied.text).not.toContain("admin");
    const allowed = await request(client, { ":path": "/metrics", ...auth(TOKENS.admin) });
    expect(allowed.status).toBe(200);
    expect(allowed.text).toContain('token="narrow",outcome="OCIAPP_FORBIDDEN"');
    // /healthz stays open.
    expect((await request(client, { ":path": "/healthz" })).status).toBe(200);
    client.close();
  });
});
