import type Dockerode from "dockerode";
import { unref } from "./streams.js";

/**
 * Arms `POST /containers/{id}/wait?condition=next-exit` before start. Resolves (once the engine has
 * registered the wait and sent its headers) with `exited`, a promise of the exit code: the StatusCode
 * of the answer, or null when the engine went away mid-wait. (Wrapped in an object: a promise resolved
 * with a promise would wait for the exit.) Source: Docker Engine API, ContainerWait.
 */
export function armWait(docker: Dockerode, id: string): Promise<{ exited: Promise<number | null> }> {
  return new Promise((armed, failed) => {
    docker.modem.dial(
      {
        path: `/containers/${id}/wait?`,
        method: "POST",
        isStream: true,
        statusCodes: { 200: true, 400: "bad parameter", 404: "no such container", 500: "server error" },
        options: { condition: "next-exit" },
      },
      (error: unknown, result: unknown) => {
        if (error) {
          failed(error);
          return;
        }
        const response = result as NodeJS.ReadableStream;
        unref(response);
        armed({
          exited: new Promise<number | null>((settle) => {
            let body = "";
            response.on("data", (chunk: Buffer) => {
              if (body.length < 64 * 1024) body += chunk.toString();
            });
            const finish = () => {
              try {
                const parsed = JSON.parse(body) as { StatusCode?: number };
                settle(typeof parsed.StatusCode === "number" ? parsed.StatusCode : null);
              } catch {
                // The engine went away mid-wait: the exit code is unknown.
                settle(null);
              }
            };
            response.on("end", finish);
            response.on("error", finish);
            response.on("close", finish);
          }),
        });
      },
    );
  });
}
