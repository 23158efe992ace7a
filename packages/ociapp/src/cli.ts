import type { MainOptions } from "./cli/bundled-app.js";
import { fastServeOptions } from "./cli/options.js";
import { line, runServe } from "./cli/serve.js";
import { OciappError } from "./errors.js";

export type { BundledApp, MainOptions } from "./cli/bundled-app.js";
export { EXIT_NO_HOST } from "./cli/serve.js";

// `ociapp` on the command line. The container's entrypoint (`serve --app <spec>`, the rest from the
// environment) goes straight to the server; anything else loads commander (cli/program.ts).

/**
 * The `ociapp` command line. User mistakes end the process with one line on stderr and exit code 1.
 * `options.bundledApp` is for the entry ociapp-build bundles (see BundledApp).
 */
export async function main(argv: string[] = process.argv, options: MainOptions = {}): Promise<void> {
  try {
    const fast = argv[2] === "serve" ? fastServeOptions(argv.slice(3), process.env) : undefined;
    if (fast !== undefined) {
      await runServe(fast, options.bundledApp);
      return;
    }
    const { createProgram } = await import("./cli/program.js");
    await createProgram(options.bundledApp).parseAsync(argv);
  } catch (error) {
    if (error instanceof OciappError) {
      line(error.message);
      process.exit(1);
    }
    throw error;
  }
}
