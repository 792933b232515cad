// Process entry: `ironflow serve` runs the server, anything else is the CLI client.
import { parseArgs } from './cli/args.js';
import { CliError } from './cli/client.js';
import { runCli } from './cli/commands.js';
import { ConfigError } from './config.js';
import { AppError } from './errors.js';
import { EmbeddedRedisError } from './store/embedded-redis.js';

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  try {
    if (args.positional[0] === 'serve') {
      await import('./serve.js').then((m) => m.serve(args.flags));
      return;
    }
    if (args.positional[0] === 'agent') {
      process.exit(await import('./agent/agent.js').then((m) => m.runAgentCommand(args.flags, process.env)));
    }
    await runCli(args, process.env, (s) => process.stdout.write(`${s}\n`));
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`ironflow: ${err.message}\n${err.details.map((d) => `  ${d}\n`).join('')}`);
      process.exit(err.exitCode);
    }
    if (err instanceof ConfigError || err instanceof EmbeddedRedisError) {
      process.stderr.write(`ironflow: ${err.message}\n`);
      process.exit(2);
    }
    if (err instanceof AppError) {
      // e.g. a broken content pack at start-up: say every problem, then stop
      process.stderr.write(`ironflow: ${err.message}\n${err.messages.map((m) => `  ${m}\n`).join('')}`);
      process.exit(1);
    }
    throw err;
  }
}
