/**
 * Settles with the promise's value, or with "timeout" after `ms`. The timer is cleared as soon as
 * either settles, so nothing is left behind; `unref` makes it not keep the process alive.
 */
export function within<T>(promise: Promise<T>, ms: number, unref = false): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(resolve, Math.max(0, ms), "timeout");
    if (unref) timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
