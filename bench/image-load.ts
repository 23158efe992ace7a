// What the unpacked-size budget costs a load (issue 12 G): the runtime's load stream with and
// without measuring what the layers unpack to, for the echo-app artifact (gzip layers, ~90 MiB) and
// the same image with zstd layers (recompressed here with the zstd CLI, level 3, 8 MiB window as
// buildx writes). Two figures each: the stream alone drained into nothing (host CPU, event-loop
// delay), and a load into the engine (POST /images/load, the image removed before each run).
//
//   pnpm build && node --conditions=source --import tsx bench/image-load.ts [artifact.ociapp]
//
// Writes bench/results-images.json. Medians of REPEATS runs, modes interleaved.

import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { createGunzip } from "node:zlib";
import Dockerode from "dockerode";
import { readArtifactIndex } from "ociapp/artifact";
import { build } from "ociapp-build";
import tar from "tar-stream";
import { ZSTD_DECODER } from "../packages/ociapp-runtime/src/images/blob-meter.js";
import { createLoadStream } from "../packages/ociapp-runtime/src/images/load-stream.js";

const REPEATS = Number(process.env.REPEATS ?? 5);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const docker = new Dockerode();

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const sha256 = (bytes: Buffer) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;

async function echoArtifact(work: string): Promise<string> {
  const given = process.argv[2];
  if (given) return given;
  const result = await build({
    projectRoot: join(ROOT, "examples/echo-app"),
    outputDir: work,
    network: "host",
    progress: "quiet",
  });
  return result.path;
}

function zstdOf(data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn("zstd", ["-3", "-q", "-c"], { stdio: ["pipe", "pipe", "inherit"] });
    const chunks: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`zstd exit ${code}`)),
    );
    child.stdin.end(data);
  });
}

async function gunzip(data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const inflate = createGunzip();
  inflate.on("data", (chunk: Buffer) => chunks.push(chunk));
  await new Promise((resolve, reject) => inflate.on("end", resolve).on("error", reject).end(data));
  return Buffer.concat(chunks);
}

/** The same image with every gzip layer recompressed as zstd (config unchanged: same diff IDs). */
async function zstdCopy(from: string, to: string): Promise<void> {
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  const reading = pipeline(createReadStream(from), extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry as AsyncIterable<Buffer>) chunks.push(chunk);
    if (entry.header.type === "file") files.set(entry.header.name, Buffer.concat(chunks));
  }
  await reading;
  const index = JSON.parse((files.get("index.json") as Buffer).toString());
  const manifestName = `blobs/sha256/${index.manifests[0].digest.slice(7)}`;
  const manifest = JSON.parse((files.get(manifestName) as Buffer).toString());
  const blobs = new Map<string, Buffer>();
  for (const layer of manifest.layers) {
    const gz = files.get(`blobs/sha256/${layer.digest.slice(7)}`) as Buffer;
    const zst = await zstdOf(await gunzip(gz));
    layer.mediaType = "application/vnd.oci.image.layer.v1.tar+zstd";
    layer.digest = sha256(zst);
    layer.size = zst.length;
    blobs.set(layer.digest, zst);
  }
  const config = files.get(`blobs/sha256/${manifest.config.digest.slice(7)}`) as Buffer;
  blobs.set(manifest.config.digest, config);
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  blobs.set(sha256(manifestBytes), manifestBytes);
  index.manifests[0] = { ...index.manifests[0], digest: sha256(manifestBytes), size: manifestBytes.length };
  const pack = tar.pack();
  const writing = pipeline(pack, createWriteStream(to));
  for (const [digest, body] of blobs) pack.entry({ name: `blobs/sha256/${digest.slice(7)}` }, body);
  pack.entry({ name: "index.json" }, JSON.stringify(index));
  pack.entry({ name: "oci-layout" }, '{"imageLayoutVersion":"1.0.0"}');
  pack.finalize();
  await writing;
}

interface StreamFigure {
  ms: number;
  cpuMs: number;
  maxLoopDelayMs: number;
  unpackedBytes: number;
}

