import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { ManagedConfig } from "./config.js";
import { BuildError } from "./errors.js";

/**
 * The installed package carries its copy next to dist/ (its build copies the repository's top-level
 * Containerfile.template); running from source inside the repository, the top-level file is used.
 */
const CANDIDATES = [
  new URL("../Containerfile.template", import.meta.url),
  new URL("../../../Containerfile.template", import.meta.url),
];

export async function loadTemplate(): Promise<string> {
  for (const candidate of CANDIDATES) {
    try {
      return await readFile(fileURLToPath(candidate), "utf8");
    } catch {
      // try the next location
    }
  }
  throw new BuildError(
    "OCIAPP_BUILD_FAILED",
    `Containerfile.template not found next to ociapp-build (looked in ${CANDIDATES.map((c) => fileURLToPath(c)).join(", ")})`,
  );
}

export interface TemplateValues {
  baseImage: string;
  config: ManagedConfig;
}

/** Fills the template's placeholders; values are validated by the config schema before they get here. */
export function renderContainerfile(template: string, values: TemplateValues): string {
  const { systemPackages } = values.config;
  const systemStep =
    systemPackages.length === 0
      ? ""
      : [
          "RUN apt-get update \\",
          `    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${systemPackages.join(" ")} \\`,
          "    && rm -rf /var/lib/apt/lists/*",
        ].join("\n");
  const replacements: Record<string, string> = {
    BASE_IMAGE: values.baseImage,
    SYSTEM_PACKAGES: systemStep,
    ENTRYPOINT: JSON.stringify(values.config.entrypoint),
  };
  // Placeholders are replaced outside comment lines only, so the header can name them.
  return template
    .split("\n")
    .map((line) =>
      line.trimStart().startsWith("#")
        ? line
        : line.replace(/\{\{([A-Z_]+)\}\}/g, (match, key: string) => {
            const value = replacements[key];
            if (value === undefined)
              throw new BuildError("OCIAPP_BUILD_FAILED", `unknown template placeholder ${match}`);
            return value;
          }),
    )
    .join("\n");
}
