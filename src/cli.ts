/**
 * Command-line interface: options, help and dispatch. Command modules (and with them
 * TensorFlow.js) are imported only when their command runs, so `--help` and `info` start fast.
 */
import { Command, CommanderError, Option } from 'commander';
import { defaultModelDir } from './checkpoint.js';
import { UsageError, UserError } from './errors.js';
import { choice, columnList, integer, real, seed } from './options.js';
import { configureTerminal, printError } from './terminal.js';

const HELP_FOOTER = `
Examples:
  nf fit data.csv                      train, save to ./nf-model
  nf sample -n 1000 > samples.csv      draw rows
  nf logprob points.csv                log density of each row (nats, original units)
  nf eval test.csv                     mean test log-likelihood
  nf sample -n 100 | nf logprob        pipelines: data on stdout, messages on stderr

Environment: NF_MODEL (default model dir), NF_BACKEND (tensorflow|wasm|cpu),
NO_COLOR, NF_DEBUG=1 (stack traces). Log densities are densities, not
probabilities: positive values are normal for concentrated data.`;

interface Common {
  model: string;
  backend?: string;
  quiet?: boolean;
  json?: boolean;
  color?: boolean;
}

function common(cmd: Command, opts: { json?: boolean; backend?: boolean } = {}): Command {
  cmd.option('-m, --model <dir>', 'checkpoint directory (default: $NF_MODEL or ./nf-model)');
  if (opts.backend !== false) cmd.addOption(new Option('--backend <name>', 'engine: tensorflow, wasm or cpu (default: $NF_BACKEND, else the fastest that loads)'));
  cmd.option('-q, --quiet', 'no progress or warnings on stderr');
  cmd.option('--no-color', 'no colour on stderr');
  if (opts.json) cmd.option('--json', 'print a JSON summary on stdout');
  return cmd;
}

function prepare<T extends Common>(opts: T): T {
  configureTerminal({ quiet: opts.quiet, color: opts.color });
  if (opts.model === '') throw new UsageError("-m, --model: expected a directory, got ''");
  return { ...opts, model: opts.model ?? defaultModelDir() };
}

/** Data expected on stdin but stdin is a terminal: show help instead of hanging. */
function needsInput(cmd: Command, input: string | undefined): void {
  if ((!input || input === '-') && process.stdin.isTTY) {
    cmd.outputHelp({ error: true });
    throw new UserError(`${cmd.name()}: no input file given and stdin is a terminal`, 2);
  }
}

