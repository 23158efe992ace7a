/**
 * The app module a bundled entry carries. ociapp-build can bundle `ociapp serve`, the SDK, the app
 * and its dependencies into one ESM file (Node then loads one module instead of a few hundred at a
 * container's cold start); that file calls `main(argv, { bundledApp })`, and `--app` naming this
 * module takes it from the bundle instead of importing the app's file, which would load a second
 * SDK and a second zod beside the bundled ones.
 */
export interface BundledApp {
  /** the entrypoint's module path as `--app` names it, from the working directory (e.g. "dist/main.js") */
  module: string;
  /** evaluates the bundled module and resolves its namespace (a dynamic import esbuild inlines) */
  load: () => Promise<Record<string, unknown>>;
}

/** How `main()` runs beyond its argv. */
export interface MainOptions {
  /** the app module a bundled entry carries; none by default (the app's file is imported) */
  bundledApp?: BundledApp;
}
