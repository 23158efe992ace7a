import { chmod, chown, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";

/** The socket file the app creates inside its folder (bind-mounted at /run/ociapp). */
export const SOCKET_NAME = "app.sock";

/**
 * Makes one container's socket folder under `parent`. The folder must let the container's numeric
 * user create its socket and no one else in: when the host runs as root it is handed to that user
 * (mode 0700; root reaches it anyway). Otherwise it stays the host user's with mode 0733, so the
 * container user can create the socket but not list the folder.
 */
export async function makeSocketFolder(
  parent: string,
  prefix: string,
  uid: number,
  gid: number,
): Promise<string> {
  const folder = await mkdtemp(join(parent, prefix));
  try {
    if (process.getuid?.() === 0) {
      await chown(folder, uid, gid);
      await chmod(folder, 0o700);
    } else {
      await chmod(folder, 0o733);
    }
  } catch (error) {
    await rm(folder, { recursive: true, force: true });
    throw error;
  }
  return folder;
}

export async function removeSocketFolder(folder: string): Promise<void> {
  await rm(folder, { recursive: true, force: true, maxRetries: 3 });
}
