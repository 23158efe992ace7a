import { readFile } from "node:fs/promises";
import { parseReference, pushArtifact, RegistryClient, RegistryError } from "ociapp/registry";

export interface PushFlags {
  /** Plain HTTP: only to a registry on a loopback address. */
  plainHttp?: boolean;
  /** PEM CA that signs the registry's certificate. */
  ca?: string;
}

export interface PushResult {
  reference: string;
  digest: string;
  blobs: number;
  uploaded: number;
}

/**
 * `ociapp-build push <file> <registry/repository[:tag]>`: uploads the artifact's blobs the registry
 * lacks and puts its manifest under its digest (and the tag). Credentials come from
 * OCIAPP_REGISTRY_USERNAME and OCIAPP_REGISTRY_PASSWORD (or OCIAPP_REGISTRY_PASSWORD_FILE), never
 * from the command line, where other users could read them.
 */
export async function push(
  file: string,
  target: string,
  flags: PushFlags,
  signal: AbortSignal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PushResult> {
  const reference = parseReference(target);
  const host = reference.registry.replace(/:\d+$/, "");
  if (flags.plainHttp && !/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(host)) {
    throw new RegistryError(
      "OCIAPP_REGISTRY",
      `--plain-http only to a loopback registry (got ${reference.registry})`,
    );
  }
  const passwordFile = env.OCIAPP_REGISTRY_PASSWORD_FILE;
  const password = passwordFile
    ? (await readFile(passwordFile, "utf8")).trim()
    : env.OCIAPP_REGISTRY_PASSWORD;
  const client = new RegistryClient({
    url: `${flags.plainHttp ? "http" : "https"}://${reference.registry}`,
    ...(env.OCIAPP_REGISTRY_USERNAME ? { username: env.OCIAPP_REGISTRY_USERNAME } : {}),
    ...(password ? { password } : {}),
    ...(flags.ca ? { ca: await readFile(flags.ca) } : {}),
  });
  const result = await pushArtifact(client, file, reference.repository, {
    signal,
    ...(reference.tag === undefined ? {} : { tag: reference.tag }),
  });
  return { reference: `${reference.registry}/${reference.repository}@${result.digest}`, ...result };
}
