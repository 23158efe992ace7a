import { readFile } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { OciappRuntimeError } from "../../errors.js";
import { isLoopback } from "../../util/loopback.js";

// The agent's configuration file (JSON, or YAML for a .yaml/.yml name), validated in full before the
// agent starts. Whatever a client may set per call is capped here by the operator: the `policy`
// caps values, a token's `scopes` say which digests, registries, actions and settings it may use,
// and the `runtime` section cannot give containers a network or root at all (those options are not
// in its schema).

const MiB = 1024 * 1024;
const ms = (min: number) => z.number().int().min(min);
const bytes = z.number().int().min(0);

/** Settings a client may send per call (`ociapp-settings`), when its token's scopes allow it. */
export const CLIENT_SETTINGS = ["timeout"] as const;
export type ClientSetting = (typeof CLIENT_SETTINGS)[number];

const Digest = z.string().regex(/^(sha256:[a-f0-9]{64}|\*)$/, "must be sha256:<64 hex> or *");

const Token = z.strictObject({
  /** Named in audit lines and metrics; never the secret. */
  id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 . _ -"),
  /** sha256 of the bearer token, hex: the agent never stores the token itself. */
  sha256: z.string().regex(/^[a-f0-9]{64}$/, "must be 64 lowercase hex digits (sha256 of the token)"),
  scopes: z
    .strictObject({
      /** Digests it may run ("*": any digest the agent holds or may pull for it). */
      digests: z.array(Digest).max(4096).default([]),
      /** Names of configured registries whose artifacts it may run (pulled on demand). */
      registries: z.array(z.string()).max(64).default([]),
      /** May upload artifacts (only digests in `digests`). */
      upload: z.boolean().default(false),
      /** May drain artifacts on this agent. */
      drain: z.boolean().default(false),
      /** Settings it may send per call. */
      settings: z.array(z.enum(CLIENT_SETTINGS)).default([]),
      /**
       * May read GET /metrics, which names every token's id and every artifact's digest (other
       * tokens' too): for the operator's monitoring, not for tenants.
       */
      metrics: z.boolean().default(false),
    })
    .default({ digests: [], registries: [], upload: false, drain: false, settings: [], metrics: false }),
  quota: z
    .strictObject({
      /** Calls of this token in flight at once on this agent. */
      inFlight: z.number().int().min(1).max(1_000_000).default(256),
      /** Calls per second, sustained (a token bucket). */
      rate: z.number().positive().max(1_000_000).default(10_000),
      /** Calls that may arrive at once above the rate. */
      burst: z.number().int().min(1).max(1_000_000).default(20_000),
    })
    .default({ inFlight: 256, rate: 10_000, burst: 20_000 }),
});

const Registry = z.strictObject({
  /** How tokens name it in `scopes.registries`. */
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 . _ -"),
  /** https://host[:port]; http:// only for a loopback host. */
  url: z.string().url(),
  /** Repositories searched for a digest, in order ("apps/echo"). */
  repositories: z.array(z.string().regex(/^[a-z0-9]+([._/-][a-z0-9]+)*$/, "not a repository name")).min(1),
  username: z.string().optional(),
  /** A file holding the password (preferred over `password`). */
  passwordFile: z.string().optional(),
  password: z.string().optional(),
  /** PEM file of the CA that signs the registry's certificate (default: Node's CAs). */
  ca: z.string().optional(),
});

const Runtime = z.strictObject({
  startupTimeout: ms(1).optional(),
  requestTimeout: ms(1).optional(),
  shutdownTimeout: ms(0).optional(),
  idleTimeout: ms(1).optional(),
  maxInstances: z.number().int().min(1).max(1024).optional(),
  minInstances: z.number().int().min(0).max(1024).optional(),
  maxConcurrency: z.number().int().min(1).max(65_536).optional(),
  maxQueue: z.number().int().min(0).optional(),
  maxFrameBytes: bytes.optional(),
  socketDir: z.string().optional(),
  env: z.record(z.string(), z.string()).optional(),
  /** Only limits: no network, no root, no capabilities can be configured through the agent. */
  container: z
    .strictObject({ memory: bytes.optional(), nanoCpus: bytes.optional(), pidsLimit: bytes.optional() })
    .optional(),
});

