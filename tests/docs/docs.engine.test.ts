import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, delimiter, join } from "node:path";
import { promisify } from "node:util";
import { parseAppMessage, parseHostMessage } from "ociapp/protocol";
import { parseOciappConfig } from "ociapp-build";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker } from "../engine/docker.js";
import { allBlocks, type Block, ROOT, RUN_ELSEWHERE, where } from "./blocks.js";

// Runs the READMEs' code blocks as written (tests/docs/blocks.ts says how each language runs and
// what the directives provide), on the Node running the tests (20 in CI), against the packages'
// built dist as a user gets them: the blocks import ociapp, ociapp-build and ociapp-runtime (and the
// OpenTelemetry SDK) from a scratch folder whose node_modules links the workspace packages, and sh blocks find the
// ociapp-build and ociapp commands on PATH. sh blocks run from the repository root.

const execFileAsync = promisify(execFile);
const blocks = allBlocks();
const ARTIFACTS: Record<string, string> = {
  echo: "examples/echo-app",
  jq: "examples/jq-app",
};
/** What the blocks write into the repository (all ignored by git), removed afterwards when new. */
const OUTPUTS = [
  "dist/echo-app-0.1.0.ociapp",
  "dist/jq-app-0.1.0.ociapp",
  "examples/echo-app/echo-app-0.1.0.ociapp",
  "dist/packages",
];
const IMAGES = ["echo-app:0.1.0", "jq-app:0.1.0"];

let scratch = "";
let bin = "";
const typeErrors = new Map<string, string[]>();
const created: string[] = [];
const imagesBefore = new Set<string>();
const built = new Map<string, Promise<void>>();

/**
 * Runs a command in a process group of its own and, when it exits (or after `timeout` ms, default
 * 150 s: inside the test's 180 s), kills whatever is left of that group, so a block that starts a
 * background process (the remote demo's agent) can neither hang the test on its open pipes nor
 * outlive it. Output is kept up to 64 MiB per stream.
 */
