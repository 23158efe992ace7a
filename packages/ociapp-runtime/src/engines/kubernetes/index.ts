/**
 * `ociapp-runtime/kubernetes`: the KubernetesEngine, a runtime Engine whose containers are pods on
 * the agent's own node (see the package README, "Kubernetes"). A subpath of its own, so that
 * `import "ociapp-runtime"` never loads `@kubernetes/client-node`.
 */
export { KubernetesEngine } from "./kubernetes-engine.js";
export type { KubernetesEngineOptions, KubernetesOwner, KubernetesRegistryOptions } from "./options.js";
