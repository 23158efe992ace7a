import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

// Engine tests need a running Docker engine with buildx and the local base image. The script is a
// no-op in seconds when both are there; it never pulls from inside a test.
export default function setup(): void {
  const script = fileURLToPath(new URL("../../scripts/engine.sh", import.meta.url));
  const result = spawnSync("bash", [script], { stdio: "inherit" });
  if (result.status !== 0) {
    throw new Error(`scripts/engine.sh failed (exit ${result.status}); engine tests cannot run`);
  }
}
