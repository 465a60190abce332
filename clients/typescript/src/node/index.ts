/**
 * @pocketml/device/node: the Node.js adapters. `FileStorage` keeps the SDK's files in a
 * folder (atomic replace by write-then-rename, appends for resumable downloads, free space
 * from `statfs`); `OnnxNodeRuntime` runs ONNX models with onnxruntime-node (an optional
 * peer dependency, imported when the first model loads).
 */
import { constants } from "node:fs";
import { appendFile, mkdir, open, readFile, rename, rm, stat, statfs } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import type { OrtLike, Runtime, Session, Storage } from "../core/index.js";
import { ortRuntime, PocketMLError } from "../core/index.js";

export * from "../core/index.js";

let tmpCounter = 0;

/** Storage in a folder of the file system (app-private storage on a device). */
export class FileStorage implements Storage {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** The absolute path of `path`, refused when it would leave the root (check 3). */
  localPath(path: string): string {
    const full = resolve(join(this.root, path));
    if (full !== this.root && !full.startsWith(this.root + sep)) {
      throw new PocketMLError("integrity_failed", `refusing a path outside the cache folder: ${path.slice(0, 100)}`);
    }
    return full;
  }

  async read(path: string): Promise<Uint8Array | null> {
    try {
      return new Uint8Array(await readFile(this.localPath(path)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async write(path: string, data: Uint8Array): Promise<void> {
    const full = this.localPath(path);
    await mkdir(dirname(full), { recursive: true });
    const tmp = `${full}.${process.pid}.${++tmpCounter}.tmp`;
    try {
      const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, full);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async append(path: string, data: Uint8Array): Promise<void> {
    const full = this.localPath(path);
    await mkdir(dirname(full), { recursive: true });
    await appendFile(full, data);
  }

  async size(path: string): Promise<number | null> {
    try {
      return (await stat(this.localPath(path))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }

  async remove(path: string): Promise<void> {
    await rm(this.localPath(path), { recursive: true, force: true });
  }

  async freeBytes(): Promise<number> {
    await mkdir(this.root, { recursive: true });
    const s = await statfs(this.root);
    return Number(s.bavail) * Number(s.bsize);
  }
}

/**
 * ONNX models with onnxruntime-node on the CPU: `ortRuntime` over the module, imported when
 * the first model loads (an optional peer dependency; a clear error names the package).
 */
export class OnnxNodeRuntime implements Runtime {
  readonly formats = ["onnx", "ort"] as const;
  private inner: Runtime | null = null;

  constructor(private readonly options: { intraOpNumThreads?: number } = {}) {}

  get versions(): Readonly<Record<string, string>> {
    return this.inner?.versions ?? {};
  }

  async load(model: Uint8Array, format: string): Promise<Session> {
    if (this.inner === null) {
      let ort: OrtLike;
      try {
        ort = (await import("onnxruntime-node")) as unknown as OrtLike;
      } catch (err) {
        throw new PocketMLError("missing_dependency", "onnxruntime-node is not installed: run `npm install onnxruntime-node`.", {
          cause: err,
        });
      }
      this.inner = ortRuntime(ort, {
        loadFrom: "bytes",
        sessionOptions: { executionProviders: ["cpu"], intraOpNumThreads: this.options.intraOpNumThreads ?? 1 },
      });
    }
    return this.inner.load(model, format);
  }
}
