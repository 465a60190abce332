/**
 * The monitored features of one raw input, as `pocketml.sketch.input_features` computes them
 * (its module docstring is the definition): a table's columns as they are (`NC`); per channel
 * `brightness_<c>` (mean), `contrast_<c>` (population standard deviation) and `blur_<c>`
 * (variance of the 4-neighbour Laplacian over the interior pixels, 0 without interior) of an
 * image (`NCHW` / `NHWC`); per channel `mean_<c>`, `std_<c>` and `roughness_<c>` (variance of
 * the first differences, 0 for a single sample) of a sensor window (`NCL`).
 *
 * Sums run in index order (numpy sums pairwise): results can differ from Python's in the last
 * bits, which is why the conformance vectors keep every feature away from a bin edge.
 */

const IMAGE_STATS = ["brightness", "contrast", "blur"] as const;
const SENSOR_STATS = ["mean", "std", "roughness"] as const;
/** The rank of one sample per schema layout (the batch dimension left out). */
export const SAMPLE_RANK: Readonly<Record<string, number>> = { NC: 1, NCL: 2, NCHW: 3, NHWC: 3 };

/** Mean and population variance of `count` values at `start + k * step` (two passes, as numpy). */
function moments(x: ArrayLike<number>, start: number, step: number, count: number): [number, number] {
  let sum = 0;
  for (let k = 0; k < count; k++) sum += x[start + k * step] as number;
  const mean = sum / count;
  let sq = 0;
  for (let k = 0; k < count; k++) {
    const d = (x[start + k * step] as number) - mean;
    sq += d * d;
  }
  return [mean, sq / count];
}

/**
 * Computes the features a profile names from one flat raw sample (allocation-free per call
 * but for the output it fills). Built once per active model.
 */
export class FeatureExtractor {
  /** For stat-per-channel layouts: which (stat, channel) each output feature is. */
  private readonly picks: { stat: number; channel: number }[] = [];
  private readonly stats: Float64Array;
  private readonly channels: number;
  /** One channel of an image, row-major (reused by every call). */
  private readonly plane: Float64Array;

  /**
   * @param layout the schema input's layout.
   * @param sampleShape one sample's shape in that layout.
   * @param names the profile's feature names, in its order.
   * @throws Error when the layout is unknown, the shape has another rank, or a name is not a
   *   feature of the layout (an `NC` table must have one column per name).
   */
  constructor(
    readonly layout: string,
    readonly sampleShape: readonly number[],
    readonly names: readonly string[],
  ) {
    const rank = SAMPLE_RANK[layout];
    if (rank === undefined) throw new Error(`layout must be one of NC, NCL, NCHW, NHWC; got ${JSON.stringify(layout)}`);
    if (sampleShape.length !== rank)
      throw new Error(`a ${layout} sample has rank ${rank}; the schema says shape ${JSON.stringify(sampleShape)}`);
    const size = sampleShape.reduce((n, d) => n * d, 1);
    if (layout === "NC") {
      if (size !== names.length) {
        throw new Error(`the input has ${size} columns; the profile monitors ${names.length} (${names.slice(0, 3).join(", ")}, ...)`);
      }
      this.channels = size;
      this.stats = new Float64Array(0);
      this.plane = this.stats;
      return;
    }
    const statNames: readonly string[] = layout === "NCL" ? SENSOR_STATS : IMAGE_STATS;
    this.channels = (layout === "NHWC" ? sampleShape[2] : sampleShape[0]) as number;
    for (const name of names) {
      const cut = name.lastIndexOf("_");
      const stat = statNames.indexOf(name.slice(0, cut));
      const channel = Number(name.slice(cut + 1));
      if (
        cut < 0 ||
        stat < 0 ||
        !Number.isInteger(channel) ||
        channel < 0 ||
        channel >= this.channels ||
        String(channel) !== name.slice(cut + 1)
      ) {
        throw new Error(
          `the profile monitors '${name}', which is not a feature of a ${layout} input of shape ${JSON.stringify(sampleShape)}`,
        );
      }
      this.picks.push({ stat, channel });
    }
    this.stats = new Float64Array(this.channels * 3);
    this.plane = new Float64Array(layout === "NCL" ? 0 : size / this.channels);
  }

  /** Fill `out` (one slot per profile name) from a raw sample (flat, in the layout). */
  extract(raw: ArrayLike<number>, out: Float64Array): void {
    if (this.layout === "NC") {
      for (let i = 0; i < this.channels; i++) out[i] = raw[i] as number;
      return;
    }
    if (this.layout === "NCL") this.sensor(raw);
    else this.image(raw);
    for (let i = 0; i < this.picks.length; i++) {
      const pick = this.picks[i] as { stat: number; channel: number };
      out[i] = this.stats[pick.channel * 3 + pick.stat] as number;
    }
  }

  private sensor(raw: ArrayLike<number>): void {
    const length = this.sampleShape[1] as number;
    const diffs = length >= 2 ? new Float64Array(length - 1) : null;
    for (let c = 0; c < this.channels; c++) {
      const base = c * length;
      const [mean, variance] = moments(raw, base, 1, length);
      let roughness = 0;
      if (diffs !== null) {
        for (let l = 1; l < length; l++) diffs[l - 1] = (raw[base + l] as number) - (raw[base + l - 1] as number);
        roughness = moments(diffs, 0, 1, length - 1)[1];
      }
      this.stats.set([mean, Math.sqrt(variance), roughness], c * 3);
    }
  }

  private image(raw: ArrayLike<number>): void {
    const nhwc = this.layout === "NHWC";
    const [d0, d1, d2] = this.sampleShape as [number, number, number];
    const height = nhwc ? d0 : d1;
    const width = nhwc ? d1 : d2;
    const plane = height * width;
    const x = this.plane; // one channel's pixels, row-major: the passes below read it in order
    const step = nhwc ? this.channels : 1;
    for (let c = 0; c < this.channels; c++) {
      for (let i = 0, at = nhwc ? c : c * plane; i < plane; i++, at += step) x[i] = raw[at] as number;
      const [mean, variance] = moments(x, 0, 1, plane);
      let blur = 0;
      if (height >= 3 && width >= 3) {
        // Variance of the Laplacian over the interior, two passes as numpy's var.
        const count = (height - 2) * (width - 2);
        let sum = 0;
        for (let h = 1; h < height - 1; h++)
          for (let w = 1, at = h * width + 1; w < width - 1; w++, at++)
            sum +=
              (x[at - width] as number) + (x[at + width] as number) + (x[at - 1] as number) + (x[at + 1] as number) - 4 * (x[at] as number);
        const lapMean = sum / count;
        let sq = 0;
        for (let h = 1; h < height - 1; h++)
          for (let w = 1, at = h * width + 1; w < width - 1; w++, at++) {
            const d =
              (x[at - width] as number) +
              (x[at + width] as number) +
              (x[at - 1] as number) +
              (x[at + 1] as number) -
              4 * (x[at] as number) -
              lapMean;
            sq += d * d;
          }
        blur = sq / count;
      }
      this.stats[c * 3] = mean;
      this.stats[c * 3 + 1] = Math.sqrt(variance);
      this.stats[c * 3 + 2] = blur;
    }
  }
}
