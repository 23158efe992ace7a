import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { AgentConfigError } from "../../src/remote/agent/config.js";
import { agentSuite } from "./support/agent-suite.js";
import { TOKENS, testConfig } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { after, answer, auth, request, session } from "./support/h2.js";

// The agent's bounds on what clients hold (connections, transfers, buffers), each found broken by
// an adversary (tests/remote/adversary in issue 17): one agent in this process over real TLS.

describe("agent limits", () => {
  const suite = agentSuite("agent-limits-");
  let artifact: { path: string; digest: string; bytes: Buffer };

  beforeAll(async () => {
    artifact = await writeArtifact(join(suite.work, "a.ociapp"), "a");
  });

  it("closes a connection that has not authenticated a request within limits.authTimeout", async () => {
    // idleTimeout stays at 300 s: only authTimeout can close the connection in time.
    const test = await suite.start({ limits: { authTimeout: 300 } });
    const silent = session(test.agent.url, suite.pki.ca);
    const refused = session(test.agent.url, suite.pki.ca);
    const closed = (s: typeof silent) =>
      new Promise<string>((resolve) => s.on("close", () => resolve("closed")));
    const silentClosed = closed(silent);
    const refusedClosed = closed(refused);
    expect((await request(refused, { ":path": "/v1/status", ...auth("wrong-token") })).status).toBe(401);
    expect(await Promise.race([silentClosed, after(10_000, "open")])).toBe("closed");
    expect(await Promise.race([refusedClosed, after(10_000, "open")])).toBe("closed");
    // A connection that authenticated a request is kept past authTimeout.
    const valid = session(test.agent.url, suite.pki.ca);
    expect((await request(valid, { ":path": "/v1/status", ...auth(TOKENS.admin) })).status).toBe(200);
    await after(900, undefined);
    expect(valid.closed || valid.destroyed).toBe(false);
    expect((await request(valid, { ":path": "/v1/status", ...auth(TOKENS.admin) })).status).toBe(200);
    valid.close();
  });

  it("answers an upload that takes longer than limits.uploadTimeout 400, keeping nothing", async () => {
    // The stall timeout stays at 30 s: bytes arrive every 50 ms, only the overall bound ends it.
    const test = await suite.start({ limits: { uploadTimeout: 500, maxTransfers: 1 } });
    const client = session(test.agent.url, suite.pki.ca);
    const put = {
      ":method": "PUT",
      ":path": `/v1/artifacts/${artifact.digest}`,
      ...auth(TOKENS.admin),
    };
    const stream = client.request({ ...put, "content-length": artifact.bytes.length });
    const answered = answer(stream);
    let sent = 0;
    const dribble = setInterval(() => {
      if (stream.closed || sent >= artifact.bytes.length - 64) return;
      stream.write(artifact.bytes.subarray(sent, sent + 64));
      sent += 64;
    }, 50);
    try {
      const dribbled = await Promise.race([answered, after(10_000, undefined)]);
      expect(dribbled).toMatchObject({ status: 400, json: { error: { code: "OCIAPP_INVALID_REQUEST" } } });
    } finally {
      clearInterval(dribble);
    }
    expect(await readdir(join(test.store, "incoming"))).toEqual([]);
    expect(await readdir(join(test.store, "artifacts"))).toEqual([]);
    // The transfer slot is free again.
    expect((await request(client, put, artifact.bytes)).status).toBe(201);
    client.close();
  });

  it("answers 503 to a body past limits.maxBufferedBytes, all calls' bodies together", async () => {
    const test = await suite.start({
      limits: { maxBufferedBytes: 1000 },
      policy: { maxPayloadBytes: 1000 },
    });
    const client = session(test.agent.url, suite.pki.ca);
    const put = { ":method": "PUT", ":path": `/v1/artifacts/${artifact.digest}`, ...auth(TOKENS.admin) };
    expect((await request(client, put, artifact.bytes)).status).toBe(201);
    const execute = {
      ":method": "POST",
      ":path": `/v1/artifacts/${artifact.digest}/execute`,
      ...auth(TOKENS.admin),
    };
    const body = (bytes: number) => {
      const head = JSON.stringify({ op: "echo", value: "" });
      return JSON.stringify({ op: "echo", value: "x".repeat(bytes - head.length) });
    };
    // 800 of a 900-byte body arrive and are held while the rest is awaited.
    const slow = client.request(execute);
    const slowAnswer = answer(slow);
    const whole = body(900);
    slow.write(whole.slice(0, 800));
    await after(300, undefined);
    const refused = await request(client, execute, body(800));
    expect(refused).toMatchObject({ status: 503, json: { error: { code: "OCIAPP_AGENT_UNAVAILABLE" } } });
    slow.end(whole.slice(800));
    expect((await slowAnswer).status).toBe(200);
    // Given back: the same body now fits.
    expect((await request(client, execute, body(800))).status).toBe(200);
    client.close();
  });

  it("refuses a config whose limits.maxBufferedBytes is below policy.maxPayloadBytes", () => {
    const config = () => testConfig(undefined, "/tmp/unused", { limits: { maxBufferedBytes: 1000 } });
    expect(config).toThrow(AgentConfigError);
    expect(config).toThrow(/limits\.maxBufferedBytes: must be at least policy\.maxPayloadBytes/);
  });
});
