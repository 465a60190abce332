/** The offline queue: a batch keeps its id across a failed send and an app restart. */
import assert from "node:assert/strict";
import { it } from "node:test";
import { MemoryStorage } from "../src/core/index.js";
import { type SendOutcome, TelemetryQueue } from "../src/core/queue.js";

it("a batch that failed to send is sent again with the same id after a restart, then dropped from the queue", async () => {
  const storage = new MemoryStorage();
  const before = new TelemetryQueue(storage);
  for (let i = 0; i < 3; i++) before.record({ type: "inference", ts: i, model: "m" });
  const sent: string[] = [];
  const send =
    (outcome: SendOutcome) =>
    async (batchId: unknown): Promise<SendOutcome> => {
      sent.push(String(batchId));
      return outcome;
    };
  const failed = await before.flush("dev", send("retry"), send("stored"));
  const after = new TelemetryQueue(storage); // the app was killed and started again
  await after.load();
  const delivered = await after.flush("dev", send("stored"), send("stored"));
  assert.deepEqual([failed.sent, failed.pending, delivered.sent, delivered.pending], [0, 3, 3, 0]);
  assert.deepEqual(sent, ["b-dev-000001", "b-dev-000001"]);
});

it("events the server refuses for good are dropped, not retried forever", async () => {
  const queue = new TelemetryQueue(new MemoryStorage());
  queue.record({ type: "inference", ts: 1, model: "m" });
  const report = await queue.flush(
    "dev",
    async () => "drop",
    async () => "stored",
  );
  assert.deepEqual([report.sent, report.dropped, report.pending], [0, 1, 0]);
});
