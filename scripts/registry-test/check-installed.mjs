#!/usr/bin/env node
// Checks the ociapp packages as installed in a project's node_modules (from a registry or from
// tarballs), with no TypeScript and no network:
// - package.json: license MIT with a LICENSE file, repository, engines, no local dependency specs
//   (workspace:, link:, file:) left by the publish;
// - every file that main, types, bin and each exports condition name is shipped;
// - every source map (.js.map, .d.ts.map) names sources that are shipped, and every
//   sourceMappingURL comment names a shipped map: stack traces (--enable-source-maps) and
//   go-to-definition land on files that exist;
// - every bare import in a shipped .d.ts is a declared dependency or peer whose types are reachable
//   (its own types, or @types/<name> declared too; node:* needs the declared @types/node peer).
//
//   node check-installed.mjs <project-dir> [package...]

import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve } from "node:path";

const [projectDir, ...names] = process.argv.slice(2);
if (!projectDir) {
  console.error("usage: node check-installed.mjs <project-dir> [package...]");
  process.exit(2);
}
const packages = names.length > 0 ? names : ["ociapp", "ociapp-build", "ociapp-runtime"];
const LOCAL_SPEC = /^(workspace|link|file):/;
const problems = [];

function walk(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(path));
    else out.push(path);
  }
  return out;
}

function isFile(path) {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Every string target of an exports map, with the condition path that leads to it. */
function exportTargets(value, where) {
  if (typeof value === "string") return [[where, value]];
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, inner]) => exportTargets(inner, `${where}.${key}`));
}

/** The package.json of `name` as Node would find it from `fromDir` (walking up node_modules). */
function findPackage(name, fromDir) {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name, "package.json");
    if (isFile(candidate)) return JSON.parse(readFileSync(candidate, "utf8"));
    if (dirname(dir) === dir) return undefined;
  }
}

function bareName(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

for (const name of packages) {
  const problem = (message) => problems.push(`${name}: ${message}`);
  const link = resolve(projectDir, "node_modules", name);
  if (!isFile(join(link, "package.json"))) {
    problem(`not installed in ${projectDir}`);
    continue;
  }
  // pnpm links node_modules/<name> into its virtual store, where the package's own dependencies are.
  const dir = realpathSync(link);
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));

  if (manifest.license !== "MIT") problem(`license is ${JSON.stringify(manifest.license)}, not "MIT"`);
  if (
    !isFile(join(dir, "LICENSE")) ||
    !readFileSync(join(dir, "LICENSE"), "utf8").startsWith("MIT License")
  ) {
    problem("no MIT LICENSE file");
  }
  if (typeof manifest.repository?.url !== "string") problem("no repository.url");
  if (typeof manifest.engines?.node !== "string") problem("no engines.node");
  const declared = {
    ...manifest.peerDependencies,
    ...manifest.optionalDependencies,
    ...manifest.dependencies,
  };
  for (const [dep, spec] of Object.entries(declared)) {
    if (LOCAL_SPEC.test(spec))
      problem(`dependency ${dep} is "${spec}", which only the workspace can satisfy`);
  }

  const named = [];
  if (manifest.main) named.push(["main", manifest.main]);
  if (manifest.types) named.push(["types", manifest.types]);
  for (const [bin, target] of Object.entries(manifest.bin ?? {})) named.push([`bin.${bin}`, target]);
  named.push(...exportTargets(manifest.exports, "exports"));
  for (const [where, target] of named) {
    if (!isFile(join(dir, target))) problem(`${where} names ${target}, which is not shipped`);
  }

  const files = walk(dir);
  let maps = 0;
  for (const file of files) {
    const at = relative(dir, file);
    if (file.endsWith(".map")) {
      maps++;
      const map = JSON.parse(readFileSync(file, "utf8"));
      const root = resolve(dirname(file), map.sourceRoot ?? "");
      const inline =
        Array.isArray(map.sourcesContent) && map.sourcesContent.every((s) => typeof s === "string");
      for (const source of map.sources ?? []) {
        if (!inline && !isFile(resolve(root, source)))
          problem(`${at} maps to ${source}, which is not shipped`);
      }
    } else if (/\.(m?js|d\.ts)$/.test(file)) {
      const text = readFileSync(file, "utf8");
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(text)?.[1];
      if (url && !url.startsWith("data:") && !isFile(resolve(dirname(file), url))) {
        problem(`${at} names the source map ${url}, which is not shipped`);
      }
      if (file.endsWith(".d.ts")) {
        const specifiers = [
          ...text.matchAll(/^(?:import|export)\s[^;]*?\bfrom\s+"([^".][^"]*)"/gm),
          ...text.matchAll(/\bimport\("([^".][^"]*)"\)/g),
          ...text.matchAll(/^\/\/\/\s*<reference\s+types="([^"]+)"/gm),
        ].map((match) => (match[0].startsWith("///") && match[1] === "node" ? "node:" : match[1]));
        for (const specifier of specifiers) {
          // TypeScript writes an inferred type's module as the bare name (`import("diagnostics_channel")`):
          // @types/node declares both spellings of a builtin.
          if (specifier.startsWith("node:") || builtinModules.includes(specifier)) {
            if (!declared["@types/node"])
              problem(`${at} imports ${specifier}, and @types/node is not declared`);
            continue;
          }
          const dep = bareName(specifier);
          if (dep === name) continue;
          if (!declared[dep]) {
            problem(`${at} imports ${specifier}, which is not a declared dependency`);
            continue;
          }
          const installed = findPackage(dep, dir);
          const typesName = `@types/${dep.replace(/^@/, "").replace("/", "__")}`;
          const hasOwnTypes =
            installed &&
            (installed.types ||
              installed.typings ||
              JSON.stringify(installed.exports ?? {}).includes('"types"'));
          if (!hasOwnTypes && !declared[typesName]) {
            problem(
              `${at} imports ${specifier}, which has no types of its own, and ${typesName} is not declared`,
            );
          }
        }
      }
    }
  }
  if (maps === 0) problem("ships no source maps");
  console.log(`[check] ${name}@${manifest.version}: ${files.length} files, ${maps} source maps checked`);
}

if (problems.length > 0) {
  for (const line of problems) console.error(`[check] error: ${line}`);
  process.exit(1);
}
