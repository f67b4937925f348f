/**
 * The /demo page: a token (pasted, or minted in development), camera and microphone into a
 * session (video as H.264/VP9/VP8 chunks from the browser's VideoEncoder, or JPEG images), live
 * stats and acks, a text message, and the recording played back. Loaded as an ES
 * module from the SDK's build (client/dist), no bundler. A reload mid-session resumes it: the
 * token and "a session is running" live in sessionStorage (this tab only), the frames and the
 * resume token in the SDK's IndexedDB outbox.
 */
import {
  CameraCapture,
  CaptureSession,
  ClientError,
  createBrowserClient,
  MicrophoneCapture,
  sendText,
  VIDEO_CODEC_CHOICES,
  type Closed,
  type FramegateClient,
  type KeyframeReason,
  type TakenMedia,
  type VideoCodecChoice,
} from '../src/browser.js';

const STORAGE_KEY = 'framegate-demo';
/** How long the page waits for the recording to be ready after `closed`. */
const RECORDING_WAIT_MS = 120_000;

interface Stored {
  token: string;
  active: boolean;
  codec?: VideoCodecChoice;
}

/** What the page exposes as `window.framegateDemo`, for the console and for tests. */
export interface DemoHandle {
  client: FramegateClient | null;
  session: CaptureSession | null;
  resumed: boolean | null;
  /** The server's key-frame requests, with the seq the next frame was to get then. */
  keyframes: { reason: KeyframeReason; nextSeq: number }[];
  closed: Closed | null;
  /** Set when the recording plays in the page. */
  playing: boolean;
  error: string | null;
}

const demo: DemoHandle = {
  client: null,
  session: null,
  resumed: null,
  keyframes: [],
  closed: null,
  playing: false,
  error: null,
};
(window as unknown as { framegateDemo: DemoHandle }).framegateDemo = demo;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) {
    throw new Error(`#${id} is missing`);
  }
  return el as T;
};

const ui = {
  status: $('status'),
  token: $<HTMLTextAreaElement>('token'),
  mint: $<HTMLButtonElement>('mint'),
  transaction: $<HTMLInputElement>('transaction'),
  preview: $<HTMLVideoElement>('preview'),
  codec: $<HTMLSelectElement>('codec'),
  start: $<HTMLButtonElement>('start'),
  stop: $<HTMLButtonElement>('stop'),
  audioHint: $('audio-hint'),
  stats: $('stats'),
  messageForm: $<HTMLFormElement>('message-form'),
  message: $<HTMLInputElement>('message'),
  send: $<HTMLButtonElement>('send'),
  messageList: $('message-list'),
  recordingStatus: $('recording-status'),
  playback: $<HTMLVideoElement>('playback'),
  log: $('log'),
};

let camera: CameraCapture | null = null;
let microphone: MicrophoneCapture | null = null;
let statsTimer: ReturnType<typeof setInterval> | null = null;
let playbackUrl: string | null = null;
let captionsUrl: string | null = null;

function readStored(): Stored | null {
  try {
    return JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? 'null') as Stored | null;
  } catch {
    return null;
  }
}

function store(value: Stored): void {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(value));
}

function setStatus(text: string, error = false): void {
  ui.status.textContent = text;
  ui.status.classList.toggle('error', error);
}

function log(text: string): void {
  const item = document.createElement('li');
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  ui.log.prepend(item);
  while (ui.log.childElementCount > 200) {
    ui.log.lastElementChild?.remove();
  }
}

function fail(err: unknown): void {
  const text =
    err instanceof ClientError
      ? `${err.code}: ${err.message}`
      : err instanceof Error
        ? err.message
        : String(err);
  demo.error = text;
  setStatus(text, true);
  log(`error ${text}`);
}

function setStat(name: string, value: string | number): void {
  const el = ui.stats.querySelector(`[data-stat="${name}"]`);
  if (el) {
    el.textContent = String(value);
  }
}

function showStats(): void {
  const client = demo.client;
  if (!client) {
    return;
  }
  const s = client.stats();
  setStat('state', s.state);
  setStat('transport', s.transport);
  setStat('sessionId', s.sessionId ?? '–');
  setStat('ackedSeq', s.ackedSeq);
  setStat('nextSeq', s.nextSeq);
  setStat('fps', s.fps);
  setStat('maxFps', Number.isFinite(s.maxFps) ? s.maxFps : '–');
  setStat('outbox', `${s.outboxDepth} (${Math.round(s.unackedBytes / 1024)} KiB)`);
  setStat('rttMs', s.rttMs === null ? '–' : `${s.rttMs} ms`);
  setStat('reconnects', s.reconnects);
  const taken = demo.session?.stats();
  if (taken) {
    setStat('taken', `${taken.video} / ${taken.audio}`);
    setStat(
      'codec',
      taken.bitrate > 0
        ? `${taken.codec}, ${Math.round(taken.bitrate / 1000)} kbit/s`
        : taken.codec,
    );
    setStat(
      'bytesPerFrame',
      taken.video > 0 ? `${Math.round(taken.videoBytes / taken.video).toLocaleString()} B` : '–',
    );
    setStat(
      'camera',
      taken.bitrate > 0
        ? `${taken.fps} fps, ${Math.round(taken.quality * 100)} % of the bitrate`
        : `${taken.fps} fps, quality ${taken.quality}`,
    );
  }
  ui.audioHint.hidden = !microphone?.suspended;
}

