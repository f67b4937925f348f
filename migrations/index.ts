import { InitialSchema1764000000000 } from './1764000000000-InitialSchema';
import { NodeEvents1764900000000 } from './1764900000000-NodeEvents';

/** Every migration, in order; listed explicitly so the same list works from ts and from dist. */
export const MIGRATIONS = [InitialSchema1764000000000, NodeEvents1764900000000];
