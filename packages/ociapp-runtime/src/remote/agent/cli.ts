import { randomBytes } from "node:crypto";
import { Command, CommanderError } from "commander";
import { OciappRuntimeError } from "../../errors.js";
import { Agent } from "./agent.js";
import { hashToken } from "./auth.js";
import { loadAgentConfig } from "./config.js";

export interface CliIo {
  stdout: { write(chunk: string): unknown };
  stderr: { write(chunk: string): unknown };
}

/**
 * `ociapp-runtime serve --config <file>` and `ociapp-runtime token`. Returns the exit code: 0, 1 for
 * a user mistake (printed as one line, never a stack trace), 2 for an unexpected failure.
 */
export async function main(argv: string[], io: CliIo = process): Promise<number> {
  const program = new Command("ociapp-runtime")
    .description("Run .ociapp artifacts for remote clients (an agent), or make a bearer token for one")
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      outputError: (text, write) => write(`ociapp-runtime: ${text}`),
    });
  let exitCode = 0;

  program
    .command("serve")
    .description("serve the agent's HTTP/2 API over TLS until SIGTERM or SIGINT, then drain")
    .requiredOption("-c, --config <file>", "the agent's configuration (JSON, or YAML for .yaml/.yml)")
    .option("--port <port>", "listen on this port instead of listen.port", (value) => Number(value))
    .option("--insecure-loopback", "serve plain HTTP/2 without TLS; only on a loopback listen.host")
    .action(async (flags: { config: string; port?: number; insecureLoopback?: boolean }) => {
      const config = await loadAgentConfig(flags.config);
      if (flags.port !== undefined) config.listen.port = flags.port;
      const agent = await Agent.start({ config, insecureLoopback: flags.insecureLoopback === true });
      io.stderr.write(`ociapp-runtime: agent ${agent.id} listening on ${agent.url}\n`);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          process.off("SIGTERM", onTerm);
          process.off("SIGINT", onInt);
          io.stderr.write(`ociapp-runtime: ${signal}: draining\n`);
          agent.drain().then(resolve, resolve);
        };
        const onTerm = () => stop("SIGTERM");
        const onInt = () => stop("SIGINT");
        process.on("SIGTERM", onTerm);
        process.on("SIGINT", onInt);
      });
      io.stderr.write("ociapp-runtime: drained\n");
    });

  program
    .command("token")
    .description("print a new random bearer token and the sha256 the agent's configuration stores")
    .option("--id <id>", "the token's id in the configuration", "client")
    .action((flags: { id: string }) => {
      const token = randomBytes(32).toString("base64url");
      io.stdout.write(`${JSON.stringify({ id: flags.id, token, sha256: hashToken(token) })}\n`);
    });

  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) exitCode = error.exitCode === 0 ? 0 : 1;
    else if (error instanceof OciappRuntimeError) {
      io.stderr.write(`ociapp-runtime: error: ${error.message.split("\n")[0]}\n`);
      exitCode = 1;
    } else if (typeof (error as { code?: unknown })?.code === "string" && (error as Error).message) {
      // A system error (EADDRINUSE, EACCES, ...): one line.
      io.stderr.write(`ociapp-runtime: error: ${(error as Error).message.split("\n")[0]}\n`);
      exitCode = 1;
    } else {
      io.stderr.write(`ociapp-runtime: unexpected error: ${(error as Error)?.stack ?? String(error)}\n`);
      exitCode = 2;
    }
  }
  return exitCode;
}
