/**
 * The offline telemetry and feedback queue. Events are appended in memory (a prediction
 * must not wait for storage) and the queue file is written at every sync and flush, and
 * at most every `saveEveryMs` while predictions are recorded (writing it per event made a
 * local prediction ten times slower than the model); call `Device.save()` when the app
 * goes to the background. A batch gets its id **before** it is sent and keeps it until the
 * server answers, so a retry after a lost answer (or an app restart) is stored once
 * (`POST /v1/telemetry` is idempotent per batch id).
 */
import type { Storage } from "./storage.js";
import { readJsonFile, writeJsonFile } from "./storage.js";

export type TelemetryEvent = Record<string, unknown> & { type: string; ts: number; model: string };
export type FeedbackBody = Record<string, unknown> & { prediction_id: string; model: string };

interface QueueFile {
  pending: TelemetryEvent[];
  inflight: { batch_id: string; events: TelemetryEvent[] } | null;
  counter: number;
  feedback: FeedbackBody[];
  dropped: number;
  /** Open sketch windows (`Sketcher.openWindows`) and epsilon spent per UTC day; absent in older files. */
  windows?: unknown[];
  privacy?: Record<string, number>;
}

/** What a send returned: stored (or already stored), refused for good (drop), or retry later. */
export type SendOutcome = "stored" | "drop" | "retry";

export interface FlushReport {
  /** Events the server acknowledged in this flush. */
  sent: number;
  /** Events still queued (non-zero when the flush stopped on a retryable error). */
  pending: number;
  feedbackSent: number;
  /** Events the server refused for good (dropped, never retried). */
  dropped: number;
}

export class TelemetryQueue {
  private state: QueueFile = { pending: [], inflight: null, counter: 0, feedback: [], dropped: 0 };
  private savedAt = Date.now();
  /** Bumped by `clear()`: a flush that was sending when the queue was cleared stops there. */
  private epoch = 0;
  /** Flushes run one after another (two at once could clear each other's in-flight batch). */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly storage: Storage,
    private readonly path = "telemetry.json",
    private readonly maxEvents = 10_000,
    private readonly saveEveryMs = 5_000,
  ) {}

  async load(): Promise<void> {
    const saved = await readJsonFile<QueueFile>(this.storage, this.path);
    if (saved !== null && Array.isArray(saved.pending)) this.state = { ...this.state, ...saved };
  }

  get pending(): number {
    return this.state.pending.length + (this.state.inflight?.events.length ?? 0);
  }

  /** Queue one event; the oldest are dropped beyond `maxEvents` (a device offline for long). */
  record(event: TelemetryEvent): void {
    const pending = this.state.pending;
    pending.push(event);
    if (pending.length > this.maxEvents) {
      const excess = pending.length - this.maxEvents + Math.ceil(this.maxEvents / 10); // drop in chunks: O(1) amortised
      pending.splice(0, excess);
      this.state.dropped += excess;
    }
    // A failed periodic save (a full disk) must not become an unhandled rejection that
    // ends the app: the events stay in memory and the next save or flush tries again.
    if (Date.now() - this.savedAt >= this.saveEveryMs) this.save().catch(() => undefined);
  }

  addFeedback(body: FeedbackBody): void {
    this.state.feedback.push(body);
  }

  /**
   * Delete every queued event and feedback (`forgetMe`), in place: the batch counter, the day's
   * spent epsilon and the open sketch windows stay (a reset budget would let the same day
   * spend again). A flush in progress stops at its next step and sends nothing more.
   * @returns how many events and feedback bodies were deleted.
   */
  clear(): { events: number; feedback: number } {
    const deleted = { events: this.pending, feedback: this.state.feedback.length };
    this.state.pending = [];
    this.state.inflight = null;
    this.state.feedback = [];
    this.epoch += 1;
    return deleted;
  }

  async save(): Promise<void> {
    this.savedAt = Date.now();
    if (this.windowSource !== null) this.state.windows = this.windowSource();
    await writeJsonFile(this.storage, this.path, this.state);
  }

  // -- sketches: open windows and the DP budget live in the queue file, saved with the events

  /** Gives the open sketch windows to write at every save. */
  windowSource: (() => unknown[]) | null = null;

  /** The open sketch windows the file held when loaded. */
  get windows(): unknown[] {
    return Array.isArray(this.state.windows) ? this.state.windows : [];
  }

  /** Spend `epsilon` of UTC `day` when the day's total stays within `budget` (kept 7 days). */
  spendPrivacy(day: number, epsilon: number, budget: number): boolean {
    const privacy = typeof this.state.privacy === "object" && this.state.privacy !== null ? this.state.privacy : {};
    const spent = (privacy[String(day)] ?? 0) + epsilon;
    if (spent > budget * (1 + 1e-9)) return false;
    const kept = Object.entries(privacy).filter(([d]) => Number(d) > day - 7);
    this.state.privacy = { ...Object.fromEntries(kept), [String(day)]: spent };
    return true;
  }

  /** Send everything: batches of at most `batchSize` events, then feedback (one flush at a time). */
  flush(
    deviceId: string,
    sendBatch: (batchId: string, events: TelemetryEvent[]) => Promise<SendOutcome>,
    sendFeedback: (body: FeedbackBody) => Promise<SendOutcome>,
    batchSize = 500,
  ): Promise<FlushReport> {
    const run = this.tail.then(() => this.flushOnce(deviceId, sendBatch, sendFeedback, batchSize));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async flushOnce(
    deviceId: string,
    sendBatch: (batchId: string, events: TelemetryEvent[]) => Promise<SendOutcome>,
    sendFeedback: (body: FeedbackBody) => Promise<SendOutcome>,
    batchSize: number,
  ): Promise<FlushReport> {
    let sent = 0;
    let feedbackSent = 0;
    const droppedBefore = this.state.dropped;
    const epoch = this.epoch;
    const report = (): FlushReport => ({
      sent,
      pending: this.pending,
      feedbackSent,
      dropped: Math.max(0, this.state.dropped - droppedBefore),
    });
    for (;;) {
      if (this.state.inflight === null) {
        if (this.state.pending.length === 0) break;
        this.state.counter += 1;
        const batchId = `b-${deviceId}-${String(this.state.counter).padStart(6, "0")}`;
        this.state.inflight = { batch_id: batchId, events: this.state.pending.splice(0, batchSize) };
        await this.save(); // the id is on storage before the first byte is sent
        if (this.epoch !== epoch) return report(); // cleared meanwhile (forgetMe): send nothing
      }
      const batch = this.state.inflight;
      const outcome = await sendBatch(batch.batch_id, batch.events);
      if (this.epoch !== epoch) return report();
      if (outcome === "retry") break;
      if (outcome === "stored") sent += batch.events.length;
      else this.state.dropped += batch.events.length;
      this.state.inflight = null;
      await this.save();
      if (this.epoch !== epoch) return report();
    }
    while (this.state.inflight === null && this.state.feedback.length > 0) {
      const outcome = await sendFeedback(this.state.feedback[0] as FeedbackBody);
      if (this.epoch !== epoch) return report();
      if (outcome === "retry") break;
      if (outcome === "stored") feedbackSent += 1;
      this.state.feedback.shift();
      await this.save();
      if (this.epoch !== epoch) return report();
    }
    await this.save();
    return report();
  }
}
