// `nf plot`: the files are valid PNG / SVG images of the requested size, with something drawn.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { example, root, runNf, tempDir } from './helpers.js';

const require = createRequire(import.meta.url);
const moons = join(root, 'models', 'moons');
const dir = tempDir('nf-plot-');
let model3;
let data3;

/** Width, height and colour type from a PNG's IHDR, after checking the signature and chunk order. */
function pngInfo(buf) {
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(buf.toString('latin1', 12, 16), 'IHDR');
  const idat = [];
  let at = 8;
  let end = false;
  while (at < buf.length) {
    const len = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    if (type === 'IDAT') idat.push(buf.subarray(at + 8, at + 8 + len));
    if (type === 'IEND') end = true;
    at += 12 + len;
  }
  assert.ok(end, 'PNG has an IEND chunk');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20), bitDepth: buf[24], colourType: buf[25], pixels: inflateSync(Buffer.concat(idat)) };
}

/** How many distinct byte values the decompressed image data holds: a blank image has very few. */
function variety(pixels) {
  return new Set(pixels).size;
}

function checkSvg(path, width, height, words) {
  const svg = readFileSync(path, 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  const open = /^<svg [^>]*>/.exec(svg)[0];
  assert.match(open, new RegExp(`width="${width}"`));
  assert.match(open, new RegExp(`height="${height}"`));
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  for (const w of words) assert.ok(svg.includes(`>${w}</text>`), `the SVG shows '${w}'`);
  // It parses: the renderer nf uses reads it back at the same size.
  const { Resvg } = require('@resvg/resvg-js');
  const r = new Resvg(svg, { font: { loadSystemFonts: false } });
  assert.equal(r.width, width);
  assert.equal(r.height, height);
}

before(async () => {
  // A small 3-D model: two correlated columns and a bimodal one.
  let s = 5;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 4294967296;
  };
  const n = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  const rows = ['p,q,r'];
  for (let i = 0; i < 1500; i++) {
    const p = n();
    rows.push([p, 0.7 * p + 0.5 * n(), (u() < 0.5 ? -2 : 2) + 0.4 * n()].map((v) => v.toFixed(4)).join(','));
  }
  data3 = join(dir, 'three.csv');
  writeFileSync(data3, rows.join('\n') + '\n');
  model3 = join(dir, 'three-model');
  const r = await runNf(['fit', data3, '-m', model3, '--layers', '4', '--hidden', '32', '--epochs', '8', '--seed', '1', '-q']);
  assert.equal(r.code, 0, r.stderr);
});

test('2-D model: PNG heatmap of the requested size, with the data drawn on it', async () => {
  const out = join(dir, 'moons.png');
  const r = await runNf(['plot', '-m', moons, '--data', example('moons.csv'), '-o', out, '--width', '500', '--height', '420', '--seed', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '', 'stdout stays empty');
  const info = pngInfo(readFileSync(out));
  assert.equal(info.width, 500);
  assert.equal(info.height, 420);
  assert.ok(variety(info.pixels) > 100, 'not a blank image');
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temporary file left');
});

test('2-D model: SVG by extension, default size, axes named after the columns', async () => {
  const out = join(dir, 'moons.svg');
  const r = await runNf(['plot', '-m', moons, '-o', out, '--seed', '1', '-q']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  checkSvg(out, 760, 620, ['x1', 'x2', 'density']);
});

test('3-D model: pair plot as PNG and SVG (with the training curve), sizes as asked', async () => {
  const png = join(dir, 'three.png');
  const a = await runNf(['plot', '-m', model3, '--data', data3, '-o', png, '--width', '640', '--height', '700', '--curve', '--seed', '1']);
  assert.equal(a.code, 0, a.stderr);
  const info = pngInfo(readFileSync(png));
  assert.deepEqual([info.width, info.height], [640, 700]);
  assert.ok(variety(info.pixels) > 100, 'not a blank image');

  const svg = join(dir, 'three.svg');
  const b = await runNf(['plot', '-m', model3, '--data', data3, '-o', svg, '--width', '600', '--height', '820', '--curve', '--seed', '1']);
  assert.equal(b.code, 0, b.stderr);
  checkSvg(svg, 600, 820, ['p', 'q', 'r', 'data', 'model', 'epoch']);

  const cols = join(dir, 'two-of-three.svg');
  const c = await runNf(['plot', '-m', model3, '-o', cols, '--columns', 'r,1', '--seed', '1']);
  assert.equal(c.code, 0, c.stderr);
  const text = readFileSync(cols, 'utf8');
  assert.ok(text.includes('>r</text>') && text.includes('>p</text>') && !text.includes('>q</text>'));
});

test('plot refuses unknown formats, missing output and unknown columns with usage errors', async () => {
  const jpg = await runNf(['plot', '-m', moons, '-o', join(dir, 'x.jpg')]);
  assert.equal(jpg.code, 2);
  assert.match(jpg.stderr, /\.png or \.svg/);
  assert.equal(existsSync(join(dir, 'x.jpg')), false);
  const none = await runNf(['plot', '-m', moons]);
  assert.equal(none.code, 2);
  const col = await runNf(['plot', '-m', model3, '-o', join(dir, 'y.png'), '--columns', 'p,zz']);
  assert.equal(col.code, 2);
  assert.match(col.stderr, /no column 'zz'/);
  const twice = await runNf(['plot', '-m', moons, '-o', join(dir, 'z.png'), '--columns', '1,x1']);
  assert.equal(twice.code, 2);
  assert.equal(twice.stderr, "nf: error: --columns 1 and x1 both pick column 'x1'\n");
});
