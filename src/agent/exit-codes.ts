// What a task script's exit code means (SPEC 5.4, DRP's convention), pure.
//   0 ok · 16 stop · 32 poweroff · 64 reboot · 128 incomplete (run the task again) · 144/160/192 = 128 + 16/32/64

export type JobEnd = 'finished' | 'incomplete' | 'failed';
export type AgentNext = 'continue' | 'stop' | 'poweroff' | 'reboot';

export interface ExitMeaning {
  /** the job's final state */
  state: JobEnd;
  /** the job's exitState */
  exitState: 'complete' | 'stop' | 'poweroff' | 'reboot' | 'failed';
  /** what the agent does after reporting */
  next: AgentNext;
}

const SIGNALS: Record<number, AgentNext> = { 0: 'continue', 16: 'stop', 32: 'poweroff', 64: 'reboot' };

export function interpretExitCode(code: number | null): ExitMeaning {
  if (code === null || !Number.isInteger(code)) return { state: 'failed', exitState: 'failed', next: 'stop' };
  const incomplete = code >= 128 && code < 256 && (code - 128 === 0 || SIGNALS[code - 128] !== undefined);
  const signal = incomplete ? code - 128 : code;
  const next = SIGNALS[signal];
  if (next === undefined) return { state: 'failed', exitState: 'failed', next: 'stop' };
  return { state: incomplete ? 'incomplete' : 'finished', exitState: next === 'continue' ? 'complete' : next, next };
}
