import { defineConfig } from "vitest/config";

// Workspace packages export their TypeScript sources under the "source" condition, so tests run
// against src/ without a build step. No "module" (a bundlers' condition Node ignores): packages such
// as @opentelemetry/api map it to an ESM build Node cannot load (extensionless imports); tests
// resolve what Node resolves.
const conditions = ["source", "node", "import", "default"];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ["source"] } },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["packages/*/tests/**/*.test.ts", "tests/**/*.test.ts"],
          exclude: [
            "**/*.engine.test.ts",
            "**/*.disruptive.test.ts",
            "**/*.k8s.test.ts",
            "**/node_modules/**",
          ],
          testTimeout: 20_000,
          sequence: { groupOrder: 0 },
        },
      },
      {
        // Tests against the real Docker engine share one daemon: their files run one after another.
        extends: true,
        test: {
          name: "engine",
          include: ["packages/*/tests/**/*.engine.test.ts", "tests/**/*.engine.test.ts"],
          exclude: ["**/node_modules/**"],
          globalSetup: ["tests/engine/global-setup.ts"],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 600_000,
          // An explicit group: vitest runs single-worker projects left at order 0 after every
          // numbered group, which would put them after the disruptive project.
          sequence: { groupOrder: 1 },
        },
      },
      {
        // Tests that take the engine away from everything else (restarting dockerd) run alone, after
        // every other project has finished.
        extends: true,
        test: {
          name: "engine-disruptive",
          include: ["packages/*/tests/**/*.disruptive.test.ts"],
          exclude: ["**/node_modules/**"],
          globalSetup: ["tests/engine/global-setup.ts"],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 600_000,
          sequence: { groupOrder: 2 },
        },
      },
      {
        // The single-node Kubernetes cluster of scripts/k8s.sh (issue 18): one file at a time.
        extends: true,
        test: {
          name: "k8s",
          include: ["tests/k8s/**/*.k8s.test.ts"],
          exclude: ["**/node_modules/**"],
          globalSetup: ["tests/k8s/global-setup.ts"],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 3_600_000,
          sequence: { groupOrder: 3 },
        },
      },
    ],
  },
});
