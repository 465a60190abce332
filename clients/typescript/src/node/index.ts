/**
 * @pocketml/device/node: the Node.js adapters. `FileStorage` keeps the SDK's files in a
 * folder (atomic replace by write-then-rename, appends for resumable downloads, free space
 * from `statfs`); `OnnxNodeRuntime` runs ONNX models with onnxruntime-node (an optional
 * peer dependency, imported when the first model loads).
 */
import { constants } from "node:fs";
import { appendFile, mkdir, open, readFile, rename, rm, stat, statfs } from "node:fs/promises";
import { dirname, join, resolve, sep } from "node:path";
import type { Runtime, Session, Storage } from "../core/index.js";
import { PocketMLError } from "../core/index.js";

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

type Ort = typeof import("onnxruntime-node");

/** ONNX models with onnxruntime-node (CPU). */
export class OnnxNodeRuntime implements Runtime {
  readonly formats = ["onnx", "ort"] as const;
  private ort: Ort | null = null;

  constructor(private readonly options: { intraOpNumThreads?: number } = {}) {}

  get versions(): Record<string, string> {
    return this.ort === null ? {} : { onnxruntime: this.ort.env.versions.common };
  }

  async load(model: Uint8Array, _format: string): Promise<Session> {
    const ort = await this.module();
    let session: import("onnxruntime-node").InferenceSession;
    try {
      session = await ort.InferenceSession.create(model, {
        executionProviders: ["cpu"],
        intraOpNumThreads: this.options.intraOpNumThreads ?? 1,
      });
    } catch (err) {
      throw new PocketMLError("pocketml_error", `onnxruntime could not load the model: ${(err as Error).message}`, { cause: err });
    }
    const input = session.inputNames[0] as string;
    const output = session.outputNames[0] as string;
    return {
      async run(x: Float32Array, shape: readonly number[]): Promise<Float32Array> {
        const result = await session.run({ [input]: new ort.Tensor("float32", x, shape as number[]) });
        return (result[output] as import("onnxruntime-node").Tensor).data as Float32Array;
      },
      dispose: () => session.release(),
    };
  }

  private async module(): Promise<Ort> {
    if (this.ort === null) {
      try {
        this.ort = await import("onnxruntime-node");
      } catch (err) {
        throw new PocketMLError("missing_dependency", "onnxruntime-node is not installed: run `npm install onnxruntime-node`.", {
          cause: err,
        });
      }
    }
    return this.ort;
  }
}
