/**
 * @pocketml/device/web: the browser adapters. `IndexedDBStorage` keeps the SDK's files in
 * IndexedDB, so an installed model, a half-finished download and the telemetry queue survive
 * a reload (`MemoryStorage` keeps nothing); pair it with `ortRuntime(onnxruntime-web)`.
 *
 * ```ts
 * import * as ort from "onnxruntime-web";
 * import { Device, IndexedDBStorage, ortRuntime } from "@pocketml/device/web";
 * const storage = await IndexedDBStorage.open();
 * const runtime = ortRuntime(ort, { loadFrom: "bytes", formats: ["onnx"] });
 * const device = await Device.open({ serverUrl: location.origin, deviceKey, facts, storage, runtime });
 * ```
 */
import { PocketMLError, type Storage } from "../core/index.js";

export * from "../core/index.js";

/**
 * A file is kept as parts, so an append (a download chunk) writes only its own bytes:
 * `[path, -1]` holds `{ size, parts }`, `[path, i]` part i. Every operation is one
 * IndexedDB transaction, so a reader sees a file's old bytes or its new ones, never a mix,
 * and a tab closed mid-write leaves the previous state.
 */
interface Meta {
  size: number;
  parts: number;
}

const META = -1;

function done(request: IDBRequest): Promise<unknown> {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function finished(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    tx.onerror = () => reject(tx.error);
  });
}

/**
 * Hold the Web Lock `name` until the returned function is called; it resolves once the lock
 * is released (no Web Locks in this browser: no lock).
 */
async function holdLock(name: string): Promise<() => Promise<void>> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (locks === undefined) return async () => undefined;
  let unlock: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    unlock = resolve;
  });
  let finished: Promise<unknown> = Promise.resolve();
  const granted = await new Promise<boolean>((answer) => {
    finished = locks
      .request(name, { ifAvailable: true }, (lock) => {
        answer(lock !== null);
        return lock === null ? undefined : held;
      })
      .catch(() => answer(false));
  });
  const release = async () => {
    unlock();
    await finished; // the request settles once the lock manager has let go
  };
  if (!granted) {
    throw new PocketMLError(
      "conflict",
      `another tab of this site already runs this pocketml device (${name}): use one tab, close the other, or open another database name`,
    );
  }
  return release;
}

/** Every key of one file: its meta record and its parts. */
function fileRange(path: string): IDBKeyRange {
  return IDBKeyRange.bound([path, META], [path, Number.MAX_SAFE_INTEGER]);
}

/** Every key of the files under a folder (`path/...`). */
function folderRange(path: string): IDBKeyRange {
  return IDBKeyRange.bound([`${path}/`], [`${path}/\uffff`]);
}

/** Storage in an IndexedDB database of the page's origin (one object store of parts). */
export class IndexedDBStorage implements Storage {
  private constructor(
    private readonly db: IDBDatabase,
    private readonly store: string,
    private readonly release: () => Promise<void>,
  ) {}

  /**
   * Open (or create) the database `name`; several devices on one origin use several names.
   *
   * One tab at a time: the storage holds a Web Lock named `pocketml:<name>` until `close()`
   * (or the tab goes away). A second tab that opens the same name gets a `conflict`
   * error instead of a second device writing the same queue, capture log and privacy budget
   * (the last writer would win, and both tabs would spend the day's epsilon).
   */
  static async open(name = "pocketml", store = "files"): Promise<IndexedDBStorage> {
    const release = await holdLock(`pocketml:${name}`);
    try {
      const request = indexedDB.open(name, 1);
      request.onupgradeneeded = () => {
        if (!request.result.objectStoreNames.contains(store)) request.result.createObjectStore(store);
      };
      const db = (await done(request)) as IDBDatabase;
      return new IndexedDBStorage(db, store, release);
    } catch (err) {
      await release();
      throw err;
    }
  }

  /** Close the database and let another tab open it (the storage cannot be used afterwards). */
  async close(): Promise<void> {
    this.db.close();
    await this.release();
  }

  private tx(mode: IDBTransactionMode): [IDBTransaction, IDBObjectStore] {
    const tx = this.db.transaction(this.store, mode);
    return [tx, tx.objectStore(this.store)];
  }

  async read(path: string): Promise<Uint8Array | null> {
    const [, store] = this.tx("readonly");
    const values = (await done(store.getAll(fileRange(path)))) as unknown[];
    const meta = values[0] as Meta | undefined; // -1 sorts first
    if (meta === undefined || values.length !== meta.parts + 1) return null;
    const out = new Uint8Array(meta.size);
    let at = 0;
    for (const part of values.slice(1) as Uint8Array[]) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  async write(path: string, data: Uint8Array): Promise<void> {
    const [tx, store] = this.tx("readwrite");
    store.delete(fileRange(path));
    store.put(data.slice(), [path, 0]);
    store.put({ size: data.length, parts: 1 } satisfies Meta, [path, META]);
    await finished(tx);
  }

  async append(path: string, data: Uint8Array): Promise<void> {
    const [tx, store] = this.tx("readwrite");
    const meta = ((await done(store.get([path, META]))) as Meta | undefined) ?? { size: 0, parts: 0 };
    store.put(data.slice(), [path, meta.parts]);
    store.put({ size: meta.size + data.length, parts: meta.parts + 1 } satisfies Meta, [path, META]);
    await finished(tx);
  }

  async size(path: string): Promise<number | null> {
    const [, store] = this.tx("readonly");
    const meta = (await done(store.get([path, META]))) as Meta | undefined;
    return meta?.size ?? null;
  }

  async remove(path: string): Promise<void> {
    const [tx, store] = this.tx("readwrite");
    store.delete(fileRange(path));
    store.delete(folderRange(path));
    await finished(tx);
  }

  /** What the origin may still store (`navigator.storage.estimate()`), when the browser tells. */
  async freeBytes(): Promise<number> {
    const estimate = await navigator.storage?.estimate?.();
    if (estimate?.quota === undefined) return Number.MAX_SAFE_INTEGER;
    return Math.max(0, estimate.quota - (estimate.usage ?? 0));
  }
}
