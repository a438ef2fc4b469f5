#!/usr/bin/env node
// `npm run setup:native`: makes the native TensorFlow backend (@tensorflow/tfjs-node) work
// without its install script, whose libtensorflow download host is unreachable.
//
// Steps, each skipped when already done:
//   1. fetch TensorFlow's CPU wheel from PyPI with pip (cached under ~/.cache/nf-native),
//      keep only libtensorflow_cc.so.2 (it exports the C API), libtensorflow_framework.so.2
//      and the few C headers the binding includes;
//   2. install @tensorflow/tfjs-node with --ignore-scripts (package.json and the lockfile
//      are left as they were);
//   3. lay out its deps/{lib,include} and build its addon with node-gyp against the local
//      Node headers (no network), caching the built addon next to the libraries;
//   4. load the `tensorflow` backend through nf's own engine and run a small op.
//
// Run it after `npm ci` (which empties node_modules). Every failure ends in one line on
// stderr saying what to do. Environment: NF_TF_VERSION (another tensorflow-cpu version, for
// experiments), NF_NATIVE_CACHE (cache directory), NF_NATIVE_REBUILD=1 (rebuild the addon
// even if one is cached; delete the cache directory to fetch the wheel again).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// Chosen by measurement (see "Native backend" in the README): the newest tensorflow-cpu
// whose C API builds tfjs-node 4.22.0's binding and passes nf's tests.
const TF_VERSION = process.env.NF_TF_VERSION?.trim() || '2.21.0';
// The wheel's shared libraries do not depend on Python; fixing the tags makes the same
// wheel come down whatever python3 is installed.
const WHEEL_PYTHON = '3.11';
const WHEEL_PLATFORMS = ['manylinux_2_27_x86_64', 'manylinux2014_x86_64'];
// Header directories (inside the wheel's tensorflow/include/) that hold what
// tensorflow/c/c_api.h and tensorflow/c/eager/c_api.h include; the layout moved between
// TensorFlow versions, so several candidates are listed and missing ones are ignored.
const HEADER_DIRS = [
  'tensorflow/c/',
  'tensorflow/core/platform/',
  'tensorflow/tsl/c/',
  'tensorflow/tsl/platform/',
  'tsl/c/',
  'tsl/platform/',
  'xla/tsl/c/',
  'xla/tsl/platform/',
];
const LIBS = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'];

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const TFJS_NODE_VERSION = pkg.optionalDependencies?.['@tensorflow/tfjs-node'] ?? pkg.dependencies?.['@tensorflow/tfjs-node'];
const tfjsNodeDir = path.join(root, 'node_modules', '@tensorflow', 'tfjs-node');
const cacheRoot = process.env.NF_NATIVE_CACHE || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'nf-native');
const cacheDir = path.join(cacheRoot, `tensorflow-cpu-${TF_VERSION}`);
const rebuild = process.env.NF_NATIVE_REBUILD === '1';
const pinnedHint = process.env.NF_TF_VERSION ? 'unset NF_TF_VERSION to use the pinned version' : 'report it (the pinned version should have it)';
const started = Date.now();

class SetupError extends Error {}
const fail = (msg) => {
  throw new SetupError(msg);
};
const say = (msg) => process.stderr.write(`setup:native: ${msg}\n`);

/** Runs a command; returns { status, stdout, stderr } (never throws on a non-zero exit). */
function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error && r.error.code === 'ENOENT') return { status: null, missing: true, stdout: '', stderr: '' };
  if (r.error) return { status: null, stdout: r.stdout ?? '', stderr: String(r.error.message) };
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Last non-empty line of a command's output, for one-line error messages. */
function lastLine(text) {
  const lines = String(text).split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.at(-1) ?? '';
}

/** Writes a failed command's full output to a log file and returns its path. */
function keepLog(name, r) {
  fs.mkdirSync(cacheRoot, { recursive: true });
  const file = path.join(cacheRoot, `${name}.log`);
  fs.writeFileSync(file, `${r.stdout}\n${r.stderr}`);
  return file;
}

// ---------------------------------------------------------------- checks

