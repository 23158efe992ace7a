// The consumer side of scripts/registry-test.sh: a Node service in a fresh npm project outside the
// workspace, with ociapp, ociapp-build, ociapp-runtime and zod installed from a registry. It is
// type-checked with strict and no skipLibCheck (nodenext, and bundler resolution), touching every
// public entry point, then run: it executes the artifact that the installed ociapp-build made.
//
//   node dist/service.js <file.ociapp>

import { type AnyApplication, type ExecutionContext, isApplication } from "ociapp";
import { type ArtifactIndex, readArtifactIndex } from "ociapp/artifact";
import { encodeFrame, type Limits, PROTOCOL_VERSION } from "ociapp/protocol";
import { type BuildOptions, type BuildResult, defaultBaseImage } from "ociapp-build";
import {
  DockerEngine,
  type KnownRuntimeError,
  OptionsError,
  RemoteExecutionError,
  Runtime,
  type RuntimeOptions,
} from "ociapp-runtime";
import { KubernetesEngine, type KubernetesEngineOptions } from "ociapp-runtime/kubernetes";
import { z } from "zod";

const Answer = z.object({ value: z.string(), node: z.string() });

// Types only: a consumer's own signatures built from the packages' public types.
export type Built = Pick<BuildResult, "path" | "digest"> & { options: BuildOptions };
export type Context = ExecutionContext;
export function looksLikeApp(value: unknown): value is AnyApplication {
  return isApplication(value);
}
export function describe(error: KnownRuntimeError): string {
  switch (error.code) {
    case "OCIAPP_PROTOCOL":
      return `protocol: ${error.reason}`;
    case "OCIAPP_WORKER_EXITED":
      return `exited: ${error.exitCode ?? "unknown"}`;
    default:
      return error.message;
  }
}

function fail(message: string): never {
  console.error(`[service] error: ${message}`);
  process.exit(1);
}

const artifact = process.argv[2] ?? fail("usage: node dist/service.js <file.ociapp>");
const index: ArtifactIndex = await readArtifactIndex(artifact);
if (index.protocol !== PROTOCOL_VERSION) {
  fail(`the artifact speaks protocol ${index.protocol}, the installed SDK ${PROTOCOL_VERSION}`);
}
const limits: Limits = { maxFrameBytes: 1024, maxDepth: 4, maxValues: 64 };
encodeFrame({ type: "ping", id: "p" }, limits.maxFrameBytes);

// The KubernetesEngine's subpath resolves, its types check, and it is constructed without a cluster
// (nothing is asked of the API server before the first call); a missing node is an OptionsError.
const kubernetes: KubernetesEngineOptions = {
  nodeName: "node-1",
  namespace: "ociapp",
  owner: null,
  registry: { url: "https://registry.example", pullSecret: "pull" },
};
const reference = new KubernetesEngine(kubernetes).imageReference(index.digest);
if (reference !== `registry.example/ociapp/artifacts@${index.digest}`) fail(`image reference ${reference}`);
const noNode = attempt(() => new KubernetesEngine({ registry: kubernetes.registry }));
// The same OptionsError class as the main entry's: one errors module behind both subpaths.
if (!(noNode instanceof OptionsError)) {
  fail(`expected OptionsError for a KubernetesEngine without a node, got ${String(noNode)}`);
}

function attempt(action: () => unknown): unknown {
  try {
    return action();
  } catch (error) {
    return error;
  }
}

const options: RuntimeOptions = { engine: new DockerEngine(), startupTimeout: 60_000 };
const runtime = new Runtime(options);
try {
  const answer = Answer.parse(await runtime.execute(artifact, { value: "hello" }));
  if (answer.value !== "hello") fail(`the app answered ${JSON.stringify(answer)}`);
  const refused = await runtime.execute(artifact, { value: 42 }).then(
    () => fail("a request that breaks the app's schema was answered"),
    (error: unknown) => error,
  );
  if (!(refused instanceof RemoteExecutionError) || refused.remote.type !== "ValidationError") {
    fail(`expected RemoteExecutionError ValidationError, got ${String(refused)}`);
  }
  console.log(
    `[service] ${index.digest.slice(0, 19)}: answered ${JSON.stringify(answer)} in a container on Node ${answer.node} (default base for this host: ${defaultBaseImage()}); a bad request got ${refused.remote.type}`,
  );
} finally {
  await runtime.close();
}
