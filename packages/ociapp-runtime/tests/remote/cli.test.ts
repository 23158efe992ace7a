import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/remote/agent/auth.js";
import { main } from "../../src/remote/agent/cli.js";

// `ociapp-runtime` as a user meets it: every mistake is one line, never a stack trace.

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(["node", "ociapp-runtime", ...args], {
    stdout: { write: (chunk: string) => (stdout += chunk) },
    stderr: { write: (chunk: string) => (stderr += chunk) },
  });
  return { code, stdout, stderr };
}

describe("ociapp-runtime CLI", () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "agent-cli-"));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("token prints a token and the sha256 the config stores", async () => {
    const { code, stdout } = await run(["token", "--id", "svc"]);
    expect(code).toBe(0);
    const printed = JSON.parse(stdout) as { id: string; token: string; sha256: string };
    expect(printed.id).toBe("svc");
    expect(printed.sha256).toBe(hashToken(printed.token));
  });

  const cases: [string, string, string, RegExp][] = [
    ["missing file", "nope.yaml", "", /^ociapp-runtime: error: cannot read config .*nope\.yaml: ENOENT/],
    ["bad YAML", "bad.yaml", "tokens: [", /^ociapp-runtime: error: config .*bad\.yaml is not valid YAML: /],
    ["no tokens", "empty.json", JSON.stringify({ store: "/tmp/x", tokens: [] }), /tokens: Too small/],
    [
      "a short hash",
      "hash.yaml",
      "store: /tmp/x\ntokens:\n  - id: a\n    sha256: abc\n",
      /config .*hash\.yaml: tokens\.0\.sha256: must be 64 lowercase hex digits/,
    ],
    [
      "network through the runtime section",
      "net.yaml",
      `store: /tmp/x\ntokens:\n  - id: a\n    sha256: "${"a".repeat(64)}"\nruntime:\n  container:\n    networkMode: host\n`,
      /runtime\.container: Unrecognized key: "networkMode"/,
    ],
    [
      "a plain-http registry elsewhere",
      "reg.yaml",
      `store: /tmp/x\ntokens:\n  - id: a\n    sha256: "${"a".repeat(64)}"\nregistries:\n  - name: r\n    url: http://10.0.0.1:5000\n    repositories: [apps/echo]\n`,
      /plain http only for a loopback registry/,
    ],
    [
      "no TLS",
      "notls.yaml",
      `store: ${"/tmp/ociapp-agent-cli-store"}\ntokens:\n  - id: a\n    sha256: "${"a".repeat(64)}"\n`,
      /needs tls/,
    ],
  ];
  for (const [name, file, text, expected] of cases) {
    it(`refuses ${name} with one line`, async () => {
      const path = join(work, file);
      if (text) await writeFile(path, text);
      const { code, stderr } = await run(["serve", "--config", path]);
      expect(code).toBe(1);
      expect(stderr).toMatch(expected);
      expect(stderr.trim().split("\n")).toHaveLength(1);
    });
  }

  it("refuses --insecure-loopback on an address that is not loopback", async () => {
    const path = join(work, "open.yaml");
    await writeFile(
      path,
      `listen: { host: 0.0.0.0, port: 0 }\nstore: ${join(work, "store")}\ntokens:\n  - id: a\n    sha256: "${"a".repeat(64)}"\n`,
    );
    const { code, stderr } = await run(["serve", "--config", path, "--insecure-loopback"]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^ociapp-runtime: error: plain HTTP is only served on a loopback address/);
  });
});
