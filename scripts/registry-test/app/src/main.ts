// An app as a user writes it: a fresh npm project outside the workspace, the SDK and zod from the
// registry, compiled by its own `build` script (tsc, strict, no skipLibCheck).
import { Application, type ExecutionContext } from "ociapp";
import { z } from "zod";

const Request = z.object({ value: z.string() });
const Response = z.object({ value: z.string(), node: z.string() });

export class CheckApplication extends Application<typeof Request, typeof Response> {
  readonly request = Request;
  readonly response = Response;

  async execute(request: z.infer<typeof Request>, context: ExecutionContext) {
    context.signal.throwIfAborted();
    return { value: request.value, node: process.version };
  }
}

export const app = new CheckApplication();
