import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ensureSdkBuilt } from "../../packages/ociapp-build/tests/helpers/sdk.js";

// Engine tests need a running Docker engine with buildx and the local base image. The script is a
// no-op in seconds when both are there; it never pulls from inside a test. Managed builds pack the
// SDK's compiled dist/ into their images, so `pnpm test` on a fresh clone builds it first (and
// again whenever its sources are newer).
export default async function setup(): Promise<void> {
  const script = fileURLToPath(new URL("../../scripts/engine.sh", import.meta.url));
  const result = spawnSync("bash", [script], { stdio: "inherit" });
  if (result.status !== 0) {
    throw new Error(`scripts/engine.sh failed (exit ${result.status}); engine tests cannot run`);
  }
  await ensureSdkBuilt();
}
