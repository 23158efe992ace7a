import { afterEach, describe, expect, it, vi } from "vitest";
import { type AuditRecord, flushAudit, stderrAudit } from "../../src/remote/agent/metrics.js";

// The default audit sink batches its lines: none is lost, each is one JSON line, and a drain (or
// exit) writes whatever is pending.

function record(i: number): AuditRecord {
  return {
    time: new Date(0).toISOString(),
    token: "t",
    route: "POST /v1/artifacts/execute",
    digest: null,
    outcome: "ok",
    status: 200,
    durationMs: i,
    peer: "127.0.0.1",
  };
}

describe("stderrAudit", () => {
  afterEach(() => vi.restoreAllMocks());

  it("writes every record as one line, in order, in batches, and all pending ones at flushAudit", () => {
    const written: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    flushAudit();
    written.length = 0;
    for (let i = 0; i < 300; i++) stderrAudit(record(i));
    // Full batches went out at once; the rest waits for the timer or a flush.
    expect(written.length).toBeGreaterThanOrEqual(2);
    flushAudit();
    const lines = written.join("").split("\n").filter(Boolean);
    expect(lines).toHaveLength(300);
    expect(lines.map((line) => (JSON.parse(line) as { durationMs: number }).durationMs)).toEqual(
      Array.from({ length: 300 }, (_, i) => i),
    );
    expect(JSON.parse(lines[0] as string)).toMatchObject({ audit: "ociapp-agent", status: 200 });
    flushAudit();
    expect(written.join("").split("\n").filter(Boolean)).toHaveLength(300);
  });
});
