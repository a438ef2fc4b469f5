/**
 * The one typeface of every picture (DejaVu Sans, from the `dejavu-fonts-ttf` package),
 * and text widths measured from its glyph advances. Without a canvas, Vega guesses text
 * widths at 0.8 em per character, which overestimates long titles by a third or more;
 * real widths let the layout, and so the requested image size, come out right.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

export const FONT = 'DejaVu Sans';

export interface FontFiles {
  regular: string;
  bold: string;
}

/** Paths of the bundled font files, or null if the package is missing. */
export function fontFiles(): FontFiles | null {
  try {
    const dir = join(dirname(require.resolve('dejavu-fonts-ttf/package.json')), 'ttf');
    return { regular: join(dir, 'DejaVuSans.ttf'), bold: join(dir, 'DejaVuSans-Bold.ttf') };
  } catch {
    return null;
  }
}

/** The part of opentype.js used here. */
interface OpenTypeFont {
  unitsPerEm: number;
  charToGlyph(c: string): { advanceWidth?: number };
}
interface OpenType {
  parse(buffer: ArrayBuffer): OpenTypeFont;
}

/** Text item properties Vega passes when it measures text. */
export interface TextItem {
  text?: unknown;
  fontSize?: number;
  fontWeight?: string | number;
}

export type WidthFunction = (item: TextItem, text?: unknown) => number;

function load(path: string): OpenTypeFont {
  const opentype = require('opentype.js') as OpenType;
  const b = readFileSync(path);
  return opentype.parse(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
}

/** A width function for Vega's `textMetrics.width`, or null if the fonts cannot be read. */
export function measuredWidths(files: FontFiles | null): WidthFunction | null {
  if (!files) return null;
  let regular: OpenTypeFont;
  let bold: OpenTypeFont;
  try {
    regular = load(files.regular);
    bold = load(files.bold);
  } catch {
    return null;
  }
  const cache = new Map<string, number>();
  const advance = (font: OpenTypeFont, key: string, c: string): number => {
    let w = cache.get(key);
    if (w === undefined) {
      w = (font.charToGlyph(c).advanceWidth ?? font.unitsPerEm * 0.6) / font.unitsPerEm;
      cache.set(key, w);
    }
    return w;
  };
  return (item, text) => {
    const value = text ?? item.text;
    const s = Array.isArray(value) ? value.join(' ') : value === undefined || value === null ? '' : String(value);
    const weight = item.fontWeight;
    const isBold = weight === 'bold' || weight === 'bolder' || (typeof weight === 'number' && weight >= 600);
    const font = isBold ? bold : regular;
    const prefix = isBold ? 'b' : 'r';
    let em = 0;
    for (const c of s) em += advance(font, prefix + c, c);
    return em * (item.fontSize ?? 11);
  };
}
