import { constants } from "node:http2";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/remote/agent/auth.js";
import { agentSuite } from "./support/agent-suite.js";
import { TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { after, answer, request, session } from "./support/h2.js";

// Calls whose artifact the agent pulls (a puller standing in for a registry, held open by the
// test): the token's quota is taken when the call is admitted, after its pull.

/** A promise and its resolve (Promise.withResolvers is not in Node 20). */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/** A puller whose pulls of `slow` wait until release(); other digests are answered at once. */
function gatedPuller(paths: Map<string, string>, slow: string) {
  const gate = deferred();
  const pulling = deferred();
  const puller = async (digest: string) => {
    if (digest === slow) {
      pulling.resolve();
      await gate.promise;
    }
    return paths.get(digest) as string;
  };
  return { puller, pulling: pulling.promise, release: () => gate.resolve() };
}

describe("agent calls that pull", () => {
  const suite = agentSuite("agent-pull-");
  let a: { path: string; digest: string };
  let b: { path: string; digest: string };

  beforeAll(async () => {
    a = await writeArtifact(join(suite.work, "a.ociapp"), "a");
    b = await writeArtifact(join(suite.work, "b.ociapp"), "b");
  });

  const withQuota = (quota: Record<string, number>) => ({
    tokens: [
      {
        id: "puller",
        sha256: hashToken(TOKENS.admin),
        scopes: { digests: ["*"], registries: ["internal"] },
        quota,
      },
    ],
    registries: [{ name: "internal", url: "https://registry.invalid:5000", repositories: ["apps/x"] }],
  });
  const execute = (digest: string) => ({
    ":method": "POST",
    ":path": `/v1/artifacts/${digest}/execute`,
    authorization: `Bearer ${TOKENS.admin}`,
  });
  const echo = (value: number) => JSON.stringify({ op: "echo", value });

  it("does not admit a call reset during its pull (its quota slot stays free)", async () => {
    const gated = gatedPuller(new Map([[a.digest, a.path]]), a.digest);
    // bodyTimeout stays at 30 s: a call admitted on a closed stream would hold the slot that long.
    const test = await suite.start(withQuota({ inFlight: 1 }), { puller: gated.puller });
    const client = session(test.agent.url, suite.pki.ca);
    const first = client.request(execute(a.digest));
    const firstDone = answer(first);
    first.write(echo(0).slice(0, 4));
    await gated.pulling;
    first.close(constants.NGHTTP2_CANCEL);
    await firstDone;
    await after(300, undefined); // the RST_STREAM reaches the agent
    gated.release();
    const audit = test.audit;
    const deadline = Date.now() + 10_000;
    while (audit.length === 0 && Date.now() < deadline) await after(20, undefined);
    expect(audit[0]).toMatchObject({ outcome: "CLIENT_GONE", status: 499 });
    expect(await request(client, execute(a.digest), echo(1))).toMatchObject({
      status: 200,
      json: { value: 1 },
    });
    client.close();
  });

  it("dates a call's rate from its admission, after its pull (no spurious 429)", async () => {
    const gated = gatedPuller(
      new Map([
        [a.digest, a.path],
        [b.digest, b.path],
      ]),
      a.digest,
    );
    // One call a second, two at once: the token makes two calls, both within its burst.
    const test = await suite.start(withQuota({ rate: 1, burst: 2 }), { puller: gated.puller });
    const client = session(test.agent.url, suite.pki.ca);
    const slow = request(client, execute(a.digest), echo(1));
    await gated.pulling;
    await after(400, undefined);
    // Admitted while the first call's pull goes on.
    expect(await request(client, execute(b.digest), echo(2))).toMatchObject({ status: 200 });
    gated.release();
    expect(await slow).toMatchObject({ status: 200, json: { value: 1 } });
    client.close();
  });

  it("takes warm, pull and upload requests from the token's rate", async () => {
    const gated = gatedPuller(new Map([[a.digest, a.path]]), "none");
    // One request, then next to none: every request after the first is over the rate.
    const config = withQuota({ rate: 0.001, burst: 1 });
    (config.tokens[0] as { scopes: Record<string, unknown> }).scopes.upload = true;
    const test = await suite.start(config, { puller: gated.puller });
    const client = session(test.agent.url, suite.pki.ca);
    const action = (name: string) => ({
      ":method": "POST",
      ":path": `/v1/artifacts/${a.digest}/${name}`,
      authorization: `Bearer ${TOKENS.admin}`,
    });
    expect((await request(client, action("pull"))).status).toBe(200);
    const over = { status: 429, json: { error: { code: "OCIAPP_QUOTA_EXCEEDED" } } };
    expect(await request(client, action("warm"))).toMatchObject(over);
    expect(await request(client, action("pull"))).toMatchObject(over);
    const put = {
      ":method": "PUT",
      ":path": `/v1/artifacts/${a.digest}`,
      authorization: `Bearer ${TOKENS.admin}`,
    };
    expect(await request(client, put, "x")).toMatchObject(over);
    client.close();
  });
});
