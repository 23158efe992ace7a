/**
 * "@acme/echo" becomes "acme-echo": the artifact's file name must not contain a path separator. Only
 * for names npmNameProblem accepts (then the result is a-z, 0-9 and "-._~!'()*", never "." or ".."
 * and never starting with "."). An unscoped "acme-echo" flattens the same: build them into different
 * output folders.
 */
export function flattenPackageName(name: string): string {
  return name.replace(/^@/, "").replace(/\//g, "-");
}

/** "<flattened name>-<version>.ociapp", for a name and version readProject has validated. */
export function artifactFileName(name: string, version: string): string {
  return `${flattenPackageName(name)}-${version}.ociapp`;
}

/**
 * The image reference written into the artifact (what `docker load` names it): "echo-app:0.1.0",
 * "acme/echo:0.1.0" for a scoped package. npm allows characters a reference does not, so those
 * become "-"; build metadata such as "+sha.1" in a version becomes "-sha.1".
 */
export function defaultImageReference(name: string, version: string): string {
  const repository = name
    .replace(/^@/, "")
    .split("/")
    .map((part) =>
      part
        .toLowerCase()
        .replace(/[^a-z0-9._-]+/g, "-")
        .replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, ""),
    )
    .filter((part) => part.length > 0)
    .join("/");
  const tag = version
    .replace(/[^\w.-]/g, "-")
    .replace(/^[.-]+/, "")
    .slice(0, 128);
  return `${repository || "app"}:${tag || "latest"}`;
}

export function defaultBaseImage(nodeVersion: string = process.versions.node): string {
  return `node:${nodeVersion.split(".")[0]}-bookworm-slim`;
}
