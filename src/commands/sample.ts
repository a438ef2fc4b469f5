/**
 * `nf sample`: draws from a saved flow, CSV on stdout or a file.
 */
import { loadCheckpoint } from '../checkpoint.js';
import { CsvWriter } from '../data/csv-writer.js';
import { csvCell, formatFloat32 } from '../data/numbers.js';
import { requestedBackend, startEngine } from '../engine.js';
import { Model } from '../model.js';
import { ChunkRunner, helperWanted, inOrder } from '../inference/helper.js';
import { Rng, freshSeed } from '../rng.js';
import { warn } from '../terminal.js';

export interface SampleOptions {
  model: string;
  backend?: string;
  num: number;
  temperature: number;
  output?: string;
  header: boolean;
  seed?: number;
}

const CHUNK = 8192;

export async function sample(opts: SampleOptions): Promise<number> {
  const backend = requestedBackend(opts.backend);
  // Checkpoint and output place first: a bad one is refused before TensorFlow.js loads.
  const { meta, params } = await loadCheckpoint(opts.model);
  const out = opts.output && opts.output !== '-' ? await CsvWriter.toFile(opts.output) : CsvWriter.toStdout();
  let model: Model;
  let runner: ChunkRunner;
  try {
    const engine = await startEngine(backend);
    model = Model.fromParams(meta, params);
    runner = new ChunkRunner(model, helperWanted(engine.backend) ? { backend: engine.backend, meta, params } : null);
  } catch (err) {
    await out.abort();
    throw err;
  }
  const rng = new Rng(opts.seed ?? freshSeed());
  const D = model.dim;
  try {
    if (opts.header) await out.line(model.meta.columns.map(csvCell).join(','));
    // Base draws come from one generator in order, whichever thread maps them: the output
    // does not depend on threading.
    function* draws(): Generator<{ z: Float32Array; n: number }> {
      for (let done = 0; done < opts.num; done += CHUNK) {
        const n = Math.min(CHUNK, opts.num - done);
        yield { z: model.drawBase(n, opts.temperature, rng), n };
      }
    }
    let overflowed = 0;
    for await (const { chunk, out: x } of inOrder(draws(), (c) => runner.submit('sample', c.z, c.n))) {
      for (let i = 0; i < chunk.n; i++) {
        let line = formatFloat32(x[i * D]);
        let finite = Number.isFinite(x[i * D]);
        for (let j = 1; j < D; j++) {
          line += ',' + formatFloat32(x[i * D + j]);
          finite &&= Number.isFinite(x[i * D + j]);
        }
        if (!finite) overflowed += 1;
        await out.line(line);
      }
    }
    await out.close();
    if (overflowed > 0) {
      await warn(`${overflowed} row(s) overflowed float32 (nan or inf cells): --temperature ${opts.temperature} draws base values too far out for the flow`);
    }
  } catch (err) {
    await out.abort();
    throw err;
  } finally {
    await runner.close();
    model.dispose();
  }
  return 0;
}
