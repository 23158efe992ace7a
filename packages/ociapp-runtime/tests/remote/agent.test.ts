import { mkdtemp, readdir, rm } from "node:fs/promises";
import { connect, constants } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AgentUnavailableError,
  ForbiddenError,
  PayloadTooLargeError,
  QuotaExceededError,
  RemoteExecutionError,
  RemoteExecutor,
  type RemoteExecutorOptions,
  RequestTimeoutError,
  UnauthorizedError,
  UnknownArtifactError,
} from "../../src/index.js";
import { hashToken } from "../../src/remote/agent/auth.js";
import { rejection } from "../support/outcomes.js";
import { startTestAgent, type TestAgent, TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { makePki, type TestPki } from "./support/certs.js";

// One agent in this process over real TLS (HTTP/2, node:http2), running calls on the process
// engine (real `ociapp serve` processes standing in for containers), reached by RemoteExecutor.

/** Raw HTTP/2 request: status and parsed JSON body. */
async function raw(
  url: string,
  ca: Buffer,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<{ status: number; json: unknown; rst: number | undefined }> {
  const session = connect(url, { ca });
  session.on("error", () => undefined);
  try {
    const stream = session.request(headers);
    const chunks: Buffer[] = [];
    let status = 0;
    stream.on("response", (h) => {
      status = Number(h[":status"]);
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    await new Promise<void>((resolve) => {
      stream.on("close", () => resolve());
      stream.on("error", () => undefined);
      if (body) stream.end(body);
      else stream.end();
    });
    const text = Buffer.concat(chunks).toString();
    return { status, json: text ? JSON.parse(text) : undefined, rst: stream.rstCode };
  } finally {
    session.close();
  }
}

describe("agent over TLS", () => {
  let pki: TestPki;
  let work: string;
  let artifact: { path: string; digest: string; bytes: Buffer };
  let other: { path: string; digest: string; bytes: Buffer };
  let test: TestAgent | undefined;
  const clients: RemoteExecutor[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "agent-test-"));
    pki = await makePki(work);
    artifact = await writeArtifact(join(work, "a.ociapp"), "a");
    other = await writeArtifact(join(work, "b.ociapp"), "b");
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await test?.stop();
    test = undefined;
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function client(token: string, options: Partial<RemoteExecutorOptions> = {}): RemoteExecutor {
    const made = new RemoteExecutor({ agents: [test?.agent.url as string], token, ca: pki.ca, ...options });
    clients.push(made);
    return made;
  }

  it("runs a call named by path: the client computes the digest, uploads once, then calls by digest", async () => {
    test = await startTestAgent(pki);
    const remote = client(TOKENS.admin);
    expect(await remote.execute(artifact.path, { op: "echo", value: "hi" })).toMatchObject({ value: "hi" });
    expect(await remote.execute(artifact.digest, { op: "echo", value: 2 })).toMatchObject({ value: 2 });
    const uploads = test.audit.filter((record) => record.route === "PUT /v1/artifacts/");
    expect(uploads.map((record) => record.status)).toEqual([201]);
    const calls = test.audit.filter((record) => record.route === "POST /v1/artifacts/execute");
    expect(calls.map((record) => [record.token, record.digest, record.outcome])).toEqual([
      ["admin", artifact.digest, "UNKNOWN_ARTIFACT"].map((v) =>
        v === "UNKNOWN_ARTIFACT" ? "OCIAPP_UNKNOWN_ARTIFACT" : v,
      ),
      ["admin", artifact.digest, "ok"],
      ["admin", artifact.digest, "ok"],
    ]);
    expect(await readdir(join(test.store, "artifacts"))).toEqual([`${artifact.digest.slice(7)}.ociapp`]);
    expect(remote.stats().agents[0]?.warm).toEqual([artifact.digest]);
  });

  it("concurrent callers by path share one upload; an aborted caller does not fail the others", async () => {
    test = await startTestAgent(pki);
    const remote = client(TOKENS.admin);
    const controller = new AbortController();
    const aborted = remote.execute(artifact.path, { op: "echo", value: "a" }, { signal: controller.signal });
    const kept = remote.execute(artifact.path, { op: "echo", value: "b" });
    controller.abort(new Error("first caller gave up"));
    expect(((await rejection(aborted)) as Error).message).toBe("first caller gave up");
    expect(await kept).toMatchObject({ value: "b" });
    expect(test.audit.filter((record) => record.route === "PUT /v1/artifacts/").map((r) => r.status)).toEqual(
      [201],
    );
  });

  it("rebuilds the agent's errors as the same classes: app error, timeout, unknown digest", async () => {
    test = await startTestAgent(pki);
    const remote = client(TOKENS.admin);
    await remote.warm(artifact.path);
    const thrown = await rejection(remote.execute(artifact.digest, { op: "throw", message: "boom" }));
    expect(thrown).toBeInstanceOf(RemoteExecutionError);
    expect((thrown as RemoteExecutionError).remote).toMatchObject({ message: "boom" });
    const slow = await rejection(
      remote.execute(artifact.digest, { op: "sleep", ms: 5_000 }, { timeout: 100 }),
    );
    expect(slow).toBeInstanceOf(RequestTimeoutError);
    expect((slow as RequestTimeoutError).timeoutMs).toBe(100);
    const unknown = await rejection(remote.execute(other.digest, { op: "echo", value: 1 }));
    expect(unknown).toBeInstanceOf(UnknownArtifactError);
    expect(unknown).toMatchObject({ code: "OCIAPP_UNKNOWN_ARTIFACT", digest: other.digest });
  });

  it("refuses requests without a valid token before anything runs (401, JSON body with the code)", async () => {
    test = await startTestAgent(pki);
    const none = await raw(
      test.agent.url,
      pki.ca,
      { ":method": "POST", ":path": `/v1/artifacts/${artifact.digest}/execute` },
      Buffer.from("{}"),
    );
    expect(none.status).toBe(401);
    expect(none.json).toMatchObject({ error: { code: "OCIAPP_UNAUTHORIZED" } });
    const wrong = await rejection(client("not-a-token").execute(artifact.path, { op: "echo", value: 1 }));
    expect(wrong).toBeInstanceOf(UnauthorizedError);
    // A big body from an unauthenticated client is not read: the answer comes and the stream is reset.
    const big = await raw(
      test.agent.url,
      pki.ca,
      { ":method": "PUT", ":path": `/v1/artifacts/${artifact.digest}`, authorization: "Bearer nope" },
      Buffer.alloc(8 * 1024 * 1024),
    );
    expect(big.status).toBe(401);
    expect(test.engine.created).toBe(0);
    expect(await readdir(join(test.store, "artifacts"))).toEqual([]);
    expect(test.audit.every((record) => record.token === null && record.status === 401)).toBe(true);
  });

  it("checks scopes and the policy: out-of-scope digest, upload and settings are 403", async () => {
    test = await startTestAgent(pki);
    const narrow = client(TOKENS.narrow);
    expect(await rejection(narrow.execute(artifact.path, { op: "echo", value: 1 }))).toBeInstanceOf(
      ForbiddenError,
    );
    const admin = client(TOKENS.admin);
    await admin.warm(artifact.path);
    expect(await rejection(narrow.execute(artifact.digest, { op: "echo", value: 1 }))).toBeInstanceOf(
      ForbiddenError,
    );
    const settings = await rejection(
      admin.execute(artifact.digest, { op: "echo", value: 1 }, { timeout: 10_000_000 }),
    );
    expect(settings).toBeInstanceOf(ForbiddenError);
    const header = await raw(
      test.agent.url,
      pki.ca,
      {
        ":method": "POST",
        ":path": `/v1/artifacts/${artifact.digest}/execute`,
        authorization: `Bearer ${TOKENS.admin}`,
        "ociapp-settings": JSON.stringify({ networkMode: "host" }),
      },
      Buffer.from("{}"),
    );
    expect(header.status).toBe(403);
    expect(header.json).toMatchObject({ error: { code: "OCIAPP_FORBIDDEN" } });
    // A header that is not a settings object at all is a bad request, not a forbidden one; the
    // scheme name is case-insensitive (RFC 9110 §11.1), so a lowercase `bearer` authenticates.
    for (const malformed of ["{", "[1]", JSON.stringify({ timeout: "soon" })]) {
      const bad = await raw(
        test.agent.url,
        pki.ca,
        {
          ":method": "POST",
          ":path": `/v1/artifacts/${artifact.digest}/execute`,
          authorization: `bearer ${TOKENS.admin}`,
          "ociapp-settings": malformed,
        },
        Buffer.from("{}"),
      );
      expect([malformed, bad.status, bad.json]).toMatchObject([
        malformed,
        400,
        { error: { code: "OCIAPP_INVALID_REQUEST" } },
      ]);
    }
    expect(test.engine.created).toBe(1);
  });

  it("verifies uploads: a tampered blob or another artifact's file is 409 and nothing is kept", async () => {
    test = await startTestAgent(pki);
    const tampered = Buffer.from(artifact.bytes);
    const at = tampered.indexOf(Buffer.alloc(64, 1)); // inside the first layer's bytes
    tampered[at] = 7;
    const put = (digest: string, body: Buffer) =>
      raw(
        test?.agent.url as string,
        pki.ca,
        { ":method": "PUT", ":path": `/v1/artifacts/${digest}`, authorization: `Bearer ${TOKENS.admin}` },
        body,
      );
    const bad = await put(artifact.digest, tampered);
    expect(bad.status).toBe(409);
    expect(bad.json).toMatchObject({ error: { code: "OCIAPP_DIGEST_MISMATCH", digest: artifact.digest } });
    const swapped = await put(artifact.digest, other.bytes);
    expect(swapped.status).toBe(409);
    const garbage = await put(artifact.digest, Buffer.from("not a tar at all".repeat(100)));
    expect(garbage.status).toBe(400);
    expect(await readdir(join(test.store, "artifacts"))).toEqual([]);
    expect(await readdir(join(test.store, "incoming"))).toEqual([]);
    const head = (digest: string) =>
      raw(test?.agent.url as string, pki.ca, {
        ":method": "HEAD",
        ":path": `/v1/artifacts/${digest}`,
        authorization: `Bearer ${TOKENS.admin}`,
      });
    expect((await head(artifact.digest)).status).toBe(404);
    const good = await put(artifact.digest, artifact.bytes);
    expect(good.status).toBe(201);
    expect(await head(artifact.digest)).toMatchObject({ status: 200, json: undefined });
    const again = await put(artifact.digest, artifact.bytes);
    expect(again.status).toBe(200);
  });

  it("bounds bodies (413) and applies the token's quota (429)", async () => {
    test = await startTestAgent(pki, {
      policy: { maxPayloadBytes: 1024, maxUploadBytes: artifact.bytes.length + 10 },
      tokens: [
        {
          id: "admin",
          sha256: hashToken(TOKENS.admin),
          scopes: { digests: ["*"], upload: true },
          quota: { inFlight: 2, rate: 1000, burst: 1000 },
        },
      ],
    });
    const remote = client(TOKENS.admin);
    const tooBig = await rejection(remote.warm(join(work, "big.ociapp")).catch((e) => Promise.reject(e)));
    expect(tooBig).toBeInstanceOf(Error); // no such file: the client says so before sending anything
    const big = await writeArtifact(join(work, "big.ociapp"), "x".repeat(20_000));
    expect(await rejection(remote.warm(big.path))).toBeInstanceOf(PayloadTooLargeError);
    expect(await readdir(join(test.store, "incoming"))).toEqual([]);
    await remote.warm(artifact.path);
    expect(
      await rejection(remote.execute(artifact.digest, { op: "echo", value: "x".repeat(2000) })),
    ).toBeInstanceOf(PayloadTooLargeError);
    const slow = [1, 2].map(() => remote.execute(artifact.digest, { op: "sleep", ms: 1_000 }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const third = await rejection(remote.execute(artifact.digest, { op: "echo", value: 3 }));
    expect(third).toBeInstanceOf(QuotaExceededError);
    expect(third).toMatchObject({ code: "OCIAPP_QUOTA_EXCEEDED" });
    await Promise.all(slow);
    expect(await remote.execute(artifact.digest, { op: "echo", value: 4 })).toMatchObject({ value: 4 });
  });

  it("an abort resets the stream; the agent aborts the call and the app gets its cancel", async () => {
    test = await startTestAgent(pki);
    const remote = client(TOKENS.admin);
    await remote.warm(artifact.path);
    const controller = new AbortController();
    const call = remote.execute(artifact.digest, { op: "sleep", ms: 30_000 }, { signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(test.runtime.stats().artifacts[0]?.inFlight).toBe(1);
    controller.abort(new Error("caller gave up"));
    expect(((await rejection(call)) as Error).message).toBe("caller gave up");
    const deadline = Date.now() + 10_000;
    while ((test.runtime.stats().artifacts[0]?.inFlight ?? 0) > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The container answered the cancel long before the 30 s sleep was over.
    expect(test.runtime.stats().artifacts[0]?.inFlight).toBe(0);
    expect(test.audit.at(-1)).toMatchObject({ outcome: "CLIENT_GONE" });
  });

  it("drains on request: calls in flight finish, new calls are refused as never run (503)", async () => {
    test = await startTestAgent(pki);
    const remote = client(TOKENS.admin);
    await remote.warm(artifact.path);
    const running = remote.execute(artifact.digest, { op: "sleep", ms: 500, value: "done" });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const drained = test.agent.drain();
    const health = await raw(test.agent.url, pki.ca, { ":method": "GET", ":path": "/healthz" });
    expect(health).toMatchObject({ status: 503, json: { status: "draining" } });
    expect(await running).toMatchObject({ value: "done" });
    const refused = await rejection(remote.execute(artifact.digest, { op: "echo", value: 1 }));
    expect(refused).toBeInstanceOf(AgentUnavailableError);
    await drained;
  });

  it("serves /healthz without a token and /metrics with one", async () => {
    test = await startTestAgent(pki);
    const health = await raw(test.agent.url, pki.ca, { ":method": "GET", ":path": "/healthz" });
    expect(health).toMatchObject({ status: 200, json: { status: "ok" } });
    const remote = client(TOKENS.admin);
    await remote.execute(artifact.path, { op: "echo", value: 1 });
    const session = connect(test.agent.url, { ca: pki.ca });
    const stream = session.request({ ":path": "/metrics", authorization: `Bearer ${TOKENS.admin}` });
    let text = "";
    stream.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    await new Promise((resolve) => stream.on("end", resolve));
    session.close();
    expect(text).toContain(
      'ociapp_agent_requests_total{route="POST /v1/artifacts/execute",token="admin",outcome="ok"} 1',
    );
    expect(text).toContain(`ociapp_agent_instances{digest="${artifact.digest}",state="ready"} 1`);
    expect(text).toContain("ociapp_agent_uploads_total 1");
  });

  it("requires the client certificate with mutual TLS", async () => {
    test = await startTestAgent(undefined, {
      tls: { cert: pki.certPath, key: pki.keyPath, clientCa: pki.caPath },
    });
    const without = await rejection(
      client(TOKENS.admin, { connectTimeout: 5_000 }).execute(artifact.path, { op: "echo", value: 1 }),
    );
    expect(without).toBeInstanceOf(AgentUnavailableError);
    const stranger = await rejection(
      client(TOKENS.admin, { ...pki.stranger }).execute(artifact.path, { op: "echo", value: 1 }),
    );
    expect(stranger).toBeInstanceOf(AgentUnavailableError);
    expect(
      await client(TOKENS.admin, { ...pki.client }).execute(artifact.path, { op: "echo", value: 1 }),
    ).toMatchObject({ value: 1 });
    expect(test.engine.created).toBe(1);
  });

  it("a client that disconnects mid-upload leaves nothing behind", async () => {
    test = await startTestAgent(pki);
    const session = connect(test.agent.url, { ca: pki.ca });
    const stream = session.request({
      ":method": "PUT",
      ":path": `/v1/artifacts/${artifact.digest}`,
      authorization: `Bearer ${TOKENS.admin}`,
      "content-length": artifact.bytes.length,
    });
    stream.on("error", () => undefined);
    stream.write(artifact.bytes.subarray(0, 2048));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await readdir(join(test.store, "incoming"))).length).toBe(1);
    stream.close(constants.NGHTTP2_CANCEL);
    session.destroy();
    const deadline = Date.now() + 10_000;
    while ((await readdir(join(test.store, "incoming"))).length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await readdir(join(test.store, "incoming"))).toEqual([]);
    expect(await readdir(join(test.store, "artifacts"))).toEqual([]);
  });
});
