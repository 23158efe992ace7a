import { describe, expect, it } from "vitest";
import { PhaseDisplay } from "../src/phase-display.js";
import { type BuildPhase, describePhase, phaseOf } from "../src/phases.js";
import { ProgressLog } from "../src/progress-log.js";

// buildx's plain progress of a two-stage managed build (buildx 0.13), cut down.
const TRANSCRIPT = `#1 [internal] load build definition from Containerfile
#1 DONE 0.0s
#5 [builder 1/5] FROM docker.io/library/node:20-bookworm-slim@sha256:5f9b
#5 DONE 0.0s
#9 [builder 2/5] RUN apt-get update     && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 make g++     && rm -rf /var/lib/apt/lists/*
#9 CACHED
#12 [builder 5/5] RUN --mount=type=cache,target=/root/.npm,sharing=locked     nodedir="$(node /ociapp/builder/nodedir.cjs)"     && npm_config_nodedir="$nodedir" npm_config_build_from_source=true        npm install --omit=dev
#12 108.2 added 41 packages in 2m
#12 DONE 108.3s
#13 [stage-1 3/5] COPY --from=builder /app/ ./
#13 DONE 0.6s
#15 [stage-1 5/5] RUN --network=none --mount=type=tmpfs,target=/tmp     ["node", "/app/node_modules/ociapp/bin/ociapp.js", "check", "--app", "dist/main.js#app"]
#15 0.215 ociapp: dist/main.js#app: an Application (SqliteApplication), ready to serve
#15 DONE 0.2s
#16 exporting to oci image format
#16 exporting layers 1.1s done
#16 sending tarball
#16 sending tarball 1.7s done
#16 DONE 2.8s
`;

it("maps buildx's steps of a managed build to phases", () => {
  const phases: BuildPhase[] = [];
  const log = new ProgressLog((event) => {
    const phase = phaseOf(event);
    if (phase) phases.push(phase);
  });
  log.push(TRANSCRIPT);
  expect(phases).toEqual([
    { phase: "base" },
    { phase: "base" },
    { phase: "toolchain" },
    { phase: "installing", native: true },
    { phase: "copying" },
    { phase: "checking" },
    { phase: "exporting" },
    { phase: "writing", bytes: 0 },
  ]);
  expect(
    phaseOf({ type: "step", name: "[stage-0 3/6] RUN apt-get update && apt-get install -y jq" }),
  ).toEqual({
    phase: "system-packages",
  });
  expect(phaseOf({ type: "step", name: "[2/4] RUN make frobnicator" })).toEqual({
    phase: "step",
    step: "RUN make frobnicator",
  });
});

it("describes phases in words, a custom step escaped", () => {
  expect(describePhase({ phase: "installing", native: false })).toBe("installing dependencies (npm install)");
  expect(describePhase({ phase: "writing", bytes: 45 * 1024 * 1024, expectedBytes: 90 * 1024 * 1024 })).toBe(
    "writing 45.0 MiB of ~90.0 MiB",
  );
  expect(describePhase({ phase: "step", step: "RUN echo \u001b[2J" })).toBe("building: RUN echo \\u001b[2J");
});

describe("PhaseDisplay", () => {
  const sink = (columns?: number) => {
    const chunks: string[] = [];
    return {
      chunks,
      stream: { write: (chunk: string) => chunks.push(chunk), ...(columns ? { columns } : {}) },
    };
  };

  it("on a terminal: one line redrawn in place, cut to the width, erased at the end", () => {
    const { chunks, stream } = sink(40);
    const display = new PhaseDisplay(stream, { tty: true });
    display.update({ phase: "installing", native: true });
    display.update({ phase: "writing", bytes: 1024 * 1024 });
    display.clear();
    expect(chunks).toHaveLength(3);
    for (const chunk of chunks) {
      expect(chunk.startsWith("\r\u001b[2K")).toBe(true);
      expect(chunk).not.toContain("\n");
      expect(chunk.length - 5).toBeLessThanOrEqual(39);
    }
    expect(chunks[0]).toBe("\r\u001b[2Kociapp-build: installing and compiling…");
    expect(chunks[1]).toBe("\r\u001b[2Kociapp-build: writing 1.0 MiB (0 s)");
    expect(chunks[2]).toBe("\r\u001b[2K");
  });

  it("elsewhere: a line per phase, the bytes written once", () => {
    const { chunks, stream } = sink();
    const display = new PhaseDisplay(stream, { tty: false });
    display.update({ phase: "installing", native: false });
    display.update({ phase: "installing", native: false });
    display.update({ phase: "writing", bytes: 1 });
    display.update({ phase: "writing", bytes: 2 });
    display.clear();
    expect(chunks).toEqual([
      "[ociapp-build] installing dependencies (npm install)\n",
      "[ociapp-build] writing the artifact\n",
    ]);
  });
});
