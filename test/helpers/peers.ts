// Finds the third-party programs tests run against; under CI a missing one is a failure, never a skip.
import { execFileSync } from 'node:child_process';

export function hasProgram(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Returns true when every program is present. When one is missing: throws under CI=true (the CI
 * script installs them), otherwise warns loudly and returns false so the caller can `describe.skipIf`.
 */
export function requirePrograms(...names: string[]): boolean {
  const missing = names.filter((n) => !hasProgram(n));
  if (missing.length === 0) return true;
  const hint = `missing ${missing.join(', ')}: run .ci/run or apt-get install the packages it lists`;
  if (process.env.CI === 'true') throw new Error(hint);
  console.warn(`SKIPPING: ${hint}`);
  return false;
}
