/**
 * The benchmarks' camera material: a fixed camera over a shop counter, a person moving slowly
 * behind it, sensor grain in every frame. What a real deployment films, unlike a pan over noise:
 * most of the picture stands still, so an inter-frame codec gains what it would gain on a real
 * camera, and the grain keeps every frame different, so nothing compresses for free.
 *
 * Made by ffmpeg's own filters (lavfi: geq, gblur, overlay, noise with fixed seeds), so the same
 * ffmpeg build gives the same bytes on any machine; kept as raw yuv420p (what a camera hands to
 * `VideoEncoder`) under the bench data dir, keyed by everything that shapes it.
 *
 * - `cameraScene()`: the raw frames of one size (640×480 and 1280×720 show one scene: 16:9
 *   widens the field of view, it does not stretch it);
 * - `sceneJpegs()`: the JPEGs a browser would send for them (RGB as a canvas holds it, encoded
 *   like `canvas.toBlob('image/jpeg', quality / 100)`: libjpeg at that quality, 4:2:0);
 * - `encodeScene()`: the chunks a browser's realtime `VideoEncoder` would emit (H.264 or VP9 at
 *   a constant bitrate), each with its key-frame flag.
 *
 * The material is a closed loop: the person's path repeats every `frames` frames, so a session
 * longer than the material cycles through it without a jump.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import {
  annexBToAvcc,
  avcCFromParameterSets,
  avcCodecString,
  isIdrAccessUnit,
  NalType,
  nalUnitType,
  splitAnnexBAccessUnits,
} from '../../src/protocol/annexb';
import { ivfFrames } from '../../test/support/bitstreams';

/** The material's frame rate: framegate's default capture rate. */
export const SCENE_FPS = 10;
/** 20 s: one sweep of the person across the counter and back. */
export const SCENE_FRAMES = 200;
/** The two sizes the benchmarks use: VGA, as the SDK sends today, and 720p. */
export const SCENE_SIZES = [
  { width: 640, height: 480 },
  { width: 1280, height: 720 },
] as const;

/**
 * Sensor grain after the camera's own processing, as the luma strength of ffmpeg's `noise`
 * (Gaussian, different in every frame): 4 is σ ≈ 2 of 255 luma levels (the grain alone has a PSNR
 * of 42 dB), a webcam indoors. Chroma grain is half as strong, as a camera's denoiser leaves it.
 * Codecs spend their bits on grain and SSIM counts it: the bandwidth figures depend on it.
 */
export const SCENE_GRAIN = 4;
/** Fixed seeds: the grain, and so every frame, is the same in every run. */
const GRAIN_SEEDS = [1709, 2713, 3329];
/** The optics: edges as soft as a webcam lens makes them (gblur sigma, in pixels at 480 lines). */
const LENS_SIGMA_480 = 0.8;
/** The person is a little out of focus and moves, so softer. */
const PERSON_SIGMA_480 = 1.4;
/** The person's sweep, in scene heights either side of the centre, and the step's bob. */
const SWEEP = 0.36;
const BOB = 0.006;
const STEP_FRAMES = 10;

/** Where the benchmarks keep material between runs: BENCH_DATA_DIR, else the temp dir. */
export function benchDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.BENCH_DATA_DIR || join(tmpdir(), 'framegate-bench-data');
  mkdirSync(dir, { recursive: true });
  return dir;
}

export interface Scene {
  width: number;
  height: number;
  fps: number;
  frames: number;
  /** The raw frames, yuv420p (BT.601, limited range), one after the other. */
  yuvPath: string;
  frameBytes: number;
  /** The filter graphs and seeds, for the report: the material is what they make. */
  recipe: { layers: string[]; composite: string; grain: number };
  /** Built in this run (false: taken from the cache). */
  built: boolean;
}

/** Colours as 0xRRGGBB. */
type Shape =
  | { rect: [number, number, number, number]; rgb: number }
  | { ellipse: [number, number, number, number]; rgb: number };

/*
 * Coordinates in scene heights: u across from the centre of the picture, v down from its top.
 * 4:3 shows u in ±0.67, 16:9 in ±0.89. In each list the first shape that covers a point wins.
 */
