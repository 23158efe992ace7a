import { fastServeOptions } from "./cli/options.js";
import { line, runServe } from "./cli/serve.js";
import { OciappError } from "./errors.js";

export { EXIT_NO_HOST } from "./cli/serve.js";

// `ociapp` on the command line. The container's entrypoint (`serve --app <spec>`, the rest from the
// environment) goes straight to the server; anything else loads commander (cli/program.ts).

/** The `ociapp` command line. User mistakes end the process with one line on stderr and exit code 1. */
export async function main(argv: string[] = process.argv): Promise<void> {
  try {
    const fast = argv[2] === "serve" ? fastServeOptions(argv.slice(3), process.env) : undefined;
    if (fast !== undefined) {
      await runServe(fast);
      return;
    }
    const { createProgram } = await import("./cli/program.js");
    await createProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof OciappError) {
      line(error.message);
      process.exit(1);
    }
    throw error;
  }
}
