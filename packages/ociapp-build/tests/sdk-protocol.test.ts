import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installedSdkProtocol, locateSdk, sdkProtocol } from "../src/sdk.js";
import { SDK_DIR } from "./helpers/paths.js";

// dev.ociapp.protocol comes from the SDK's package.json field "ociapp": {"protocol": N}, read, not run.

let work = "";
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ociapp-build-protocol-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function projectWithSdk(name: string, sdkPackageJson: object | undefined): Promise<string> {
  const root = join(work, name);
  await mkdir(root, { recursive: true });
  await writeFile(join(root, "package.json"), JSON.stringify({ name, version: "1.0.0" }));
  if (sdkPackageJson) {
    await mkdir(join(root, "node_modules/ociapp"), { recursive: true });
    await writeFile(join(root, "node_modules/ociapp/package.json"), JSON.stringify(sdkPackageJson));
  }
  return root;
}

describe("the SDK's protocol", () => {
  it("is the SDK's package.json field, which the managed build reads from the SDK it packs", async () => {
    const manifest = JSON.parse(await readFile(join(SDK_DIR, "package.json"), "utf8")) as Record<
      string,
      unknown
    >;
    expect(sdkProtocol(manifest)).toBe(2);
    const root = await projectWithSdk("managed", {
      name: "ociapp",
      version: "0.2.0",
      ociapp: { protocol: 2 },
    });
    for (const file of ["dist/index.js", "dist/cli.js", "bin/ociapp.js"]) {
      await mkdir(join(root, "node_modules/ociapp", file, ".."), { recursive: true });
      await writeFile(join(root, "node_modules/ociapp", file), "");
    }
    expect(await locateSdk(root)).toMatchObject({ version: "0.2.0", protocol: 2 });
  });

  it("is undefined when the field is missing or malformed", () => {
    expect(sdkProtocol({ name: "ociapp", version: "0.1.0" })).toBeUndefined();
    for (const ociapp of [null, 2, { protocol: "2" }, { protocol: 0 }, { protocol: 1.5 }, { protocol: -2 }]) {
      expect(sdkProtocol({ name: "ociapp", ociapp })).toBeUndefined();
    }
  });

  it("custom mode: the project's installed SDK's, or none when it has no SDK installed", async () => {
    const installed = await projectWithSdk("with-sdk", {
      name: "ociapp",
      version: "0.2.0",
      ociapp: { protocol: 2 },
    });
    expect(await installedSdkProtocol(installed)).toBe(2);
    const old = await projectWithSdk("old-sdk", { name: "ociapp", version: "0.1.0" });
    expect(await installedSdkProtocol(old)).toBeUndefined();
    const impostor = await projectWithSdk("impostor", { name: "not-ociapp", ociapp: { protocol: 9 } });
    expect(await installedSdkProtocol(impostor)).toBeUndefined();
    const none = await projectWithSdk("no-sdk", undefined);
    expect(await installedSdkProtocol(none)).toBeUndefined();
  });
});