const WALL = 0xbfae95;
const BACK: Shape[] = [
  // A wall clock.
  { ellipse: [0.02, 0.1, 0.036, 0.036], rgb: 0xf4f2ea },
  { ellipse: [0.02, 0.1, 0.044, 0.044], rgb: 0x2b2b2b },
  // Shelves and what stands on them.
  ...shelf(0.2, [0xb23a2f, 0x2f5f9a, 0xe0c04a, 0x3f7d4f, 0xd8d2c4, 0x7a3f8f, 0xcf6b2c, 0x2a2a2a]),
  ...shelf(0.4, [0xe7e3da, 0x4b8bbd, 0x9b2d2d, 0xd9a441, 0x355a3a, 0xc4c4c4, 0x6d4b2f, 0xa8c8e0]),
  { rect: [0.15, 0.2, 0.78, 0.215], rgb: 0x5a3d26 },
  { rect: [0.15, 0.4, 0.78, 0.415], rgb: 0x5a3d26 },
  // A poster with lines of print.
  ...[0.16, 0.19, 0.22, 0.25].map((v): Shape => ({
    rect: [-0.33, v, -0.17, v + 0.012],
    rgb: 0x3a2e24,
  })),
  { rect: [-0.33, 0.28, -0.17, 0.33], rgb: 0xb3322a },
  { rect: [-0.36, 0.1, -0.14, 0.36], rgb: 0xdcc27a },
  // A window with its bars, brighter than anything else.
  { rect: [-0.665, 0.08, -0.645, 0.5], rgb: 0xe8e8e2 },
  { rect: [-0.86, 0.28, -0.44, 0.3], rgb: 0xe8e8e2 },
  { rect: [-0.84, 0.1, -0.46, 0.48], rgb: 0xdde9f2 },
  { rect: [-0.86, 0.08, -0.44, 0.5], rgb: 0xe8e8e2 },
  // A door at the right, seen only at 16:9.
  { rect: [0.8, 0.1, 0.92, 0.6], rgb: 0x7b5a3c },
  { rect: [0.78, 0.06, 0.94, 0.62], rgb: 0x5e432b },
];
const FRONT: Shape[] = [
  // On the counter: a register, papers, a cup, a plant.
  { rect: [0.29, 0.495, 0.41, 0.53], rgb: 0x4f8a6b },
  { rect: [0.29, 0.55, 0.41, 0.585], rgb: 0x58585c },
  { rect: [0.25, 0.47, 0.45, 0.6], rgb: 0x2e2e30 },
  { rect: [-0.5, 0.577, -0.34, 0.6], rgb: 0xefefe9 },
  { rect: [-0.12, 0.54, -0.08, 0.6], rgb: 0xb03a2e },
  { ellipse: [0.62, 0.45, 0.075, 0.07], rgb: 0x3f7a3a },
  { rect: [0.57, 0.51, 0.67, 0.6], rgb: 0xa8552f },
  // The counter top, then its front with panel grooves.
  { rect: [-1, 0.6, 1, 0.645], rgb: 0xcbb994 },
  ...[-0.6, -0.3, 0, 0.3, 0.6].map((u): Shape => ({
    rect: [u - 0.004, 0.645, u + 0.004, 1],
    rgb: 0x4f3420,
  })),
  { rect: [-1, 0.645, 1, 1], rgb: 0x6e4a2c },
];
/** The person, in scene heights from the top centre of their sprite. */
const PERSON_WIDTH = 0.28;
const PERSON_HEIGHT = 0.62;
const SKIN = 0xd7a98a;
const SHIRT = 0x35608f;
const PERSON: Shape[] = [
  { ellipse: [0, 0.09, 0.048, 0.064], rgb: SKIN },
  { ellipse: [0, 0.078, 0.056, 0.068], rgb: 0x3b2a20 },
  { rect: [-0.02, 0.13, 0.02, 0.2], rgb: SKIN },
  { rect: [-0.128, 0.215, -0.096, 0.52], rgb: 0x2c4f78 },
  { rect: [0.096, 0.215, 0.128, 0.52], rgb: 0x2c4f78 },
  { ellipse: [0, 0.225, 0.11, 0.04], rgb: SHIRT },
  { rect: [-0.1, 0.225, 0.1, PERSON_HEIGHT], rgb: SHIRT },
];

/** Eight products of different heights and widths standing on a board at `v`. */
function shelf(v: number, colours: number[]): Shape[] {
  let u = 0.17;
  return colours.map((rgb, i) => {
    const width = 0.045 + ((i * 37) % 5) * 0.01;
    const height = 0.06 + ((i * 53) % 4) * 0.012;
    const shape: Shape = { rect: [u, v - height, u + width, v], rgb };
    u += width + 0.012;
    return shape;
  });
}

