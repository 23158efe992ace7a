#!/usr/bin/env bash
# pnpm demo: the engine, the packages, the echo-app artifact, then the runtime demo.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/engine.sh
echo "[demo] building the packages (the SDK's dist is packed into the image)"
pnpm --silent build >/dev/null
echo "[demo] building examples/echo-app into dist/"
node packages/ociapp-build/bin/ociapp-build.js examples/echo-app --output-dir dist --network host --progress quiet
echo "[demo] running examples/runtime-demo.ts"
node --conditions=source --import tsx examples/runtime-demo.ts dist/echo-app-0.1.0.ociapp
