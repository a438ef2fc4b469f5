/**
 * Vega-Lite spec → SVG (Vega's headless renderer) → PNG (resvg). The rendering stack is
 * loaded here, on first use, so no other command pays for it. Text is measured and
 * drawn with the DejaVu Sans files of the `dejavu-fonts-ttf` package, so a PNG looks the
 * same on every machine whatever fonts it has installed.
 */
import { createRequire } from 'node:module';
import type * as VegaNs from 'vega';
import type * as VegaLiteNs from 'vega-lite';
import type * as ResvgNs from '@resvg/resvg-js';
import type { TopLevelSpec } from 'vega-lite';
import { FONT, fontFiles, measuredWidths, type WidthFunction } from './fonts.js';

const require = createRequire(import.meta.url);

let measured = false;

/** Vega measures text with the bundled font's real glyph widths (once per process). */
function useMeasuredText(vega: typeof VegaNs): void {
  if (measured) return;
  measured = true;
  const width = measuredWidths(fontFiles());
  // Vega's documented hook for custom text measurement (missing from its type declarations).
  if (width) (vega as unknown as { textMetrics: { width: WidthFunction } }).textMetrics.width = width;
}

/** Renders a Vega-Lite spec to an SVG document of exactly `width` × `height` pixels. */
export async function toSvg(spec: TopLevelSpec, width: number, height: number): Promise<string> {
  const vega = require('vega') as typeof VegaNs;
  const vl = require('vega-lite') as typeof VegaLiteNs;
  useMeasuredText(vega);
  // Vega-Lite's warnings concern our own specs, not the user's data: keep stderr clean.
  const logger = vega.logger(process.env.NF_DEBUG === '1' ? vega.Warn : vega.Error);
  const compiled = vl.compile(spec, { logger }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logLevel: process.env.NF_DEBUG === '1' ? vega.Warn : vega.Error });
  try {
    const svg = await view.toSVG();
    return fitSvg(roundCoordinates(svg), width, height);
  } finally {
    view.finalize();
  }
}

/**
 * Places Vega's SVG (whose size follows from the layout) centred in a white canvas of
 * the requested size, scaled down if it does not fit.
 */
export function fitSvg(svg: string, width: number, height: number): string {
  const open = /^<svg\b[^>]*>/.exec(svg);
  if (!open) throw new Error('the renderer produced no SVG element');
  const attr = (name: string): number => Number(new RegExp(`\\s${name}="([\\d.]+)"`).exec(open[0])?.[1]);
  const w = attr('width');
  const h = attr('height');
  if (!(w > 0) || !(h > 0)) throw new Error('the renderer produced an SVG without a size');
  const scale = Math.min(1, width / w, height / h);
  const sw = w * scale;
  const sh = h * scale;
  const x = (width - sw) / 2;
  const y = (height - sh) / 2;
  const inner = `<svg x="${round(x)}" y="${round(y)}" width="${round(sw)}" height="${round(sh)}" viewBox="0 0 ${w} ${h}">` + svg.slice(open[0].length);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1" ` +
    `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `<rect width="${width}" height="${height}" fill="white"/>${inner}</svg>`
  );
}

/** Geometry attributes with two decimals (a hundredth of a pixel): Vega writes ~15 digits. */
export function roundCoordinates(svg: string): string {
  return svg.replace(/\s(transform|d|x|y|x1|x2|y1|y2|width|height)="([^"]*)"/g, (_, name: string, value: string) => {
    const v = value.replace(/-?\d+\.\d{3,}(?:e-?\d+)?/g, (num) => String(Math.round(Number(num) * 100) / 100));
    return ` ${name}="${v}"`;
  });
}

function round(v: number): string {
  return String(Math.round(v * 100) / 100);
}

/** Rasterises an SVG document at its own size. */
export function toPng(svg: string): Buffer {
  const { Resvg } = require('@resvg/resvg-js') as typeof ResvgNs;
  const files = fontFiles();
  const resvg = new Resvg(svg, {
    font: files
      ? { fontFiles: [files.regular, files.bold], loadSystemFonts: false, defaultFontFamily: FONT, sansSerifFamily: FONT }
      : { loadSystemFonts: true },
    fitTo: { mode: 'original' },
    background: 'white',
    logLevel: 'off',
  });
  return resvg.render().asPng();
}