/**
 * geq's test for "inside" at (u, v), two expressions. Written out, not kept in geq's registers
 * (`st`/`ld`): geq runs slices in threads that share the registers, which streaks the picture.
 */
function inside(shape: Shape, u: string, v: string): string {
  if ('rect' in shape) {
    const [u0, v0, u1, v1] = shape.rect;
    return `between(${u},${u0},${u1})*between(${v},${v0},${v1})`;
  }
  const [cu, cv, ru, rv] = shape.ellipse;
  return `lte(pow((${u}-${cu})/${ru},2)+pow((${v}-${cv})/${rv},2),1)`;
}

/** One channel (shift 16 red, 8 green, 0 blue) of the first shape covering the point, else `otherwise`. */
function channel(shapes: Shape[], shift: number, otherwise: string, u: string, v: string): string {
  return shapes.reduceRight(
    (rest, shape) => `if(${inside(shape, u, v)},${(shape.rgb >> shift) & 0xff},${rest})`,
    otherwise,
  );
}

/**
 * A geq RGB(A) filter drawing `shapes` in an image `scaleRows` pixels per scene height, centred
 * at `originX` pixels: the room's light (brighter up and to the left, where the window is) and a
 * fixed plaster texture on everything.
 */
function drawShapes(
  shapes: Shape[],
  scaleRows: number,
  originX: string,
  background: number | null,
  lit: boolean,
): string {
  const u = `(X-${originX})/${scaleRows}`;
  const v = `Y/${scaleRows}`;
  const light = lit ? `*(0.8+0.26*(1-${v})-0.1*abs(${u}+0.35))` : '';
  // A hash of the position: a static texture, the same in every frame.
  const texture = lit ? '+6*(mod(abs(sin(X*12.9898+Y*78.233))*43758.5453,1)-0.5)' : '';
  const colour = (shift: number): string => {
    const otherwise = background === null ? '0' : String((background >> shift) & 0xff);
    return `clip(${channel(shapes, shift, otherwise, u, v)}${light}${texture},0,255)`;
  };
  const parts = [`r='${colour(16)}'`, `g='${colour(8)}'`, `b='${colour(0)}'`];
  if (background === null) {
    const covered = shapes.map((shape) => inside(shape, u, v)).join('+');
    parts.push(`a='255*gt(${covered},0)'`);
  }
  return `geq=${parts.join(':')}`;
}

/** Scene layers, each one still image: the wall behind, the person, the counter in front. */
function layerGraphs(width: number, height: number): Record<'back' | 'person' | 'front', string> {
  const lens = round2((LENS_SIGMA_480 * height) / 480);
  const soft = round2((PERSON_SIGMA_480 * height) / 480);
  const personW = even(PERSON_WIDTH * height);
  const personH = even(PERSON_HEIGHT * height);
  const source = (w: number, h: number): string => `color=c=black:s=${w}x${h}:r=1:d=1`;
  return {
    back: `${source(width, height)},format=gbrp,${drawShapes(BACK, height, 'W/2', WALL, true)},gblur=sigma=${lens}`,
    person:
      `${source(personW, personH)},format=gbrap,` +
      `${drawShapes(PERSON, height, 'W/2', null, false)},gblur=sigma=${soft}:planes=15`,
    front:
      `${source(width, height)},format=gbrap,` +
      `${drawShapes(FRONT, height, 'W/2', null, true)},gblur=sigma=${lens}:planes=15`,
  };
}

/** The person's top-left corner in frame `n` (overlay's expressions: W/H the frame, w/h the sprite). */
function compositeGraph(height: number, frames: number, grain: number): string {
  const x = `W/2-w/2+${SWEEP * height}*sin(2*PI*n/${frames})`;
  const y = `${0.2 * height}+${BOB * height}*sin(2*PI*n/${STEP_FRAMES})`;
  const chroma = Math.round(grain / 2);
  const noise = [
    `c0s=${grain}:c0f=t:c0_seed=${GRAIN_SEEDS[0]}`,
    `c1s=${chroma}:c1f=t:c1_seed=${GRAIN_SEEDS[1]}`,
    `c2s=${chroma}:c2f=t:c2_seed=${GRAIN_SEEDS[2]}`,
  ].join(':');
  return (
    `[0:v][1:v]overlay=x='${x}':y='${y}':eval=frame:format=rgb[a];` +
    `[a][2:v]overlay=0:0:format=rgb,format=yuv420p,noise=${noise}[out]`
  );
}

