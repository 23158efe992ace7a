import { chmod, lstat, mkdir, mkdtemp, readdir, rmdir, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { OptionsError } from "../errors.js";

/** The socket the runtime listens on in each container's folder (seen as /run/ociapp/host.sock). */
export const HOST_SOCKET = "host.sock";
/** Where the container sees its folder (a read-only bind mount), and the socket in it. */
export const CONTAINER_FOLDER = "/run/ociapp";
export const CONTAINER_SOCKET = `${CONTAINER_FOLDER}/${HOST_SOCKET}`;

/**
 * The private parent of every runtime folder of this user: `/run/ociapp` for root; else
 * `$XDG_RUNTIME_DIR/ociapp` (the per-user runtime directory of the XDG Base Directory
 * Specification, already 0700 and the user's); else `ociapp-<uid>` in `os.tmpdir()`.
 */
export function defaultRuntimeDir(): string {
  const uid = process.getuid?.() ?? 0;
  if (uid === 0) return "/run/ociapp";
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && isAbsolute(xdg)) return join(xdg, "ociapp");
  return join(tmpdir(), `ociapp-${uid}`);
}

/**
 * Creates `path` (mode 0700) when missing and checks it: a real directory (not a symbolic link),
 * owned by this process's user, with no permission for group or others. Everything the runtime
 * makes lives inside it, so no other local user can reach a socket, swap a folder for a link, or
 * bind a socket first. Throws OptionsError naming the path and what is wrong; it never repairs a
 * folder someone else made (a pre-made `/tmp/ociapp-<uid>` is refused, not trusted).
 */
export async function ensurePrivateDir(path: string): Promise<void> {
  try {
    await mkdir(path, { mode: 0o700 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EEXIST") {
      throw new OptionsError(`Runtime folder ${path} cannot be created: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  const info = await lstat(path);
  const wrong = describeWrong(info);
  if (wrong) throw new OptionsError(`Runtime folder ${path} ${wrong}`);
}

function describeWrong(info: Awaited<ReturnType<typeof lstat>>): string | undefined {
  const uid = process.getuid?.();
  if (info.isSymbolicLink())
    return "is a symbolic link; it must be a directory of this user's with mode 0700";
  if (!info.isDirectory()) return "is not a directory";
  if (uid !== undefined && Number(info.uid) !== uid) {
    return `is owned by uid ${info.uid}, not by this process's uid ${uid}; remove it or choose another socketDir`;
  }
  const mode = Number(info.mode) & 0o777;
  if ((mode & 0o077) !== 0) {
    return `has mode 0${mode.toString(8)}; it must give group and others nothing (chmod 700 it)`;
  }
  return undefined;
}

/**
 * Makes one container's folder in the private parent: `<pid>-<runtime id prefix>-<random>`, mode
 * 0711 (the container's user, whoever it is, may pass through it to the socket; only the parent
 * keeps other host users out). It is bind-mounted read-only, so the container can create, rename,
 * chmod or fill nothing in it.
 */
export async function makeContainerFolder(parent: string, prefix: string): Promise<string> {
  await ensurePrivateDir(parent);
  const folder = await mkdtemp(join(parent, prefix));
  try {
    await chmod(folder, 0o711);
  } catch (error) {
    await rmdir(folder).catch(() => undefined);
    throw error;
  }
  return folder;
}

/**
 * Removes a container folder made by makeContainerFolder: its socket file, then the folder itself.
 * Never recursive and never through a link (lstat first): the folder holds only what the runtime put
 * there, and anything else is left in place rather than followed. Node has no unlinkat(2); what makes
 * path-based removal safe is the parent, which only this user (and root) can change.
 */
export async function removeContainerFolder(folder: string): Promise<void> {
  const info = await lstat(folder).catch(() => undefined);
  if (!info) return;
  if (!info.isDirectory() || info.isSymbolicLink()) {
    await unlink(folder).catch(() => undefined);
    return;
  }
  await unlink(join(folder, HOST_SOCKET)).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
  await rmdir(folder);
}

/** Container folders are named <owner pid>-<runtime id prefix>-<random>. */
const FOLDER = /^(\d+)-[0-9a-f]{8}-[A-Za-z0-9]{6}$/;

/**
 * Removes the folders of runtimes whose process is gone, inside `parent` only (its entries are
 * lstat'd, never followed). Returns how many were removed.
 */
export async function sweepFolders(parent: string, dead: (pid: number) => boolean): Promise<number> {
  const info = await lstat(parent).catch(() => undefined);
  if (!info || describeWrong(info)) return 0;
  let removed = 0;
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const match = FOLDER.exec(name);
    if (!match || !dead(Number(match[1]))) continue;
    await removeContainerFolder(join(parent, name)).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}
