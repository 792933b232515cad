// Splits argv into positionals and flags: `--name value`, `--name=value`, `-o table`, bare `--flag`.

export interface Args {
  positional: string[];
  flags: Record<string, string | undefined>;
}

/** Flags that never take a value. */
const BOOLEAN_FLAGS = new Set(['reverse', 'aggregate', 'decode', 'persistent', 'efi', 'follow', 'help', 'force']);

export function parseArgs(argv: string[]): Args {
  const positional: string[] = [];
  const flags: Record<string, string | undefined> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    const long = /^--([^=]+)(?:=(.*))?$/s.exec(a);
    const short = /^-([a-zA-Z])$/.exec(a);
    if (long || short) {
      const name = long ? long[1]! : short![1] === 'o' ? 'output' : short![1]!;
      if (long?.[2] !== undefined) flags[name] = long[2];
      else if (BOOLEAN_FLAGS.has(name)) flags[name] = 'true';
      else flags[name] = argv[++i];
    } else {
      positional.push(a);
    }
  }
  return { positional, flags };
}
