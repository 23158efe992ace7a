/**
 * The facts docs/engines.md states about each engine, checked against the engines themselves with
 * tests/engines/probe.ts (the runtime's own API calls through dockerode). Every engine by default;
 * the extra ones are started (idempotently) by their own scripts in beforeAll:
 *
 *   scripts/engine.sh runsc; scripts/engines/classic-dockerd.sh up; scripts/engines/podman.sh up
 *
 * OCIAPP_PROBE_ENGINES=docker,podman (say) narrows the list for a run by hand.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const probeScript = join(root, "tests/engines/probe.ts");
const IMAGE = "node:20-bookworm-slim";

interface Engine {
  socket?: string;
  runtime?: string;
  prepare?: () => void;
  kind: "docker" | "classic" | "podman";
}

const CLASSIC_SOCKET = "/run/ociapp-classic/docker.sock";
const PODMAN_SOCKET = "/run/ociapp-podman/podman.sock";
const script = (name: string, ...args: string[]) =>
  execFileSync("bash", [join(root, "scripts/engines", name), ...args], { stdio: "inherit" });

const ENGINES: Record<string, Engine> = {
  docker: { kind: "docker" },
  "docker-runsc": { kind: "docker", runtime: "runsc" },
  classic: {
    kind: "classic",
    socket: CLASSIC_SOCKET,
    prepare: () => script("classic-dockerd.sh", "copy-image", IMAGE),
  },
  "classic-runsc": {
    kind: "classic",
    socket: CLASSIC_SOCKET,
    runtime: "runsc",
    prepare: () => script("classic-dockerd.sh", "copy-image", IMAGE),
  },
  podman: { kind: "podman", socket: PODMAN_SOCKET, prepare: () => script("podman.sh", "copy-image", IMAGE) },
};

const wanted = (process.env.OCIAPP_PROBE_ENGINES ?? "docker,docker-runsc,classic,classic-runsc,podman")
  .split(",")
  .map((name) => name.trim())
  .filter(Boolean);

// biome-ignore lint/suspicious/noExplicitAny: the probe's JSON, checked field by field below
type Facts = Record<string, any>;

function probe(engine: Engine, only: string[], artifacts: string[] = []): Facts {
  const args = ["--import", "tsx", probeScript, "--only", only.join(",")];
  if (engine.socket) args.push("--socket", engine.socket);
  if (engine.runtime) args.push("--runtime", engine.runtime);
  for (const artifact of artifacts) args.push("--artifact", artifact);
  const result = spawnSync("node", args, { cwd: root, encoding: "utf8", timeout: 600_000 });
  if (result.status !== 0) throw new Error(`probe failed (${result.status}): ${result.stderr}`);
  return JSON.parse(result.stdout) as Facts;
}

let work = "";
const artifacts: Record<string, string> = {};

/** A tiny OCI tarball from the primary engine's buildx, gzip and zstd, and the gzip one with a docker-archive manifest.json appended. */
function buildArtifacts(): void {
  work = mkdtempSync(join(tmpdir(), "ociapp-engines-"));
  writeFileSync(join(work, "Containerfile"), `FROM ${IMAGE}\nCMD ["node", "-e", "console.log('tiny')"]\n`);
  for (const [name, extra] of [
    ["gzip", ""],
    ["zstd", ",compression=zstd,force-compression=true"],
  ] as const) {
    const dest = join(work, `tiny-${name}.tar`);
    execFileSync("docker", [
      "buildx",
      "build",
      "-q",
      "--provenance=false",
      "-f",
      join(work, "Containerfile"),
      "--output",
      `type=oci,name=ociapp-probe/tiny-${name}:1,dest=${dest}${extra}`,
      work,
    ]);
    artifacts[name] = dest;
  }
  // The classic store loads an OCI layout only with a docker-archive manifest.json beside it.
  const index = JSON.parse(execFileSync("tar", ["-xOf", artifacts.gzip as string, "index.json"]).toString());
  const manifestDigest: string = index.manifests[0].digest;
  const manifest = JSON.parse(
    execFileSync("tar", [
      "-xOf",
      artifacts.gzip as string,
      `blobs/sha256/${manifestDigest.slice(7)}`,
    ]).toString(),
  );
  const entry = {
    Config: `blobs/sha256/${manifest.config.digest.slice(7)}`,
    RepoTags: null,
    Layers: manifest.layers.map((layer: { digest: string }) => `blobs/sha256/${layer.digest.slice(7)}`),
  };
  writeFileSync(join(work, "manifest.json"), JSON.stringify([entry]));
  artifacts.gzipWithManifest = join(work, "tiny-gzip-manifest.tar");
  execFileSync("cp", [artifacts.gzip as string, artifacts.gzipWithManifest]);
  execFileSync("tar", ["-C", work, "-rf", artifacts.gzipWithManifest, "manifest.json"]);
}