export function buildProgram(run: (code: number) => void): Command {
  const program = new Command('nf')
    .description('Density estimation with normalizing flows (RealNVP / NICE) for CSV data')
    .version('0.1.0', '-V, --version')
    .addHelpText('after', HELP_FOOTER)
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      // Usage errors are one line, like every other failure.
      outputError: (s, write) => write(`nf: ${s.trim().replace(/\s*\n\s*/g, ' ')} (see --help)\n`),
    });

  const fitCmd = common(program.command('fit'), { json: true })
    .summary('train a flow on CSV rows by maximum likelihood, save a checkpoint')
    .description('Train a flow on the numeric rows of a CSV file (or stdin) by maximum likelihood and save a checkpoint.')
    .argument('[data]', "CSV file, or '-' / omitted for stdin")
    .option('--no-header', 'the first row is data (default: detect a header)')
    .option('--columns <list>', 'columns to model: names or 1-based indices, comma-separated', columnList)
    .addOption(new Option('--flow <type>', 'rnvp (affine coupling) or nice (additive)').default('rnvp').argParser(choice(['rnvp', 'nice'] as const)))
    .option('--layers <n>', 'coupling layers (default with 5000+ training rows: 96 for 2 columns, 12 for more; else 8)', integer(1, 1000))
    .option('--hidden <n>', 'units per hidden layer of each coupling network (default 64; 32 for 2 columns with 5000+ training rows)', integer(1, 4096))
    .option('--components <k>', 'Gaussians in the learned base mixture; 0 = a standard normal base (default: chosen on the validation rows, up to 32)', integer(0, 64))
    .option('--epochs <n>', 'maximum number of epochs', integer(1), 200)
    .option('--batch-size <n>', 'rows per optimiser step (default: 512, less for small data)', integer(1))
    .option('--lr <x>', 'Adam learning rate (default: 0.002; 0.001 for --target fits)', real(0, 1))
    .option('--val-split <f>', 'fraction of rows held out for early stopping', real(0, 0.9), 0.2)
    .option('--patience <n>', 'stop after this many epochs without validation improvement', integer(1), 20)
    .option('--restarts <n>', 'train n flows from different initialisations on the same split and keep the best on validation (in parallel when cores are free)', integer(1, 64), 2)
    .option('--seed <int>', 'random seed (initialisation, split, shuffling)', seed)
    .option('--drop-invalid', 'skip rows with missing or non-finite values (default: refuse them)')
    .option('--dequantize', 'add U[0,1) noise to integer-valued columns')
    .option('--target <module>', 'fit by reverse KL to the unnormalised density in this ES module instead of data (runs its code; see below)')
    .option('--steps <n>', `optimiser steps for --target fits (default 2000; --epochs N means N×100 steps)`, integer(1))
    .addHelpText(
      'after',
      `
Reverse-KL fits (--target): the module must export
  dim                      number of columns (≥ 2)
  columns                  optional column names (default x1..xD)
  logProb(x, tf)           x: [batch, dim] tensor, tf: nf's TensorFlow.js namespace
                           (build with tf ops so gradients flow); returns [batch]
                           unnormalised log densities
Importing the module RUNS ITS CODE, as any script you run would; only use modules you
trust. (Checkpoints never contain code.) The summary reports an importance-sampling
estimate of log Z with its standard error and the effective sample size (--json: logZ,
logZStderr, essFraction). Examples: examples/targets/banana.mjs, ring-mixture.mjs.`,
    )
    .action(async (data: string | undefined, raw: Common & { target?: string; steps?: number; epochs?: number }, cmd: Command) => {
      // An option that does not apply is an error, not silently ignored: which of these
      // [attribute, flag] pairs were given on the command line.
      const given = (options: [string, string][]): string[] =>
        options.filter(([name]) => cmd.getOptionValueSource(name) === 'cli').map(([, flag]) => flag);
      if (raw.target !== undefined) {
        if (data !== undefined) throw new UsageError('fit: give either a data file or --target, not both');
        const dataOnly = given([
          ['columns', '--columns'],
          ['header', '--no-header'],
          ['valSplit', '--val-split'],
          ['patience', '--patience'],
          ['restarts', '--restarts'],
          ['components', '--components'],
          ['dropInvalid', '--drop-invalid'],
          ['dequantize', '--dequantize'],
        ]);
        if (dataOnly.length > 0) throw new UsageError(`fit: ${dataOnly.join(', ')} apply to fits to data, not to --target fits`);
        if (raw.steps === undefined && cmd.getOptionValueSource('epochs') === 'cli' && raw.epochs !== undefined) raw.steps = raw.epochs * 100;
      } else {
        if (given([['steps', '--steps']]).length > 0) throw new UsageError('fit: --steps applies to --target fits; a fit to data runs up to --epochs');
        needsInput(cmd, data);
      }
      const { fit } = await import('./commands/fit.js');
      run(await fit(data, prepare(raw as Parameters<typeof fit>[1] & Common)));
    });
  void fitCmd;

  common(program.command('sample'))
    .summary('draw rows from a saved flow, CSV on stdout')
    .description('Draw rows from a saved flow and write them as CSV (header = the model\'s column names).')
    .option('-n, --num <int>', 'number of rows', integer(1), 1000)
    .option('--temperature <t>', 'scale of the base standard deviation', real(0, Number.POSITIVE_INFINITY), 1)
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .option('--no-header', 'omit the header row')
    .option('--seed <int>', 'random seed', seed)
    .action(async (raw: Common) => {
      const { sample } = await import('./commands/sample.js');
      run(await sample(prepare(raw as Parameters<typeof sample>[0] & Common)));
    });

  common(program.command('logprob'))
    .summary('log density of each input row under a saved flow, CSV on stdout')
    .description(
      'Log density (natural log, original units) of each input row, one output row per input row. ' +
        'Columns are matched to the model by header name; without a header by position.',
    )
    .argument('[points]', "CSV file, or '-' / omitted for stdin")
    .option('--no-header', 'the first row is data (default: detect a header)')
    .option('--append', 'write the input columns followed by logprob')
    .option(
      '--rarity',
      'add a column "rarity": the fraction of training rows with a lower density (0 = lower than anything seen in training; ~uniform on [0,1] for fresh data like the training data)',
    )
    .option('--drop-invalid', 'rows with missing or non-finite values get logprob nan, keeping one output row per input row (default: refuse them)')
    .action(async (input: string | undefined, raw: Common, cmd: Command) => {
      needsInput(cmd, input);
      const { logprob } = await import('./commands/score.js');
      run(await logprob(input, prepare(raw as Parameters<typeof logprob>[1] & Common)));
    });

  common(program.command('eval'), { json: true })
    .summary('mean test log-likelihood (nats), nats/dim, bits/dim, standard error')
    .description('Mean log-likelihood of the rows under a saved flow, with its standard error, as CSV (or JSON with --json).')
    .argument('<test>', "CSV file, or '-' for stdin")
    .option('--no-header', 'the first row is data (default: detect a header)')
    .option('--drop-invalid', 'leave out rows with missing or non-finite values and count them (default: refuse them)')
    .action(async (input: string, raw: Common, cmd: Command) => {
      needsInput(cmd, input);
      const { evaluate } = await import('./commands/score.js');
      run(await evaluate(input, prepare(raw as Parameters<typeof evaluate>[1] & Common)));
    });

  common(program.command('impute'))
    .summary('fill missing cells with draws from the conditional density, CSV on stdout')
    .description(
      'Fill missing cells (empty, NA, NaN) in the model\'s columns with draws from p(missing | observed) under a saved flow ' +
        '(importance-resampled starts, then adaptive Metropolis–Hastings on the missing cells only). Observed cells are never ' +
        'changed, rows without gaps pass through, input order and columns are kept.',
    )
    .argument('[rows]', "CSV file, or '-' / omitted for stdin")
    .option('-k, --draws <n>', 'k draws per row: k consecutive output rows with a final "draw" column 1..k', integer(1, 100000))
    .option('--mean', 'one row per input row holding the posterior mean (average over the chains of -k draws; default k 100)')
    .option('--burn-in <n>', 'Metropolis sweeps of adaptation before draws are kept', integer(0, 1000000), 100)
    .option('--thin <n>', 'sweeps between the kept draws of one chain', integer(1, 100000), 10)
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .option('--no-header', 'the first row is data (default: detect a header)')
    .option('--seed <int>', 'random seed', seed)
    .action(async (input: string | undefined, raw: Common, cmd: Command) => {
      needsInput(cmd, input);
      const { impute } = await import('./commands/impute.js');
      run(await impute(input, prepare(raw as Parameters<typeof impute>[1] & Common)));
    });

  common(program.command('plot'))
    .summary('draw what a saved flow learned, as PNG or SVG')
    .description(
      'Two columns: the model density as a heatmap, with data rows (--data) or model draws on top. ' +
        'More columns: a pair plot of model draws against data rows, with per-column histograms. --curve adds the training curve.',
    )
    .requiredOption('-o, --output <file>', "image file: .png or .svg ('-' for stdout with --format)")
    .addOption(new Option('--format <fmt>', 'png or svg (default: from the file name)').argParser(choice(['png', 'svg'] as const)))
    .option('--data <csv>', 'data rows to draw (columns matched to the model by header name)')
    .option('--no-header', 'the --data file has no header row')
    .option('--columns <list>', 'columns for the pair plot: names or 1-based indices, comma-separated', columnList)
    .option('-n, --points <n>', 'points drawn per source (default: 1000 for two columns, fewer for many)', integer(1, 200000))
    .option('--width <px>', 'image width in pixels', integer(100, 10000))
    .option('--height <px>', 'image height in pixels', integer(100, 10000))
    .option('--curve', 'add the training curve (train and validation NLL per epoch)')
    .option('--seed <int>', 'random seed (model draws, subsampling)', seed)
    .action(async (raw: Common & { data?: string }, cmd: Command) => {
      if (raw.data !== undefined) needsInput(cmd, raw.data);
      const { plot } = await import('./commands/plot.js');
      run(await plot(prepare(raw as Parameters<typeof plot>[0] & Common)));
    });

  common(program.command('info'), { json: true })
    .summary('describe a checkpoint (columns, flow, training summary)')
    .option('--backends', 'also list which TensorFlow.js backends load here')
    .action(async (raw: Common) => {
      const { info } = await import('./commands/info.js');
      run(await info(prepare(raw as Parameters<typeof info>[0] & Common)));
    });

  return program;
}

