import { InitialSchema1764000000000 } from './1764000000000-InitialSchema';

/** Every migration, in order; listed explicitly so the same list works from ts and from dist. */
export const MIGRATIONS = [InitialSchema1764000000000];
