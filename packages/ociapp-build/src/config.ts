import { isAbsolute, normalize } from "node:path";
import { quote, RUNTIME_DEFAULTS, type RuntimeDefaults } from "ociapp/artifact";
import { z } from "zod";

/** `<module>#<export>`, the export defaulting to `app` (as `ociapp serve --app` does). */
const ENTRYPOINT = /^(?<module>[^#\s]+?)(?:#(?<export>[A-Za-z_$][\w$]*))?$/;
// Debian package names (policy 5.6.1) with an optional "=version" pin; they reach a RUN line, so
// nothing shell-significant may pass.
const DEBIAN_PACKAGE = /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$/;
// An image reference without whitespace or shell/Containerfile metacharacters.
const IMAGE_REFERENCE = /^[A-Za-z0-9][A-Za-z0-9._\-/:@]*$/;

// Paths in the config reach annotations (shown by `inspect`), buildx arguments and messages: no
// control characters, and no bidi controls that would make a path read as another.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const noControl = (value: string) => !CONTROL.test(value);
const NO_CONTROL = "control characters are not allowed";

const relativeInsideProject = (value: string) => !isAbsolute(value) && !normalize(value).startsWith("..");

const entrypoint = z
  .string()
  .refine(noControl, NO_CONTROL)
  .regex(ENTRYPOINT, 'expected "<module>#<export>", for example "dist/main.js#app"')
  .refine(
    (value) => relativeInsideProject(value.split("#")[0] ?? ""),
    "the module must be a path inside the project",
  );

/** How the app would like to run (see ociapp/artifact's RuntimeDefaults): a runtime only lowers its limits with it. */
const runtimeDefaults = z.strictObject(
  Object.fromEntries(
    Object.entries(RUNTIME_DEFAULTS).map(([key, spec]) => [
      key,
      z.number().int().min(spec.min).max(spec.max).optional(),
    ]),
  ) as Record<keyof RuntimeDefaults, z.ZodOptional<z.ZodNumber>>,
);

const managedConfig = z.strictObject({
  mode: z.literal("managed").optional(),
  entrypoint,
  systemPackages: z.array(z.string().regex(DEBIAN_PACKAGE, "not a Debian package name")).max(256).optional(),
  baseImage: z.string().regex(IMAGE_REFERENCE, "not an image reference").optional(),
  runtime: runtimeDefaults.optional(),
});

const customConfig = z.strictObject({
  mode: z.literal("custom"),
  containerfile: z
    .string()
    .min(1)
    .refine(noControl, NO_CONTROL)
    .refine(relativeInsideProject, "the containerfile must be a path inside the project"),
  /** Optional here: only recorded in the dev.ociapp.entrypoint annotation. */
  entrypoint: entrypoint.optional(),
  baseImage: z.string().regex(IMAGE_REFERENCE, "not an image reference").optional(),
  runtime: runtimeDefaults.optional(),
});

export interface ManagedConfig {
  mode: "managed";
  entrypoint: string;
  systemPackages: string[];
  baseImage?: string;
  /** Runtime defaults the app declares: recorded as `dev.ociapp.runtime.*` manifest annotations. */
  runtime?: RuntimeDefaults;
}

export interface CustomConfig {
  mode: "custom";
  containerfile: string;
  entrypoint?: string;
  baseImage?: string;
  runtime?: RuntimeDefaults;
}

export type OciappConfig = ManagedConfig | CustomConfig;

/** A config error: one line naming the key, ready to be wrapped in a BuildError. */
export class ConfigIssue extends Error {}

/** Validates package.json's "ociapp" value. Throws ConfigIssue naming the offending key. */
export function parseOciappConfig(value: unknown): OciappConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ConfigIssue(`ociapp: expected an object, got ${describe(value)}`);
  }
  const mode = (value as { mode?: unknown }).mode;
  if (mode === "custom") {
    const parsed = customConfig.safeParse(value);
    if (!parsed.success) throw new ConfigIssue(formatIssue(parsed.error.issues[0], value));
    const { entrypoint: ep, baseImage, containerfile, runtime } = parsed.data;
    return {
      mode: "custom",
      containerfile,
      ...(ep === undefined ? {} : { entrypoint: ep }),
      ...(baseImage === undefined ? {} : { baseImage }),
      ...(runtime === undefined ? {} : { runtime: runtime as RuntimeDefaults }),
    };
  }
  if (mode !== undefined && mode !== "managed") {
    throw new ConfigIssue(`ociapp.mode: expected "managed" or "custom", got ${describe(mode)}`);
  }
  const parsed = managedConfig.safeParse(value);
  if (!parsed.success) throw new ConfigIssue(formatIssue(parsed.error.issues[0], value));
  const { entrypoint: ep, systemPackages, baseImage, runtime } = parsed.data;
  return {
    mode: "managed",
    entrypoint: ep,
    systemPackages: systemPackages ?? [],
    ...(baseImage === undefined ? {} : { baseImage }),
    ...(runtime === undefined ? {} : { runtime: runtime as RuntimeDefaults }),
  };
}

/** Splits an entrypoint into the module path and the export name. */
export function splitEntrypoint(value: string): { module: string; exportName: string } {
  const match = ENTRYPOINT.exec(value);
  return { module: match?.groups?.module ?? value, exportName: match?.groups?.export ?? "app" };
}

function formatIssue(issue: z.core.$ZodIssue | undefined, input: unknown): string {
  if (!issue) return "ociapp: invalid configuration";
  const path = [
    "ociapp",
    ...issue.path.map((key) => (typeof key === "number" ? `[${key}]` : `.${String(key)}`)),
  ].join("");
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys.map((key) => quote(key)).join(", ");
    return `${path}: unknown key${issue.keys.length > 1 ? "s" : ""} ${keys}`;
  }
  const actual = valueAt(input, issue.path);
  if (issue.code === "invalid_type") {
    return actual === undefined
      ? `${path}: required (${issue.expected})`
      : `${path}: expected ${issue.expected}, got ${describe(actual)}`;
  }
  return `${path}: ${describe(actual)} is invalid: ${issue.message}`;
}

function valueAt(input: unknown, path: PropertyKey[]): unknown {
  let current = input;
  for (const key of path) {
    if (typeof current !== "object" || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  // Quoted, cut to 80 characters, control characters escaped: the value is the project's.
  if (typeof value === "string") return quote(value);
  if (typeof value === "object") return "an object";
  return `${typeof value} ${String(value)}`;
}
