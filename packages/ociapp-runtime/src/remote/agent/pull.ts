import { readFile, rm } from "node:fs/promises";
import { readArtifactIndex } from "ociapp/artifact";
import { pullArtifact, RegistryClient, RegistryError } from "ociapp/registry";
import { AgentError, DigestMismatchError, UnknownArtifactError } from "../errors.js";
import type { AgentConfig, RegistryConfig } from "./config.js";
import type { ArtifactPuller } from "./handlers.js";
import type { AgentMetrics } from "./metrics.js";
import type { ArtifactStore } from "./store.js";

/**
 * Gets artifacts from the registries the operator allowed (`config.registries`, each with its
 * repositories and credentials): a caller names only a digest, and the token's scopes name which of
 * these registries it may use, so no caller can make the agent contact a host of its choosing. For a
 * digest the store holds already, the registry is only asked whether it has the manifest (so a token
 * scoped to a registry runs only what that registry serves); otherwise the manifest and blobs are
 * fetched, each verified against its digest, into a temp file that becomes the store's copy. One pull
 * per digest at a time: concurrent callers share it. Undefined when no registry is configured.
 */
export function registryPuller(
  config: AgentConfig,
  store: ArtifactStore,
  sources: Map<string, Set<string>>,
  metrics: AgentMetrics,
): ArtifactPuller | undefined {
  if (config.registries.length === 0) return undefined;
  const clients = new Map<string, Promise<RegistryClient>>();
  const clientFor = (registry: RegistryConfig) => {
    let client = clients.get(registry.name);
    if (!client) {
      client = (async () => {
        const password =
          registry.passwordFile !== undefined
            ? (await readFile(registry.passwordFile, "utf8")).trim()
            : registry.password;
        return new RegistryClient({
          url: registry.url,
          ...(registry.username === undefined ? {} : { username: registry.username }),
          ...(password === undefined ? {} : { password }),
          ...(registry.ca === undefined ? {} : { ca: await readFile(registry.ca) }),
        });
      })();
      clients.set(registry.name, client);
      client.catch(() => clients.delete(registry.name));
    }
    return client;
  };
  const pending = new Map<string, Promise<string>>();

  const pull = async (digest: string, names: readonly string[], signal: AbortSignal): Promise<string> => {
    let lastError: unknown;
    for (const name of names) {
      const registry = config.registries.find((entry) => entry.name === name);
      if (registry === undefined) continue;
      const client = await clientFor(registry);
      for (const repository of registry.repositories) {
        signal.throwIfAborted();
        try {
          const held = store.pathOf(digest);
          if (held !== undefined) {
            if (!(await client.hasManifest(repository, digest, signal))) continue;
            record(sources, digest, name);
            return held;
          }
          const temp = store.incomingPath();
          try {
            await pullArtifact(client, repository, digest, temp, {
              signal,
              maxBytes: config.policy.maxUploadBytes,
            });
            // The file we wrote must name the digest we pulled (it does, unless the registry's
            // manifest is not what readArtifactIndex would choose).
            if ((await readArtifactIndex(temp)).digest !== digest) {
              throw new DigestMismatchError(digest, `the pulled artifact is not ${digest}`);
            }
            const path = await store.adopt(digest, temp);
            metrics.pulls++;
            record(sources, digest, name);
            return path;
          } finally {
            await rm(temp, { force: true });
          }
        } catch (error) {
          if (error instanceof RegistryError && error.code === "OCIAPP_REGISTRY_NOT_FOUND") continue;
          if (error instanceof RegistryError && error.code === "OCIAPP_REGISTRY_DIGEST") {
            throw new DigestMismatchError(digest, `registry ${name}: ${error.message}`);
          }
          lastError = error;
        }
      }
    }
    if (lastError !== undefined) {
      throw new AgentError(`pulling ${digest} failed: ${(lastError as Error).message}`, { cause: lastError });
    }
    throw new UnknownArtifactError(digest, `no allowed registry (${names.join(", ")}) has ${digest}`);
  };

  return (digest, names, signal) => {
    const key = `${digest}\n${names.join("\n")}`;
    let shared = pending.get(key);
    if (!shared) {
      shared = pull(digest, names, signal);
      pending.set(key, shared);
      const forget = () => pending.delete(key);
      shared.then(forget, forget);
    }
    return shared;
  };
}

function record(sources: Map<string, Set<string>>, digest: string, registry: string): void {
  let set = sources.get(digest);
  if (!set) {
    set = new Set();
    sources.set(digest, set);
  }
  set.add(registry);
}
