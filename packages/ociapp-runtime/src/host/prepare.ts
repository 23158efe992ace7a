import type { Engine } from "../engines/engine.js";
import { engineCall } from "../util/bounded.js";
import { within } from "../util/timers.js";
import { ownIdentity } from "./owner.js";
import { removeOwnerRecord, writeOwnerRecord } from "./runtime-dir.js";
import { sweepOrphans } from "./sweep.js";

/** What HostPreparation needs of the Runtime's resolved options. */
export interface PrepareOptions {
  socketDir: string;
  /** The OCI runtime containers run under ("runc" needs no check). */
  ociRuntime: string;
  /** Bound on the runtime check and the sweep, ms. */
  startupTimeout: number;
}

/**
 * What a Runtime does once before its first container: checks that the engine has the OCI runtime
 * asked for, removes what dead runtimes of this host left behind (containers and folders; best
 * effort, bounded by startupTimeout: a failure here never fails a call), then records itself as the
 * owner of its own folders. A failure (the runtime check; a socketDir that is not private: an
 * OptionsError) is not kept: the next start asks again.
 */
export class HostPreparation {
  private done: Promise<void> | undefined;

  /** `short`: the runtime's short id, the prefix of its folders and the name of its owner record. */
  constructor(
    private readonly engine: Engine,
    private readonly options: PrepareOptions,
    private readonly short: string,
  ) {}

  /** Resolves once the host is prepared; shared by every start that waits on it. */
  run(): Promise<void> {
    if (!this.done) {
      const { socketDir, ociRuntime, startupTimeout } = this.options;
      // Bounded: a wedged engine's list must not hold every first start.
      const sweep = sweepOrphans(this.engine, socketDir).then(
        () => undefined,
        () => undefined,
      );
      const checked =
        ociRuntime === "runc"
          ? Promise.resolve()
          : engineCall(
              (signal) => this.engine.checkRuntime(ociRuntime, signal),
              startupTimeout,
              `say whether it has the OCI runtime ${ociRuntime}`,
            );
      const done = checked
        .then(() => within(sweep, startupTimeout))
        .then(() => writeOwnerRecord(socketDir, this.short, ownIdentity()));
      this.done = done;
      done.catch(() => {
        if (this.done === done) this.done = undefined;
      });
    }
    return this.done;
  }

  /** Removes the owner record when one may have been written (at close, after the containers). */
  async release(): Promise<void> {
    if (this.done) await removeOwnerRecord(this.options.socketDir, this.short);
  }
}
