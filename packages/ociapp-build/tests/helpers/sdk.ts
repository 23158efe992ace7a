import { readdir, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";
import { SDK_DIR } from "./paths.js";

let ready: Promise<void> | undefined;

/**
 * Managed builds pack the SDK's compiled dist/ into the image. CI builds every package before the
 * tests; when running tests alone, this builds the SDK once if its dist is missing or older than its
 * sources.
 */
export function ensureSdkBuilt(): Promise<void> {
  ready ??= (async () => {
    const built = await stat(join(SDK_DIR, "dist", "cli.js")).catch(() => undefined);
    if (built && (await newestMtime(join(SDK_DIR, "src"))) <= built.mtimeMs) return;
    await execa("pnpm", ["--filter", "ociapp", "run", "build"], { cwd: SDK_DIR, stdio: "inherit" });
  })();
  return ready;
}

async function newestMtime(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const { mtimeMs } = await stat(join(entry.parentPath, entry.name));
    newest = Math.max(newest, mtimeMs);
  }
  return newest;
}

/** Packs the workspace SDK into `dir` as `fileName`, the way a project outside the workspace would vendor it. */
export async function packSdkInto(dir: string, fileName: string): Promise<string> {
  await ensureSdkBuilt();
  const { stdout } = await execa(
    "npm",
    ["pack", SDK_DIR, "--pack-destination", dir, "--json", "--loglevel=error"],
    {
      cwd: dir,
    },
  );
  const [packed] = JSON.parse(stdout.slice(stdout.indexOf("["))) as { filename: string }[];
  if (!packed) throw new Error("npm pack printed no file");
  const target = join(dir, fileName);
  await rename(join(dir, packed.filename), target);
  return target;
}
