import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { inject } from "vitest";

const execFileAsync = promisify(execFile);

declare module "vitest" {
  export interface ProvidedContext {
    /** The cluster's admin kubeconfig, from `scripts/k8s.sh env`. */
    kubeconfig: string;
    /** The kubectl built with the cluster (same version as the API server). */
    kubectl: string;
  }
}

/** Runs the cluster's kubectl against its admin kubeconfig and returns stdout; rejects with stderr. */
export async function kubectl(
  args: string[],
  options: { input?: string; timeout?: number } = {},
): Promise<string> {
  const bin = inject("kubectl");
  const kubeconfig = inject("kubeconfig");
  try {
    const child = execFileAsync(bin, ["--kubeconfig", kubeconfig, ...args], {
      timeout: options.timeout ?? 120_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    if (options.input !== undefined) {
      child.child.stdin?.end(options.input);
    }
    const { stdout } = await child;
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`kubectl ${args.join(" ")} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
}

/** `kubectl ... -o json`, parsed. */
export async function kubectlJson<T>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, "-o", "json"])) as T;
}
