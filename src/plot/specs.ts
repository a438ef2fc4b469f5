/**
 * The pictures as Vega-Lite specs: a density heatmap with points (2 columns), a pair plot
 * (more columns) and the training curve. Pure functions of precomputed numbers.
 */
import type { TopLevelSpec } from 'vega-lite';
import { FONT } from './fonts.js';
import type { HistogramBar, Range } from './summaries.js';

type VConcatTop = Extract<TopLevelSpec, { vconcat: unknown }>;
/** Any Vega-Lite view that can sit inside a concatenation. */
export type Spec = VConcatTop['vconcat'][number];
type Datasets = NonNullable<VConcatTop['datasets']>;
type Row = Record<string, number | string>;

export const DATA_COLOUR = '#5b6b7f';
export const MODEL_COLOUR = '#e4572e';

const AXIS = { labelFontSize: 11, titleFontSize: 13, titleFontWeight: 'normal' as const, grid: false, tickCount: 5, labelFlush: true };

export interface DensityPicture {
  names: [string, string];
  /** Grid cells with their density. */
  cells: { x: number; x2: number; y: number; y2: number; density: number }[];
  x: Range;
  y: Range;
  points: { x: number; y: number }[];
  pointsLabel: 'data' | 'model';
  width: number;
  height: number;
}

/** D = 2: the model density as a heatmap, with data rows or model draws on top. */
export function densitySpec(p: DensityPicture): Spec {
  const xScale = { domain: p.x, nice: false, zero: false };
  const yScale = { domain: p.y, nice: false, zero: false };
  const colourScale = { scheme: 'viridis' as const };
  return {
    width: p.width,
    height: p.height,
    view: { stroke: null },
    layer: [
      {
        data: { values: p.cells },
        mark: { type: 'rect' },
        encoding: {
          x: { field: 'x', type: 'quantitative', scale: xScale, axis: { ...AXIS, title: p.names[0] } },
          x2: { field: 'x2' },
          y: { field: 'y', type: 'quantitative', scale: yScale, axis: { ...AXIS, title: p.names[1] } },
          y2: { field: 'y2' },
          color: { field: 'density', type: 'quantitative', scale: colourScale, legend: { title: 'density', format: '.2~g', gradientLength: Math.max(120, p.height - 60) } },
        },
      },
      {
        data: { values: p.points },
        mark: {
          type: 'circle',
          size: 9,
          opacity: 0.65,
          clip: true,
          color: p.pointsLabel === 'data' ? 'white' : MODEL_COLOUR,
          stroke: p.pointsLabel === 'data' ? '#222222' : 'white',
          strokeWidth: 0.3,
        },
        encoding: {
          x: { field: 'x', type: 'quantitative', scale: xScale },
          y: { field: 'y', type: 'quantitative', scale: yScale },
        },
      },
    ],
  };
}

export interface PairPicture {
  names: string[];
  ranges: Range[];
  /** One object per point: fields c0..c(k−1) and `source` ('data' or 'model'). */
  points: Row[];
  /** Per column: bars per source. */
  histograms: { data?: HistogramBar[]; model: HistogramBar[] }[];
  cell: number;
}

/**
 * D > 2: below the diagonal, each pair of columns with data rows and model draws overlaid;
 * on the diagonal, each column's histogram for both; above it, nothing (it would mirror).
 */
