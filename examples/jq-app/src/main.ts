import { execFile } from "node:child_process";
import { Application, type ExecutionContext } from "ociapp";
import { z } from "zod";

const JqRequest = z.object({
  filter: z.string().min(1).max(4096),
  input: z.json(),
});
const JqResponse = z.object({
  results: z.array(z.json()),
});

const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

/**
 * Runs a jq filter over a JSON document. jq is a system package installed into the image by
 * ociapp-build ("systemPackages": ["jq"]): the host that calls it needs neither jq nor any of this
 * app's dependencies, and the filter runs with no network, a read-only root and dropped capabilities.
 */
export class JqApplication extends Application<typeof JqRequest, typeof JqResponse> {
  readonly request = JqRequest;
  readonly response = JqResponse;
  override readonly name = "jq-app";
  override readonly version = "0.1.0";

  async execute(request: z.infer<typeof JqRequest>, context: ExecutionContext) {
    const stdout = await runJq(request.filter, JSON.stringify(request.input), context.signal);
    const results = stdout
      .split("\n")
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as z.infer<ReturnType<typeof z.json>>);
    return { results };
  }
}

class JqError extends Error {
  override readonly name = "JqError";
}

function runJq(filter: string, input: string, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    // Parenthesised on their own lines, a filter that starts with "-" is not read as an option, and a
    // trailing comment in it cannot swallow the closing parenthesis.
    const child = execFile(
      "jq",
      ["--compact-output", `(\n${filter}\n)`],
      { signal, maxBuffer: MAX_OUTPUT_BYTES, timeout: 10_000 },
      (error, stdout, stderr) => {
        if (error) reject(new JqError(stderr.trim() || error.message));
        else resolve(stdout);
      },
    );
    // A jq that exits early (a bad filter, or no jq at all) closes its stdin: the callback above
    // reports why, so the pipe error is not the one to surface.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(input);
  });
}

export const app = new JqApplication();