/**
 * The raw frames of the scene at this size, built once per ffmpeg build and recipe (about a
 * second at 640×480, a few at 1280×720) and then read from the cache.
 */
export async function cameraScene(o: {
  width: number;
  height: number;
  frames?: number;
  /** The grain's luma strength (SCENE_GRAIN unless given; 0: none). */
  grain?: number;
  ffmpegPath: string;
  dataDir: string;
}): Promise<Scene> {
  const frames = o.frames ?? SCENE_FRAMES;
  const grain = o.grain ?? SCENE_GRAIN;
  const layers = layerGraphs(o.width, o.height);
  const composite = compositeGraph(o.height, frames, grain);
  const key = createHash('sha256')
    .update(JSON.stringify([layers, composite, frames, ffmpegIdentity(o.ffmpegPath)]))
    .digest('hex')
    .slice(0, 12);
  const dir = join(o.dataDir, 'scene');
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `counter-${o.width}x${o.height}-${frames}f-${key}`);
  const yuvPath = `${base}.yuv`;
  const frameBytes = (o.width * o.height * 3) / 2;
  const scene: Scene = {
    width: o.width,
    height: o.height,
    fps: SCENE_FPS,
    frames,
    yuvPath,
    frameBytes,
    recipe: { layers: [layers.back, layers.person, layers.front], composite, grain },
    built: false,
  };
  if (existsSync(yuvPath) && statSync(yuvPath).size === frameBytes * frames) {
    return scene;
  }
  const pngs = {
    back: `${base}-back.png`,
    person: `${base}-person.png`,
    front: `${base}-front.png`,
  };
  for (const name of ['back', 'person', 'front'] as const) {
    await ffmpeg(o.ffmpegPath, ['-f', 'lavfi', '-i', layers[name], '-frames:v', '1', pngs[name]]);
  }
  const partial = `${yuvPath}.partial`;
  const still = (path: string): string[] => [
    '-loop',
    '1',
    '-framerate',
    String(SCENE_FPS),
    '-i',
    path,
  ];
  await ffmpeg(o.ffmpegPath, [
    ...still(pngs.back),
    ...still(pngs.person),
    ...still(pngs.front),
    '-filter_complex',
    composite,
    '-map',
    '[out]',
    '-frames:v',
    String(frames),
    '-f',
    'rawvideo',
    '-pix_fmt',
    'yuv420p',
    partial,
  ]);
  if (statSync(partial).size !== frameBytes * frames) {
    throw new Error(`scene ${o.width}x${o.height}: ffmpeg wrote ${statSync(partial).size} bytes`);
  }
  renameSync(partial, yuvPath);
  return { ...scene, built: true };
}

/**
 * The frames as a browser's canvas holds them (RGB, converted from the camera's yuv420p by
 * ffmpeg), JPEG-encoded by sharp as the SDK's `canvas.toBlob('image/jpeg', quality / 100)` would
 * (libjpeg at that quality, 4:2:0). Quality 70 is the SDK's default.
 */
export async function sceneJpegs(
  scene: Scene,
  quality: number,
  ffmpegPath: string,
): Promise<Buffer[]> {
  const rgb = await ffmpegOutput(ffmpegPath, [
    ...rawInput(scene),
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    'pipe:1',
  ]);
  const rgbBytes = scene.width * scene.height * 3;
  if (rgb.length !== rgbBytes * scene.frames) {
    throw new Error(`scene ${scene.width}x${scene.height}: ${rgb.length} bytes of RGB`);
  }
  const jpegs: Buffer[] = [];
  for (let i = 0; i < scene.frames; i++) {
    jpegs.push(
      await sharp(rgb.subarray(i * rgbBytes, (i + 1) * rgbBytes), {
        raw: { width: scene.width, height: scene.height, channels: 3 },
      })
        .jpeg({ quality, chromaSubsampling: '4:2:0' })
        .toBuffer(),
    );
  }
  return jpegs;
}

/** ffmpeg's input arguments for the scene's raw frames. */
export function rawInput(scene: Scene): string[] {
  return [
    '-f',
    'rawvideo',
    '-pix_fmt',
    'yuv420p',
    '-s',
    `${scene.width}x${scene.height}`,
    '-framerate',
    String(scene.fps),
    '-i',
    scene.yuvPath,
  ];
}

/** What identifies the ffmpeg build (filters and their random generators differ between builds). */
function ffmpegIdentity(ffmpegPath: string): string {
  const digest = createHash('sha256').update(readFileSync(ffmpegPath)).digest('hex');
  return `${statSync(ffmpegPath).size}:${digest.slice(0, 16)}`;
}

