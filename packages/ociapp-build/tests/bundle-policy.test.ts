import { describe, expect, it } from "vitest";
import {
  appModules,
  type BundleInput,
  type BundlePreflight,
  packageName,
  reasonNotToBundle,
  reasonToDiscard,
} from "../src/bundle-policy.js";

// The decisions that send a managed build back to the installed files (bundle-policy.ts): pure, from
// what esbuild's metafile and messages say. The engine test builds and runs both outcomes.

const PREFLIGHT: BundlePreflight = {
  enabled: true,
  entryModule: "dist/main.js",
  sdkHasHook: true,
  installScripts: [],
};

describe("reasonNotToBundle", () => {
  it("bundles an app with a built JavaScript entry, an SDK with the hook and no install scripts", () => {
    expect(reasonNotToBundle(PREFLIGHT)).toBeUndefined();
    expect(reasonNotToBundle({ ...PREFLIGHT, entryModule: "main.mjs" })).toBeUndefined();
    expect(reasonNotToBundle({ ...PREFLIGHT, entryModule: "lib/main.cjs" })).toBeUndefined();
  });

  it("turned off", () => {
    expect(reasonNotToBundle({ ...PREFLIGHT, enabled: false })).toBe(
      "turned off (bundle: false / --no-bundle)",
    );
  });

  it("an SDK without the hook would load the app a second time, with a second SDK and zod", () => {
    expect(reasonNotToBundle({ ...PREFLIGHT, sdkHasHook: false })).toMatch(/no bundled-entry hook/);
  });

  it("a TypeScript entry is served through tsx", () => {
    for (const entryModule of ["src/main.ts", "main.mts", "main.cts"]) {
      expect(reasonNotToBundle({ ...PREFLIGHT, entryModule })).toBe(
        `the entrypoint ${entryModule} is TypeScript (served through tsx, as built)`,
      );
    }
  });

  it("dependencies with install scripts (native addons)", () => {
    expect(
      reasonNotToBundle({ ...PREFLIGHT, installScripts: ["better-sqlite3@12.4.1", "bcrypt@6.0.0"] }),
    ).toBe("dependencies with install scripts (better-sqlite3@12.4.1, bcrypt@6.0.0) may load native addons");
  });
});

function input(
  path: string,
  source: string | undefined,
  imports: string[] = [],
  sdk = false,
  packages: string[] = [],
): BundleInput {
  return { path, source, imports, sdk, packages };
}

const SDK = "node_modules/ociapp/dist";
/** The echo app's shape: the entry imports the SDK and zod; the SDK imports zod and commander. */
function echoApp(entrySource = 'import { z } from "zod"; export const app = 1;'): BundleInput[] {
  return [
    input("dist/main.js", entrySource, [`${SDK}/index.js`, "node_modules/zod/index.js"], false, [
      "ociapp",
      "zod",
    ]),
    input(`${SDK}/index.js`, undefined, [`${SDK}/application.js`, "node_modules/zod/index.js"], true),
    input(`${SDK}/application.js`, undefined, [], true),
    input(`${SDK}/cli/program.js`, undefined, ["node_modules/commander/index.js"], true),
    input("node_modules/zod/index.js", "export const z = {};", ["node_modules/zod/package.json"]),
    input("node_modules/zod/package.json", undefined),
    // commander reads __dirname for executable subcommands, which ociapp's program has none of.
    input("node_modules/commander/index.js", "const dir = __dirname;"),
  ];
}

function judge(inputs: BundleInput[], messages: { errors?: string[]; warnings?: string[] } = {}) {
  const asMessages = (texts: string[] = []) => texts.map((text) => ({ id: "x", text, file: "dist/main.js" }));
  return reasonToDiscard({
    errors: asMessages(messages.errors),
    warnings: asMessages(messages.warnings),
    inputs,
    entry: "dist/main.js",
    dependencies: new Set(["ociapp", "zod"]),
  });
}