function checkPlatform() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`the native backend is set up from TensorFlow's Linux x86-64 wheel; this machine is ${process.platform}-${process.arch}, so nf will use the wasm backend (nothing to do)`);
  }
  const glibc = process.report?.getReport?.().header?.glibcVersionRuntime;
  if (!glibc) fail('this Linux does not use glibc (musl/Alpine?); TensorFlow\'s wheels need glibc, so nf will use the wasm backend');
  const [maj, min] = glibc.split('.').map(Number);
  if (maj < 2 || (maj === 2 && min < 27)) fail(`glibc ${glibc} is older than the 2.27 TensorFlow ${TF_VERSION} needs; use a newer distribution, or keep the wasm backend`);
  if (Number(process.versions.napi) < 3) fail(`this Node.js (${process.version}) lacks Node-API 3; upgrade Node.js (nf needs >= 20)`);
  if (!TFJS_NODE_VERSION) fail('package.json does not list @tensorflow/tfjs-node; restore it from git');
  if (!fs.existsSync(path.join(root, 'node_modules', '@tensorflow', 'tfjs-core', 'package.json'))) {
    fail('node_modules is not installed: run npm ci first, then npm run setup:native');
  }
}

function findPython() {
  for (const py of [process.env.PYTHON, 'python3', 'python'].filter(Boolean)) {
    const r = run(py, ['-m', 'pip', '--version']);
    if (r.status === 0) return py;
    if (!r.missing && py !== 'python') {
      const v = run(py, ['--version']);
      if (v.status === 0) fail(`${py} has no pip: install it (Debian/Ubuntu: apt-get install python3-pip) and run npm run setup:native again`);
    }
  }
  fail('python3 with pip not found (needed to fetch the TensorFlow wheel from PyPI): install it (Debian/Ubuntu: apt-get install python3 python3-pip) and run npm run setup:native again');
}

function checkCompiler() {
  const cxx = process.env.CXX || 'g++';
  if (run(cxx, ['--version']).status !== 0) fail(`C++ compiler '${cxx}' not found (needed to build tfjs-node's addon): install one (Debian/Ubuntu: apt-get install g++ make) or set CXX`);
  if (run('make', ['--version']).status !== 0) fail("'make' not found (needed to build tfjs-node's addon): install it (Debian/Ubuntu: apt-get install make)");
}

/** node-gyp's options for the Node headers, without any download. */
function nodeHeaders() {
  const has = (dir) => fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h')) && fs.existsSync(path.join(dir, 'include', 'node', 'common.gypi'));
  const given = process.env.npm_config_nodedir;
  if (given) {
    if (!has(given)) fail(`npm_config_nodedir=${given} has no include/node/node_api.h; point it at a Node.js install or header tree`);
    return [`--nodedir=${given}`];
  }
  const prefix = path.dirname(path.dirname(fs.realpathSync(process.execPath)));
  if (has(prefix)) return [`--nodedir=${prefix}`];
  const devdir = path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node);
  if (has(devdir)) return [];
  fail(`Node.js headers not found (looked in ${path.join(prefix, 'include', 'node')} and ${devdir}): install Node.js with its headers (official tarball, NodeSource's nodejs, or Debian's libnode-dev) or set npm_config_nodedir`);
}

function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(path.dirname(fs.realpathSync(process.execPath))), 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const found = candidates.find((p) => p && fs.existsSync(p));
  if (!found) fail('node-gyp not found (it ships with npm): run this as `npm run setup:native`, or set npm_config_node_gyp to node-gyp.js');
  return found;
}

function checkDisk(dir, bytes, what) {
  fs.mkdirSync(dir, { recursive: true });
  const s = fs.statfsSync?.(dir);
  if (s && s.bavail * s.bsize < bytes) fail(`not enough free disk space for ${what} in ${dir} (need ~${Math.ceil(bytes / 1e9)} GB): free some space or set NF_NATIVE_CACHE to another disk`);
}

// ---------------------------------------------------------------- 1. the wheel

