import fc from 'fast-check';
import { FinishLanes } from './finish-lanes';

describe('FinishLanes', () => {
  it('promotes up to its lanes at once, the rest in arrival order as lanes free', () => {
    const lanes = new FinishLanes(2);
    const promoted: number[] = [];
    const releases = [1, 2, 3, 4].map((n) => lanes.enter(() => promoted.push(n)));
    expect(promoted).toEqual([1, 2]);
    expect(lanes.status).toEqual({ running: 2, waiting: 2 });
    releases[0]();
    expect(promoted).toEqual([1, 2, 3]);
    // A waiter that gives up leaves the queue without a lane.
    releases[3]();
    releases[1]();
    releases[2]();
    expect(promoted).toEqual([1, 2, 3]);
    expect(lanes.status).toEqual({ running: 0, waiting: 0 });
  });

  it('ignores a second release', () => {
    const lanes = new FinishLanes(1);
    const release = lanes.enter(() => undefined);
    release();
    release();
    expect(lanes.status).toEqual({ running: 0, waiting: 0 });
  });

  it('never runs more than its lanes and ends with none in use, whatever the order of releases', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.nat({ max: 30 }), { minLength: 1, maxLength: 30 }),
        (n, order) => {
          const lanes = new FinishLanes(n);
          const releases: Array<() => void> = [];
          for (let i = 0; i < order.length; i++) {
            releases.push(
              lanes.enter(() => {
                expect(lanes.status.running).toBeLessThanOrEqual(n);
              }),
            );
          }
          for (const i of order) {
            releases[i % releases.length]();
          }
          releases.forEach((r) => r());
          expect(lanes.status).toEqual({ running: 0, waiting: 0 });
        },
      ),
    );
  });
});
