import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Runs the docker CLI and returns its stdout; rejects with stderr in the message on failure. */
export async function docker(args: string[], options: { timeout?: number } = {}): Promise<string> {
  try {
    const { stdout } = await execFileAsync("docker", args, {
      timeout: options.timeout ?? 300_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`docker ${args.join(" ")} failed: ${stderr.trim() || String(error)}`, { cause: error });
  }
}

export const NODE_MAJOR = process.versions.node.split(".")[0];
export const BASE_IMAGE = process.env.OCIAPP_BASE_IMAGE ?? `node:${NODE_MAJOR}-bookworm-slim`;