function ensureLibtensorflow() {
  const marker = path.join(cacheDir, 'complete.json');
  if (fs.existsSync(marker) && LIBS.every((l) => fs.existsSync(path.join(cacheDir, 'lib', l)))) {
    say(`TensorFlow ${TF_VERSION} libraries: cached in ${cacheDir}`);
    return;
  }
  const python = findPython();
  checkDisk(cacheRoot, 1.3e9, 'the TensorFlow wheel and its libraries');
  const tmp = `${cacheDir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    say(`downloading tensorflow-cpu ${TF_VERSION} from PyPI with pip (about 270 MB)...`);
    const args = ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--disable-pip-version-check', '--progress-bar', 'off',
      '--python-version', WHEEL_PYTHON, '--implementation', 'cp', '--abi', `cp${WHEEL_PYTHON.replace('.', '')}`, ...WHEEL_PLATFORMS.flatMap((p) => ['--platform', p]),
      '-d', tmp, `tensorflow-cpu==${TF_VERSION}`];
    const r = run(python, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) {
      const log = keepLog('pip-download', r);
      if (/No matching distribution|Could not find a version/i.test(r.stderr)) {
        fail(`PyPI has no Linux x86-64 CPython ${WHEEL_PYTHON} wheel of tensorflow-cpu==${TF_VERSION} (full log: ${log}); ${process.env.NF_TF_VERSION ? pinnedHint : 'check your pip index settings (pip config list)'}`);
      }
      fail(`pip could not download tensorflow-cpu==${TF_VERSION}: ${lastLine(r.stderr) || `pip exited with ${r.status}`} (full log: ${log}); check network access to PyPI or your pip index settings`);
    }
    const wheel = fs.readdirSync(tmp).find((f) => f.endsWith('.whl'));
    if (!wheel) fail(`pip reported success but left no wheel in ${tmp}; run again, or delete ${cacheRoot}`);
    say(`extracting libtensorflow from ${wheel}...`);
    // Python's zipfile does the unpacking: python3 is required anyway and unzip may be absent.
    const extract = `
import json, os, shutil, sys, zipfile
wheel, out, libs, dirs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
got = []
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if name.endswith('/'):
            continue
        if name.startswith('tensorflow/') and name[len('tensorflow/'):] in libs:
            dest = os.path.join(out, 'lib', os.path.basename(name))
        elif name.startswith('tensorflow/include/') and any(name[len('tensorflow/include/'):].startswith(d) for d in dirs) and name.endswith('.h'):
            dest = os.path.join(out, 'include', name[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        got.append(name)
print(len(got))
`;
    const x = run(python, ['-c', extract, path.join(tmp, wheel), tmp, JSON.stringify(LIBS), JSON.stringify(HEADER_DIRS)]);
    if (x.status !== 0) fail(`could not extract ${wheel}: ${lastLine(x.stderr)}; delete ${cacheRoot} and run again`);
    const missing = LIBS.filter((l) => !fs.existsSync(path.join(tmp, 'lib', l)));
    if (missing.length) fail(`the tensorflow-cpu ${TF_VERSION} wheel has no ${missing.join(', ')} (older wheels, such as 2.9.x, keep the C API inside a Python module); ${pinnedHint}`);
    for (const h of ['tensorflow/c/c_api.h', 'tensorflow/c/eager/c_api.h']) {
      if (!fs.existsSync(path.join(tmp, 'include', h))) fail(`the tensorflow-cpu ${TF_VERSION} wheel has no ${h}; ${pinnedHint}`);
    }
    // The C API must be exported (symbols carry a version suffix, e.g. TFE_NewContext@@tensorflow).
    // The symbol table is ~100 MB of text, so grep reads it rather than this process.
    const hasNm = run('nm', ['--version']).status === 0;
    const exported = hasNm && run('sh', ['-c', 'nm -D --defined-only "$1" | grep -Eq " T TFE_NewContext(@|$)"', 'sh', path.join(tmp, 'lib', LIBS[0])]).status === 0;
    if (hasNm && !exported) {
      fail(`${LIBS[0]} in tensorflow-cpu ${TF_VERSION} does not export TensorFlow's C API (TFE_NewContext); ${pinnedHint}`);
    }
    fs.rmSync(path.join(tmp, wheel));
    fs.writeFileSync(path.join(tmp, 'complete.json'), JSON.stringify({ tensorflow: TF_VERSION, wheel, extracted: new Date().toISOString() }, null, 2) + '\n');
    fs.rmSync(cacheDir, { recursive: true, force: true });
    fs.renameSync(tmp, cacheDir);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- 2. the npm package

function tfjsNodeInstalled() {
  try {
    const p = JSON.parse(fs.readFileSync(path.join(tfjsNodeDir, 'package.json'), 'utf8'));
    if (p.version !== TFJS_NODE_VERSION) return false;
    // Its runtime dependencies must resolve from its own directory.
    for (const dep of Object.keys(p.dependencies ?? {})) {
      const found = [tfjsNodeDir, root].some((base) => fs.existsSync(path.join(base, 'node_modules', dep, 'package.json')));
      if (!found) return false;
    }
    return true;
  } catch {
    return false;
  }
}

function ensureTfjsNode() {
  if (tfjsNodeInstalled()) {
    say(`@tensorflow/tfjs-node ${TFJS_NODE_VERSION}: installed`);
    return;
  }
  say(`installing @tensorflow/tfjs-node ${TFJS_NODE_VERSION} without its install script...`);
  // `npm install --no-save` should leave both files alone; they are restored if not.
  const guarded = ['package.json', 'package-lock.json'].map((f) => path.join(root, f)).filter((f) => fs.existsSync(f));
  const before = new Map(guarded.map((f) => [f, fs.readFileSync(f)]));
  const npmCli = process.env.npm_execpath && /npm-cli\.js$/.test(process.env.npm_execpath) ? [process.execPath, [process.env.npm_execpath]] : ['npm', []];
  const r = run(npmCli[0], [...npmCli[1], 'install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', `@tensorflow/tfjs-node@${TFJS_NODE_VERSION}`], { cwd: root });
  for (const [f, bytes] of before) {
    if (!fs.readFileSync(f).equals(bytes)) {
      fs.writeFileSync(f, bytes);
      say(`note: npm changed ${path.basename(f)}; restored it`);
    }
  }
  if (r.missing) fail('npm not found on PATH: run this as `npm run setup:native`');
  if (r.status !== 0 || !tfjsNodeInstalled()) {
    const log = keepLog('npm-install', r);
    fail(`npm could not install @tensorflow/tfjs-node@${TFJS_NODE_VERSION}: ${lastLine(r.stderr) || 'its dependencies are incomplete'} (full log: ${log}); check access to the npm registry`);
  }
}

// ---------------------------------------------------------------- 3. deps/ and the addon

/** Hard-links a file when possible (no copy of ~850 MB), else copies it. */
function linkOrCopy(src, dest) {
  fs.rmSync(dest, { force: true });
  try {
    fs.linkSync(src, dest);
  } catch {
    fs.copyFileSync(src, dest);
  }
}

function symlink(target, dest) {
  fs.rmSync(dest, { force: true });
  fs.symlinkSync(target, dest);
}

function copyTree(src, dest) {
  fs.mkdirSync(dest, { recursive: true });
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    const s = path.join(src, e.name);
    const d = path.join(dest, e.name);
    if (e.isDirectory()) copyTree(s, d);
    else fs.copyFileSync(s, d);
  }
}

function addonLocation() {
  const p = JSON.parse(fs.readFileSync(path.join(tfjsNodeDir, 'package.json'), 'utf8'));
  const supported = (p.binary?.napi_versions ?? []).map(Number).filter((v) => v <= Number(process.versions.napi));
  if (!supported.length) fail(`tfjs-node ${p.version} supports none of this Node's Node-API versions (${process.versions.napi}); use Node.js 20 or 22`);
  const napi = Math.max(...supported);
  const modulePath = path.join(tfjsNodeDir, p.binary.module_path.replace('{napi_build_version}', String(napi)));
  return { napi, modulePath, file: path.join(modulePath, `${p.binary.module_name}.node`), moduleName: p.binary.module_name };
}

function ensureAddon() {
  const deps = path.join(tfjsNodeDir, 'deps');
  const lib = path.join(deps, 'lib');
  const { napi, modulePath, file, moduleName } = addonLocation();
  const state = { tensorflow: TF_VERSION, tfjsNode: TFJS_NODE_VERSION, napi };
  const stateFile = path.join(deps, 'nf-native.json');
  const current = (() => {
    try {
      return JSON.parse(fs.readFileSync(stateFile, 'utf8'));
    } catch {
      return null;
    }
  })();
  const libsOk = LIBS.every((l) => fs.existsSync(path.join(lib, l)));
  if (!rebuild && current && JSON.stringify(current) === JSON.stringify(state) && libsOk && fs.existsSync(file)) {
    say(`addon: built against TensorFlow ${TF_VERSION}`);
    return;
  }

  // deps/ as tfjs-node's build and loader expect: the linker looks for libtensorflow.so and
  // libtensorflow_framework.so; at run time the addon finds the sonames through its rpath
  // ($ORIGIN/../../deps/lib). libtensorflow.so.2.9.1 is the file tfjs-node's install script
  // checks for, so a later `npm rebuild` does not wipe deps/ to download libtensorflow again.
  fs.rmSync(deps, { recursive: true, force: true });
  fs.mkdirSync(lib, { recursive: true });
  for (const l of LIBS) linkOrCopy(path.join(cacheDir, 'lib', l), path.join(lib, l));
  symlink('libtensorflow_cc.so.2', path.join(lib, 'libtensorflow.so'));
  symlink('libtensorflow_cc.so.2', path.join(lib, 'libtensorflow.so.2'));
  symlink('libtensorflow_cc.so.2', path.join(lib, 'libtensorflow.so.2.9.1'));
  symlink('libtensorflow_framework.so.2', path.join(lib, 'libtensorflow_framework.so'));
  copyTree(path.join(cacheDir, 'include'), path.join(deps, 'include'));

  const cached = path.join(cacheDir, `${moduleName}-tfjs-node-${TFJS_NODE_VERSION}-napi-v${napi}.node`);
  fs.mkdirSync(modulePath, { recursive: true });
  if (!rebuild && fs.existsSync(cached)) {
    fs.copyFileSync(cached, file);
    say(`addon: reused the one built before (${path.basename(cached)})`);
  } else {
    checkCompiler();
    const headers = nodeHeaders();
    const gyp = findNodeGyp();
    say(`building tfjs-node's addon against TensorFlow ${TF_VERSION} (node-gyp, about 20 s)...`);
    const r = run(process.execPath, [gyp, 'rebuild', ...headers, `--module_name=${moduleName}`, `--module_path=${modulePath}`,
      `--napi_build_version=${napi}`, `--jobs=${Math.max(1, Math.min(2, os.availableParallelism?.() ?? 2))}`], { cwd: tfjsNodeDir });
    if (r.status !== 0 || !fs.existsSync(file)) {
      const log = keepLog('node-gyp', r);
      const err = r.stderr.split('\n').find((l) => /error/i.test(l) && !/^gyp (ERR|info)/.test(l)) || lastLine(r.stderr);
      fail(`building tfjs-node's addon failed: ${err.trim()} (full log: ${log}); check that g++, make and python3 work`);
    }
    fs.copyFileSync(file, cached);
  }
  fs.writeFileSync(stateFile, JSON.stringify(state) + '\n');
}

// ---------------------------------------------------------------- 4. proof

function prove() {
  const engine = path.join(root, 'dist', 'engine.js');
  const useEngine = fs.existsSync(engine);
  // Through nf's engine when it is built (what `nf --backend tensorflow` does), else tfjs-node directly.
  const script = `
const load = ${useEngine}
  ? async () => (await import(${JSON.stringify(pathToFileURL(engine).href)})).startEngine('tensorflow')
  : async () => { const tf = require('@tensorflow/tfjs-node'); await tf.setBackend('tensorflow'); return { tf, backend: tf.getBackend() }; };
const { tf, backend } = await load();
const y = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]])).dataSync();
const s = tf.logSumExp(tf.tensor1d([0, Math.log(3)])).dataSync()[0];
if (backend !== 'tensorflow' || y[0] !== 17 || y[1] !== 39 || Math.abs(s - Math.log(4)) > 1e-6) {
  throw new Error('wrong result on ' + backend + ': ' + Array.from(y) + ', ' + s);
}
console.log(JSON.stringify({ backend, tensorflow: tf.backend().binding?.TF_Version }));
`;
  const r = run(process.execPath, ['--input-type=module', '-e', `import { createRequire } from 'node:module'; const require = createRequire(${JSON.stringify(path.join(root, 'package.json'))});\n${script}`], {
    cwd: root,
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2' },
  });
  if (r.status !== 0) {
    const log = keepLog('prove', r);
    const msg = r.stderr.split('\n').find((l) => /error|undefined symbol|cannot/i.test(l)) || lastLine(r.stderr);
    fail(`the tensorflow backend was built but does not run: ${msg.replace(/^\s*(nf: error: )?/, '')} (full log: ${log}); run NF_NATIVE_REBUILD=1 npm run setup:native, or report it`);
  }
  const out = JSON.parse(lastLine(r.stdout));
  say(`ok: backend '${out.backend}' runs TensorFlow ${out.tensorflow} (${((Date.now() - started) / 1000).toFixed(1)} s); nf now picks it by default`);
}

try {
  checkPlatform();
  ensureLibtensorflow();
  ensureTfjsNode();
  ensureAddon();
  prove();
} catch (err) {
  if (err instanceof SetupError) {
    say(`failed: ${err.message}`);
  } else {
    say(`failed unexpectedly: ${err instanceof Error ? err.message.split('\n')[0] : String(err)} (delete ${cacheRoot} and run npm run setup:native again; if it persists, report it with NF_DEBUG=1 output)`);
    if (process.env.NF_DEBUG === '1') console.error(err);
  }
  process.exitCode = 1;
}
