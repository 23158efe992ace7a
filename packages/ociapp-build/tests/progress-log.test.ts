import { describe, expect, it } from "vitest";
import { describeFailure } from "../src/buildx.js";
import { ProgressLog } from "../src/progress-log.js";

// Captured from `docker buildx build --progress plain` (buildx 0.13) for a failing RUN step.
const TRANSCRIPT = `#0 building with "default" instance using docker driver

#4 [1/2] FROM docker.io/library/node:20-bookworm-slim
#4 CACHED

#5 [2/2] RUN echo line-one && echo line-two >&2 && exit 3
#5 0.270 line-two
#5 0.271 line-one
#5 ERROR: process "/bin/sh -c echo line-one && echo line-two >&2 && exit 3" did not complete successfully: exit code: 3
------
 > [2/2] RUN echo line-one && echo line-two >&2 && exit 3:
0.270 line-two
0.271 line-one
------
ERROR: failed to solve: process "/bin/sh -c echo line-one && echo line-two >&2 && exit 3" did not complete successfully: exit code: 3
`;

it("reports the failing step, its error and its output, from chunks split anywhere", () => {
  const log = new ProgressLog();
  for (let i = 0; i < TRANSCRIPT.length; i += 7) log.push(TRANSCRIPT.slice(i, i + 7));
  expect(log.failure()).toEqual({
    step: "[2/2] RUN echo line-one && echo line-two >&2 && exit 3",
    error:
      'process "/bin/sh -c echo line-one && echo line-two >&2 && exit 3" did not complete successfully: exit code: 3',
    output: "line-two\nline-one",
  });
});

it("falls back to the last ERROR line when no step failed", () => {
  const log = new ProgressLog();
  log.push("#1 [internal] load metadata\nERROR: failed to solve: node:99: not found\n");
  expect(log.failure()).toEqual({ error: "failed to solve: node:99: not found", output: "" });
});

it("keeps bounded output per step", () => {
  const log = new ProgressLog();
  log.push("#3 [1/1] RUN yes\n");
  for (let i = 0; i < 10_000; i++) log.push(`#3 1.${i} line ${i}\n`);
  log.push("#3 ERROR: killed\n");
  const failure = log.failure();
  expect(failure.output.split("\n")).toHaveLength(40);
  expect(failure.output.endsWith("line 9999")).toBe(true);
});

describe("describeFailure", () => {
  it("names a failing step and carries its output", () => {
    const error = describeFailure(
      { step: "[stage-0 4/5] RUN npm install", error: "exit code: 1", output: "E404" },
      "",
    );
    expect(error).toMatchObject({
      code: "OCIAPP_BUILD_FAILED",
      message: "image build failed at [stage-0 4/5] RUN npm install: exit code: 1",
      output: "E404",
    });
  });

  it("shows the step and its error escaped: they are the project's text", () => {
    const error = describeFailure(
      { step: "[2/2] RUN printf '\u001b[2J'\r", error: "exit code: 1\u009b", output: "\u001b[2J" },
      "",
    );
    expect(error.message).toBe(
      "image build failed at [2/2] RUN printf '\\u001b[2J'\\u000d: exit code: 1\\u009b",
    );
    // The output keeps its text: the CLI prints it escaped, line by line.
    expect(error.output).toBe("\u001b[2J");
  });

  it("explains a base image the engine does not have", () => {
    const error = describeFailure(
      {
        step: "[internal] load metadata for docker.io/library/node:99-bookworm-slim",
        error: "no such host",
        output: "",
      },
      "",
    );
    expect(error.message).toBe(
      "base image docker.io/library/node:99-bookworm-slim is not in the engine and could not be pulled (no such host): pull or load it first, or choose another with baseImage / --base-image",
    );
  });

  it("recognises an unreachable engine only outside a step", () => {
    const down =
      "ERROR: Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?";
    expect(describeFailure({ error: down.slice(7), output: "" }, down).code).toBe(
      "OCIAPP_BUILD_ENGINE_UNAVAILABLE",
    );
    expect(
      describeFailure({ step: "[1/2] RUN docker ps", error: "exit code: 1", output: down }, down).code,
    ).toBe("OCIAPP_BUILD_FAILED");
  });

  it("explains a builder that cannot export OCI tarballs", () => {
    const error = describeFailure(
      { error: "x", output: "" },
      "ERROR: OCI exporter is not supported for the docker driver.",
    );
    expect(error.message).toMatch(
      /^buildx cannot export OCI tarballs with this builder: enable the containerd image store/,
    );
  });
});