function run(
  command: string,
  args: string[],
  options: { cwd?: string; timeout?: number; env?: Record<string, string> } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH}`, ...options.env },
    });
    const output = { stdout: "", stderr: "" };
    for (const name of ["stdout", "stderr"] as const) {
      child[name].setEncoding("utf8");
      child[name].on("data", (text: string) => {
        if (output[name].length < 64 * 1024 * 1024) output[name] += text;
      });
    }
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // the group is gone already
      }
    };
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeout ?? 150_000);
    child.once("exit", killGroup);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && !timedOut) {
        resolve(output);
        return;
      }
      const why = timedOut ? "timed out" : `failed (${signal ?? `exit ${code}`})`;
      reject(
        new Error(
          `${command} ${args.join(" ")} ${why}:\n${`${output.stdout}\n${output.stderr}`.trim().slice(-4000)}`,
        ),
      );
    });
  });
}

/**
 * Runs `fn` while the remote demo's agent (examples/remote-demo.ts agent: 127.0.0.1:8443, its token
 * and CA in /tmp/ociapp-remote-demo) listens, then stops it: SIGTERM (it drains), SIGKILL to its
 * process group after 30 s.
 */
async function withDemoAgent(fn: () => Promise<void>): Promise<void> {
  const agent = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "examples/remote-demo.ts", "agent"],
    { cwd: ROOT, detached: true, stdio: "ignore" },
  );
  const exited = new Promise<void>((resolve) => agent.once("exit", () => resolve()));
  try {
    const ready = "/tmp/ociapp-remote-demo/ready";
    for (let waited = 0; ; waited += 100) {
      if (existsSync(ready) && readFileSync(ready, "utf8") === String(agent.pid)) break;
      if (agent.exitCode !== null || waited > 60_000) throw new Error("the demo agent did not start");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await fn();
  } finally {
    agent.kill("SIGTERM");
    const killer = setTimeout(() => {
      if (agent.pid !== undefined) process.kill(-agent.pid, "SIGKILL");
    }, 30_000);
    await exited;
    clearTimeout(killer);
  }
}

/** What `needs kubernetes` blocks apply (deploy/kubernetes), deleted afterwards when they made it. */
const KUBERNETES_OBJECTS = ["admission-policy.yaml", "rbac.yaml", "service.yaml", "namespace.yaml"];
let cluster: Promise<Record<string, string>> | undefined;
let clusterWasDeployed = true;

/**
 * The environment of a `needs kubernetes` block: scripts/k8s.sh's cluster, started once per run (a
 * no-op when it runs; from its build cache otherwise), with KUBECONFIG and its kubectl first on PATH.
 */
function kubernetesEnv(): Promise<Record<string, string>> {
  cluster ??= (async () => {
    await run("bash", ["scripts/k8s.sh", "up"], { timeout: 3_600_000 });
    const { stdout } = await run("bash", ["scripts/k8s.sh", "env"]);
    const kubeconfig = /^export KUBECONFIG=(.+)$/m.exec(stdout)?.[1];
    const kubectlDir = /^export PATH=(.+):\$PATH$/m.exec(stdout)?.[1];
    if (!kubeconfig || !kubectlDir) throw new Error(`unexpected output of scripts/k8s.sh env:\n${stdout}`);
    const env = {
      KUBECONFIG: kubeconfig,
      PATH: `${kubectlDir}${delimiter}${bin}${delimiter}${process.env.PATH}`,
    };
    clusterWasDeployed = await run("kubectl", ["get", "namespace", "ociapp"], { env }).then(
      () => true,
      () => false,
    );
    return env;
  })();
  return cluster;
}

/** Builds examples/<name>-app into dist/ once per run (the build is cached by buildx). */
function ensureArtifact(name: string): Promise<void> {
  const project = ARTIFACTS[name];
  if (!project) throw new Error(`no example for artifact ${name}`);
  let pending = built.get(name);
  if (!pending) {
    pending = run("ociapp-build", [
      project,
      "--output-dir",
      "dist",
      "--network",
      "host",
      "--progress",
      "quiet",
    ]).then(() => undefined);
    built.set(name, pending);
  }
  return pending;
}

const fileOf = (block: Block) => join(scratch, `${block.file.replaceAll("/", "_")}_${block.line}`);
const PRELUDE_APP = 'import { app } from "./echo-app.js";\n';
const preludeOf = (block: Block) => (block.needs.includes("app") ? PRELUDE_APP : "");

/** Every JSON value in a block: the whole text, or values separated by blank lines, or one a line. */
function jsonValues(code: string): unknown[] {
  const attempts = [[code], code.split(/\n\s*\n/), code.split("\n")];
  for (const parts of attempts) {
    try {
      return parts.filter((part) => part.trim() !== "").map((part) => JSON.parse(part) as unknown);
    } catch {}
  }
  // A package.json fragment: `"ociapp": { ... }`.
  return [JSON.parse(`{${code}}`) as unknown];
}

function checkJson(block: Block): void {
  for (const value of jsonValues(block.code)) {
    const object = value as Record<string, unknown>;
    if (object !== null && typeof object === "object" && "ociapp" in object) {
      parseOciappConfig(object.ociapp);
    } else if (typeof object?.type === "string") {
      const asHost = attempt(() => parseHostMessage(object));
      const asApp = attempt(() => parseAppMessage(object));
      if (asHost && asApp) throw new Error(`${where(block)}: not a protocol frame: ${asApp.message}`);
    } else {
      throw new Error(
        `${where(block)}: a JSON block that is neither an "ociapp" config nor a protocol frame`,
      );
    }
  }
}

function attempt(action: () => unknown): Error | undefined {
  try {
    action();
    return undefined;
  } catch (error) {
    return error as Error;
  }
}

async function checkFlags(block: Block): Promise<void> {
  const [command = "", ...args] = (block.flagsOf ?? "").split(" ");
  let { stdout } = await run(command, [...args, "--help"]);
  // A usage summary may show a subcommand's flags (`ociapp-build push ... --plain-http`): each
  // subcommand that the block names and that --help lists under Commands has its own --help.
  const commands = stdout.slice(stdout.indexOf("\nCommands:"));
  for (const [, sub = ""] of commands.matchAll(/^ {2}([a-z][a-z-]*) /gm)) {
    if (sub !== "help" && new RegExp(`\\b${sub}\\b`).test(block.code)) {
      stdout += (await run(command, [...args, sub, "--help"])).stdout;
    }
  }
  const flags = new Set(block.code.match(/--[a-z][a-z-]*/g) ?? []);
  expect(flags.size, `${where(block)}: no --flags in a "flags of" block`).toBeGreaterThan(0);
  for (const flag of flags)
    expect(stdout, `${where(block)}: ${flag} is not in ${block.flagsOf} --help`).toContain(flag);
}

beforeAll(async () => {
  for (const dist of ["ociapp", "ociapp-build", "ociapp-runtime"]) {
    if (!existsSync(join(ROOT, "packages", dist, "dist/index.js"))) {
      throw new Error(
        `packages/${dist} is not built: run pnpm build first (the blocks use the built packages)`,
      );
    }
  }
  for (const output of OUTPUTS) if (!existsSync(join(ROOT, output))) created.push(output);
  for (const image of IMAGES) {
    if (
      await docker(["image", "inspect", image]).then(
        () => true,
        () => false,
      )
    )
      imagesBefore.add(image);
  }

  scratch = await mkdtemp(join(tmpdir(), "ociapp-docs-"));
  bin = join(scratch, "bin");
  await mkdir(join(scratch, "node_modules", "@types"), { recursive: true });
  await mkdir(bin);
  for (const name of ["ociapp", "ociapp-build", "ociapp-runtime"]) {
    await symlink(join(ROOT, "packages", name), join(scratch, "node_modules", name), "dir");
  }
  await symlink(join(ROOT, "packages/ociapp-build/bin/ociapp-build.js"), join(bin, "ociapp-build"));
  await symlink(join(ROOT, "packages/ociapp/bin/ociapp.js"), join(bin, "ociapp"));
  await symlink(join(ROOT, "packages/ociapp-runtime/bin/ociapp-runtime.js"), join(bin, "ociapp-runtime"));
  const zod = await realpath(join(ROOT, "packages/ociapp/node_modules/zod"));
  await symlink(zod, join(scratch, "node_modules", "zod"), "dir");
  await symlink(join(ROOT, "node_modules/@types/node"), join(scratch, "node_modules/@types/node"), "dir");
  // The OpenTelemetry API and SDK a service installs beside ociapp-runtime (its README's tracing blocks).
  await mkdir(join(scratch, "node_modules", "@opentelemetry"));
  for (const name of ["api", "sdk-trace-base", "sdk-metrics", "context-async-hooks"]) {
    const target = await realpath(join(ROOT, "node_modules/@opentelemetry", name));
    await symlink(target, join(scratch, "node_modules/@opentelemetry", name), "dir");
  }
  await writeFile(join(scratch, "package.json"), '{ "type": "module", "private": true }\n');
  await copyFile(join(ROOT, "examples/echo-app/src/main.ts"), join(scratch, "echo-app.ts"));

  // One tsc program over every ts block: strict, no skipLibCheck, as a consumer's would be.
  const tsBlocks = blocks.filter((block) => block.lang === "ts" && block.skip === undefined);
  for (const block of tsBlocks) {
    await writeFile(`${fileOf(block)}.ts`, `${preludeOf(block)}${block.code}export {};\n`);
  }
  await writeFile(
    join(scratch, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        skipLibCheck: false,
        target: "es2022",
        module: "nodenext",
        moduleResolution: "nodenext",
        types: ["node"],
        noEmit: true,
      },
      files: tsBlocks.map((block) => `${fileOf(block)}.ts`),
    }),
  );
  const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
  const result = await execFileAsync(process.execPath, [tsc, "-p", scratch, "--pretty", "false"], {
    cwd: scratch,
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? "" }));
  for (const line of result.stdout.split("\n")) {
    const match = /^(.+?\.ts)\((\d+),\d+\): (error .*)$/.exec(line);
    if (!match) continue;
    const block = tsBlocks.find(
      (candidate) => basename(match[1] ?? "") === `${basename(fileOf(candidate))}.ts`,
    );
    const key = block ? where(block) : `elsewhere: ${match[1]}`;
    // Line L of the file is line L - (prelude lines) of the block, whose first line follows the fence.
    const at = block ? block.line + Number(match[2]) - (preludeOf(block) ? 1 : 0) : Number(match[2]);
    const list = typeErrors.get(key) ?? [];
    list.push(`line ${at}: ${match[3]}`);
    typeErrors.set(key, list);
  }
  const elsewhere = [...typeErrors].filter(([key]) => key.startsWith("elsewhere"));
  expect(elsewhere, "type errors outside the blocks").toEqual([]);
});

afterAll(async () => {
  if (cluster && !clusterWasDeployed) {
    const env = await cluster;
    const files = KUBERNETES_OBJECTS.flatMap((file) => ["-f", join(ROOT, "deploy/kubernetes", file)]);
    await run("kubectl", ["delete", ...files, "--ignore-not-found", "--wait=false"], { env });
  }
  for (const output of created) await rm(join(ROOT, output), { recursive: true, force: true });
  for (const image of IMAGES) {
    if (!imagesBefore.has(image)) await docker(["image", "rm", "-f", image]).catch(() => undefined);
  }
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe.each([...new Set(blocks.map((block) => block.file))])("%s", (file) => {
  for (const block of blocks.filter((candidate) => candidate.file === file)) {
    const name = `line ${block.line}: ${block.lang || "plain"}${block.needs.length ? ` (needs ${block.needs.join(", ")})` : ""}`;
    // A block that says why it does not run, or that scripts/registry-test.sh runs, is no test here:
    // tests/docs/blocks.test.ts checks both lists (a snapshot of the reasons; the registry's blocks).
    if (block.skip !== undefined || block.needs.some((need) => RUN_ELSEWHERE.has(need))) continue;
    it(name, async () => {
      for (const need of block.needs) {
        if (need.startsWith("artifact ")) await ensureArtifact(need.slice("artifact ".length));
        if (need === "built echo-app")
          await run("npm", ["run", "build"], { cwd: join(ROOT, "examples/echo-app") });
      }
      const check = async (): Promise<void> => {
        if (block.flagsOf !== undefined) return checkFlags(block);
        switch (block.lang) {
          case "json":
            return checkJson(block);
          case "ts": {
            expect(typeErrors.get(where(block)) ?? [], `${where(block)}: type errors`).toEqual([]);
            await run(process.execPath, ["--import", "tsx", `${fileOf(block)}.ts`]);
            return;
          }
          case "js":
            await writeFile(`${fileOf(block)}.mjs`, block.code);
            await run(process.execPath, [`${fileOf(block)}.mjs`]);
            return;
          case "sh": {
            await writeFile(`${fileOf(block)}.sh`, block.code);
            const env = block.needs.includes("kubernetes") ? await kubernetesEnv() : {};
            await run("bash", ["-e", "-o", "pipefail", `${fileOf(block)}.sh`], { env });
            return;
          }
          default:
            throw new Error(`${where(block)}: no runner for ${block.lang}`);
        }
      };
      await (block.needs.includes("agent") ? withDemoAgent(check) : check());
    });
  }
});

describe("what the README says about `await using`", () => {
  it("returning runtime.execute() from inside the block, without await, rejects with RuntimeClosedError", async () => {
    await ensureArtifact("echo");
    const file = join(scratch, "return-without-await.ts");
    await writeFile(
      file,
      [
        'import { Runtime, RuntimeClosedError } from "ociapp-runtime";',
        "async function echo(value: string) {",
        "  await using runtime = new Runtime();",
        '  return runtime.execute("dist/echo-app-0.1.0.ociapp", { value });',
        "}",
        'const error = await echo("hello").catch((e: unknown) => e);',
        "if (!(error instanceof RuntimeClosedError)) throw new Error(`expected RuntimeClosedError, got ` + String(error));",
        "console.log(error.code);",
      ].join("\n"),
    );
    const { stdout } = await run(process.execPath, ["--import", "tsx", file]);
    expect(stdout.trim()).toBe("OCIAPP_RUNTIME_CLOSED");
  });

  it("is a SyntaxError as plain JavaScript on Node 20 and 22, and runs on Node 24", async () => {
    const file = join(scratch, "await-using.mjs");
    await writeFile(file, "{ await using x = { async [Symbol.asyncDispose]() {} }; }\n");
    const result = await execFileAsync(process.execPath, [file]).then(
      () => "ran",
      (error: { stderr?: string }) =>
        /SyntaxError/.test(error.stderr ?? "") ? "SyntaxError" : String(error),
    );
    const major = Number(process.versions.node.split(".")[0]);
    expect(result).toBe(major >= 24 ? "ran" : "SyntaxError");
  });
});
