/**
 * The part of a ModelSchema (docs/build.md) a client applies: the input's shape and
 * normalization, and the output's kind and labels. Normalization is
 * `(raw * scale - mean[c]) / std[c]` per channel `c` (per feature for `NC` tables), folded
 * into `raw * a[c] + b[c]` once so a prediction costs one multiply-add per value.
 */

export interface Normalization {
  scale?: number;
  mean?: number[];
  std?: number[];
}

export interface InputSpec {
  name: string;
  dtype?: string;
  shape: (number | null)[];
  layout?: "NCHW" | "NHWC" | "NCL" | "NC";
  normalization?: Normalization | null;
}

export interface OutputSpec {
  name: string;
  kind: "probabilities" | "logits" | string;
  labels?: string[];
}

export interface ModelSchema {
  name?: string;
  inputs: InputSpec[];
  outputs: OutputSpec[];
}

/** What a prediction needs of a schema, precomputed once per active model. */
export interface PreparedSchema {
  inputName: string;
  sampleShape: number[];
  sampleSize: number;
  /** Per value of a sample: `normalized = raw * a[i] + b[i]`; null without normalization. */
  a: Float32Array | null;
  b: Float32Array | null;
  labels: readonly string[];
  isLogits: boolean;
}

function channelOf(layout: string, shape: number[], i: number): number {
  const [d1 = 1, d2 = 1, d3 = 1] = shape;
  if (layout === "NCHW") return Math.floor(i / (d2 * d3));
  if (layout === "NHWC") return i % d3;
  if (layout === "NCL") return Math.floor(i / d2);
  return i % d1; // NC: the feature
}

/** Fold the schema's normalization into per-value factors (see PreparedSchema). */
export function prepareSchema(schema: ModelSchema): PreparedSchema {
  const input = schema.inputs[0];
  const output = schema.outputs[0];
  if (input === undefined || output === undefined) throw new RangeError("a model schema needs one input and one output");
  const sampleShape = input.shape.slice(1).map((d) => d ?? 1);
  const sampleSize = sampleShape.reduce((n, d) => n * d, 1);
  const norm = input.normalization;
  let a: Float32Array | null = null;
  let b: Float32Array | null = null;
  if (norm !== undefined && norm !== null) {
    const scale = norm.scale ?? 1;
    const mean = norm.mean ?? [0];
    const std = norm.std ?? [1];
    a = new Float32Array(sampleSize);
    b = new Float32Array(sampleSize);
    for (let i = 0; i < sampleSize; i++) {
      const c = mean.length === 1 ? 0 : channelOf(input.layout ?? "NCHW", sampleShape, i);
      a[i] = scale / (std[c] as number);
      b[i] = -(mean[c] as number) / (std[c] as number);
    }
  }
  return {
    inputName: input.name,
    sampleShape,
    sampleSize,
    a,
    b,
    labels: output.labels ?? [],
    isLogits: output.kind === "logits",
  };
}

/** Normalize one raw sample (flat, in the input's layout). */
export function normalize(schema: ModelSchema | PreparedSchema, raw: ArrayLike<number>): Float32Array {
  const p = "inputs" in schema ? prepareSchema(schema) : schema;
  if (raw.length !== p.sampleSize) {
    throw new RangeError(
      `input '${p.inputName}' must be one sample of ${p.sampleSize} values (shape ${JSON.stringify(p.sampleShape)}); got ${raw.length}`,
    );
  }
  const out = Float32Array.from(raw);
  if (p.a !== null && p.b !== null)
    for (let i = 0; i < out.length; i++) out[i] = (out[i] as number) * (p.a[i] as number) + (p.b[i] as number);
  return out;
}
