/** The scopes framegate understands (spec section 2). */
export const SCOPES = ['stream:publish', 'admin', 'recording:read', 'media:process'] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Who is calling, from a verified access token or a consumed ticket. */
export interface Principal {
  subject: string;
  channel: string;
  scopes: readonly Scope[];
  /** When the credential stops being valid. */
  expiresAt: Date;
}

export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.includes(scope);
}
