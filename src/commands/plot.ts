/**
 * `nf plot`: a picture of what a saved flow learned, as PNG or SVG.
 * Two columns: the model density as a heatmap with data rows (--data) or model draws on
 * top. More: a pair plot of model draws against data rows with per-column histograms.
 * --curve adds the training curve stored in the checkpoint.
 */
import { basename, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { requestedBackend, startEngine } from '../engine.js';
import { Model } from '../model.js';
import { checkWritable, imageFormat, writeImage, type ImageFormat } from '../plot/output.js';
import { toPng, toSvg } from '../plot/render.js';
import { reservoirRows, type RowSet } from '../plot/sample-rows.js';
import { curveSpec, densitySpec, pairsSpec, topLevel, type Spec } from '../plot/specs.js';
import { gridPoints, histogram, robustRange, type Range } from '../plot/summaries.js';
import { Rng, freshSeed } from '../rng.js';
import { note } from '../terminal.js';

export interface PlotOptions {
  model: string;
  backend?: string;
  output: string;
  format?: ImageFormat;
  data?: string;
  header: boolean;
  columns?: string[];
  points?: number;
  width?: number;
  height?: number;
  curve?: boolean;
  seed?: number;
}

const CURVE_HEIGHT = 190;
const CURVE_BLOCK = CURVE_HEIGHT + 90;
const HIST_BINS = 30;
const HIST_ROWS = 5000;

/** --columns against the model's columns: names or 1-based indices. */
function pickColumns(model: Model, wanted: string[] | undefined): number[] {
  const cols = model.meta.columns;
  if (!wanted) return cols.map((_, i) => i);
  const picked = wanted.map((w) => {
    const byName = cols.indexOf(w);
    if (byName >= 0) return byName;
    if (/^\d+$/.test(w) && Number(w) >= 1 && Number(w) <= cols.length) return Number(w) - 1;
    throw new UsageError(`--columns: the model has no column '${w}' (columns: ${cols.join(', ')})`);
  });
  const again = picked.findIndex((c, i) => picked.indexOf(c) !== i);
  if (again >= 0) throw new UsageError(`--columns ${wanted[picked.indexOf(picked[again])]} and ${wanted[again]} both pick column '${cols[picked[again]]}'`);
  if (picked.length < 2) throw new UsageError('--columns: choose at least two columns to plot');
  return picked;
}

function describe(model: Model, dir: string): string {
  const f = model.meta.flow;
  return `${basename(resolve(dir))}: ${f.type === 'nice' ? 'NICE' : 'RealNVP'}, ${f.layers} coupling layers, hidden ${f.hiddenLayers}×${f.hidden}`;
}

export async function plot(opts: PlotOptions): Promise<number> {
  const format = imageFormat(opts.output, opts.format);
  await checkWritable(opts.output);
  await startEngine(requestedBackend(opts.backend));
  const model = await Model.load(opts.model);
  try {
    const rng = new Rng(opts.seed ?? freshSeed());
    const picked = pickColumns(model, opts.columns);
    const D = model.dim;
    const k = picked.length;
    const density = D === 2;
    const points = opts.points ?? (density ? 1000 : Math.max(250, Math.min(1000, Math.round(12000 / ((k * (k - 1)) / 2)))));
    const width = opts.width ?? (density ? 760 : Math.max(600, Math.min(1800, 140 * k + 160)));
    const curveBlock = opts.curve ? CURVE_BLOCK : 0;
    const height = opts.height ?? (density ? 620 : width) + curveBlock;

    // Histograms use more rows than are drawn as points (a pair plot shows fewer points per cell).
    const pool = density ? points : Math.max(points, HIST_ROWS);
    const dataPool = opts.data ? await reservoirRows(opts.data, opts.header, model.meta.columns, pool, rng) : null;
    const samplePool: RowSet = { values: model.sample(pool, 1, rng), rows: pool, total: pool, skipped: 0 };
    const data = dataPool ? subset(dataPool, points, D, rng) : null;
    const samples = subset(samplePool, points, D, rng);
    const shown = data ? `${data.rows === data.total ? 'all' : data.rows} of ${data.total} rows of ${basename(opts.data ?? '')}` : `${points} model draws`;

    const parts: Spec[] = [];
    let datasets = {};
    let subtitle: string | string[];
    if (density) {
      const plotW = Math.max(120, width - 160);
      const plotH = Math.max(100, height - curveBlock - 112);
      parts.push(densityPanel(model, picked, data ?? samples, data ? 'data' : 'model', plotW, plotH));
      subtitle = `shading: model density; points: ${shown}`;
    } else {
      const side = Math.min(width - 130, height - curveBlock - 165);
      const cell = Math.max(40, Math.floor((side - 4 * (k - 1)) / k));
      const pairs = pairsPanel(model, picked, { data, samples, dataPool, samplePool }, cell);
      parts.push(pairs.spec);
      datasets = pairs.datasets;
      subtitle = [
        data ? `points: ${shown} (grey), ${samples.rows} model draws (orange)` : `points: ${samples.rows} model draws`,
        `histograms: ${dataPool ? `${dataPool.rows} data rows and ` : ''}${samplePool.rows} model draws`,
      ];
    }
    if (opts.curve) {
      const history = model.meta.training?.history ?? [];
      if (history.length === 0) note('the checkpoint holds no training history; no curve drawn');
      else parts.push(curveSpec({ history, bestEpoch: model.meta.training?.bestEpoch, width: Math.max(200, width - 190), height: CURVE_HEIGHT }));
    }
    if (data && data.skipped > 0) note(`${opts.data}: left out ${data.skipped} row(s) with missing or invalid values`);

    const svg = await toSvg(topLevel(parts, { text: describe(model, opts.model), subtitle }, datasets), width, height);
    await writeImage(opts.output, format === 'svg' ? svg : toPng(svg));
    if (opts.output !== '-') note(`wrote ${opts.output} (${width}×${height} ${format.toUpperCase()})`);
  } finally {
    model.dispose();
  }
  return 0;
}

function densityPanel(model: Model, picked: number[], shown: RowSet, label: 'data' | 'model', plotW: number, plotH: number): Spec {
  const [a, b] = picked;
  const { mean, std } = model.meta.standardization;
  const ranges = [a, b].map((c) => robustRange([shown], 2, c, 0.08, [mean[c] - 4 * std[c], mean[c] + 4 * std[c]]));
  const nx = Math.max(20, Math.min(140, Math.round(plotW / 6)));
  const ny = Math.max(20, Math.min(140, Math.round(plotH / 6)));
  const grid = { x: ranges[0], y: ranges[1], nx, ny };
  const xy = gridPoints(grid);
  // Rows in the model's column order (the picked order may be swapped).
  const rows = new Float32Array(nx * ny * 2);
  for (let i = 0; i < nx * ny; i++) {
    rows[i * 2 + a] = xy[i * 2];
    rows[i * 2 + b] = xy[i * 2 + 1];
  }
  const logp = model.logProb(rows, nx * ny);
  const dx = (grid.x[1] - grid.x[0]) / nx;
  const dy = (grid.y[1] - grid.y[0]) / ny;
  // Each cell reaches a little into its upper-right neighbour, which is drawn over it:
  // abutting rectangles would leave anti-aliased hairline seams.
  const cells = Array.from({ length: nx * ny }, (_, i) => {
    const v = Math.exp(logp[i]);
    const x = xy[i * 2] - dx / 2;
    const y = xy[i * 2 + 1] - dy / 2;
    return { x, x2: Math.min(x + 1.25 * dx, grid.x[1]), y, y2: Math.min(y + 1.25 * dy, grid.y[1]), density: Number.isFinite(v) ? v : 0 };
  });
  const points = Array.from({ length: shown.rows }, (_, r) => ({ x: shown.values[r * 2 + a], y: shown.values[r * 2 + b] }));
  const names = model.meta.columns;
  return densitySpec({ names: [names[a], names[b]], cells, x: ranges[0] as Range, y: ranges[1] as Range, points, pointsLabel: label, width: plotW, height: plotH });
}

/** `n` rows of `set` chosen at random (all of them, in order, when it has no more). */
function subset(set: RowSet, n: number, D: number, rng: Rng): RowSet {
  if (set.rows <= n) return set;
  const order = rng.permutation(set.rows);
  const values = new Float32Array(n * D);
  for (let i = 0; i < n; i++) values.set(set.values.subarray(order[i] * D, order[i] * D + D), i * D);
  return { ...set, values, rows: n };
}

interface PairRows {
  data: RowSet | null;
  samples: RowSet;
  dataPool: RowSet | null;
  samplePool: RowSet;
}

function pairsPanel(model: Model, picked: number[], rows: PairRows, cell: number): ReturnType<typeof pairsSpec> {
  const D = model.dim;
  const { mean, std } = model.meta.standardization;
  const { data, samples, dataPool, samplePool } = rows;
  const sets = dataPool ? [dataPool, samplePool] : [samplePool];
  const ranges = picked.map((c) => robustRange(sets, D, c, 0.05, [mean[c] - 4 * std[c], mean[c] + 4 * std[c]]));
  // Data rows and model draws alternate, so neither source is always painted on top.
  const points: Record<string, number | string>[] = [];
  const point = (source: string, set: RowSet, r: number): void => {
    const row: Record<string, number | string> = { source };
    picked.forEach((c, j) => (row[`c${j}`] = set.values[r * D + c]));
    points.push(row);
  };
  for (let r = 0; r < Math.max(samples.rows, data?.rows ?? 0); r++) {
    if (data && r < data.rows) point('data', data, r);
    if (r < samples.rows) point('model', samples, r);
  }
  const histograms = picked.map((c, j) => ({
    data: dataPool ? histogram(dataPool.values, dataPool.rows, D, c, ranges[j], HIST_BINS) : undefined,
    model: histogram(samplePool.values, samplePool.rows, D, c, ranges[j], HIST_BINS),
  }));
  return pairsSpec({ names: picked.map((c) => model.meta.columns[c]), ranges, points, histograms, cell });
}
