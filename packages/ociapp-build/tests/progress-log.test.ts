import { expect, it } from "vitest";
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
