import { Command, InvalidArgumentError, Option } from "commander";
import { DEFAULT_SOCKET_PATH } from "../server/index.js";
import { VERSION } from "../version.js";
import type { BundledApp } from "./bundled-app.js";
import { NUMERIC_OPTIONS, type NumericOption, parseInteger, type ServeCommandOptions } from "./options.js";
import { runCheck, runServe } from "./serve.js";

// The full command line, with commander: help, version, every flag and its error messages. The
// managed image's `ociapp serve --app <spec>` skips it (cli.ts: fastServeOptions).

function option(spec: NumericOption): Option {
  return new Option(spec.flags, spec.description)
    .env(spec.env)
    .argParser((value) => {
      const parsed = parseInteger(value, spec.min, spec.max);
      if (parsed === undefined) {
        throw new InvalidArgumentError(`expected an integer from ${spec.min} to ${spec.max}.`);
      }
      return parsed;
    })
    .default(spec.fallback);
}

/** The program; `bundledApp` is what a bundled entry carries (serve and check take the app from it). */
export function createProgram(bundledApp?: BundledApp): Command {
  const program = new Command("ociapp")
    .description("Serve an ociapp Application over a Unix socket")
    .version(VERSION)
    // User mistakes are one line, in the same voice as the load errors.
    .configureOutput({ outputError: (text, write) => write(`ociapp: ${text.replace(/^error: /, "")}`) });
  const serveCommand = program
    .command("serve")
    .description(
      "load an Application and answer requests on a Unix socket (listening, or connected to the host) until SIGTERM/SIGINT or, connected, until the host closes",
    )
    .addOption(appOption())
    .addOption(
      new Option(
        "--socket <path>",
        `listen mode: the socket to listen on (default ${DEFAULT_SOCKET_PATH})`,
      ).env("OCIAPP_SOCKET"),
    )
    .addOption(
      new Option("--connect <path>", "connect mode: the host's socket to connect to").env("OCIAPP_CONNECT"),
    );
  for (const spec of NUMERIC_OPTIONS) serveCommand.addOption(option(spec));
  serveCommand.action((options: ServeCommandOptions) => runServe(options, bundledApp));
  program
    .command("check")
    .description(
      "load an Application as serve would and exit: 0 when it is one, 1 with the reason in one line",
    )
    .addOption(appOption())
    .action((options: { app: string }) => runCheck(options, bundledApp));
  return program;
}

/** `--app`, the same for serve and check (a commander Option belongs to one command: made per use). */
function appOption(): Option {
  return new Option(
    "--app <module#export>",
    "module path (from the working directory) and export, default export app",
  )
    .env("OCIAPP_APP")
    .makeOptionMandatory();
}
