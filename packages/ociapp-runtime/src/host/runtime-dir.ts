import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rmdir,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { OptionsError } from "../errors.js";
import { type OwnerIdentity, parseOwner } from "./owner.js";

/** The socket the runtime listens on in each container's folder (seen as /run/ociapp/host.sock). */
export const HOST_SOCKET = "host.sock";
/** Where the container sees its folder (a read-only bind mount), and the socket in it. */
export const CONTAINER_FOLDER = "/run/ociapp";
export const CONTAINER_SOCKET = `${CONTAINER_FOLDER}/${HOST_SOCKET}`;
/** The app's HOME in the container: a tmpfs of its own, writable on a read-only root. */
export const HOME_DIR = "/home/ociapp";
/** Its mount options: 16 MiB, inside the container's memory limit (tmpfs pages are charged to it). */
export const HOME_TMPFS = "rw,nosuid,nodev,size=16m";

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
 * Makes one container's folder in the private parent: `<runtime id prefix>-<random>`, mode
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

/** A runtime's record of its owner, beside its folders: `<runtime id prefix>.owner`. */
const RECORD = /^([0-9a-f]{12})\.owner$/;
/** Container folders are named <runtime id prefix>-<random>. */
const FOLDER = /^([0-9a-f]{12})-[A-Za-z0-9]{6}$/;
/** An owner record is one short JSON line; anything longer is not one of ours. */
const MAX_RECORD_BYTES = 1024;

/**
 * Writes `<prefix>.owner` in the private parent: who owns the folders named `<prefix>-*` (the
 * runtime's process, see owner.ts), so a later runtime can prove them orphaned. Replaced atomically.
 */
export async function writeOwnerRecord(parent: string, prefix: string, owner: OwnerIdentity): Promise<void> {
  await ensurePrivateDir(parent);
  const path = join(parent, `${prefix}.owner`);
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(owner)}\n`, { mode: 0o600, flag: "wx" });
  await rename(temporary, path);
}

/** Removes the runtime's own record (close()). */
export async function removeOwnerRecord(parent: string, prefix: string): Promise<void> {
  await unlink(join(parent, `${prefix}.owner`)).catch(() => undefined);
}

/**
 * Removes the folders of runtimes whose owner record provably names a dead process (`dead`), and
 * those records, inside `parent` only (entries lstat'd, never followed; records read only when they
 * are small regular files). Returns how many folders were removed.
 */
export async function sweepFolders(parent: string, dead: (owner: OwnerIdentity) => boolean): Promise<number> {
  const info = await lstat(parent).catch(() => undefined);
  if (!info || describeWrong(info)) return 0;
  const names = await readdir(parent).catch(() => [] as string[]);
  let removed = 0;
  for (const name of names) {
    const record = RECORD.exec(name);
    if (!record) continue;
    const owner = await readOwnerRecord(join(parent, name));
    if (!owner || !dead(owner)) continue;
    const prefix = record[1] as string;
    for (const folder of names) {
      if (FOLDER.exec(folder)?.[1] !== prefix) continue;
      await removeContainerFolder(join(parent, folder)).then(
        () => removed++,
        () => undefined,
      );
    }
    await unlink(join(parent, name)).catch(() => undefined);
  }
  return removed;
}

async function readOwnerRecord(path: string): Promise<OwnerIdentity | undefined> {
  const info = await lstat(path).catch(() => undefined);
  if (!info?.isFile() || info.size > MAX_RECORD_BYTES) return undefined;
  try {
    const value = JSON.parse(await readFile(path, "utf8")) as Partial<OwnerIdentity>;
    return parseOwner(`${value.boot}/${value.pidns}/${value.pid}/${value.start}`);
  } catch {
    return undefined;
  }
}