/** The video codecs a browser's `VideoEncoder` offers that the benchmarks imitate. */
export type SceneCodec = 'h264' | 'vp9';

/** One encoded chunk as `VideoEncoder` hands it over: H.264 in AVCC form, or a VP9 frame. */
export interface SceneChunk {
  data: Buffer;
  key: boolean;
}

export interface EncodedScene {
  codec: SceneCodec;
  /** The bitrate the encoder was given, kbit/s. */
  targetKbps: number;
  /** The `video` of `open`: codec string, base64 avcC (H.264), coded size, fps. */
  openVideo: { codec: string; description?: string; width: number; height: number; fps: number };
  /** One per frame of the scene, in order; the first is a key frame. */
  chunks: SceneChunk[];
  /** The encoder's own output (Annex B, or IVF for VP9): what a decoder reads to measure it. */
  stream: { data: Buffer; format: 'h264' | 'ivf' };
  /** Mean chunk payload, bytes (without the 12-byte media header). */
  meanBytes: number;
  /** What the chunks amount to at the scene's frame rate, kbit/s. */
  kbps: number;
  args: string[];
}

/** The keyframe interval: framegate's default VIDEO_KEYFRAME_INTERVAL_MS (5 s) at 10 fps. */
export const CAMERA_GOP = 50;

/**
 * ffmpeg output arguments that imitate a browser's realtime `VideoEncoder` (latencyMode
 * 'realtime', bitrateMode 'constant'): one frame out per frame in, no lookahead or B-frames, a
 * key frame every CAMERA_GOP frames, and a 1 s rate buffer at `kbps`. H.264 is Constrained
 * Baseline (`avc1.42…`), what Chromium's software encoder (OpenH264) emits and every hardware
 * encoder accepts: the least efficient profile a browser sends, so the figure is a floor. VP9 is
 * libvpx in realtime mode at speed 7, about where WebRTC runs it for this size. One thread, so
 * the bytes do not depend on the machine's cores.
 */
export function cameraEncoderArgs(codec: SceneCodec, kbps: number): string[] {
  const rate = `${Math.round(kbps)}k`;
  const rateControl = ['-b:v', rate, '-maxrate', rate, '-bufsize', rate];
  switch (codec) {
    case 'h264':
      return [
        '-c:v',
        'libx264',
        '-preset',
        'veryfast',
        '-tune',
        'zerolatency',
        '-profile:v',
        'baseline',
        '-g',
        String(CAMERA_GOP),
        ...rateControl,
        '-threads',
        '1',
        '-f',
        'h264',
      ];
    case 'vp9':
      return [
        '-c:v',
        'libvpx-vp9',
        '-deadline',
        'realtime',
        '-cpu-used',
        '7',
        '-lag-in-frames',
        '0',
        '-g',
        String(CAMERA_GOP),
        // minrate = maxrate = bitrate: ffmpeg's libvpx wrapper then runs libvpx in CBR mode.
        '-minrate',
        rate,
        ...rateControl,
        '-threads',
        '1',
        '-f',
        'ivf',
      ];
  }
}

