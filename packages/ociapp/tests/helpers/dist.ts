import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import ts from "typescript";
import { PACKAGE_DIR } from "./server-process.js";

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts") ? [path] : [];
  });
}

export interface InstalledCopy {
  root: string;
  /** root/node_modules/ociapp/bin/ociapp.js */
  bin: string;
  /** root/app: the JavaScript fixtures, importing "ociapp" and "zod" from root/node_modules. */
  appDir: string;
}

/**
 * Lays the package out as an app installs it, in a temporary folder: node_modules/ociapp with
 * package.json, bin/ociapp.js and a dist/ transpiled from src/ (type-stripping only; `pnpm build`
 * runs the real tsc) and its production dependencies, node_modules/zod, and app/ with the JavaScript
 * fixtures. The caller removes root.
 */
export function buildInstalledCopy(): InstalledCopy {
  const root = mkdtempSync(join(tmpdir(), "ociapp-installed-"));
  const pkg = join(root, "node_modules/ociapp");
  const src = join(PACKAGE_DIR, "src");
  for (const file of sources(src)) {
    const output = ts.transpileModule(readFileSync(file, "utf8"), {
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        verbatimModuleSyntax: true,
      },
      fileName: file,
    });
    const target = join(pkg, "dist", relative(src, file)).replace(/\.ts$/, ".js");
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, output.outputText);
  }
  mkdirSync(join(pkg, "bin"));
  copyFileSync(join(PACKAGE_DIR, "bin/ociapp.js"), join(pkg, "bin/ociapp.js"));
  copyFileSync(join(PACKAGE_DIR, "package.json"), join(pkg, "package.json"));
  symlinkSync(join(PACKAGE_DIR, "node_modules"), join(pkg, "node_modules"), "dir");
  symlinkSync(join(PACKAGE_DIR, "node_modules/zod"), join(root, "node_modules/zod"), "dir");
  const appDir = join(root, "app");
  mkdirSync(appDir);
  for (const name of readdirSync(join(PACKAGE_DIR, "tests/fixtures"))) {
    if (name.endsWith(".mjs")) copyFileSync(join(PACKAGE_DIR, "tests/fixtures", name), join(appDir, name));
  }
  // TypeScript that only tsx can load: nothing above root provides tsx, and Node's own type stripping
  // (22.18+, 24) does not map the `.js` specifier TypeScript sources use to the `.ts` file.
  writeFileSync(join(appDir, "missing-loader.ts"), 'export { app } from "./missing-loader-app.js";\n');
  writeFileSync(join(appDir, "missing-loader-app.ts"), "export const app: unknown = 1;\n");
  return { root, bin: join(pkg, "bin/ociapp.js"), appDir };
}
