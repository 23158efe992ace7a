import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { findHostNodeHeaders } from "../src/node-headers.js";
import { NODEDIR_SCRIPT } from "../src/nodedir-script.js";

// Node's headers for native modules, offline: found on the host for an exact version, and chosen
// inside the image by builder/nodedir.cjs.

let work = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-headers-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A prefix whose include/node holds headers claiming `version`. */
async function fakeHeaders(
  prefix: string,
  version: string,
  options: { gypi?: boolean } = {},
): Promise<string> {
  const dir = join(prefix, "include/node");
  await mkdir(dir, { recursive: true });
  const [major, minor, patch] = version.split(".");
  await writeFile(
    join(dir, "node_version.h"),
    `#define NODE_MAJOR_VERSION ${major}\n#define NODE_MINOR_VERSION ${minor}\n#define NODE_PATCH_VERSION ${patch}\n`,
  );
  await writeFile(join(dir, "node.h"), "");
  if (options.gypi !== false) await writeFile(join(dir, "common.gypi"), "{}");
  return dir;
}

it("finds headers for exactly the version asked, in node-gyp's cache ($npm_config_devdir)", async () => {
  const devdir = join(work, "devdir");
  const dir = await fakeHeaders(join(devdir, "99.1.2"), "99.1.2");
  await fakeHeaders(join(devdir, "99.1.3"), "99.1.4"); // a folder named for one version, holding another
  const saved = process.env.npm_config_devdir;
  process.env.npm_config_devdir = devdir;
  try {
    const found = await findHostNodeHeaders("99.1.2");
    expect(found).toEqual({ dir, version: "99.1.2", digest: expect.stringMatching(/^sha256:[a-f0-9]{64}$/) });
    expect(await findHostNodeHeaders("99.1.3")).toBeUndefined();
    expect(await findHostNodeHeaders("98.0.0")).toBeUndefined();
  } finally {
    if (saved === undefined) delete process.env.npm_config_devdir;
    else process.env.npm_config_devdir = saved;
  }
});

function nodedir(prefixes: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["-e", NODEDIR_SCRIPT],
      { env: { ...process.env, OCIAPP_NODEDIR_PREFIXES: prefixes.join(":") } },
      (error, stdout, stderr) => {
        const code = (error as { code?: unknown } | null)?.code;
        resolve({ code: typeof code === "number" ? code : error ? 1 : 0, stdout, stderr });
      },
    );
  });
}

it("nodedir.cjs prints the first prefix with this Node's headers (and common.gypi)", async () => {
  const version = process.versions.node;
  const other = join(work, "image-other");
  await fakeHeaders(other, "1.2.3");
  const noGypi = join(work, "image-no-gypi");
  await fakeHeaders(noGypi, version, { gypi: false });
  const lent = join(work, "lent");
  await fakeHeaders(lent, version);
  expect(await nodedir([other, noGypi, lent])).toEqual({ code: 0, stdout: lent, stderr: "" });
});

it("nodedir.cjs without headers: exit 1, one line naming the version", async () => {
  const result = await nodedir([join(work, "nothing-here")]);
  expect(result.code).toBe(1);
  expect(result.stdout).toBe("");
  const lines = result.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(
    new RegExp(
      `^ociapp-build: no headers for Node ${process.versions.node.replace(/\./g, "\\.")} to compile native modules with: `,
    ),
  );
});
