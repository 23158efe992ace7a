// `ociapp-runtime` from the sources, for tests that run the agent as its own process.
import { main } from "../../../src/remote/agent/cli.js";

process.exitCode = await main(process.argv);
