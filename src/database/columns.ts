import type { ValueTransformer } from 'typeorm';

/** pg returns bigint as a string; our counters stay far below 2^53, so numbers are safe. */
export const bigintColumn: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | null) => (value === null ? null : Number(value)),
};
