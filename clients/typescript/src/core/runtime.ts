/**
 * The runtime adapter: how a model file becomes something that predicts. The core never
 * imports a runtime; `@pocketml/device/node` provides one over onnxruntime-node, and a
 * React Native or web app passes its own (onnxruntime-react-native, onnxruntime-web) with
 * the same two methods.
 */
export interface Session {
  /** Run one batch: `input` flat in the schema's layout, `shape` with the batch axis first. */
  run(input: Float32Array, shape: readonly number[]): Promise<Float32Array>;
  dispose?(): Promise<void>;
}

export interface Runtime {
  /** Model formats this runtime loads, in preference order (sent at check-in). */
  readonly formats: readonly string[];
  /** Runtime name -> version (sent at check-in as `runtimes`). */
  readonly versions?: Readonly<Record<string, string>>;
  /**
   * Load a plaintext model. `path` is set when the storage has a local file path for it
   * (runtimes that cannot take bytes, like React Native's, open that).
   */
  load(model: Uint8Array, format: string, path?: string): Promise<Session>;
}
