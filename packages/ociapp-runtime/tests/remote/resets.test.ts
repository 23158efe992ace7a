import { mkdtemp, readFile, rm } from "node:fs/promises";
import { constants, createSecureServer, type Http2SecureServer, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { AgentUnavailableError, RemoteExecutor } from "../../src/index.js";
import { RESETS_PER_SESSION } from "../../src/remote/client/connection.js";
import { rejection } from "../support/outcomes.js";
import { startTestAgent, type TestAgent, TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { makePki, type TestPki } from "./support/certs.js";

// A client that cancels many of its calls must not get its other calls refused: node:http2 servers
// end a session with GOAWAY after about 1,000 stream resets from the client (nghttp2's rapid-reset
// limit), so RemoteExecutor moves new calls to a new session before that, and gives a call that a
// session refused unsent (GOAWAY) one more try on a new session to the same agent.

const DIGEST = `sha256:${"a".repeat(64)}`;

describe("stream resets and refused streams", () => {
  let pki: TestPki;
  let work: string;
  let test: TestAgent | undefined;
  let server: Http2SecureServer | undefined;
  const open = new Set<ServerHttp2Session>();
  const clients: RemoteExecutor[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "resets-test-"));
    pki = await makePki(work);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    await test?.stop();
    test = undefined;
    // node:http2 keeps a server session that sent GOAWAY open after its client has gone.
    for (const session of open) session.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function client(url: string): RemoteExecutor {
    const made = new RemoteExecutor({ agents: [url], token: TOKENS.admin, ca: pki.ca });
    clients.push(made);
    return made;
  }

  it("1,200 calls aborted in flight on one client: every other call succeeds, sessions rotate before the agent's limit", async () => {
    test = await startTestAgent(pki);
    const artifact = await writeArtifact(join(work, "a.ociapp"), "a");
    const remote = client(test.agent.url);
    await remote.warm(artifact.path);
    const rounds = 20;
    const perRound = 120; // half aborted
    const failures: unknown[] = [];
    let aborted = 0;
    let answered = 0;
    for (let round = 0; round < rounds; round++) {
      const calls = Array.from({ length: perRound }, (_, i) => {
        const value = `${round}-${i}`;
        if (i % 2 === 1) {
          return remote.execute(artifact.digest, { op: "echo", value }).then(
            (result) => {
              if ((result as { value?: string }).value === value) answered++;
              else failures.push(result);
            },
            (error: unknown) => failures.push(error),
          );
        }
        // Aborted after the request went out (the agent has started it: a sleep it never finishes).
        const controller = new AbortController();
        setTimeout(() => controller.abort(new Error("caller gave up")), 1 + (i % 4));
        return remote
          .execute(artifact.digest, { op: "sleep", ms: 60_000 }, { signal: controller.signal })
          .then(
            (result) => failures.push(result),
            (error: unknown) => {
              if ((error as Error).message === "caller gave up") aborted++;
              else failures.push(error);
            },
          );
      });
      await Promise.all(calls);
    }
    expect(failures).toEqual([]);
    expect(answered).toBe((rounds * perRound) / 2);
    expect(aborted).toBe((rounds * perRound) / 2);
    // Each session carried at most RESETS_PER_SESSION resets: 1,200 resets took at least 3 sessions.
    const [stats] = remote.stats().agents;
    expect(stats?.sessions).toBeGreaterThanOrEqual(Math.ceil(aborted / RESETS_PER_SESSION));
    expect(stats?.healthy).toBe(true);
    // Every aborted call was aborted on the agent too (CLIENT_GONE), and no call ran twice.
    const executes = test.audit.filter((record) => record.route === "POST /v1/artifacts/execute");
    expect(executes.filter((record) => record.outcome === "ok")).toHaveLength(answered + 0);
    expect(executes.length).toBeLessThanOrEqual(answered + aborted);
    const deadline = Date.now() + 30_000;
    while ((test.runtime.stats().artifacts[0]?.inFlight ?? 0) > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(test.runtime.stats().artifacts[0]?.inFlight).toBe(0);
  }, 120_000);

  /**
   * A TLS HTTP/2 server standing in for an agent whose first session answers its first stream and
   * then ends with GOAWAY(ENHANCE_YOUR_CALM) saying only that stream was processed (RFC 9113 §6.8),
   * as a server limiting a client's resets does; later sessions answer, or refuse every stream
   * (RST_STREAM REFUSED_STREAM) when `refuseLater`.
   */
  async function goawayAgent(refuseLater: boolean) {
    let sessions = 0;
    let answered = 0;
    const made = createSecureServer({
      cert: await readFile(pki.certPath),
      key: await readFile(pki.keyPath),
      allowHTTP1: false,
    });
    server = made;
    made.on("session", (session: ServerHttp2Session) => {
      const number = ++sessions;
      session.on("error", () => undefined);
      open.add(session);
      session.on("close", () => open.delete(session));
      session.on("stream", (stream) => {
        stream.on("error", () => undefined);
        if (number === 1 && (stream.id ?? 0) > 1) {
          session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM, 1);
          return;
        }
        if (number > 1 && refuseLater) {
          stream.close(constants.NGHTTP2_REFUSED_STREAM);
          return;
        }
        answered++;
        stream.respond({ ":status": 200, "content-type": "application/json" });
        stream.end(JSON.stringify({ value: answered }));
      });
    });
    await new Promise<void>((resolve) => made.listen(0, "127.0.0.1", resolve));
    return {
      url: `https://127.0.0.1:${(made.address() as AddressInfo).port}`,
      sessions: () => sessions,
      answered: () => answered,
    };
  }

  it("a call its session refused (GOAWAY) is sent once more on a new session to the same agent", async () => {
    const agent = await goawayAgent(false);
    const remote = client(agent.url);
    expect(await remote.execute(DIGEST, { call: 1 })).toEqual({ value: 1 });
    expect(await remote.execute(DIGEST, { call: 2 })).toEqual({ value: 2 });
    expect(agent.sessions()).toBe(2);
    expect(remote.stats().agents[0]).toMatchObject({ sessions: 2, healthy: true });
  });

  it("an agent that refuses on the new session too gives AgentUnavailableError after two tries, not a loop", async () => {
    const agent = await goawayAgent(true);
    const remote = client(agent.url);
    expect(await remote.execute(DIGEST, { call: 1 })).toEqual({ value: 1 });
    const error = await rejection(remote.execute(DIGEST, { call: 2 }));
    expect(error).toBeInstanceOf(AgentUnavailableError);
    expect((error as Error).message).toMatch(/refused the stream/);
    expect(agent.sessions()).toBe(2);
    expect(agent.answered()).toBe(1);
  });
});
