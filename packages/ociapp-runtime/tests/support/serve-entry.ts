// Runs the SDK's real `ociapp serve` CLI from source: the process engine's "container" entry point.
import { main } from "../../../ociapp/src/cli.js";

await main(process.argv);