describe("reasonToDiscard", () => {
  it("keeps a bundle whose app graph is plain code (what only the SDK imports is not scanned)", () => {
    expect(judge(echoApp())).toBeUndefined();
  });

  it("esbuild's first error", () => {
    expect(judge(echoApp(), { errors: ['Could not resolve "left-pad"', "second"] })).toBe(
      'esbuild failed: Could not resolve "left-pad" (dist/main.js)',
    );
  });

  it("any warning: esbuild may not reproduce what Node would do", () => {
    expect(judge(echoApp(), { warnings: ['This call to "require" will not be bundled\nmore'] })).toBe(
      'esbuild warned: This call to "require" will not be bundled (dist/main.js)',
    );
  });

  it("code that reads its own location", () => {
    const cases: [string, string][] = [
      ["const u = import.meta.url;", "reads import.meta.url"],
      ["const d = import.meta.dirname;", "reads import.meta.url"],
      ["const r = import.meta.resolve('x');", "reads import.meta.url"],
      ["const d = __dirname;", "reads __dirname/__filename"],
      ["const f = __filename;", "reads __dirname/__filename"],
      ["const p = require.resolve('x');", "calls require.resolve"],
    ];
    for (const [source, what] of cases) expect(judge(echoApp(source))).toBe(`dist/main.js ${what}`);
  });

  it("modules loaded by a computed name", () => {
    expect(judge(echoApp("const m = await import(name);"))).toBe(
      "dist/main.js imports a module by a computed name",
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the app's source, a template literal
    expect(judge(echoApp("const m = await import(`./${name}.js`);"))).toBe(
      "dist/main.js imports a module by a computed name",
    );
    expect(judge(echoApp("const m = require(name);"))).toBe(
      "dist/main.js requires a module by a computed name",
    );
    // Literal names are bundled; a method called require is not Node's.
    expect(
      judge(echoApp("const m = await import('./x.js'); const n = require(\"y\"); loader.require(name);")),
    ).toBe(undefined);
  });

  it("a dependency of the app is scanned too", () => {
    const inputs = echoApp();
    const zod = inputs.find((i) => i.path === "node_modules/zod/index.js");
    if (zod) zod.source = "export const z = new URL('x', import.meta.url);";
    expect(judge(inputs)).toBe("node_modules/zod/index.js reads import.meta.url");
  });

  it("a module the SDK shares with the app is the app's, and scanned", () => {
    const shared = "node_modules/shared/index.js";
    const inputs = echoApp().map((i) =>
      i.path === `${SDK}/cli/program.js` || i.path === "node_modules/zod/index.js"
        ? { ...i, imports: [...i.imports, shared] }
        : i,
    );
    inputs.push(input(shared, "const d = __dirname;"));
    expect(judge(inputs)).toBe("node_modules/shared/index.js reads __dirname/__filename");
  });

  it("native addons, WebAssembly and files that are not code", () => {
    expect(judge([...echoApp(), input("node_modules/addon/build/Release/addon.node", undefined)])).toBe(
      "node_modules/addon/build/Release/addon.node is a native or WebAssembly module",
    );
    expect(judge([...echoApp(), input("node_modules/x/x.wasm", undefined)])).toBe(
      "node_modules/x/x.wasm is a native or WebAssembly module",
    );
    expect(judge([...echoApp(), input("node_modules/x/logo.png", undefined)])).toBe(
      "node_modules/x/logo.png is not JavaScript or JSON",
    );
  });

  it("a package the app's code imports without declaring it: the image would not install it", () => {
    const inputs = echoApp();
    inputs.push(input("dist/util.js", "export {};", ["node_modules/left-pad/index.js"], false, ["left-pad"]));
    inputs.push(input("node_modules/left-pad/index.js", "export {};", [], false, ["undeclared-by-the-app"]));
    inputs[0] = { ...(inputs[0] as BundleInput), imports: [...(inputs[0]?.imports ?? []), "dist/util.js"] };
    expect(judge(inputs)).toBe(
      "dist/util.js imports left-pad, which is not among the app's production dependencies",
    );
  });

  it("a second copy of the SDK beside the one the image installs", () => {
    expect(judge([...echoApp(), input("vendor/node_modules/ociapp/dist/application.js", "export {};")])).toBe(
      "the app resolves a second ociapp SDK (vendor/node_modules/ociapp/dist/application.js)",
    );
  });
});

describe("appModules", () => {
  it("follows imports from the entry, stops at the SDK, and survives cycles", () => {
    const inputs = [
      input("a.js", "", ["b.js", "sdk/index.js"]),
      input("b.js", "", ["a.js"]),
      input("sdk/index.js", undefined, ["c.js"], true),
      input("c.js", "", []),
    ];
    expect(appModules(inputs, "a.js").map((i) => i.path)).toEqual(["a.js", "b.js"]);
  });
});

describe("packageName", () => {
  it("names the package a bare specifier imports, and none for a path or a URL", () => {
    expect(packageName("zod")).toBe("zod");
    expect(packageName("zod/mini")).toBe("zod");
    expect(packageName("@opentelemetry/api")).toBe("@opentelemetry/api");
    expect(packageName("@opentelemetry/api/build/x.js")).toBe("@opentelemetry/api");
    for (const path of ["./x.js", "../x.js", "/abs/x.js", "node:fs", "file:///x.js"]) {
      expect(packageName(path)).toBeUndefined();
    }
  });
});
