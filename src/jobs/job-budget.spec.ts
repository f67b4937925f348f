import { defaultJobConcurrency, type LiveLoad, roomForJob } from './job-budget';

/** A quiet two-core node: 300 reference frames per second, 240 of them the sessions' budget. */
function load(o: Partial<LiveLoad> = {}): LiveLoad {
  return {
    encoders: { active: 0, waiting: 0, max: 36 },
    recordersBehind: 0,
    capacityFps: 300,
    budgetFps: 240,
    demandFps: 0,
    saturated: false,
    ...o,
  };
}

describe('roomForJob (live recording comes first)', () => {
  it('starts jobs on a quiet node up to the concurrency', () => {
    expect(roomForJob(load(), 0, 1, 2)).toBe(true);
    expect(roomForJob(load(), 1, 1, 2)).toBe(false);
  });

  it('starts none while a session waits for an encoder, a recorder is behind, or the encoders are saturated', () => {
    expect(roomForJob(load({ encoders: { active: 36, waiting: 1, max: 36 } }), 0, 2, 2)).toBe(
      false,
    );
    expect(roomForJob(load({ recordersBehind: 1 }), 0, 2, 2)).toBe(false);
    expect(roomForJob(load({ saturated: true }), 0, 2, 2)).toBe(false);
  });

  it('counts jobs against the encoder slots the live encoders leave', () => {
    expect(roomForJob(load({ encoders: { active: 35, waiting: 0, max: 36 } }), 0, 2, 2)).toBe(true);
    expect(roomForJob(load({ encoders: { active: 35, waiting: 0, max: 36 } }), 1, 2, 2)).toBe(
      false,
    );
  });

  it("starts a job only while the sessions' demand leaves a core's share of the capacity", () => {
    // A core's share of 300 fps on 2 cores is 150: demand up to 150 leaves room for one job.
    expect(roomForJob(load({ demandFps: 150 }), 0, 2, 2)).toBe(true);
    expect(roomForJob(load({ demandFps: 151 }), 0, 2, 2)).toBe(false);
    // Two jobs take the whole capacity: only with no session at all.
    expect(roomForJob(load({ demandFps: 0 }), 1, 2, 2)).toBe(true);
    expect(roomForJob(load({ demandFps: 1 }), 1, 2, 2)).toBe(false);
  });

  it('starts none while the sessions declare more than their budget', () => {
    expect(roomForJob(load({ demandFps: 241, capacityFps: 1000, budgetFps: 240 }), 0, 2, 2)).toBe(
      false,
    );
  });

  it('defaults to one job per two cores, at least one', () => {
    expect([1, 2, 3, 4, 8].map(defaultJobConcurrency)).toEqual([1, 1, 1, 2, 4]);
  });
});
