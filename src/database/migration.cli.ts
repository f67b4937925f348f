import 'reflect-metadata';
import { ConfigError } from '../config/config';
import dataSourcePromise from './cli-data-source';

/** `npm run migration:run` / `migration:revert`, under the same rules as the service. */
async function main(): Promise<void> {
  const command = process.argv[2];
  if (command !== 'run' && command !== 'revert') {
    throw new Error('usage: migration.cli.ts run|revert');
  }
  const ds = await dataSourcePromise;
  await ds.initialize();
  try {
    if (command === 'run') {
      const applied = await ds.runMigrations({ transaction: 'each' });
      process.stdout.write(
        applied.length > 0
          ? `applied: ${applied.map((m) => m.name).join(', ')}\n`
          : 'no pending migrations\n',
      );
    } else {
      await ds.undoLastMigration({ transaction: 'each' });
      process.stdout.write('reverted the last migration\n');
    }
  } finally {
    await ds.destroy();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    const message = err instanceof ConfigError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`framegate migrations: ${message}\n`);
    process.exit(1);
  },
);
