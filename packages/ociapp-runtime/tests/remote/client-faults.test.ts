import { readdirSync, readlinkSync } from "node:fs";
import { appendFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from "node:http2";
import { type AddressInfo, connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AgentError,
  CallLostError,
  OptionsError,
  RemoteExecutor,
  type RemoteExecutorOptions,
  RequestTimeoutError,
} from "../../src/index.js";
import { rejection } from "../support/outcomes.js";
import { startTestAgent, type TestAgent, TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { makePki, type TestPki } from "./support/certs.js";

// What a RemoteExecutor does when the agent, or the link to it, misbehaves in ways a real agent's
// tests do not show: each case found by an adversarial try, each failing before its fix.

/** A TCP relay to 127.0.0.1:`port` that passes the client's bytes and only the agent's first chunk (its TLS handshake flight): the link dies one way. */
async function oneWayRelay(port: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(port, "127.0.0.1");
    let fromClient = 0;
    sockets.add(client).add(upstream);
    client.on("data", (chunk: Buffer) => {
      fromClient++;
      upstream.write(chunk);
    });
    // The agent's handshake flight comes before the client's second flight; the rest is dropped.
    upstream.on("data", (chunk: Buffer) => {
      if (fromClient < 2) client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on("error", end);
      socket.on("close", end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

describe("RemoteExecutor against misbehaving agents and links", () => {
  let pki: TestPki;
  let work: string;
  let test: TestAgent | undefined;
  let server: Http2SecureServer | undefined;
  const cleanups: (() => void)[] = [];
  const clients: RemoteExecutor[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "client-faults-"));
    pki = await makePki(work);
  });

  afterEach(async () => {
    await Promise.all(clients.splice(0).map((client) => client.close()));
    for (const cleanup of cleanups.splice(0)) cleanup();
    await test?.stop();
    test = undefined;
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  function client(options: Partial<RemoteExecutorOptions> & { agents: string[] }): RemoteExecutor {
    const made = new RemoteExecutor({ token: TOKENS.admin, ca: pki.ca, ...options });
    clients.push(made);
    return made;
  }

  /** A TLS HTTP/2 server standing in for an agent; `onStream` answers (or does not). */
  async function standIn(
    onStream: Parameters<Http2SecureServer["on"]>[1] & ((...args: never[]) => void),
  ): Promise<string> {
    const made = createSecureServer({
      cert: await readFile(pki.certPath),
      key: await readFile(pki.keyPath),
      allowHTTP1: false,
    });
    server = made;
    const sessions = new Set<ServerHttp2Session>();
    made.on("session", (session: ServerHttp2Session) => {
      sessions.add(session);
      session.on("error", () => undefined);
    });
    cleanups.push(() => {
      for (const session of sessions) session.destroy();
    });
    made.on("stream", onStream);
    await new Promise<void>((resolve) => made.listen(0, "127.0.0.1", resolve));
    return `https://127.0.0.1:${(made.address() as AddressInfo).port}`;
  }

  it("a call on a connection whose agent's bytes never come back ran there: CallLostError, never sent to another agent", async () => {
    test = await startTestAgent(pki);
    const artifact = await writeArtifact(join(work, "a.ociapp"), "a");
    await client({ agents: [test.agent.url] }).warm(artifact.path);
    const hole = await oneWayRelay(test.agent.port);
    cleanups.push(() => hole.close());
    // The relayed address first (pick() rotates ties: both are cold for this client), the agent direct second.
    const remote = client({
      agents: [`https://127.0.0.1:${hole.port}`, test.agent.url],
      keepaliveInterval: 200,
      keepaliveTimeout: 500,
    });
    const before = test.audit.filter((record) => record.outcome === "ok").length;
    const outcomes = await Promise.allSettled([
      remote.execute(artifact.digest, { op: "echo", value: 1 }),
      remote.execute(artifact.digest, { op: "echo", value: 2 }),
    ]);
    // One call went through the dead link: the agent ran it (its SETTINGS never reached the client),
    // so it is lost, not retried; the other went direct. Each ran once.
    const lost = outcomes.filter((outcome) => outcome.status === "rejected");
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(CallLostError);
    const deadline = Date.now() + 10_000;
    while (
      test.audit.filter((record) => record.outcome === "ok").length - before < 2 &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(test.audit.filter((record) => record.outcome === "ok").length - before).toBe(2);
  });

  it("a 200 whose body is not JSON is an AgentError with its code, not a SyntaxError", async () => {
    const url = await standIn((stream: import("node:http2").ServerHttp2Stream) => {
      stream.on("error", () => undefined);
      stream.resume();
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end("<html>not json</html>");
    });
    const error = await rejection(client({ agents: [url] }).execute(`sha256:${"b".repeat(64)}`, {}));
    expect(error).toBeInstanceOf(AgentError);
    expect((error as AgentError).code).toBe("OCIAPP_AGENT");
  });

  it("an agent that never answers an upload or a warm(): RequestTimeoutError after loadTimeout, and close() settles", async () => {
    const artifact = await writeArtifact(join(work, "b.ociapp"), "b");
    const url = await standIn(
      (stream: import("node:http2").ServerHttp2Stream, headers: Record<string, string>) => {
        stream.on("error", () => undefined);
        if (headers[":method"] === "PUT") return; // takes the headers, reads nothing, answers nothing
        stream.resume();
        if (String(headers[":path"]).endsWith("/warm")) return; // reads, never answers
        stream.respond({ ":status": 404, "content-type": "application/json" });
        stream.end(JSON.stringify({ error: { code: "OCIAPP_UNKNOWN_ARTIFACT", message: "unknown" } }));
      },
    );
    const remote = client({ agents: [url], loadTimeout: 300, keepaliveInterval: 100 });
    expect(await rejection(remote.execute(artifact.path, {}, { timeout: 1_000 }))).toBeInstanceOf(
      RequestTimeoutError,
    );
    expect(await rejection(remote.warm(artifact.digest))).toBeInstanceOf(RequestTimeoutError);
    await remote.close();
  });

  it("an upload the agent refuses before reading it all closes the client's file", async () => {
    const artifact = await writeArtifact(join(work, "c.ociapp"), "c");
    // The same artifact with 4 MiB of zeros after the tar's end: the answer comes before the file is read.
    await appendFile(artifact.path, Buffer.alloc(4 * 1024 * 1024));
    test = await startTestAgent(pki, { policy: { maxUploadBytes: 1024 * 1024 } });
    const remote = client({ agents: [test.agent.url] });
    const open = () =>
      readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === artifact.path;
        } catch {
          return false;
        }
      }).length;
    for (let i = 0; i < 5; i++) {
      expect((await rejection(remote.execute(artifact.path, {}))) as Error).toMatchObject({
        code: "OCIAPP_PAYLOAD_TOO_LARGE",
      });
    }
    const deadline = Date.now() + 5_000;
    while (open() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(open()).toBe(0);
  });

  it("plain http only to a loopback address: a name that merely starts with 127. is refused", () => {
    expect(() => new RemoteExecutor({ agents: ["http://127.example.com:8080"], token: "t" })).toThrow(
      OptionsError,
    );
    expect(() => new RemoteExecutor({ agents: ["http://10.0.0.1:8080"], token: "t" })).toThrow(OptionsError);
    const local = new RemoteExecutor({
      agents: ["http://127.0.0.1:8080", "http://localhost:8080"],
      token: "t",
    });
    clients.push(local);
  });
});
