/**
 * A real Postgres in its own process, for tests that must stop and restart the database under a
 * running service. Usage: node -r ts-node/register/transpile-only test/support/pg-server.ts DIR PORT
 * Prints one line `READY <url>` and stops the cluster on SIGTERM.
 */
import { startEmbeddedPostgres } from '../../src/database/embedded-postgres';

async function main(): Promise<void> {
  const [dir, port] = process.argv.slice(2);
  if (!dir || port === undefined) {
    throw new Error('usage: pg-server.ts DIR PORT');
  }
  const pg = await startEmbeddedPostgres({ clusterDir: dir, port: Number(port) });
  process.stdout.write(`READY ${pg.url}\n`);
  const stop = (): void => {
    pg.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`pg-server: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
