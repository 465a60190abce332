/**
 * A version's reference profile (the package's `profile.json`, `pocketml.sketch.ReferenceProfile`)
 * as far as a device uses it, and the binning of one scored input into its layout.
 *
 * The layout is the profile's `blocks`: one block per feature (`bins[i]`), one per PCA
 * projection (`@pc1` ...), the predicted class (`@prediction`, `num_classes` bins) and a
 * 20-bin confidence histogram (`@confidence`). A numeric value falls in bin
 * `searchsorted(edges, v, side="right")`: the number of edges `<= v` (so `+inf` lands in the
 * overflow bin); a categorical one in its category's bin, else "other". An input whose
 * numeric features (or projections) hold NaN lands nowhere: it is skipped.
 */
import { FeatureExtractor } from "./features.js";

export const CONFIDENCE_BINS = 20;
export const PREDICTION_BLOCK = "@prediction";
export const CONFIDENCE_BLOCK = "@confidence";

/** The named blocks of a sketch and their bin counts, in a fixed order. */
export interface SketchLayout {
  names: string[];
  sizes: number[];
}

interface Bins {
  name: string;
  edges: Float64Array | null;
  categories: string[] | null;
  size: number;
}

/** What a device needs of a reference profile (parsed and checked by `parseProfile`). */
export interface ReferenceProfile {
  bins: Bins[];
  projection: { columns: number[]; mean: number[]; scale: number[]; matrix: number[][]; bins: Bins[] } | null;
  numClasses: number;
  layout: SketchLayout;
}

function need(ok: boolean, message: string): void {
  if (!ok) throw new Error(message);
}

// biome-ignore lint/suspicious/noExplicitAny: untrusted JSON, checked where it is used (a wrong type throws)
type Json = any;

function readBins(b: Json): Bins {
  const name = String(b.name);
  if (b.kind === "numeric") {
    const edges = Float64Array.from(b.edges, Number);
    need(
      edges.length > 0 && edges.every((e, i) => (i ? e > (edges[i - 1] as number) : !Number.isNaN(e))),
      `bins of '${name}': edges must be non-empty and increasing`,
    );
    return { name, edges, categories: null, size: edges.length + 1 };
  }
  need(b.kind === "categorical", `bins of '${name}': kind must be 'numeric' or 'categorical'`);
  const categories: string[] = (b.categories ?? []).map(String);
  return { name, edges: null, categories, size: categories.length + 1 };
}

function readProfile(p: Json): ReferenceProfile {
  need(p.format === 1, `format must be 1; got ${JSON.stringify(p.format)}`);
  const bins: Bins[] = p.bins.map(readBins);
  const names = bins.map((b) => b.name);
  let projection: ReferenceProfile["projection"] = null;
  if (p.projection != null) {
    const r = p.projection;
    const columns: number[] = r.columns.map((c: unknown) => names.indexOf(String(c)));
    const row = (x: Json) => Array.from(x, Number);
    const matrix = r.matrix.map(row);
    const [mean, scale, pbins] = [row(r.mean), row(r.scale), r.bins.map(readBins) as Bins[]];
    const k = columns.length;
    need(
      columns.every((c) => bins[c]?.edges) && [mean, scale, ...matrix].every((x) => x.length === k) && pbins.length === matrix.length,
      "projection columns must be numeric features, with one mean, scale and matrix value each and bins per matrix row",
    );
    need(
      pbins.every((b) => b.edges),
      "projection bins must be numeric",
    );
    projection = { columns, mean, scale, matrix, bins: pbins };
  }
  const numClasses = p.num_classes;
  need(Number.isInteger(numClasses) && numClasses >= 0, "num_classes must be an integer >= 0");
  const all = [...bins, ...(projection?.bins ?? [])];
  const layout: SketchLayout = { names: all.map((b) => b.name), sizes: all.map((b) => b.size) };
  if (numClasses) {
    layout.names.push(PREDICTION_BLOCK);
    layout.sizes.push(numClasses);
  }
  if (p.blocks.includes(CONFIDENCE_BLOCK)) {
    layout.names.push(CONFIDENCE_BLOCK);
    layout.sizes.push(CONFIDENCE_BINS);
  }
  need(JSON.stringify(layout.names) === JSON.stringify(p.blocks), `profile blocks ${JSON.stringify(p.blocks)} do not match its bins`);
  return { bins, projection, numClasses, layout };
}

/**
 * Read and check a `profile.json` (format 1): bins, projection, classes and that `blocks`
 * is exactly the layout they make. The reference counts are not read (the server's).
 * @throws Error naming what is wrong (a missing or mistyped part included).
 */
export function parseProfile(data: unknown): ReferenceProfile {
  try {
    return readProfile(data);
  } catch (err) {
    throw new Error(`not a pocketml reference profile: ${(err as Error)?.message ?? err}`);
  }
}

