import { fileURLToPath } from "node:url";

const here = (relative: string) => fileURLToPath(new URL(relative, import.meta.url));

export const REPO_ROOT = here("../../../../");
export const SDK_DIR = here("../../../ociapp/");
export const ECHO_APP = here("../../../../examples/echo-app/");
export const FIXTURES = here("../fixtures/");
export const CLI_ENTRY = here("./cli-entry.ts");