async function mintToken(): Promise<void> {
  const res = await fetch('/demo/token', { method: 'POST' });
  const body = (await res.json()) as { token?: string; subject?: string; message?: string };
  if (!res.ok || !body.token) {
    throw new Error(body.message ?? `minting answered ${res.status}`);
  }
  ui.token.value = body.token;
  log(`minted a development token (subject ${body.subject ?? '?'}, channel demo, 1 h)`);
}

/** Opens the camera and the microphone; a missing microphone leaves a video-only session. */
async function openDevices(): Promise<void> {
  camera ??= await CameraCapture.open({ video: ui.preview, fps: 10, quality: 0.7 });
  try {
    microphone ??= await MicrophoneCapture.open();
  } catch (err) {
    log(`no microphone (${err instanceof Error ? err.message : String(err)}): video only`);
  }
}

async function start(): Promise<void> {
  const token = ui.token.value.trim();
  if (!token) {
    throw new Error('paste a token first (or mint one in development)');
  }
  const codec = VIDEO_CODEC_CHOICES.find((c) => c === ui.codec.value) ?? 'auto';
  ui.start.disabled = true;
  ui.mint.disabled = true;
  ui.codec.disabled = true;
  store({ token, active: true, codec });
  setStatus('opening the camera and the microphone…');
  await openDevices();
  const client = createBrowserClient({
    url: location.origin,
    // Read at every connection: a token pasted anew is used from the next reconnect on.
    getToken: () => readStored()?.token ?? token,
    reconnect: { initialDelayMs: 250, maxDelayMs: 5_000 },
  });
  demo.client = client;
  client.on('state', (state) => log(`state ${state}`));
  client.on('transport', (transport) => log(`transport ${transport}`));
  client.on('reconnecting', (r) => log(`reconnecting in ${r.delayMs} ms: ${r.cause}`));
  client.on('flow', (f) => log(`flow ${f.maxFps} fps (${f.reason})`));
  client.on('serverError', (e) => log(`server error ${e.code}: ${e.message}`));
  client.on('keyframe', (reason) => {
    demo.keyframes.push({ reason, nextSeq: client.stats().nextSeq });
    log(`the server asks for a key frame (${reason})`);
  });
  client.on('messageAck', (id) => {
    ui.messageList.querySelector(`[data-id="${CSS.escape(id)}"]`)?.classList.add('acked');
    log(`message ${id} stored`);
  });
  client.on('error', (err) => {
    // Final: the SDK will not retry. Let go of the devices; Start opens a new session.
    fail(err);
    void teardown();
  });
  setStatus('connecting…');
  let session: CaptureSession;
  try {
    session = await CaptureSession.open(client, {
      camera: camera ?? undefined,
      microphone: microphone ?? undefined,
      params: { transactionId: ui.transaction.value.trim() || 'TX-demo' },
      codec,
    });
  } catch (err) {
    if (err instanceof ClientError && err.code === 'codec_unavailable') {
      // A session this browser cannot continue: end it with what it has.
      log(`${err.message}: closing that session`);
      await client.close();
    }
    throw err;
  }
  const opened = session.opened!;
  demo.resumed = opened.resumed;
  log(
    `${opened.resumed ? 'resumed' : 'opened'} session ${opened.sessionId}, video ${session.codec}` +
      `${session.codec !== 'jpeg' || codec === 'jpeg' ? '' : ` (${codec} unavailable here)`}`,
  );
  demo.session = session;
  session.on('taken', (media: TakenMedia) => {
    // For scripts and tests watching the page: each media message the SDK took, by seq.
    document.dispatchEvent(new CustomEvent('framegate:taken', { detail: media }));
  });
  session.on('adapt', (d) => log(`camera ${d.fps} fps, quality ${d.quality} (${d.reason})`));
  session.on('stopped', (why) => log(`capture stopped: ${why}`));
  session.on('encoderError', (e) =>
    log(`video encoder ${e.fatal ? 'failed' : 'restarted'}: ${e.message}`),
  );
  session.start();
  statsTimer = setInterval(showStats, 250);
  ui.stop.disabled = false;
  ui.send.disabled = false;
  setStatus(opened.resumed ? 'resumed after a reload: recording' : 'recording');
}