/** Number of edges `<= value`: `searchsorted(edges, value, side="right")`, at most `size - 1`. */
function binOf(edges: Float64Array, value: number): number {
  let low = 0;
  let high = edges.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if ((edges[mid] as number) <= value) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Python's `str(float)` for the values a categorical feature compares as text. */
function pythonFloat(value: number): string {
  if (Number.isInteger(value) && Math.abs(value) < 1e16) return value.toFixed(1);
  if (value === Infinity) return "inf";
  if (value === -Infinity) return "-inf";
  return String(value).replace(/e([+-])(\d)$/, "e$10$2");
}

/** One input's flat bin indices in a profile's layout (built once per active version). */
export class Binner {
  readonly blocks: number;
  private readonly extractor: FeatureExtractor;
  private readonly values: Float64Array;
  private readonly offsets: number[];
  private readonly numeric: number[];
  private readonly categorical: number[];
  private readonly projected: Float64Array;
  private readonly prediction: number;
  private readonly confidence: number;
  private readonly out: Int32Array;

  /** @throws Error when the profile's features are not those of the schema's input. */
  constructor(
    readonly profile: ReferenceProfile,
    layout: string,
    sampleShape: readonly number[],
  ) {
    const names = profile.bins.map((b) => b.name);
    this.extractor = new FeatureExtractor(layout, sampleShape, names);
    this.values = new Float64Array(names.length);
    this.offsets = [0];
    for (const size of profile.layout.sizes) this.offsets.push((this.offsets[this.offsets.length - 1] as number) + size);
    this.blocks = profile.layout.names.length;
    const indices = names.map((_, i) => i);
    // Numeric blocks first, then categorical ones: the order of Python's `_Binner.indices`.
    this.numeric = indices.filter((i) => profile.bins[i]?.edges !== null);
    this.categorical = indices.filter((i) => profile.bins[i]?.edges === null);
    this.projected = new Float64Array(profile.projection?.bins.length ?? 0);
    this.prediction = profile.layout.names.indexOf(PREDICTION_BLOCK);
    this.confidence = profile.layout.names.indexOf(CONFIDENCE_BLOCK);
    this.out = new Int32Array(this.blocks);
  }

  /**
   * The capture policy's `drifted` test (Python's `drift_check`): does a numeric monitored
   * feature of a raw input fall in one of its listed bins (bin indices within the feature)?
   * Null when no listed feature is a numeric one of this profile (then nothing is drifted).
   */
  driftTest(driftedBins: Readonly<Record<string, readonly number[]>>): ((raw: ArrayLike<number>) => boolean) | null {
    const { profile, values } = this;
    const watched = Object.entries(driftedBins)
      .map(([name, bins]) => [profile.bins.findIndex((b) => b.name === name), new Set(bins)] as const)
      .filter(([i]) => i >= 0 && profile.bins[i]?.edges !== null);
    if (watched.length === 0) return null;
    return (raw) => {
      try {
        this.extractor.extract(raw, values);
      } catch {
        return false; // features the profile cannot read: not drifted (as Python)
      }
      return watched.some(([i, bins]) => {
        const v = values[i] as number;
        return !Number.isNaN(v) && bins.has(binOf(profile.bins[i]?.edges as Float64Array, v));
      });
    };
  }

  /**
   * The flat index of every block's bin for one raw input, or null to skip it (NaN). The
   * array is reused by the next call.
   * @throws Error when the predicted class is not one of the profile's.
   */
  indices(raw: ArrayLike<number>, predicted: number, confidence: number): Int32Array | null {
    const { values, out, offsets, profile } = this;
    this.extractor.extract(raw, values);
    let k = 0;
    for (const i of this.numeric) {
      const v = values[i] as number;
      if (Number.isNaN(v)) return null;
      out[k++] = (offsets[i] as number) + binOf(profile.bins[i]?.edges as Float64Array, v);
    }
    for (const i of this.categorical) {
      const bins = profile.bins[i] as Bins;
      const found = (bins.categories as string[]).indexOf(pythonFloat(values[i] as number));
      out[k++] = (offsets[i] as number) + (found < 0 ? bins.size - 1 : found);
    }
    const projection = profile.projection;
    if (projection !== null) {
      const first = profile.bins.length;
      for (let j = 0; j < this.projected.length; j++) {
        const row = projection.matrix[j] as number[];
        let sum = 0;
        for (let c = 0; c < row.length; c++) {
          const column = projection.columns[c] as number;
          sum += (((values[column] as number) - (projection.mean[c] as number)) / (projection.scale[c] as number)) * (row[c] as number);
        }
        if (Number.isNaN(sum)) return null; // infinite features of both signs: no direction
        out[k++] = (offsets[first + j] as number) + binOf(projection.bins[j]?.edges as Float64Array, sum);
      }
    }
    if (this.prediction >= 0) {
      if (!(Number.isInteger(predicted) && predicted >= 0 && predicted < profile.numClasses)) {
        throw new Error(`the model predicted class ${predicted}; its profile has ${profile.numClasses}.`);
      }
      out[k++] = (offsets[this.prediction] as number) + predicted;
    }
    if (this.confidence >= 0) {
      out[k] = (offsets[this.confidence] as number) + Math.min(Math.trunc(confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1);
    }
    return out;
  }
}
