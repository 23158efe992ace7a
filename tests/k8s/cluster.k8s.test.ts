import { afterAll, describe, expect, it } from "vitest";
import { kubectl, kubectlJson } from "./kubectl.js";

// Step 1 of issue 18: the cluster of scripts/k8s.sh is real. Its node is Ready, and a pod of an
// image that was imported from Docker (nothing can be pulled here) runs to completion on it.

const NODE_MAJOR = process.versions.node.split(".")[0];
const IMAGE = process.env.OCIAPP_BASE_IMAGE ?? `node:${NODE_MAJOR}-bookworm-slim`;

interface Condition {
  type: string;
  status: string;
}
interface NodeList {
  items: {
    metadata: { name: string };
    status: { conditions: Condition[]; nodeInfo: { kubeletVersion: string } };
  }[];
}
interface Pod {
  spec: { nodeName?: string };
  status: {
    phase: string;
    containerStatuses?: { state: { terminated?: { exitCode: number; reason: string } } }[];
  };
}
interface EventList {
  items: { reason: string; message: string }[];
}

describe("single-node Kubernetes cluster", () => {
  const pod = `hello-${process.pid}`;

  afterAll(async () => {
    await kubectl(["delete", "pod", pod, "--ignore-not-found", "--wait=true", "--timeout=60s"]);
  });

  it("has exactly one node, and it is Ready", async () => {
    const nodes = await kubectlJson<NodeList>(["get", "nodes"]);
    expect(nodes.items).toHaveLength(1);
    const node = nodes.items[0]!;
    const ready = node.status.conditions.find((c) => c.type === "Ready");
    expect(ready?.status).toBe("True");
    const server = JSON.parse(await kubectl(["version", "-o", "json"])) as {
      serverVersion: { gitVersion: string };
    };
    expect(node.status.nodeInfo.kubeletVersion).toBe(server.serverVersion.gitVersion);
  });

  it("runs a pod of a locally imported image to completion, and its log says so", async () => {
    const manifest = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: pod, labels: { "app.kubernetes.io/part-of": "ociapp-tests" } },
      spec: {
        restartPolicy: "Never",
        dnsPolicy: "Default",
        automountServiceAccountToken: false,
        containers: [
          {
            name: "hello",
            image: IMAGE,
            imagePullPolicy: "Never",
            command: ["node", "-e", 'console.log("hello from k8s")'],
          },
        ],
      },
    };
    await kubectl(["apply", "-f", "-"], { input: JSON.stringify(manifest) });
    await kubectl(["wait", `pod/${pod}`, "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s"]);

    const status = await kubectlJson<Pod>(["get", "pod", pod]);
    expect(status.status.phase).toBe("Succeeded");
    expect(status.status.containerStatuses?.[0]?.state.terminated).toMatchObject({
      exitCode: 0,
      reason: "Completed",
    });
    const nodes = await kubectlJson<NodeList>(["get", "nodes"]);
    expect(status.spec.nodeName).toBe(nodes.items[0]?.metadata.name);

    expect((await kubectl(["logs", pod])).trim()).toBe("hello from k8s");

    // The image came from the node's own store: the kubelet never tried to pull it.
    const events = await kubectlJson<EventList>([
      "get",
      "events",
      "--field-selector",
      `involvedObject.name=${pod}`,
    ]);
    const reasons = events.items.map((e) => e.reason);
    expect(reasons).not.toContain("Pulling");
    expect(
      events.items.some((e) => e.reason === "Pulled" && /already present on machine/.test(e.message)),
    ).toBe(true);
  });
});
