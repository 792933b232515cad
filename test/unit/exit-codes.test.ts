import { describe, expect, it } from 'vitest';
import { interpretExitCode } from '../../src/agent/exit-codes.js';

describe('exit codes (SPEC 5.4)', () => {
  it.each([
    [0, 'finished', 'complete', 'continue'],
    [16, 'finished', 'stop', 'stop'],
    [32, 'finished', 'poweroff', 'poweroff'],
    [64, 'finished', 'reboot', 'reboot'],
    [128, 'incomplete', 'complete', 'continue'],
    [144, 'incomplete', 'stop', 'stop'],
    [160, 'incomplete', 'poweroff', 'poweroff'],
    [192, 'incomplete', 'reboot', 'reboot'],
    [1, 'failed', 'failed', 'stop'],
    [2, 'failed', 'failed', 'stop'],
    [48, 'failed', 'failed', 'stop'],
    [129, 'failed', 'failed', 'stop'],
    [255, 'failed', 'failed', 'stop'],
    [null, 'failed', 'failed', 'stop'],
  ] as const)('%s → %s/%s, then %s', (code, state, exitState, next) => {
    expect(interpretExitCode(code)).toEqual({ state, exitState, next });
  });
});
