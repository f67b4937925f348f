/**
 * Which browser origins may use this node: those in ALLOWED_ORIGINS (`*` for any), and always the
 * node's own origin (pages it serves). One rule for WebSocket upgrades and CORS.
 */
export class OriginPolicy {
  private readonly allowed: Set<string>;

  constructor(allowedOrigins: readonly string[]) {
    this.allowed = new Set(allowedOrigins);
  }

  allows(origin: string, host: string | undefined): boolean {
    if (this.allowed.has('*') || this.allowed.has(origin)) {
      return true;
    }
    try {
      return host !== undefined && new URL(origin).host === host;
    } catch {
      return false;
    }
  }
}
