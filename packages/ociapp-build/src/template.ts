import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { IMAGE_BUNDLE_PATH } from "./bundle.js";
import type { ManagedConfig } from "./config.js";
import { BuildError } from "./errors.js";

/**
 * The installed package carries its copy next to dist/ (its build copies the repository's top-level
 * Containerfile.template); running from source inside the repository, the top-level file is used
 * first, so that a copy left by an earlier package build never shadows an edited template.
 */
const PACKAGED = new URL("../Containerfile.template", import.meta.url);
const REPOSITORY = new URL("../../../Containerfile.template", import.meta.url);
const CANDIDATES = import.meta.url.includes("/src/") ? [REPOSITORY, PACKAGED] : [PACKAGED, REPOSITORY];

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

/** The SDK's CLI as the image installs it: what `ociapp serve` runs without a bundle. */
const INSTALLED_CLI = "/app/node_modules/ociapp/bin/ociapp.js";

export interface TemplateValues {
  baseImage: string;
  config: ManagedConfig;
  /** a production dependency has an install script: the two-stage image (see native.ts). Default false. */
  native?: boolean;
  /** the app's SDK has `ociapp check`: the image runs it once built. Default false. */
  check?: boolean;
  /** the context holds bundle/serve.mjs (bundle.ts): the image copies it and runs it. Default false. */
  bundle?: boolean;
}

const SECTION = /^\{\{([#^/])([A-Z_]+)\}\}$/;

/**
 * Fills the template's placeholders and keeps or drops its sections ({{#NATIVE}}...{{/NATIVE}} kept
 * when native, {{^NATIVE}}...{{/NATIVE}} when not; likewise CHECK), whose markers stand alone on their
 * lines. Values are validated by the config schema before they get here. Throws BuildError
 * (OCIAPP_BUILD_FAILED) for an unknown placeholder or section, or an unbalanced section.
 */
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
    SERVE_SCRIPT: JSON.stringify(values.bundle === true ? IMAGE_BUNDLE_PATH : INSTALLED_CLI),
  };
  const flags: Record<string, boolean> = {
    NATIVE: values.native === true,
    CHECK: values.check === true,
    BUNDLE: values.bundle === true,
  };
  const broken = (what: string) => new BuildError("OCIAPP_BUILD_FAILED", `Containerfile.template: ${what}`);
  // The sections open around a line: each entry says whether its lines are kept.
  const open: { name: string; keep: boolean }[] = [];
  const lines: string[] = [];
  for (const line of template.split("\n")) {
    const marker = SECTION.exec(line.trim());
    if (marker) {
      const [, kind, name = ""] = marker;
      if (!(name in flags)) throw broken(`unknown section ${line.trim()}`);
      if (kind === "/") {
        if (open.pop()?.name !== name) throw broken(`${line.trim()} closes no open section`);
      } else {
        open.push({ name, keep: kind === "#" ? flags[name] === true : flags[name] !== true });
      }
      continue;
    }
    if (open.some((section) => !section.keep)) continue;
    // Placeholders are replaced outside comment lines only, so the header can name them.
    lines.push(
      line.trimStart().startsWith("#")
        ? line
        : line.replace(/\{\{([A-Z_]+)\}\}/g, (match, key: string) => {
            const value = replacements[key];
            if (value === undefined) throw broken(`unknown placeholder ${match}`);
            return value;
          }),
    );
  }
  if (open.length > 0) throw broken(`section {{#${open.at(-1)?.name}}} is never closed`);
  return lines.join("\n");
}
