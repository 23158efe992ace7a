#!/usr/bin/env node
import { main } from "../dist/remote/agent/cli.js";

process.exitCode = await main(process.argv);