async function streamOnly(path: string, digest: string, measure: boolean): Promise<StreamFigure> {
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const cpu = process.cpuUsage();
  const started = performance.now();
  const { stream, result } = createLoadStream(createReadStream(path), {
    path,
    manifestDigest: digest,
    imageName: "ociapp.invalid/loading:bench",
    dockerArchive: false,
    maxUnpackedBytes: 2 ** 40,
    measure,
  });
  for await (const _ of stream) {
    // drained into nothing
  }
  const { unpackedBytes } = await result;
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  delay.disable();
  return { ms, cpuMs: (used.user + used.system) / 1000, maxLoopDelayMs: delay.max / 1e6, unpackedBytes };
}

async function engineLoad(path: string, digest: string, measure: boolean): Promise<number> {
  const name = `ociapp.invalid/loading:${Date.now()}-${randomBytes(4).toString("hex")}`;
  await docker
    .getImage(digest)
    .remove({ force: true })
    .catch(() => undefined);
  const started = performance.now();
  const { stream, result } = createLoadStream(createReadStream(path), {
    path,
    manifestDigest: digest,
    imageName: name,
    dockerArchive: false,
    maxUnpackedBytes: 2 ** 40,
    measure,
  });
  const response = (await docker.loadImage(stream, { quiet: true })) as NodeJS.ReadableStream;
  let answer = "";
  for await (const chunk of response) answer += chunk.toString();
  await result;
  const ms = performance.now() - started;
  if (!answer.includes("Loaded image")) throw new Error(`load failed: ${answer}`);
  await docker.getImage(name).remove({ force: true });
  return ms;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "ociapp-bench-images-"));
  try {
    const gzPath = await echoArtifact(work);
    const artifacts: { name: string; path: string }[] = [{ name: "gzip", path: gzPath }];
    try {
      execFileSync("zstd", ["--version"], { stdio: "ignore" });
      const zstPath = join(work, "echo-app-zstd.ociapp");
      await zstdCopy(gzPath, zstPath);
      artifacts.push({ name: "zstd", path: zstPath });
    } catch (error) {
      console.warn(`no zstd artifact (${(error as Error).message}): install zstd to measure it`);
    }
    const results: Record<string, unknown> = {
      node: process.version,
      zstdDecoder: ZSTD_DECODER,
      repeats: REPEATS,
    };
    for (const artifact of artifacts) {
      const { digest } = await readArtifactIndex(artifact.path);
      const bytes = Number(execFileSync("stat", ["-c", "%s", artifact.path]).toString());
      const stream: Record<string, StreamFigure[]> = { without: [], with: [] };
      const load: Record<string, number[]> = { without: [], with: [] };
      for (let i = 0; i < REPEATS; i++) {
        for (const mode of ["without", "with"] as const) {
          stream[mode]?.push(await streamOnly(artifact.path, digest, mode === "with"));
          load[mode]?.push(await engineLoad(artifact.path, digest, mode === "with"));
        }
      }
      await docker
        .getImage(digest)
        .remove({ force: true })
        .catch(() => undefined);
      const summary = (figures: StreamFigure[]) => ({
        ms: Math.round(median(figures.map((f) => f.ms))),
        cpuMs: Math.round(median(figures.map((f) => f.cpuMs))),
        maxLoopDelayMs: Math.round(median(figures.map((f) => f.maxLoopDelayMs))),
      });
      results[artifact.name] = {
        artifactBytes: bytes,
        unpackedBytes: stream.with?.[0]?.unpackedBytes,
        streamOnly: { without: summary(stream.without ?? []), with: summary(stream.with ?? []) },
        engineLoadMs: {
          without: Math.round(median(load.without ?? [])),
          with: Math.round(median(load.with ?? [])),
        },
      };
      console.log(artifact.name, JSON.stringify(results[artifact.name]));
    }
    await writeFile(join(ROOT, "bench/results-images.json"), `${JSON.stringify(results, null, 2)}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
