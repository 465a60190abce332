/**
 * Where the SDK keeps its files, behind a small interface: the Node adapter writes to a
 * folder, a React Native app maps it onto its document directory, a web app onto IndexedDB
 * or OPFS, tests use `MemoryStorage`. Paths are relative, `/`-separated, and built only from
 * checked names (a sha256, a fixed file name), never from what a server sent.
 */
export interface Storage {
  /** The file's bytes, or null when it does not exist. */
  read(path: string): Promise<Uint8Array | null>;
  /** Replace the file atomically: readers see the old bytes or the new, never a mix. */
  write(path: string, data: Uint8Array): Promise<void>;
  /** Append to the file (created when missing): how a download is kept across restarts. */
  append(path: string, data: Uint8Array): Promise<void>;
  /** The file's size in bytes, or null when it does not exist. */
  size(path: string): Promise<number | null>;
  /** Delete a file or a folder (no error when it does not exist). */
  remove(path: string): Promise<void>;
  /** Free bytes where the files live, when the platform can tell. */
  freeBytes?(): Promise<number>;
  /** A path the runtime can open directly (React Native runtimes load `file://` paths). */
  localPath?(path: string): string;
}

/** Storage in memory (tests, or a web page that caches nothing). */
export class MemoryStorage implements Storage {
  readonly files = new Map<string, Uint8Array>();

  constructor(private readonly free = Number.MAX_SAFE_INTEGER) {}

  async read(path: string): Promise<Uint8Array | null> {
    return this.files.get(path) ?? null;
  }

  async write(path: string, data: Uint8Array): Promise<void> {
    this.files.set(path, data.slice());
  }

  async append(path: string, data: Uint8Array): Promise<void> {
    const old = this.files.get(path) ?? new Uint8Array(0);
    const next = new Uint8Array(old.length + data.length);
    next.set(old);
    next.set(data, old.length);
    this.files.set(path, next);
  }

  async size(path: string): Promise<number | null> {
    return this.files.get(path)?.length ?? null;
  }

  async remove(path: string): Promise<void> {
    for (const key of [...this.files.keys()]) if (key === path || key.startsWith(`${path}/`)) this.files.delete(key);
  }

  async freeBytes(): Promise<number> {
    return this.free;
  }
}

/** JSON helpers over a Storage. */
export async function readJsonFile<T>(storage: Storage, path: string): Promise<T | null> {
  const data = await storage.read(path);
  if (data === null) return null;
  try {
    return JSON.parse(new TextDecoder().decode(data)) as T;
  } catch {
    return null; // an unreadable state file counts as none (it is rebuilt)
  }
}

export async function writeJsonFile(storage: Storage, path: string, value: unknown): Promise<void> {
  await storage.write(path, new TextEncoder().encode(JSON.stringify(value)));
}
