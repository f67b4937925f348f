import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { loadConfig, readEnvironment } from '../config/config';
import { DataDirLock } from './data-dir-lock';
import { resolveDatabase } from './database';
import { dataSourceOptions } from './data-source-options';

/**
 * The data source for the TypeORM CLI (`npm run migration:*`): DATABASE_URL, or the embedded
 * Postgres under DATA_DIR (which must not be in use by a running service).
 */
async function cliDataSource(): Promise<DataSource> {
  const config = loadConfig(readEnvironment());
  let url = config.DATABASE_URL;
  if (!url) {
    const lock = DataDirLock.acquire(config.DATA_DIR);
    process.once('exit', () => lock.release());
    url = (await resolveDatabase(config)).url;
  }
  return new DataSource(dataSourceOptions({ url, poolMax: 2, nodeId: `${config.NODE_ID}-cli` }));
}

export default cliDataSource();
