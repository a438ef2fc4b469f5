/**
 * `nf info`: describes a checkpoint (no tensors needed), and optionally which backends load.
 */
import { existsSync } from 'node:fs';
import { loadCheckpoint } from '../checkpoint.js';
import { writeStdout } from '../data/csv-writer.js';
import { probeBackends, requestedBackend, startEngine } from '../engine.js';
import { paramCount } from '../flow/spec.js';

export interface InfoOptions {
  model: string;
  backend?: string;
  json?: boolean;
  backends?: boolean;
}

export async function info(opts: InfoOptions): Promise<number> {
  if (opts.backends && !existsSync(opts.model)) {
    // `nf info --backends` on a machine without a model: just the engines.
    const backends = await probeBackends();
    if (opts.json) await writeStdout(JSON.stringify({ backends }) + '\n');
    else await writeStdout(backends.map((b) => `backend ${b.backend.padEnd(10)} ${b.ok ? 'loads' : `unavailable: ${b.reason}`}`).join('\n') + '\n');
    return 0;
  }
  // Describing a checkpoint needs no engine, but --backend means what it means everywhere
  // (the contract's common options): one that cannot load is an error that says why.
  const backend = opts.backend !== undefined ? requestedBackend(opts.backend) : undefined;
  const { meta } = await loadCheckpoint(opts.model);
  if (backend) await startEngine(backend);
  const t = meta.training;
  const backends = opts.backends ? await probeBackends() : undefined;
  if (opts.json) {
    const { weightsManifest: _manifest, ...rest } = meta;
    void _manifest;
    const history = t.history;
    await writeStdout(
      JSON.stringify({ model: opts.model, parameters: paramCount(meta.flow), ...rest, training: { ...t, history }, backends }) + '\n',
    );
    return 0;
  }
  const f = meta.flow;
  const lines = [
    `model        ${opts.model}`,
    `flow         ${f.type === 'rnvp' ? 'RealNVP (affine coupling)' : 'NICE (additive coupling)'}, ${f.layers} coupling layers, MLP ${f.hiddenLayers}×${f.hidden} ReLU${f.type === 'rnvp' ? `, log-scale bound ±${f.scaleBound}` : ''}${f.diagScale ? ', diagonal scaling layer' : ''}`,
    `base         ${f.mixture ? `mixture of ${f.mixture} diagonal Gaussians (learned)` : 'standard normal'}`,
    `parameters   ${paramCount(f)}`,
    `dimension    ${f.dim}`,
    `columns      ${meta.columns.join(', ')}`,
    `mean         ${meta.standardization.mean.map((v) => Number(v.toPrecision(6))).join(', ')}`,
    `std          ${meta.standardization.std.map((v) => Number(v.toPrecision(6))).join(', ')}`,
  ];
  if (t && typeof t.epochs === 'number') {
    lines.push(
      `trained on   ${t.source ?? '?'}: ${t.trainRows} train / ${t.valRows} val rows${t.droppedRows ? ` (${t.droppedRows} dropped)` : ''}${t.dequantize ? ', dequantized' : ''}`,
      `training     ${t.epochs} epochs (best ${t.bestEpoch}${t.bestEpoch === 0 && f.mixture ? ': the mixture alone' : ''}, ${t.stopReason}), batch ${t.batchSize}, lr ${t.lr}${t.weightDecay ? `, weight decay ${t.weightDecay}` : ''}, seed ${t.seed}`,
      `val loglik   ${(-t.bestValNll).toFixed(4)} nats/row (${(-t.bestValNll / f.dim).toFixed(4)} nats/dim)`,
      ...(Array.isArray(t.restarts) && t.restarts.length > 1
        ? [
            `restarts     ${t.restarts.length}, kept #${(t.chosenRestart ?? 0) + 1}; val loglik ${t.restarts
              .map((r, _, all) => `${Number.isFinite(r.bestValNll) ? (-r.bestValNll).toFixed(4) : r.stopReason}${baseNote(r.components, all)}`)
              .join(', ')}`,
          ]
        : []),
      `backend      ${t.backend}, ${t.seconds} s, ${t.samplesPerSecond} samples/s`,
      `created      ${t.createdAt}`,
    );
  }
  if (backends) {
    for (const b of backends) lines.push(`backend ${b.backend.padEnd(10)} ${b.ok ? 'loads' : `unavailable: ${b.reason}`}`);
  }
  await writeStdout(lines.join('\n') + '\n');
  return 0;
}

/** Which base a restart had, when the restarts did not all have the same. */
function baseNote(components: number | undefined, all: { components?: number }[]): string {
  if (all.every((r) => (r.components ?? 0) === (all[0].components ?? 0))) return '';
  return components ? ` (${components}-Gaussian base)` : ' (standard normal base)';
}