/** The scene encoded as a browser would send it at `kbps`. */
export async function encodeScene(
  scene: Scene,
  codec: SceneCodec,
  kbps: number,
  ffmpegPath: string,
  /**
   * Start from this frame of the loop (and wrap around): the same material with its key frames
   * elsewhere, as another camera switched on at another moment would send it.
   */
  startFrame = 0,
): Promise<EncodedScene> {
  let input: Buffer[] | undefined;
  let inputArgs = rawInput(scene);
  if (startFrame % scene.frames !== 0) {
    const raw = readFileSync(scene.yuvPath);
    const cut = (startFrame % scene.frames) * scene.frameBytes;
    input = [raw.subarray(cut), raw.subarray(0, cut)];
    inputArgs = [...inputArgs.slice(0, -1), 'pipe:0'];
  }
  const args = [...QUIET, ...inputArgs, ...cameraEncoderArgs(codec, kbps), 'pipe:1'];
  const data = await runFfmpeg(ffmpegPath, args, input);
  let chunks: SceneChunk[];
  let openVideo: EncodedScene['openVideo'];
  const size = { width: scene.width, height: scene.height, fps: scene.fps };
  if (codec === 'h264') {
    const units = splitAnnexBAccessUnits(data);
    const first = units[0] ?? [];
    const sps = first.filter((nal) => nalUnitType(nal) === NalType.Sps);
    const pps = first.filter((nal) => nalUnitType(nal) === NalType.Pps);
    if (sps.length === 0 || pps.length === 0) {
      throw new Error('the first H.264 access unit carries no SPS/PPS');
    }
    chunks = units.map((au) => ({
      data: Buffer.from(annexBToAvcc(au)),
      key: isIdrAccessUnit(au),
    }));
    openVideo = {
      codec: avcCodecString(sps[0]),
      description: Buffer.from(avcCFromParameterSets(sps, pps)).toString('base64'),
      ...size,
    };
  } else {
    chunks = ivfFrames(data).frames.map((frame) => ({
      data: Buffer.from(frame.data),
      key: vp9IsKeyFrame(frame.data),
    }));
    openVideo = { codec: `vp09.00.${vp9Level(scene.width * scene.height)}.08`, ...size };
  }
  if (chunks.length !== scene.frames || !chunks[0]?.key) {
    throw new Error(
      `${codec} at ${kbps} kbit/s: ${chunks.length} chunks for ${scene.frames} frames, ` +
        `the first ${chunks[0]?.key ? '' : 'not '}a key frame`,
    );
  }
  const meanBytes = chunks.reduce((sum, c) => sum + c.data.length, 0) / chunks.length;
  return {
    codec,
    targetKbps: kbps,
    openVideo,
    chunks,
    stream: { data, format: codec === 'h264' ? 'h264' : 'ivf' },
    meanBytes,
    kbps: (meanBytes * 8 * scene.fps) / 1000,
    args,
  };
}

/**
 * Whether a VP9 frame is a key frame: the uncompressed header (VP9 bitstream spec §6.2) starts
 * with frame_marker (2 bits), the profile's two bits (and a reserved bit in profile 3),
 * show_existing_frame, then frame_type, 0 for a key frame.
 */
function vp9IsKeyFrame(frame: Uint8Array): boolean {
  const b = frame[0] ?? 0;
  const profile = ((b >> 5) & 1) | (((b >> 4) & 1) << 1);
  const at = profile === 3 ? 2 : 3;
  const showExisting = (b >> at) & 1;
  return b >> 6 === 2 && showExisting === 0 && ((b >> (at - 1)) & 1) === 0;
}

/** VP9's level (Annex A) by luma picture size alone: at 10 fps the sample rate never decides. */
function vp9Level(lumaSamples: number): string {
  const levels: Array<[number, string]> = [
    [36_864, '10'],
    [73_728, '11'],
    [122_880, '20'],
    [245_760, '21'],
    [552_960, '30'],
    [983_040, '31'],
    [2_228_224, '40'],
    [8_912_896, '50'],
  ];
  return levels.find(([max]) => lumaSamples <= max)?.[1] ?? '60';
}

/** ffmpeg's options before any input: terse, and overwrite outputs. */
export const QUIET = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y'];

/** Runs ffmpeg (the caller's options, output last). */
export async function ffmpeg(ffmpegPath: string, args: string[]): Promise<void> {
  await runFfmpeg(ffmpegPath, [...QUIET, ...args]);
}

/** Runs ffmpeg (the caller's options, output last) and resolves with its stdout. */
export function ffmpegOutput(ffmpegPath: string, args: string[]): Promise<Buffer> {
  return runFfmpeg(ffmpegPath, [...QUIET, ...args]);
}

/**
 * Runs ffmpeg with exactly `args`, writing `input` (if any) to its stdin; resolves with its stdout
 * and rejects with its last error lines.
 */
export function runFfmpeg(ffmpegPath: string, args: string[], input?: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpegPath, args, { stdio: 'pipe' });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    child.once('error', reject);
    child.once('close', (code) => {
      if (code === 0) {
        resolve(Buffer.concat(out));
      } else {
        reject(new Error(`ffmpeg exited with ${code}: ${stderr.trim()}`));
      }
    });
    // EPIPE if ffmpeg fails early: its exit code says why.
    child.stdin.on('error', () => undefined);
    void writeAll(child.stdin, input ?? []);
  });
}

async function writeAll(stream: NodeJS.WritableStream, buffers: Buffer[]): Promise<void> {
  for (const buffer of buffers) {
    if (!stream.write(buffer)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stream.off('drain', done);
          stream.off('close', done);
          resolve();
        };
        stream.once('drain', done);
        stream.once('close', done);
      });
    }
  }
  stream.end();
}

function even(value: number): number {
  return 2 * Math.round(value / 2);
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
