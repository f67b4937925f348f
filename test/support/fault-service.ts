/**
 * The service in a child process of its own, as `node` runs it (so an unhandled rejection is a
 * real one, not one a test runner catches), with a hook for the fault-isolation test: over IPC
 * the test names a session and a fault, and that session's recorder gets a fault-injecting double.
 * Sends `{url}` once listening and `{unexpected}` for every unhandled rejection or uncaught
 * exception; the process keeps running, so the test can also check that nothing else broke.
 */
import 'reflect-metadata';
import { startApp } from '../../src/app.factory';
import { FFMPEG_RECORDER_MEDIA } from '../../src/media/recorder-media';
import { RecordingService } from '../../src/media/recording.service';
import { type Fault, faultyMedia } from './fault-media';

type Command = { fault: Fault; sessionId: string } | { fault: null } | { stop: true };

async function main(): Promise<void> {
  const send = (message: unknown) => process.send?.(message);
  for (const event of ['unhandledRejection', 'uncaughtException'] as const) {
    process.on(event, (err: unknown) =>
      send({ unexpected: { event, message: err instanceof Error ? err.message : String(err) } }),
    );
  }
  const started = await startApp(process.env);
  const recordings = started.app.get(RecordingService);
  process.on('message', (command: Command) => {
    if ('stop' in command) {
      void started.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    } else {
      recordings.media = command.fault
        ? faultyMedia(command.fault, command.sessionId)
        : FFMPEG_RECORDER_MEDIA;
      send({ installed: command.fault });
    }
  });
  send({ url: started.url });
}

main().catch((err: unknown) => {
  process.stderr.write(`fault-service: ${String(err)}\n`);
  process.exit(1);
});