function isEpipe(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === 'EPIPE';
}

export async function main(argv: string[] = process.argv): Promise<void> {
  // `nf sample | head`: the reader went away; that is a normal end, not an error.
  process.stdout.on('error', (err) => {
    if (isEpipe(err)) process.exit(0);
  });
  // Messages to a stderr that is gone (`2>&1 | head -1`) are lost, not a crash: without a
  // handler Node exits with status 7, outside the contract's 0/1/2.
  process.stderr.on('error', () => undefined);
  let code = 0;
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    // Commander answers a bare `nf` and `nf help <unknown>` with the whole help text; the
    // contract wants one line for every failure.
    const args = argv.slice(2);
    const commands = program.commands.map((c) => c.name());
    if (args.length === 0) throw new UsageError(`no command given; one of ${commands.join(', ')} (see --help)`);
    if (args[0] === 'help' && args.length > 1 && !commands.includes(args[1])) throw new UsageError(`unknown command '${args[1]}' (see --help)`);
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has already printed its message (or the help / version).
      code = err.exitCode === 0 ? 0 : 2;
    } else if (isEpipe(err)) {
      code = 0;
    } else if (err instanceof UserError) {
      await printError(err.message);
      if (process.env.NF_DEBUG === '1') process.stderr.write(`${err.stack}\n`);
      code = err.exitCode;
    } else {
      const e = err as Error;
      await printError(`internal error: ${e?.message ?? String(err)}${process.env.NF_DEBUG === '1' ? '' : ' (set NF_DEBUG=1 for details)'}`);
      if (process.env.NF_DEBUG === '1') process.stderr.write(`${e?.stack}\n`);
      code = 1;
    }
  }
  process.exitCode = code;
}
