/**
 * One runtime adapter for the three ONNX Runtime front ends. onnxruntime-node,
 * onnxruntime-web and onnxruntime-react-native share onnxruntime-common's API
 * (`InferenceSession.create`, `Tensor`, `session.run`), so the adapter takes the module the
 * app imported and needs no import of its own: the core stays runtime-agnostic.
 *
 * ```ts
 * import * as ort from "onnxruntime-web";                 // or onnxruntime-react-native
 * const runtime = ortRuntime(ort, { loadFrom: "bytes" });   // React Native: "path"
 * ```
 */
import { fail } from "./errors.js";
import type { Runtime, Session } from "./runtime.js";

/** The part of an ONNX Runtime session the adapter uses. */
export interface OrtSessionLike {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>;
  release?(): Promise<void>;
}

/** The part of an ONNX Runtime module the adapter uses (`import * as ort from ...`). */
export interface OrtLike {
  InferenceSession: { create(model: never, options?: object): Promise<OrtSessionLike> };
  Tensor: new (type: "float32", data: Float32Array, dims: readonly number[]) => unknown;
  env?: { versions?: { common?: string } };
}

export interface OrtRuntimeOptions {
  /** `bytes` (Node, web) or `path` (React Native, which loads a `file://` model path). */
  loadFrom?: "bytes" | "path";
  /** Formats this build runs, in preference order (default onnx, ort). */
  formats?: readonly string[];
  /** Passed to `InferenceSession.create` (execution providers, threads). */
  sessionOptions?: object;
}

/** A Runtime over an ONNX Runtime module (the first input and the first output are used). */
export function ortRuntime(ort: OrtLike, options: OrtRuntimeOptions = {}): Runtime {
  const version = ort.env?.versions?.common;
  return {
    formats: options.formats ?? ["onnx", "ort"],
    versions: version === undefined ? {} : { onnxruntime: version },
    async load(model: Uint8Array, _format: string, path?: string): Promise<Session> {
      if (options.loadFrom === "path" && path === undefined) {
        throw fail("invalid_input", "this runtime loads models from a file path; give the Device a Storage with localPath().");
      }
      const source = options.loadFrom === "path" ? path : model;
      let session: OrtSessionLike;
      try {
        session = await ort.InferenceSession.create(source as never, options.sessionOptions);
      } catch (err) {
        throw fail("pocketml_error", `ONNX Runtime could not load the model: ${(err as Error).message}`, err);
      }
      const input = session.inputNames[0] as string;
      const output = session.outputNames[0] as string;
      return {
        async run(x: Float32Array, shape: readonly number[]): Promise<Float32Array> {
          const result = await session.run({ [input]: new ort.Tensor("float32", x, shape) });
          return result[output]?.data as Float32Array;
        },
        dispose: async () => session.release?.(),
      };
    },
  };
}
