// Runs the real CLI from its TypeScript sources (the bin runs the same main() from dist).
import { main } from "../../src/cli.js";

process.exitCode = await main(process.argv);
