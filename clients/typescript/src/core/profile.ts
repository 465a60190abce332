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

function numbers(value: unknown, where: string): number[] {
  need(Array.isArray(value) && value.every((x) => typeof x === "number"), `${where} must be a list of numbers`);
  return value as number[];
}

function parseBins(raw: unknown, where: string): Bins {
  const b = raw as { name?: unknown; kind?: unknown; edges?: unknown; categories?: unknown } | null;
  need(typeof b === "object" && b !== null && typeof b.name === "string", `${where} must be an object with a name`);
  const name = (b as { name: string }).name;
  if (b?.kind === "numeric") {
    const edges = numbers(b.edges, `${where}.edges`);
    need(
      edges.length > 0 && edges.every((e, i) => i === 0 || e > (edges[i - 1] as number)),
      `bins of '${name}': edges must be non-empty and increasing`,
    );
    return { name, edges: Float64Array.from(edges), categories: null, size: edges.length + 1 };
  }
  need(b?.kind === "categorical", `bins of '${name}': kind must be 'numeric' or 'categorical'`);
  const categories = b?.categories ?? [];
  need(Array.isArray(categories), `${where}.categories must be a list`);
  const text = (categories as unknown[]).map(String);
  return { name, edges: null, categories: text, size: text.length + 1 };
}

/**
 * Read and check a `profile.json` (format 1): bins, projection, classes and that `blocks`
 * is exactly the layout they make. The reference counts are not read (the server's).
 * @throws Error naming what is wrong.
 */
export function parseProfile(data: unknown): ReferenceProfile {
  const d = data as Record<string, unknown> | null;
  need(typeof d === "object" && d !== null && d.format === 1, `profile format must be 1; got ${JSON.stringify(d?.format)}`);
  const p = d as Record<string, unknown>;
  need(Array.isArray(p.bins), "profile bins must be a list");
  const bins = (p.bins as unknown[]).map((b, i) => parseBins(b, `bins[${i}]`));
  const names = bins.map((b) => b.name);
  let projection: ReferenceProfile["projection"] = null;
  if (p.projection !== null && p.projection !== undefined) {
    const r = p.projection as Record<string, unknown>;
    need(Array.isArray(r.columns) && Array.isArray(r.matrix) && Array.isArray(r.bins), "projection needs columns, matrix and bins");
    const columns = (r.columns as unknown[]).map((c) => names.indexOf(String(c)));
    need(!columns.includes(-1), "projection columns must be monitored features");
    const k = columns.length;
    const mean = numbers(r.mean, "projection.mean");
    const scale = numbers(r.scale, "projection.scale");
    const matrix = (r.matrix as unknown[]).map((row, i) => numbers(row, `projection.matrix[${i}]`));
    const pbins = (r.bins as unknown[]).map((b, i) => parseBins(b, `projection.bins[${i}]`));
    need(
      mean.length === k && scale.length === k && matrix.every((row) => row.length === k),
      `projection mean, scale and matrix rows must have ${k} values`,
    );
    need(pbins.length === matrix.length && pbins.every((b) => b.edges !== null), "projection needs one numeric bins per matrix row");
    need(
      bins.every((b) => b.edges !== null || !columns.includes(names.indexOf(b.name))),
      "projection columns must be numeric",
    );
    projection = { columns, mean, scale, matrix, bins: pbins };
  }
  const numClasses = p.num_classes;
  need(typeof numClasses === "number" && Number.isInteger(numClasses) && numClasses >= 0, "num_classes must be an integer >= 0");
  const blocks = p.blocks;
  need(Array.isArray(blocks), "profile blocks must be a list");
  const all = [...bins, ...(projection?.bins ?? [])];
  const layout: SketchLayout = { names: all.map((b) => b.name), sizes: all.map((b) => b.size) };
  if (numClasses) {
    layout.names.push(PREDICTION_BLOCK);
    layout.sizes.push(numClasses as number);
  }
  if ((blocks as unknown[]).includes(CONFIDENCE_BLOCK)) {
    layout.names.push(CONFIDENCE_BLOCK);
    layout.sizes.push(CONFIDENCE_BINS);
  }
  need(JSON.stringify(layout.names) === JSON.stringify(blocks), `profile blocks ${JSON.stringify(blocks)} do not match its bins`);
  return { bins, projection, numClasses: numClasses as number, layout };
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
