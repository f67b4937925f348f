import { EventEmitter } from 'node:events';
import { installUnexpectedErrorPolicy, type UnexpectedEvent } from './unexpected-error';

function setup() {
  const proc = new EventEmitter();
  const logs: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const stops: UnexpectedEvent[] = [];
  const uninstall = installUnexpectedErrorPolicy(proc, {
    logger: {
      fatal: (obj, msg) => logs.push({ level: 'fatal', obj, msg }),
      error: (obj, msg) => logs.push({ level: 'error', obj, msg }),
    },
    stop: (cause) => stops.push(cause),
  });
  return { proc, logs, stops, uninstall };
}

describe('installUnexpectedErrorPolicy', () => {
  it('logs an unhandled rejection at error with its reason and event, then drains once', () => {
    const { proc, logs, stops } = setup();
    const reason = new Error('Output has been canceled.');
    proc.emit('unhandledRejection', reason);
    expect(logs).toEqual([
      {
        level: 'error',
        obj: expect.objectContaining({ err: reason, event: 'unhandledRejection', draining: false }),
        msg: 'unhandled promise rejection: draining and exiting',
      },
    ]);
    expect(stops).toEqual(['unhandledRejection']);
  });

  it('logs an uncaught exception at fatal and drains', () => {
    const { proc, logs, stops } = setup();
    proc.emit('uncaughtException', new TypeError('x is undefined'));
    expect(logs[0]?.level).toBe('fatal');
    expect(logs[0]?.obj.event).toBe('uncaughtException');
    expect(stops).toEqual(['uncaughtException']);
  });

  it('only logs what happens while it drains: one stop for any number of errors', () => {
    const { proc, logs, stops } = setup();
    proc.emit('uncaughtException', new Error('first'));
    proc.emit('unhandledRejection', new Error('second'));
    proc.emit('uncaughtException', new Error('third'));
    expect(stops).toEqual(['uncaughtException']);
    expect(logs.map((l) => l.obj.draining)).toEqual([false, true, true]);
  });

  it('removes its listeners when uninstalled', () => {
    const { proc, uninstall } = setup();
    expect(proc.listenerCount('unhandledRejection')).toBe(1);
    expect(proc.listenerCount('uncaughtException')).toBe(1);
    uninstall();
    expect(proc.listenerCount('unhandledRejection')).toBe(0);
    expect(proc.listenerCount('uncaughtException')).toBe(0);
  });
});
