/**
 * The server cases again, on PostgreSQL: when POCKETML_TEST_DATABASE_URL is set (as .ci/run
 * sets it), conformance-server.test.ts runs in this process against a server on a fresh
 * PostgreSQL database. Unset, this file runs nothing and says so.
 */
import { it } from "node:test";

if (process.env.POCKETML_TEST_DATABASE_URL) {
  process.env.POCKETML_TS_DATABASE = "postgresql";
  await import("./conformance-server.test.js");
} else {
  it("server cases on PostgreSQL", { skip: "POCKETML_TEST_DATABASE_URL is not set" }, () => {});
}