// ---- engine (issue 18): which engine the agent's Runtime uses ------------------------------------
const Quantity = z
  .string()
  .regex(/^[0-9]+(\.[0-9]+)?(m|k|M|G|Ki|Mi|Gi)?$/, "must be a quantity such as 10m or 32Mi");
/**
 * The KubernetesEngine (`ociapp-runtime/kubernetes`): the agent runs in a pod of a DaemonSet and its
 * containers are pods on its own node. Node, namespace and owner come from the downward API
 * (OCIAPP_NODE_NAME, OCIAPP_POD_NAMESPACE, OCIAPP_POD_NAME, OCIAPP_POD_UID) unless given.
 */
const KubernetesEngineConfig = z.strictObject({
  kind: z.literal("kubernetes"),
  kubeconfig: z.string().optional(),
  namespace: z.string().optional(),
  nodeName: z.string().optional(),
  registry: z.strictObject({
    url: z.string().url(),
    nodeHost: z.string().optional(),
    repository: z.string().optional(),
    username: z.string().optional(),
    passwordFile: z.string().optional(),
    /** PEM file of the CA that signs the registry's certificate. */
    ca: z.string().optional(),
    pullSecret: z.string().optional(),
  }),
  requests: z.strictObject({ cpu: Quantity.optional(), memory: Quantity.optional() }).optional(),
  terminationGracePeriodSeconds: z.number().int().min(0).max(86_400).optional(),
  pullTimeout: ms(1_000).optional(),
});
const EngineConfig = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("docker"), socketPath: z.string().optional() }),
  KubernetesEngineConfig,
]);
export type EngineConfig = z.infer<typeof EngineConfig>;
// ---- end engine ----------------------------------------------------------------------------------

export const AgentConfigSchema = z.strictObject({
  listen: z
    .strictObject({
      host: z.string().default("0.0.0.0"),
      port: z.number().int().min(0).max(65_535).default(8443),
    })
    .default({ host: "0.0.0.0", port: 8443 }),
  /** PEM files. With `clientCa`, every client must present a certificate it signs (mutual TLS). */
  tls: z.strictObject({ cert: z.string(), key: z.string(), clientCa: z.string().optional() }).optional(),
  /** The private folder holding verified artifacts (0700, this user's). */
  store: z.string().min(1),
  tokens: z.array(Token).min(1).max(10_000),
  policy: z
    .strictObject({
      /** Largest per-call `timeout` a client may ask for, ms. */
      maxTimeout: ms(1).default(300_000),
      /** Largest execute body (the request payload), bytes. */
      maxPayloadBytes: bytes.default(16 * MiB),
      /** Largest upload (a .ociapp file), bytes. */
      maxUploadBytes: bytes.default(4096 * MiB),
    })
    .default({ maxTimeout: 300_000, maxPayloadBytes: 16 * MiB, maxUploadBytes: 4096 * MiB }),
  registries: z.array(Registry).max(64).default([]),
  runtime: Runtime.default({}),
  /** The Runtime's engine. Default: Docker at its default socket (or DOCKER_HOST). */
  engine: EngineConfig.default({ kind: "docker" }),
  limits: z
    .strictObject({
      /** TLS connections at once. */
      maxSessions: z.number().int().min(1).default(1024),
      /** Streams (calls) at once per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
      maxStreams: z.number().int().min(1).max(65_536).default(1024),
      /** ms for the TLS handshake. */
      handshakeTimeout: ms(1).default(10_000),
      /**
       * ms from a connection's start (its TLS handshake done) within which one of its requests must
       * authenticate; a connection that has not is closed, so connections without a token cannot
       * hold `maxSessions` slots for `idleTimeout`.
       */
      authTimeout: ms(1).default(10_000),
      /** ms a connection may stay idle (no stream) before it is closed. */
      idleTimeout: ms(1).default(300_000),
      /** ms an execute body may take to arrive once its headers have. */
      bodyTimeout: ms(1).default(30_000),
      /** ms an upload may go without a byte arriving. */
      uploadStallTimeout: ms(1).default(30_000),
      /** ms an upload may take in all, from its headers to its last byte. */
      uploadTimeout: ms(1).default(600_000),
      /**
       * Bytes of execute bodies buffered at once, all calls together (each is also bounded by
       * policy.maxPayloadBytes); a body past it is answered 503 OCIAPP_AGENT_UNAVAILABLE (the call
       * did not run).
       */
      maxBufferedBytes: bytes.default(256 * MiB),
      /** Uploads and pulls at once. */
      maxTransfers: z.number().int().min(1).default(4),
      /** ms a pull from a registry may take in all. */
      pullTimeout: ms(1).default(600_000),
      /** ms SIGTERM waits for calls in flight before closing the runtime anyway. */
      drainTimeout: ms(0).default(30_000),
    })
    .default({
      maxSessions: 1024,
      maxStreams: 1024,
      handshakeTimeout: 10_000,
      authTimeout: 10_000,
      idleTimeout: 300_000,
      bodyTimeout: 30_000,
      uploadStallTimeout: 30_000,
      uploadTimeout: 600_000,
      maxBufferedBytes: 256 * MiB,
      maxTransfers: 4,
      pullTimeout: 600_000,
      drainTimeout: 30_000,
    }),
});

