import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { BASE_IMAGE, docker } from "./docker.js";

// Proves the chain the product stands on, without product code: buildx writes an OCI tarball from
// the local base image, the engine loads it, and a container with no network answers a host client
// over a Unix socket in a bind-mounted folder.

const SERVER = `
const net = require("node:net");
const fs = require("node:fs");
const path = "/run/ociapp/smoke.sock";
try { fs.unlinkSync(path); } catch {}
const server = net.createServer((socket) => {
  let buffered = "";
  socket.on("data", (chunk) => {
    buffered += chunk;
    let newline;
    while ((newline = buffered.indexOf("\\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      socket.write(JSON.stringify({ echo: line, uid: process.getuid(), node: process.version }) + "\\n");
    }
  });
});
server.listen(path, () => fs.chmodSync(path, 0o666));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
`;

describe("engine smoke test", () => {
  const tag = `ociapp-smoke:${process.pid}`;
  let work = "";
  let container = "";

  afterAll(async () => {
    if (container) await docker(["rm", "-f", container]).catch(() => undefined);
    await docker(["image", "rm", "-f", tag]).catch(() => undefined);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("builds an OCI tarball, loads it, and talks to a network-less container over a bind-mounted socket", async () => {
    work = await mkdtemp(join(tmpdir(), "ociapp-smoke-"));
    await writeFile(join(work, "server.cjs"), SERVER);
    await writeFile(
      join(work, "Containerfile"),
      `FROM ${BASE_IMAGE}\nCOPY server.cjs /srv/server.cjs\nUSER 10001:10001\nCMD ["node", "/srv/server.cjs"]\n`,
    );
    const tarball = join(work, "smoke.ociapp");
    await docker([
      "buildx",
      "build",
      "--progress",
      "quiet",
      "--output",
      `type=oci,name=${tag},dest=${tarball},tar=true`,
      "-f",
      join(work, "Containerfile"),
      work,
    ]);
    expect((await stat(tarball)).size).toBeGreaterThan(1024);

    const loaded = await docker(["load", "-i", tarball]);
    expect(loaded).toContain(tag);

    const sockets = join(work, "run");
    await mkdir(sockets);
    // The container runs as uid 10001; the folder must let it create its socket.
    await chmod(sockets, 0o777);
    container = (
      await docker(["run", "-d", "--network", "none", "-v", `${sockets}:/run/ociapp`, tag])
    ).trim();

    const socketPath = join(sockets, "smoke.sock");
    const deadline = Date.now() + 30_000;
    while (!(await stat(socketPath).catch(() => null))) {
      if (Date.now() > deadline) throw new Error("the container never created its socket");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }

    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(socketPath);
      let data = "";
      socket.setEncoding("utf8");
      socket.on("connect", () => socket.write("hello from the host\n"));
      socket.on("data", (chunk) => {
        data += chunk;
        if (data.includes("\n")) {
          socket.end();
          resolve(data.trim());
        }
      });
      socket.on("error", reject);
      setTimeout(() => reject(new Error("no reply within 10 s")), 10_000).unref();
    });
    const parsed = JSON.parse(reply) as { echo: string; uid: number; node: string };
    expect(parsed.echo).toBe("hello from the host");
    expect(parsed.uid).toBe(10001);
    expect(parsed.node).toBe(process.version);

    const networks = await docker(["inspect", "--format", "{{.HostConfig.NetworkMode}}", container]);
    expect(networks.trim()).toBe("none");
  });
});
