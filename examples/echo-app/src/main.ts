import { Application, type ExecutionContext } from "ociapp";
import { z } from "zod";

const EchoRequest = z.object({ value: z.string() });
const EchoResponse = z.object({ value: z.string() });

/** Echoes its request back: the smallest useful ociapp application. */
export class EchoApplication extends Application<typeof EchoRequest, typeof EchoResponse> {
  readonly request = EchoRequest;
  readonly response = EchoResponse;
  override readonly name = "echo-app";
  override readonly version = "0.1.0";

  /**
   * Run once per container when the runtime warms it (warm(): a ping with prime): the sample request
   * and its response, which the server runs its request path on (both schemas, not execute), so the
   * first real call finds that path compiled.
   */
  override prime() {
    return { request: { value: "prime" }, response: { value: "prime" } };
  }

  async execute(request: z.infer<typeof EchoRequest>, _context: ExecutionContext) {
    return { value: request.value };
  }
}

export const app = new EchoApplication();