describe("engine facts (docs/engines.md)", () => {
  beforeAll(() => {
    for (const name of wanted)
      if (!ENGINES[name]) throw new Error(`unknown engine ${name} in OCIAPP_PROBE_ENGINES`);
    const kinds = new Set(wanted.map((name) => ENGINES[name]?.kind));
    if (wanted.some((name) => ENGINES[name]?.runtime === "runsc")) {
      execFileSync("bash", [join(root, "scripts/engine.sh"), "runsc"], { stdio: "inherit" });
    }
    if (kinds.has("classic")) script("classic-dockerd.sh", "up");
    if (kinds.has("podman")) script("podman.sh", "up");
    buildArtifacts();
  });
  afterAll(() => {
    if (work && existsSync(work)) rmSync(work, { recursive: true, force: true });
  });

  for (const name of wanted) {
    const engine = ENGINES[name] as Engine;
    const runsc = engine.runtime === "runsc";

    it(`${name}: the runtime's container operations`, () => {
      engine.prepare?.();
      const only = ["exit3", "kill", "sigterm", "pids", "uds", "forceRemove", "killExited"];
      // Under runsc an OOM kill wedges the sandbox until it is killed: only the kill-on-oom case.
      only.push(...(runsc ? ["oomThenKill"] : ["oom", "oomInspect"]));
      const facts = probe(engine, only);

      // Everywhere: exit codes, attach framing, wait armed before start, AutoRemove, the socket.
      expect(facts.exit3).toMatchObject({
        exitCode: 3,
        waitArmedBeforeStart: true,
        removedAfterExit: true,
        attach: { framing: "multiplexed", stdout: "out\n", stderr: "err\n" },
      });
      expect(facts.kill.exitCode).toBe(137);
      expect(facts.sigterm.exitCode).toBe(143);
      expect(facts.uds.exitCode).toBe(0);
      expect(facts.uds.hostReceived).toEqual(["hello from 10001"]);
      expect(facts.forceRemove).toMatchObject({ removal: "ok", listedByOtherLabel: 0 });
      expect(facts.forceRemove.listedByLabel).toHaveLength(1);
      expect(facts.leftContainers).toBe(0);

      const actions = (r: Facts) => r.events.map((e: { action: string }) => e.action);
      if (engine.kind === "podman") {
        // Podman 4.3: the filter event=die matches nothing (its own name is "died"); no oom event,
        // OOMKilled false; kill of an exited container is a 500.
        expect(actions(facts.exit3)).toEqual([]);
        expect(facts.oom.exitCode).toBe(137);
        expect(facts.oomInspect.inspect.oomKilled).toBe(false);
        expect(facts.killExited.killOfExitedContainer).toMatch(/^500 /);
        expect(facts.pids.attach.stderr).toContain("Cannot fork");
      } else {
        expect(actions(facts.exit3)).toEqual(["die"]);
        expect(facts.killExited.killOfExitedContainer).toMatch(/^409 /);
        if (runsc) {
          expect(facts.oomThenKill).toMatchObject({ exitCode: 137, inspect: { oomKilled: true } });
          expect(facts.oomThenKill.during).toMatch(/^oom event after \d+ ms; still running 1 s later/);
          // The pids limit counts gVisor's own threads; reaching it ends the sandbox (exit 2).
          expect(facts.pids.exitCode).toBe(2);
          expect(facts.pids.attach.stderr).not.toContain("Cannot fork");
        } else {
          expect(facts.oom.exitCode).toBe(137);
          expect(actions(facts.oom)).toEqual(["oom", "die"]);
          expect(facts.oomInspect.inspect.oomKilled).toBe(true);
          expect(facts.pids.attach.stderr).toContain("Cannot fork");
        }
      }
    });

    if (!runsc) {
      it(`${name}: loading OCI archives`, () => {
        const list = [artifacts.gzip, artifacts.zstd, artifacts.gzipWithManifest] as string[];
        const facts = probe(engine, ["load"], list);
        const gzip = facts.load[list[0] as string];
        const zstd = facts.load[list[1] as string];
        const withManifest = facts.load[list[2] as string];
        if (engine.kind === "classic") {
          // No manifest.json: refused in the response stream (HTTP 200). With it: loaded, ID = config digest.
          expect(gzip.loadResponse).toContain("blobs/json: no such file or directory");
          expect(withManifest.loadResponse).toContain(`Loaded image ID: ${withManifest.configDigest}`);
          expect(withManifest.inspectByConfigDigest.Id).toBe(withManifest.configDigest);
          expect(withManifest.inspectByManifestDigest.error).toMatch(/^404 /);
        } else if (engine.kind === "podman") {
          // Tagged from io.containerd.image.name; ID = config digest; the bare manifest digest is unknown.
          expect(gzip.loadResponse).toContain("Loaded image: docker.io/ociapp-probe/tiny-gzip:1");
          expect(zstd.loadResponse).toContain("Loaded image: docker.io/ociapp-probe/tiny-zstd:1");
          expect(gzip.inspectByConfigDigest.Id).toBe(gzip.configDigest);
          expect(gzip.inspectByManifestDigest.error).toMatch(/^404 /);
        } else {
          // The containerd store: ID = manifest digest, tagged from io.containerd.image.name.
          for (const entry of [gzip, zstd])
            expect(entry.inspectByManifestDigest.Id).toBe(entry.manifestDigest);
          expect(gzip.inspectByName.Id).toBe(gzip.manifestDigest);
        }
      });
    }
  }
});
