import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, createSecureServer, type ServerHttp2Stream } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RemoteExecutor, RequestTimeoutError } from "../../src/index.js";
import { rejection } from "../support/outcomes.js";
import { startTestAgent, TOKENS } from "./support/agents.js";
import { writeArtifact } from "./support/artifacts.js";
import { makePki, type TestPki } from "./support/certs.js";

// The deadlines both sides now keep in shared lists (one timer per duration): the client gives up
// on an agent that never answers, and the agent on a body that never ends, call after call.

let dir: string;
let pki: TestPki;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "deadlines-wire-"));
  pki = await makePki(dir);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("deadlines on the wire", () => {
  it("the client gives up on an agent that never answers, for each call (RequestTimeoutError)", async () => {
    const streams: ServerHttp2Stream[] = [];
    const server = createSecureServer({
      key: await readFile(pki.keyPath),
      cert: await readFile(pki.certPath),
    });
    server.on("stream", (stream) => {
      streams.push(stream); // read, never answered
      stream.resume();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as { port: number }).port;
    const remote = new RemoteExecutor({
      agents: [`https://127.0.0.1:${port}`],
      token: TOKENS.admin,
      ca: pki.ca,
      requestTimeout: 40,
      deadlineMargin: 40,
      healthInterval: 60_000,
    });
    try {
      const digest = `sha256:${"a".repeat(64)}`;
      for (const timeout of [undefined, 30, undefined]) {
        const error = await rejection(
          remote.execute(digest, { value: 1 }, timeout === undefined ? {} : { timeout }),
        );
        expect(error).toBeInstanceOf(RequestTimeoutError);
        expect((error as RequestTimeoutError).timeoutMs).toBe(timeout ?? 40);
      }
      expect(remote.stats().agents[0]?.outstanding).toBe(0);
    } finally {
      await remote.close();
      for (const stream of streams) stream.destroy();
      server.close();
    }
  });

  it("the agent answers 400 to a request body that does not end within bodyTimeout, each time", async () => {
    const test = await startTestAgent(pki, { limits: { bodyTimeout: 100 } });
    const artifact = await writeArtifact(join(dir, "echo.ociapp"), "echo");
    const session = connect(test.agent.url, { ca: pki.ca });
    try {
      // Uploaded through the client first, so the execute route reaches its body read.
      const remote = new RemoteExecutor({ agents: [test.agent.url], token: TOKENS.admin, ca: pki.ca });
      await remote.warm(artifact.path);
      await remote.close();
      for (let i = 0; i < 2; i++) {
        const stream = session.request({
          ":method": "POST",
          ":path": `/v1/artifacts/${artifact.digest}/execute`,
          authorization: `Bearer ${TOKENS.admin}`,
        });
        stream.write('{"op":"echo",'); // and never the rest
        const { status, body } = await new Promise<{ status: number; body: string }>((resolve) => {
          let status = 0;
          const chunks: Buffer[] = [];
          stream.on("response", (headers) => {
            status = Number(headers[":status"]);
          });
          stream.on("data", (chunk: Buffer) => chunks.push(chunk));
          stream.on("close", () => resolve({ status, body: Buffer.concat(chunks).toString("utf8") }));
        });
        expect(status).toBe(400);
        expect(JSON.parse(body)).toMatchObject({ error: { code: "OCIAPP_INVALID_REQUEST" } });
        expect(body).toContain("did not arrive within 100 ms");
      }
    } finally {
      session.close();
      await test.stop();
    }
  });
});
