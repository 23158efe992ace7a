import { describe, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { Application, type ExecutionContext, type PrimeSample } from "../src/index.js";

// The app code of the issue, verbatim: it must type-check and run.
const EchoRequest = z.object({ value: z.string() });
const EchoResponse = z.object({ value: z.string() });
export class EchoApplication extends Application<typeof EchoRequest, typeof EchoResponse> {
  readonly request = EchoRequest;
  readonly response = EchoResponse;
  async execute(request: z.infer<typeof EchoRequest>, _context: ExecutionContext) {
    return { value: request.value };
  }
}

describe("Application types", () => {
  it("types execute from the schemas", () => {
    const app = new EchoApplication();
    expectTypeOf<
      Parameters<Application<typeof EchoRequest, typeof EchoResponse>["execute"]>[0]
    >().toEqualTypeOf<{
      value: string;
    }>();
    expectTypeOf<ExecutionContext>().toEqualTypeOf<{
      readonly requestId: string;
      readonly signal: AbortSignal;
      readonly trace?: { traceparent: string; tracestate?: string } | undefined;
    }>();
    expectTypeOf(app.execute).returns.resolves.toEqualTypeOf<{ value: string }>();
  });

  it("takes an optional prime hook, sync or async, and an errorStacks flag", () => {
    class Primed extends EchoApplication {
      override readonly errorStacks = true;
      override async prime() {
        await this.request.parseAsync({ value: "warm" });
      }
    }
    class SyncPrimed extends EchoApplication {
      override prime(): void {}
    }
    expectTypeOf<Primed["prime"]>().toEqualTypeOf<() => Promise<void>>();
    expectTypeOf<SyncPrimed["prime"]>().toEqualTypeOf<() => void>();
    class SamplePrimed extends EchoApplication {
      override prime() {
        return { request: { value: "prime" }, response: { value: "prime" } };
      }
    }
    class WrongSample extends EchoApplication {
      // @ts-expect-error the sample must fit the schemas' input types
      override prime() {
        return { request: { value: 1 }, response: { value: "prime" } };
      }
    }
    type Sample = PrimeSample<typeof EchoRequest, typeof EchoResponse>;
    expectTypeOf<SamplePrimed["prime"]>().returns.toExtend<Sample>();
    expectTypeOf<WrongSample>().not.toBeAny();
    expectTypeOf<EchoApplication["prime"]>().toEqualTypeOf<
      // biome-ignore lint/suspicious/noConfusingVoidType: a hook with no return statement returns void (Promise<void> when async), which undefined would refuse.
      (() => void | Sample | Promise<void | Sample>) | undefined
    >();
    expectTypeOf<EchoApplication["errorStacks"]>().toEqualTypeOf<boolean | undefined>();
  });

  it("rejects an execute whose result does not fit the response schema", () => {
    const Numbers = z.object({ n: z.number() });
    class Wrong extends Application<typeof Numbers, typeof Numbers> {
      readonly request = Numbers;
      readonly response = Numbers;
      // @ts-expect-error: a string where the response schema wants a number
      execute() {
        return { n: "one" };
      }
    }
    expectTypeOf<Wrong>().toHaveProperty("execute");
  });
});
