// Shared helpers for the test suite: backends to run on, the built CLI, small math utilities.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const bin = join(root, 'bin', 'nf.js');
export const fixture = (name) => join(root, 'test', 'fixtures', name);
export const example = (name) => join(root, 'examples', name);
export const tempDir = (prefix = 'nf-test-') => mkdtempSync(join(tmpdir(), prefix));

/**
 * Backends the engine-dependent tests run on: every one that loads here.
 * NF_TEST_BACKENDS=cpu,wasm narrows the list.
 */
export async function testBackends() {
  const { probeBackends } = await import('../dist/engine.js');
  const wanted = process.env.NF_TEST_BACKENDS?.split(',').map((s) => s.trim());
  const probed = await probeBackends();
  return probed.filter((b) => b.ok && (!wanted || wanted.includes(b.backend))).map((b) => b.backend);
}

/** Runs the real binary; resolves with { code, stdout, stderr }. */
export function runNf(args, { input, env, cwd, timeout } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: cwd ?? root,
      // A hang fails its test (signal SIGTERM, exit code null) instead of stalling the suite.
      timeout: timeout ?? 15 * 60 * 1000,
      env: { ...process.env, NO_COLOR: '1', NF_MODEL: '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.on('error', () => {});
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

/** Runs a shell pipeline (bash -o pipefail off: we want the last command's status). */
export function runShell(script, { cwd, env } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { cwd: cwd ?? root, env: { ...process.env, NO_COLOR: '1', NF: `${process.execPath} ${bin}`, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export function parseCsv(text) {
  const lines = text.trim().split('\n');
  return { header: lines[0].split(','), rows: lines.slice(1).map((l) => l.split(',').map(Number)) };
}

export const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
