/**
 * A trained flow ready for inference: checkpoint + weights on the current backend.
 * Works on plain row-major Float32Arrays so commands never touch tensors.
 */
import { loadCheckpoint, type ModelMeta } from './checkpoint.js';
import { disposeWeights, Flow, type FlowWeights } from './flow/flow.js';
import { drawMixture, mixtureOf, type MixtureParams } from './flow/mixture.js';
import { Rng } from './rng.js';
import { tf } from './tf.js';

export class Model {
  private constructor(
    readonly meta: ModelMeta,
    readonly flow: Flow,
    private readonly weights: FlowWeights,
    private readonly mixture: MixtureParams | null,
  ) {}

  /** Loads and validates a checkpoint. Needs a started engine. */
  static async load(dir: string): Promise<Model> {
    const { meta, params } = await loadCheckpoint(dir);
    return Model.fromParams(meta, params);
  }

  static fromParams(meta: ModelMeta, params: Float32Array): Model {
    const flow = new Flow(meta.flow, meta.standardization);
    const K = meta.flow.mixture;
    return new Model(meta, flow, flow.makeWeights(params), K ? mixtureOf(params, meta.flow.dim, K) : null);
  }

  get dim(): number {
    return this.meta.flow.dim;
  }

  /** Log density (nats, original units) of each of `rows` rows. */
  logProb(data: Float32Array, rows: number): Float32Array {
    const out = tf.tidy(() => this.flow.logProb(this.weights, tf.tensor2d(data, [rows, this.dim])));
    const values = out.dataSync() as Float32Array;
    out.dispose();
    // A finite row far outside the data can overflow inside the flow (inf − inf on some
    // backends): its density is zero to float precision, so say -inf, as other backends do.
    const D = this.dim;
    for (let i = 0; i < rows; i++) {
      if (!Number.isNaN(values[i])) continue;
      let finite = true;
      for (let j = 0; j < D; j++) finite &&= Number.isFinite(data[i * D + j]);
      if (finite) values[i] = Number.NEGATIVE_INFINITY;
    }
    return values;
  }

  /** `rows` draws, base standard deviation scaled by `temperature`. */
  sample(rows: number, temperature: number, rng: Rng): Float32Array {
    return this.transform(this.drawBase(rows, temperature, rng), rows);
  }

  /** `rows` draws from the base density, its standard deviations scaled by `temperature`. */
  drawBase(rows: number, temperature: number, rng: Rng): Float32Array {
    if (!this.mixture) return rng.normals(rows * this.dim, temperature);
    return drawMixture(this.mixture, this.dim, rows, temperature, rng);
  }

  /** Maps `rows` base draws `z` to data (original units). */
  transform(z: Float32Array, rows: number): Float32Array {
    const out = tf.tidy(() => this.flow.sample(this.weights, tf.tensor2d(z, [rows, this.dim])));
    const values = out.dataSync() as Float32Array;
    out.dispose();
    return values;
  }

  dispose(): void {
    disposeWeights(this.weights);
    this.flow.dispose();
  }
}
