import { randomBytes } from "node:crypto";
import { ArtifactError, EngineUnavailableError } from "../../errors.js";
import type { ResolvedContainerOptions } from "../../options/container.js";
import type { ResolvedKubernetesOptions } from "./options.js";
import { probePod } from "./pod-spec.js";
import { pastPending, progressOf, whenRecord } from "./pod-status.js";
import type { PodInformer } from "./pod-watch.js";
import type { PodClient } from "./pods.js";

/** The container options of a pull probe: it runs nothing, but is confined like an app anyway. */
const PROBE_CONTAINER: ResolvedContainerOptions = {
  user: "65534:65534",
  uid: 65534,
  gid: 65534,
  networkMode: "none",
  readonlyRootfs: true,
  tmpfs: {},
  capDrop: ["ALL"],
  noNewPrivileges: true,
  init: false,
  memory: 16 * 1024 * 1024,
  nanoCpus: 100_000_000,
  pidsLimit: 16,
  logMaxSize: "1m",
  allowRoot: false,
  runtime: "runc",
};

/**
 * Makes the node pull `reference` now: a pod of the image whose command does not exist, so the
 * kubelet pulls the image (imagePullPolicy IfNotPresent: at once when the node has it) and then
 * fails to start it, running nothing of it. Resolves once the state is past the pull; a pull the
 * node refuses (ErrImagePull, ImagePullBackOff, ...) is ArtifactError with the kubelet's reason, as
 * is a pull not done within `pullTimeout`; `signal` (the runtime closing) rejects with its reason.
 * The probe pod is deleted either way.
 */
export async function pullOnNode(
  pods: PodClient,
  informer: PodInformer,
  options: ResolvedKubernetesOptions,
  input: { path: string; digest: string; reference: string; signal?: AbortSignal },
): Promise<void> {
  const name = `ociapp-pull-${input.digest.slice(7, 19)}-${randomBytes(3).toString("hex")}`;
  const record = await informer.track(name);
  // A ref'd timer (AbortSignal.timeout's is not): a process waiting for a load stays alive, as it
  // does while DockerEngine streams one; the watch that reports the pull is unref'd.
  const bound = new AbortController();
  const timer = setTimeout(() => bound.abort(), options.pullTimeout);
  const signal = input.signal ? AbortSignal.any([input.signal, bound.signal]) : bound.signal;
  try {
    await pods.create(probePod(name, input.reference, options, PROBE_CONTAINER), signal);
    const outcome = await whenRecord(record, (r) => pastPending(progressOf(r)), signal).catch(
      () => undefined,
    );
    input.signal?.throwIfAborted();
    if (!outcome) {
      throw new ArtifactError(
        input.path,
        `the node ${options.nodeName} did not pull ${input.reference} within ${options.pullTimeout} ms`,
      );
    }
    if (outcome.kind === "pull-failed") {
      throw new ArtifactError(
        input.path,
        `the node ${options.nodeName} cannot pull ${input.reference}: ${outcome.message}`,
      );
    }
    if (outcome.kind === "gone")
      throw new EngineUnavailableError(`the pull probe pod ${name} was deleted by someone else`);
  } finally {
    clearTimeout(timer);
    informer.forget(name);
    await pods.delete(name, 0).catch(() => undefined);
  }
}
