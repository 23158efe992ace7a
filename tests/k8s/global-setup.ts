import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

// The cluster tests need the single-node cluster of scripts/k8s.sh. `up` is a no-op in about a
// second when it already runs, starts it from the build cache otherwise, and builds it (tens of
// minutes on two cores) only on a machine that has never built this version.
export default function setup(project: TestProject): void {
  const script = fileURLToPath(new URL("../../scripts/k8s.sh", import.meta.url));
  const up = spawnSync("bash", [script, "up"], { stdio: "inherit", timeout: 3_600_000 });
  if (up.status !== 0) {
    throw new Error(
      `scripts/k8s.sh up failed (exit ${up.status ?? up.signal}); the cluster tests cannot run`,
    );
  }
  const env = spawnSync("bash", [script, "env"], { encoding: "utf8" });
  if (env.status !== 0) throw new Error(`scripts/k8s.sh env failed: ${env.stderr}`);
  const kubeconfig = /^export KUBECONFIG=(.+)$/m.exec(env.stdout)?.[1];
  const bin = /^export PATH=(.+):\$PATH$/m.exec(env.stdout)?.[1];
  if (!kubeconfig || !bin) throw new Error(`unexpected output of scripts/k8s.sh env:\n${env.stdout}`);
  project.provide("kubeconfig", kubeconfig);
  project.provide("kubectl", `${bin}/kubectl`);
}
