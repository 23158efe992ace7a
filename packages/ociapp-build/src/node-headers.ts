import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { run } from "./subprocess.js";

/** What the engine knows of the base image: its ID, and the Node version its environment names. */
export interface BaseImageFacts {
  /** the image ID ("sha256:..."), undefined when the engine does not have the image (buildx may pull it) */
  id: string | undefined;
  /** the NODE_VERSION of its environment (the official node images and scripts/engine.sh's set it) */
  nodeVersion: string | undefined;
}

/**
 * `docker image inspect` of the base image: one call, no pull. An image the engine lacks (or an
 * engine that does not answer) gives neither fact; the build itself then reports what is wrong.
 */
export async function inspectBaseImage(
  reference: string,
  options: { signal?: AbortSignal | undefined; env?: Record<string, string | undefined> | undefined },
): Promise<BaseImageFacts> {
  const result = await run(
    "docker",
    ["image", "inspect", "--format", "{{json .Id}} {{json .Config.Env}}", "--", reference],
    { signal: options.signal, ...(options.env ? { env: options.env } : {}) },
  ).catch(() => undefined);
  if (result?.exitCode !== 0) return { id: undefined, nodeVersion: undefined };
  const [idJson = "", ...rest] = result.stdout.trim().split(" ");
  let id: string | undefined;
  let nodeVersion: string | undefined;
  try {
    const parsedId = JSON.parse(idJson) as unknown;
    if (typeof parsedId === "string" && /^sha256:[a-f0-9]{64}$/.test(parsedId)) id = parsedId;
    const env = JSON.parse(rest.join(" ")) as unknown;
    if (Array.isArray(env)) {
      for (const entry of env) {
        const match = typeof entry === "string" ? /^NODE_VERSION=v?(\d+\.\d+\.\d+)$/.exec(entry) : null;
        if (match) nodeVersion = match[1];
      }
    }
  } catch {
    // An answer that is not what --format asked for: as if the image were unknown.
  }
  return { id, nodeVersion };
}

/** Node's C/C++ headers for one Node version, as node-gyp's --nodedir wants them: <dir>/node_version.h ... */
export interface NodeHeaders {
  /** the include/node folder */
  dir: string;
  version: string;
  /** sha256 of its node_version.h and common.gypi: what identifies the headers in the context digest */
  digest: string;
}

/**
 * Node's headers for exactly `version` on this machine, for a base image whose Node ships none (the
 * Node 20 image scripts/engine.sh makes from the host's own node): the running Node's own
 * (<prefix>/include/node: /usr/include/node from Debian's and NodeSource's nodejs package,
 * /usr/local/include/node from the official tarballs and nvm), then node-gyp's download cache
 * ($npm_config_devdir, ~/.cache/node-gyp/<version>, ~/.node-gyp/<version>). A folder counts only when
 * its node_version.h names that version and it has common.gypi (node-gyp reads both). Nothing is
 * downloaded. undefined when none matches.
 */
export async function findHostNodeHeaders(version: string): Promise<NodeHeaders | undefined> {
  const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  const candidates = [
    join(dirname(dirname(process.execPath)), "include", "node"),
    "/usr/include/node",
    "/usr/local/include/node",
    ...(process.env.npm_config_devdir
      ? [join(process.env.npm_config_devdir, version, "include", "node")]
      : []),
    join(cacheHome, "node-gyp", version, "include", "node"),
    join(homedir(), ".node-gyp", version, "include", "node"),
  ];
  for (const dir of new Set(candidates)) {
    const found = await headersOf(dir);
    if (found?.version === version) return found;
  }
  return undefined;
}

async function headersOf(dir: string): Promise<NodeHeaders | undefined> {
  const versionHeader = await readFile(join(dir, "node_version.h"), "utf8").catch(() => undefined);
  if (versionHeader === undefined) return undefined;
  const common = await readFile(join(dir, "common.gypi"), "utf8").catch(() => undefined);
  if (common === undefined || !(await stat(join(dir, "node.h")).catch(() => undefined))) return undefined;
  const part = (name: string) =>
    new RegExp(`^#define NODE_${name}_VERSION (\\d+)\\s*$`, "m").exec(versionHeader)?.[1];
  const [major, minor, patch] = [part("MAJOR"), part("MINOR"), part("PATCH")];
  if (major === undefined || minor === undefined || patch === undefined) return undefined;
  const digest = createHash("sha256").update(versionHeader).update("\0").update(common).digest("hex");
  return { dir, version: `${major}.${minor}.${patch}`, digest: `sha256:${digest}` };
}