export function pairsSpec(p: PairPicture): { spec: Spec; datasets: Datasets } {
  const k = p.names.length;
  const sources = p.histograms[0]?.data ? ['data', 'model'] : ['model'];
  const colour = {
    field: 'source',
    type: 'nominal' as const,
    scale: { domain: sources, range: sources.length === 2 ? [DATA_COLOUR, MODEL_COLOUR] : [MODEL_COLOUR] },
    // In the empty upper-right corner of the grid.
    legend: { title: null, orient: 'none' as const, legendX: (k - 1) * (p.cell + 4) + 8, legendY: 8, labelFontSize: 13, symbolSize: 140, symbolOpacity: 1 },
  };
  const hist: Row[] = [];
  p.histograms.forEach((h, col) => {
    for (const [source, bars] of [['data', h.data], ['model', h.model]] as const) {
      for (const b of bars ?? []) hist.push({ col, source, lo: b.lo, hi: b.hi, density: b.density });
    }
  });
  const pointSize = Math.max(3, Math.min(14, p.cell / 14));
  const axis = { ...AXIS, tickCount: 4 };
  const cells: Spec[] = [];
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const xAxis = i === k - 1 ? { ...axis, title: p.names[j] } : null;
      const yTitle = j === 0 ? { ...axis, title: p.names[i] } : null;
      const xScale = { domain: p.ranges[j], nice: false, zero: false };
      if (i === j) {
        cells.push({
          width: p.cell,
          height: p.cell,
          data: { name: 'hist' },
          transform: [{ filter: `datum.col === ${i}` }],
          mark: { type: 'rect', opacity: 0.55, clip: true },
          encoding: {
            x: { field: 'lo', type: 'quantitative', scale: xScale, axis: xAxis },
            x2: { field: 'hi' },
            y: { field: 'density', type: 'quantitative', axis: yTitle ? { ...yTitle, labels: false, ticks: false, domain: false } : null },
            y2: { datum: 0 },
            color: colour,
          },
        });
      } else if (i > j) {
        cells.push({
          width: p.cell,
          height: p.cell,
          data: { name: 'points' },
          mark: { type: 'circle', size: pointSize, opacity: 0.45, clip: true },
          encoding: {
            x: { field: `c${j}`, type: 'quantitative', scale: xScale, axis: xAxis },
            y: { field: `c${i}`, type: 'quantitative', scale: { domain: p.ranges[i], nice: false, zero: false }, axis: yTitle },
            color: colour,
          },
        });
      } else {
        cells.push({ width: p.cell, height: p.cell, data: { values: [] }, mark: 'point', view: { stroke: null } });
      }
    }
  }
  return {
    spec: { concat: cells, columns: k, spacing: 4, resolve: { scale: { color: 'shared' }, legend: { color: 'shared' } } },
    datasets: { points: p.points, hist },
  };
}

export interface CurvePicture {
  history: { epoch: number; trainNll: number; valNll: number }[];
  bestEpoch?: number;
  width: number;
  height: number;
}

/** Training and validation NLL per epoch, with the kept (best) epoch marked. */
export function curveSpec(p: CurvePicture): Spec {
  const values: Row[] = [];
  for (const h of p.history) {
    if (Number.isFinite(h.trainNll)) values.push({ epoch: h.epoch, nll: h.trainNll, set: 'train' });
    if (Number.isFinite(h.valNll)) values.push({ epoch: h.epoch, nll: h.valNll, set: 'validation' });
  }
  const layers: Spec[] = [
    {
      data: { values },
      mark: { type: 'line', strokeWidth: 2 },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', axis: { ...AXIS, title: 'epoch' } },
        y: { field: 'nll', type: 'quantitative', scale: { zero: false }, axis: { ...AXIS, title: 'NLL (nats/row)' } },
        color: {
          field: 'set',
          type: 'nominal',
          scale: { domain: ['train', 'validation'], range: ['#4c78a8', '#f58518'] },
          legend: { title: null, orient: 'top-right', labelFontSize: 12 },
        },
      },
    },
  ];
  if (p.bestEpoch !== undefined) {
    layers.push({
      data: { values: [{ epoch: p.bestEpoch }] },
      mark: { type: 'rule', strokeDash: [4, 4], color: '#888888' },
      encoding: { x: { field: 'epoch', type: 'quantitative' } },
    });
  }
  return { width: p.width, height: p.height, title: { text: 'training curve (dashed: kept epoch)', fontSize: 13, fontWeight: 'normal' }, layer: layers } as Spec;
}

/** The whole picture: the main panel, optionally the curve below, common look. */
export function topLevel(parts: Spec[], title: { text: string; subtitle?: string | string[] }, datasets: Datasets = {}): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    background: 'white',
    padding: 12,
    title: { text: title.text, subtitle: title.subtitle, fontSize: 15, subtitleFontSize: 12, anchor: 'start', subtitleColor: '#555555' },
    datasets,
    vconcat: parts,
    spacing: 28,
    resolve: { scale: { color: 'independent', stroke: 'independent' }, legend: { color: 'independent' } },
    config: {
      // No ARIA labels on every mark: they would double the size of an SVG with many points.
      aria: false,
      font: FONT,
      view: { stroke: '#cccccc' },
      axis: { labelColor: '#333333', titleColor: '#222222' },
    },
  };
}