async function stop(): Promise<void> {
  const client = demo.client;
  if (!client) {
    return;
  }
  ui.stop.disabled = true;
  ui.send.disabled = true;
  setStatus('delivering what is left and closing…');
  await demo.session?.close();
  camera?.close();
  camera = null;
  await microphone?.close();
  microphone = null;
  const closed = await client.close();
  demo.closed = closed;
  const stored = readStored();
  if (stored) {
    store({ ...stored, active: false });
  }
  if (statsTimer) {
    clearInterval(statsTimer);
    statsTimer = null;
  }
  showStats();
  log(`closed: ${closed.frames} media messages, recording ${closed.recording.status}`);
  setStatus(`closed: ${closed.frames} media messages stored`);
  ui.start.disabled = false;
  ui.mint.disabled = false;
  ui.codec.disabled = false;
  demo.client = null;
  await play(closed);
}

/** After a final error: stops the capture and the devices, and forgets the running session. */
async function teardown(): Promise<void> {
  await demo.session?.close(true);
  demo.session = null;
  camera?.close();
  camera = null;
  await microphone?.close().catch(() => undefined);
  microphone = null;
  if (statsTimer) {
    clearInterval(statsTimer);
    statsTimer = null;
  }
  showStats();
  demo.client = null;
  const stored = readStored();
  if (stored) {
    store({ ...stored, active: false });
  }
  ui.start.disabled = false;
  ui.mint.disabled = false;
  ui.codec.disabled = false;
  ui.stop.disabled = true;
  ui.send.disabled = true;
}

/** Downloads the recording with the token (it needs `recording:read`) and plays it. */
async function play(closed: Closed): Promise<void> {
  const token = readStored()?.token ?? ui.token.value.trim();
  const url = `/v1/sessions/${encodeURIComponent(closed.sessionId)}/recording`;
  const deadline = Date.now() + RECORDING_WAIT_MS;
  ui.recordingStatus.classList.remove('error');
  for (;;) {
    ui.recordingStatus.textContent = 'fetching the recording…';
    const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    if (res.ok) {
      const blob = await res.blob();
      // The messages as captions at the moment they were sent: the recording's `.vtt` sidecar
      // (browsers do not show the MP4's own WebVTT track).
      const captions = await fetch(`${url}.vtt`, { headers: { authorization: `Bearer ${token}` } });
      if (!captions.ok) {
        throw new Error(`the recording's captions: ${captions.status}`);
      }
      for (const old of [playbackUrl, captionsUrl]) {
        if (old) {
          URL.revokeObjectURL(old);
        }
      }
      playbackUrl = URL.createObjectURL(blob);
      captionsUrl = URL.createObjectURL(await captions.blob());
      const track = document.createElement('track');
      Object.assign(track, {
        kind: 'captions',
        label: 'Messages',
        src: captionsUrl,
        default: true,
      });
      ui.playback.replaceChildren(track);
      ui.playback.src = playbackUrl;
      ui.recordingStatus.textContent = `recording ${closed.recording.id}: ${Math.round(
        blob.size / 1024,
      )} KiB, ${(closed.recording.durationMs ?? 0) / 1000} s (muted: unmute in the player)`;
      ui.playback.addEventListener('playing', () => (demo.playing = true), { once: true });
      // Muted, so that it may start without a fresh user gesture.
      await ui.playback.play();
      return;
    }
    const body = (await res.json().catch(() => ({}))) as { message?: string };
    if (res.status !== 409 || Date.now() > deadline) {
      throw new Error(`the recording: ${res.status} ${body.message ?? ''}`.trim());
    }
    // 409: not ready yet (still being finished).
    ui.recordingStatus.textContent = 'the recording is being finished…';
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function sendMessage(): void {
  const client = demo.client;
  const text = ui.message.value.trim();
  if (!client || !text) {
    return;
  }
  const id = sendText(client, text);
  const item = document.createElement('li');
  item.dataset.id = id;
  item.textContent = text;
  ui.messageList.append(item);
  ui.message.value = '';
  log(`message ${id} sent`);
}

/** Runs a UI action, reporting its failure on the page. */
function action(fn: () => Promise<void> | void): () => void {
  return () => {
    Promise.resolve()
      .then(fn)
      .catch((err: unknown) => {
        fail(err);
        ui.start.disabled = demo.client !== null;
        ui.mint.disabled = demo.client !== null;
        ui.codec.disabled = demo.client !== null;
      });
  };
}

ui.mint.addEventListener('click', action(mintToken));
// A start that fails (no camera, a refused token) is not retried by a reload.
const startAction = action(() =>
  start().catch(async (err: unknown) => {
    await teardown();
    throw err;
  }),
);
ui.start.addEventListener('click', startAction);

ui.stop.addEventListener('click', action(stop));
ui.messageForm.addEventListener('submit', (event) => {
  event.preventDefault();
  sendMessage();
});
// A microphone opened without a user gesture (after a reload) waits for one.
document.addEventListener('pointerdown', () => {
  if (microphone?.suspended) {
    void microphone.resume().catch(() => undefined);
  }
});

const stored = readStored();
if (stored) {
  ui.token.value = stored.token;
  ui.codec.value = stored.codec ?? ui.codec.value;
}
if (stored?.active) {
  setStatus('a session was running in this tab: resuming it…');
  startAction();
} else {
  setStatus('ready: paste or mint a token, then start');
}
