import { PassThrough } from "node:stream";
import { encodeFrame, MessageReader, parseAppMessage } from "ociapp/protocol";
import { Call } from "./call.js";
import { LatencyWindow } from "./latency.js";

let primed = false;

/**
 * warm()'s priming of this process's side of a call, once per process: the first execute otherwise
 * pays V8's first compilation of the request path (encoding the request, the Call, reading and
 * parsing the answer frame with its bounds, settling the call). Runs those functions on a sample,
 * off any connection: nothing is sent, nothing stays (the stand-in stream is dropped).
 */
export function primeHostPath(): void {
  if (primed) return;
  primed = true;
  const payload = { value: "prime" };
  const call = new Call(
    "~prime",
    encodeFrame({ type: "request", id: "~prime", payload }),
    noop,
    noop,
    undefined,
    1_000,
  );
  const answer = encodeFrame({ type: "response", id: "~prime", payload });
  const stream = new PassThrough();
  const reader = new MessageReader(stream, {
    maxFrameBytes: answer.length,
    maxDepth: 8,
    maxValues: 16,
    frameTimeoutMs: 1_000,
    onMessage: (value) => {
      const message = parseAppMessage(value);
      if (message.type === "response") call.succeed(message.payload);
    },
    onViolation: noop,
  });
  stream.emit("data", answer);
  reader.dispose();
  stream.destroy();
  new LatencyWindow().record(performance.now() - call.createdAt);
}

function noop(): void {}
