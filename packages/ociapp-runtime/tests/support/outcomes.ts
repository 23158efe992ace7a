/** What the fixture app answers: the value, and which container (hostname) and process served it. */
export interface Reply {
  value: unknown;
  host: string;
  pid: number;
}

/** The error a promise rejects with; fails the test if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}
