import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

// examples/sqlite-app built by hand, the way the issue did before managed builds compiled native
// modules: what a managed build's artifact size is compared with (the test and bench/build.ts).
// The same app (its dist/), the same pinned dependencies, the SDK packed from the workspace, the same
// base image and Node headers; written as a person would, not by ociapp-build.

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const SQLITE_APP = join(ROOT, "examples/sqlite-app");

/**
 * Two targets: `two-stage` (compile in a builder, copy node_modules and dist into a clean base) and
 * `single-stage` (the builder itself plus dist: the compiler stays in the image). The host's Node
 * headers are mounted for node-gyp, since the Node 20 base image made from the host's node has none.
 */
const CONTAINERFILE = `FROM node:20-bookworm-slim AS build
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 make g++ \\
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json ociapp-sdk.tgz ./
RUN --mount=type=bind,from=node-headers,target=/opt/node/include/node \\
    npm_config_nodedir=/opt/node npm_config_build_from_source=true \\
    npm install --omit=dev --no-audit --no-fund --loglevel=warn

FROM build AS single-stage
COPY dist ./dist
ENV NODE_ENV=production
USER 10001:10001
ENTRYPOINT ["node", "node_modules/ociapp/bin/ociapp.js", "serve", "--app", "dist/main.js#app"]

FROM node:20-bookworm-slim AS two-stage
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY package.json ./
COPY dist ./dist
ENV NODE_ENV=production
USER 10001:10001
ENTRYPOINT ["node", "node_modules/ociapp/bin/ociapp.js", "serve", "--app", "dist/main.js#app"]
`;

export interface HandwrittenBuild {
  target: "two-stage" | "single-stage";
  path: string;
  bytes: number;
}

/**
 * Builds examples/sqlite-app (its dist/ must be built: a managed build runs its build script) with
 * the hand-written Containerfile to `<outputDir>/sqlite-app-<target>.ociapp`. `network` as for
 * ociapp-build. Rejects with buildx's last lines when the build fails. Removes its context folder.
 */
export async function buildHandwritten(
  target: HandwrittenBuild["target"],
  outputDir: string,
  options: { network?: string; headers?: string } = {},
): Promise<HandwrittenBuild> {
  const context = await mkdtemp(join(tmpdir(), "ociapp-sqlite-handwritten-"));
  try {
    const pkg = JSON.parse(await readFile(join(SQLITE_APP, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const dependencies = { ...pkg.dependencies, ociapp: "file:ociapp-sdk.tgz" };
    await writeFile(
      join(context, "package.json"),
      JSON.stringify({ name: "sqlite-app", version: "0.1.0", type: "module", dependencies }, null, 2),
    );
    await cp(join(SQLITE_APP, "dist"), join(context, "dist"), { recursive: true });
    const { stdout } = await execFileAsync(
      "npm",
      ["pack", join(ROOT, "packages/ociapp"), "--pack-destination", context, "--json", "--loglevel=error"],
      { cwd: context },
    );
    const [packed] = JSON.parse(stdout.slice(stdout.indexOf("["))) as { filename: string }[];
    if (!packed) throw new Error("npm pack printed no file");
    await rename(join(context, packed.filename), join(context, "ociapp-sdk.tgz"));
    await writeFile(join(context, "Containerfile"), CONTAINERFILE);

    const dest = join(outputDir, `sqlite-app-${target}.ociapp`);
    const temp = `${dest}.tmp`;
    const args = [
      "buildx",
      "build",
      "--progress",
      "plain",
      "--provenance=false",
      "--sbom=false",
      "--file",
      join(context, "Containerfile"),
      "--target",
      target,
      "--build-context",
      `node-headers=${options.headers ?? "/usr/include/node"}`,
      "--output",
      `type=oci,name=ociapp-handwritten/sqlite-app:${target},dest=${temp},tar=true,compression=gzip`,
      ...(options.network ? ["--network", options.network] : []),
      context,
    ];
    try {
      await execFileAsync("docker", args, { maxBuffer: 64 << 20, timeout: 1_200_000 });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? String(error);
      throw new Error(`hand-written ${target} build failed:\n${stderr.split("\n").slice(-25).join("\n")}`, {
        cause: error,
      });
    }
    await rename(temp, dest);
    return { target, path: dest, bytes: (await stat(dest)).size };
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}
