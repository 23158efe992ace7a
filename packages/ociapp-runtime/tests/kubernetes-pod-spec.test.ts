import { describe, expect, it } from "vitest";
import { resolveKubernetesOptions } from "../src/engines/kubernetes/options.js";
import { appPod, isLabel, tmpfsSize } from "../src/engines/kubernetes/pod-spec.js";
import { OptionsError } from "../src/index.js";
import { resolveContainer } from "../src/options/container.js";

// The KubernetesEngine's pure parts: its options (defaults from the downward API, refusals) and the
// pod it makes for an app. Against the real cluster: tests/k8s/ and runtime.engine.test.ts.

const registry = { url: "http://127.0.0.1:5124", pullSecret: "pull" };

describe("KubernetesEngine options", () => {
  it("takes node, namespace and owner from the downward API's variables", () => {
    const resolved = resolveKubernetesOptions(
      { registry },
      {
        OCIAPP_NODE_NAME: "node-1",
        OCIAPP_POD_NAMESPACE: "ociapp",
        OCIAPP_POD_NAME: "agent-x",
        OCIAPP_POD_UID: "u-1",
      },
    );
    expect(resolved).toMatchObject({
      nodeName: "node-1",
      namespace: "ociapp",
      owner: { apiVersion: "v1", kind: "Pod", name: "agent-x", uid: "u-1" },
      registry: { url: "http://127.0.0.1:5124", nodeHost: "127.0.0.1:5124", repository: "ociapp/artifacts" },
      requests: { cpu: "10m", memory: "32Mi" },
      terminationGracePeriodSeconds: 30,
    });
  });

  it("refuses what it cannot work with, naming the option", () => {
    expect(() => resolveKubernetesOptions({ registry }, {})).toThrow(OptionsError);
    expect(() => resolveKubernetesOptions({ registry }, {})).toThrow(/nodeName must name the node/);
    expect(() =>
      resolveKubernetesOptions({ nodeName: "n", registry: { url: "http://registry.example:5000" } }, {}),
    ).toThrow("KubernetesEngine option registry.url must be https://, or http:// on a loopback address");
    expect(() =>
      resolveKubernetesOptions({ nodeName: "n", registry, requests: { cpu: "lots" } }, {}),
    ).toThrow(/requests.cpu must be a quantity/);
  });
});

describe("the app's pod", () => {
  const options = resolveKubernetesOptions(
    { nodeName: "node-1", namespace: "ociapp", owner: null, registry },
    {},
  );
  const input = {
    name: "ociapp-abc-1",
    image: "127.0.0.1:5124/ociapp/artifacts@sha256:" + "a".repeat(64),
    env: { OCIAPP_CONNECT: "/run/ociapp/host.sock" },
    labels: { "dev.ociapp.managed": "true", "dev.ociapp.artifact": `sha256:${"a".repeat(64)}` },
    socketFolder: "/run/ociapp-agent/sockets/abc-1",
    container: resolveContainer(undefined),
    volumes: ["/data"],
  };

  it("maps the Docker defaults to pod settings, pinned to the node", () => {
    const pod = appPod(input, options);
    expect(pod.spec).toMatchObject({
      nodeName: "node-1",
      restartPolicy: "Never",
      automountServiceAccountToken: false,
      shareProcessNamespace: true,
      imagePullSecrets: [{ name: "pull" }],
      securityContext: {
        runAsUser: 10001,
        runAsGroup: 10001,
        runAsNonRoot: true,
        seccompProfile: { type: "RuntimeDefault" },
      },
    });
    const container = pod.spec?.containers[0];
    expect(container?.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    expect(container?.resources).toEqual({
      limits: { memory: String(512 * 1024 * 1024), cpu: "1000m" },
      requests: { cpu: "10m", memory: "32Mi" },
    });
    const mounts = Object.fromEntries((container?.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    expect(mounts["/run/ociapp"]?.readOnly).toBe(true);
    expect(Object.keys(mounts).sort()).toEqual(["/data", "/home/ociapp", "/run/ociapp", "/tmp"]);
    expect(pod.spec?.volumes?.[0]).toEqual({
      name: "ociapp-socket",
      hostPath: { path: "/run/ociapp-agent/sockets/abc-1", type: "Directory" },
    });
  });

  it("keeps runtime labels verbatim as annotations, and as labels only where they are valid ones", () => {
    const pod = appPod(input, options);
    expect(pod.metadata?.annotations).toEqual(input.labels);
    expect(pod.metadata?.labels).toEqual({
      "app.kubernetes.io/managed-by": "ociapp-runtime",
      "dev.ociapp.pod": "app",
      "dev.ociapp.managed": "true",
    });
    expect(isLabel("dev.ociapp.artifact", `sha256:${"a".repeat(64)}`)).toBe(false);
  });

  it("refuses a network mode other than none, and reads tmpfs sizes", () => {
    expect(() =>
      appPod({ ...input, container: resolveContainer({ networkMode: "bridge" }) }, options),
    ).toThrow(/networkMode must be "none" with the KubernetesEngine/);
    expect(tmpfsSize("rw,nosuid,nodev,size=64m", "/tmp")).toBe("64Mi");
    expect(tmpfsSize("size=512k", "/x")).toBe("512Ki");
    expect(tmpfsSize("rw", "/x")).toBe("64Mi");
  });
});