export type AgentConfig = z.infer<typeof AgentConfigSchema>;
export type TokenConfig = z.infer<typeof Token>;
export type RegistryConfig = z.infer<typeof Registry>;

/** A configuration file that cannot be read or is invalid; the message is one line. */
export class AgentConfigError extends OciappRuntimeError {
  declare readonly code: "OCIAPP_INVALID_OPTION";
  constructor(message: string, options?: { cause?: unknown }) {
    super("OCIAPP_INVALID_OPTION", message, options);
  }
}

/** Validates a parsed configuration; the first problem is one line naming where it is. */
export function parseAgentConfig(value: unknown, source = "config"): AgentConfig {
  const result = AgentConfigSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "(top level)";
    throw new AgentConfigError(`${source}: ${where}: ${issue?.message ?? "invalid"}`);
  }
  const config = result.data;
  // A body the total could never hold would be answered 503 by every agent, forever.
  if (config.limits.maxBufferedBytes < config.policy.maxPayloadBytes) {
    throw new AgentConfigError(
      `${source}: limits.maxBufferedBytes: must be at least policy.maxPayloadBytes (${config.policy.maxPayloadBytes})`,
    );
  }
  const names = new Set<string>();
  for (const registry of config.registries) {
    if (names.has(registry.name)) throw new AgentConfigError(`${source}: registries: ${registry.name} twice`);
    names.add(registry.name);
    const url = new URL(registry.url);
    if (url.protocol === "http:" && !isLoopback(url.hostname)) {
      throw new AgentConfigError(
        `${source}: registries: ${registry.name}: plain http only for a loopback registry (got ${url.host})`,
      );
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new AgentConfigError(`${source}: registries: ${registry.name}: url must be https://`);
    }
  }
  const ids = new Set<string>();
  for (const token of config.tokens) {
    if (ids.has(token.id)) throw new AgentConfigError(`${source}: tokens: id ${token.id} twice`);
    ids.add(token.id);
    for (const name of token.scopes.registries) {
      if (!names.has(name)) {
        throw new AgentConfigError(
          `${source}: tokens: ${token.id}: unknown registry ${JSON.stringify(name)}`,
        );
      }
    }
  }
  return config;
}

/** Reads and validates a JSON or YAML (.yaml, .yml) configuration file. */
export async function loadAgentConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new AgentConfigError(`cannot read config ${path}: ${(error as Error).message}`, { cause: error });
  }
  let value: unknown;
  try {
    value = /\.ya?ml$/i.test(path) ? parseYaml(text, { maxAliasCount: 100 }) : JSON.parse(text);
  } catch (error) {
    const first = ((error as Error).message ?? "").split("\n")[0];
    throw new AgentConfigError(
      `config ${path} is not valid ${/\.ya?ml$/i.test(path) ? "YAML" : "JSON"}: ${first}`,
    );
  }
  return parseAgentConfig(value, `config ${path}`);
}

export { isLoopback };
