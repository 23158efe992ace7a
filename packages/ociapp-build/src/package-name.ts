/**
 * The app's package.json `name` and `version` become a file name (`<name>-<version>.ociapp`, in the
 * output folder), a buildx `--output dest=...` field (a CSV record: a newline there ended the record,
 * and buildx overwrote whatever file the name's first line named), an image reference and two
 * annotations. So both are checked before anything is built, against npm's own rules.
 */

/** npm refuses longer names for new packages (validate-npm-package-name). */
export const MAX_NAME_LENGTH = 214;
/** node-semver's MAX_LENGTH: longer strings are never versions. */
export const MAX_VERSION_LENGTH = 256;
/**
 * The longest artifact file name: a file name has at most 255 bytes (NAME_MAX on Linux, macOS and
 * the BSDs) and the temporary file beside it adds ".tmp-<pid, at most 7 digits>-<8 hex digits>".
 */
export const MAX_ARTIFACT_FILE_NAME = 255 - ".tmp-4194304-00000000".length;

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const SPACE_OR_CONTROL = /[\s\u0000-\u001f\u007f-\u009f]/;
/** encodeURIComponent leaves these as they are: npm's "URL-friendly characters", lowercase. */
const URL_SAFE = /^[a-z0-9\-._~!'()*]+$/;
/** The package part of a new package's name: URL-safe without ~'!()* (npm: "special characters"). */
const PACKAGE_PART = /^[a-z0-9\-._]+$/;
const RESERVED = new Set(["node_modules", "favicon.ico"]);

/**
 * Why `name` is not a valid npm package name for a new package, or undefined when it is. The rules
 * are npm's (validate-npm-package-name 6, `validForNewPackages`, https://docs.npmjs.com/cli/configuring-npm/package-json#name):
 * at most 214 characters; lowercase; URL-safe characters only (a-z, 0-9, `-`, `.`, `_`, and in a
 * scope also `~'!()*`), with an optional `@scope/` prefix; no leading `.`, `-` or `_` (nor a `.` at
 * the start of the package part); not `node_modules` or `favicon.ico`. Two deviations: a name that is
 * a Node core module's (`http`) is accepted, since npm only warns and a file name does not care, and
 * a scope may not start with `.` either (npm allows `@.x/y`, which would make a hidden file).
 */
export function npmNameProblem(name: string): string | undefined {
  if (name.length === 0) return "it is empty";
  if (SPACE_OR_CONTROL.test(name)) return "it holds a space or a control character";
  if (name.length > MAX_NAME_LENGTH) {
    return `it is ${name.length} characters long, over npm's ${MAX_NAME_LENGTH}`;
  }
  if (name !== name.toLowerCase()) return "it has uppercase letters (npm names are lowercase)";
  if (/^[.\-_]/.test(name)) return `it starts with "${name[0]}"`;
  if (RESERVED.has(name)) return "npm reserves it";
  let scope: string | undefined;
  let pkg = name;
  if (name.startsWith("@")) {
    const match = /^@([^/]+)\/([^/]+)$/.exec(name);
    if (!match) return 'a scoped name is "@scope/name", with one "/"';
    [, scope = "", pkg = ""] = match;
    if (/^[.]/.test(scope)) return 'its scope starts with "."';
    if (/^[.]/.test(pkg)) return 'its package part starts with "."';
  }
  if ((scope !== undefined && !URL_SAFE.test(scope)) || !PACKAGE_PART.test(pkg)) {
    return 'it holds characters npm does not allow (a-z, 0-9, "-", "." and "_", after an optional "@scope/")';
  }
  return undefined;
}

/**
 * Why `name` cannot be a dependency's name, or undefined: npm's rules for existing packages
 * (validate-npm-package-name's `validForOldPackages`), which still allow uppercase letters, long names
 * and `~'!()*` (dependencies can be old packages). What matters here: a dependency's name is looked up
 * as node_modules/<name>, so "../x" or an absolute path must not pass.
 */
export function dependencyNameProblem(name: string): string | undefined {
  if (name.length === 0) return "it is empty";
  if (SPACE_OR_CONTROL.test(name)) return "it holds a space or a control character";
  if (/^[.\-_]/.test(name)) return `it starts with "${name[0]}"`;
  if (RESERVED.has(name.toLowerCase())) return "npm reserves it";
  const match = /^(?:@([^/]+)\/)?([^/]+)$/.exec(name);
  const [, scope, pkg = ""] = match ?? [];
  const urlSafe = (part: string) => encodeURIComponent(part) === part;
  if (!match || (scope !== undefined && !urlSafe(scope)) || !urlSafe(pkg) || pkg.startsWith(".")) {
    return "it is not a package name npm allows";
  }
  return undefined;
}

// semver.org's regular expression for SemVer 2.0.0, as node-semver's strict FULL form.
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/**
 * Why `version` is not a SemVer 2.0.0 version (https://semver.org), or undefined: what npm requires
 * of package.json's version (`npm pack` and `npm publish` refuse others). Strict: no leading "v" or
 * "=", at most 256 characters, major, minor and patch within Number.MAX_SAFE_INTEGER (node-semver's
 * limits). Build metadata ("+sha.5") is allowed: it becomes part of the file name.
 */
export function semverProblem(version: string): string | undefined {
  if (version.length > MAX_VERSION_LENGTH) {
    return `it is ${version.length} characters long, over semver's ${MAX_VERSION_LENGTH}`;
  }
  const match = SEMVER.exec(version);
  if (!match) return 'it is not a semver version such as "1.2.3" or "1.2.3-rc.1"';
  if (match.slice(1, 4).some((part) => !Number.isSafeInteger(Number(part)))) {
    return "a number in it is too large";
  }
  return undefined;
}
