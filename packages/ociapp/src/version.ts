/** The SDK version; kept equal to package.json by the test in tests/server.test.ts. */
export const VERSION = "0.2.0";
