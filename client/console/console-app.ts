/**
 * The operations console at /console: find a transaction's sessions, read a session's timeline
 * and play its recording, kick live connections, and set channel quotas. It uses the admin REST
 * API only (docs/admin-api.md), with an admin token pasted into the page and kept in
 * sessionStorage (this tab only). Views are addressed by the URL's hash (#sessions?…,
 * #session/<id>, #connections, #channels), so the browser's back button and links work.
 * Everything shown is built as DOM nodes, never as HTML text: session params, messages and user
 * agents come from clients.
 */
import {
  AdminApi,
  ApiError,
  QUOTA_KEYS,
  SESSION_STATUSES,
  type ChannelView,
  type ConnectionAudit,
  type LiveConnection,
  type QuotaKey,
  type RecordingDetail,
  type SessionDetail,
  type SessionSummary,
} from './admin-api.js';

const TOKEN_KEY = 'framegate-console-token';
const PAGE_SIZE = 50;
/** How often the live connections refresh while they are shown. */
const CONNECTIONS_REFRESH_MS = 5_000;

type Route =
  | { view: 'sessions'; query: URLSearchParams }
  | { view: 'session'; id: string }
  | { view: 'connections' }
  | { view: 'channels' };

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) {
    throw new Error(`#${id} is missing`);
  }
  return el as T;
};

type Child = Node | string | number | null | undefined | false;

/** An element with attributes and children; text children are text nodes, never parsed. */
/**
 * The tags the console builds. Listed rather than `keyof HTMLElementTagNameMap`: resolving the
 * whole map here changed how TypeScript orders the canvas context union in the SDK's
 * camera-capture.ts (same program), which then failed lint's no-unnecessary-type-assertion.
 */
type Tag =
  | 'a'
  | 'button'
  | 'code'
  | 'dd'
  | 'dt'
  | 'option'
  | 'span'
  | 'strong'
  | 'td'
  | 'time'
  | 'tr'
  | 'track';

function h<K extends Tag>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === true) {
      el.setAttribute(name, '');
    } else if (typeof value === 'string') {
      el.setAttribute(name, value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      el.append(typeof child === 'number' ? String(child) : child);
    }
  }
  return el;
}

const ui = {
  whoami: $('whoami'),
  nav: $('nav'),
  signOut: $<HTMLButtonElement>('sign-out'),
  notice: $('notice'),
  views: {
    signIn: $('view-sign-in'),
    sessions: $('view-sessions'),
    session: $('view-session'),
    connections: $('view-connections'),
    channels: $('view-channels'),
  },
  signInForm: $<HTMLFormElement>('sign-in-form'),
  token: $<HTMLTextAreaElement>('token'),
  searchForm: $<HTMLFormElement>('search-form'),
  status: $<HTMLSelectElement>('f-status'),
  searchStatus: $('search-status'),
  results: $<HTMLTableElement>('session-results'),
  more: $<HTMLButtonElement>('more-sessions'),
  backToSearch: $<HTMLAnchorElement>('back-to-search'),
  sessionId: $('session-id'),
  sessionStatus: $('session-status'),
  summary: $('session-summary'),
  counts: $('session-counts'),
  recordingStatus: $('recording-status'),
  recording: $<HTMLVideoElement>('recording'),
  recordingFacts: $('recording-facts'),
  timeline: $<HTMLTableElement>('timeline'),
  truncated: $('timeline-truncated'),
  connectionsStatus: $('connections-status'),
  connections: $<HTMLTableElement>('connections'),
  autoRefresh: $<HTMLInputElement>('auto-refresh'),
  refreshConnections: $<HTMLButtonElement>('refresh-connections'),
  channelsStatus: $('channels-status'),
  channels: $<HTMLTableElement>('channels'),
  quotaForm: $<HTMLFormElement>('quota-form'),
  quotaTitle: $('quota-title'),
  quotaChannel: $<HTMLInputElement>('q-channel'),
  quotaStatus: $('quota-status'),
  saveQuota: $<HTMLButtonElement>('save-quota'),
};

const quotaInput = (key: QuotaKey): HTMLInputElement => $<HTMLInputElement>(`q-${key}`);

let api: AdminApi | null = null;
/** Bumped on every navigation: answers for an older view are dropped. */
let generation = 0;
let refreshTimer: ReturnType<typeof setInterval> | null = null;
let recordingUrl: string | null = null;
let captionsUrl: string | null = null;
let recordingAbort: AbortController | null = null;
let nextCursor: string | null = null;
let shownQuery = new URLSearchParams();
let listed = 0;

// ---------------------------------------------------------------------------------------------
// Formatting

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

/** A time in the operator's zone, with the exact ISO instant on hover. */
function time(iso: string | null | undefined): Node {
  if (!iso) {
    return document.createTextNode('–');
  }
  const d = new Date(iso);
  return h('time', { datetime: iso, title: iso }, dateTime.format(d));
}

function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) {
    return '–';
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) {
    return '–';
  }
  if (ms < 1000) {
    return `${ms} ms`;
  }
  const s = ms / 1000;
  if (s < 120) {
    return `${s.toFixed(1)} s`;
  }
  const m = Math.floor(s / 60);
  return m < 120 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

const count = (n: number): string => n.toLocaleString();

function badge(value: string): HTMLElement {
  const kind = value.startsWith('rejected') ? 'rejected' : value;
  return h('span', { class: `badge ${kind}` }, value);
}

function shortId(id: string): HTMLElement {
  return h('code', { title: id }, id.slice(0, 8));
}

/** Params or a message body as one readable line. */
function compact(value: unknown): string {
  if (value === null || value === undefined) {
    return '–';
  }
  if (typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) {
      return '–';
    }
    return entries
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(', ');
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function facts(dl: HTMLElement, rows: Array<[string, Child]>): void {
  dl.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '–')]));
}

function setStatus(
  el: HTMLElement,
  text: string,
  kind: 'muted' | 'error' | 'success' = 'muted',
): void {
  el.textContent = text;
  el.className = kind;
}

function describe(err: unknown): string {
  if (err instanceof ApiError) {
    return err.describe();
  }
  return err instanceof Error ? err.message : String(err);
}

/** Shows a failure where the view shows its status; a refused token is also named at the top. */
function failed(el: HTMLElement, err: unknown): void {
  setStatus(el, describe(err), 'error');
  if (err instanceof ApiError && err.status === 401) {
    setStatus(ui.notice, describe(err), 'error');
  }
}

function emptyRow(table: HTMLTableElement, text: string): void {
  const columns = table.tHead?.rows[0]?.cells.length ?? 1;
  table.tBodies[0].replaceChildren(
    h('tr', {}, h('td', { class: 'empty', colspan: String(columns) }, text)),
  );
}

// ---------------------------------------------------------------------------------------------
// Token

interface Claims {
  sub?: string;
  scope?: string;
  exp?: number;
}

/** The token's claims, unverified: only to tell the operator who they are signed in as. */
function claimsOf(token: string): Claims | null {
  try {
    const part = token.split('.')[1] ?? '';
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json) as unknown;
    return typeof claims === 'object' && claims !== null ? claims : null;
  } catch {
    return null;
  }
}

function signIn(token: string): void {
  api = new AdminApi(token);
  const claims = claimsOf(token);
  const scopes = claims?.scope?.split(' ') ?? [];
  const expires = claims?.exp ? ` · expires ${dateTime.format(new Date(claims.exp * 1000))}` : '';
  ui.whoami.textContent = claims
    ? `Signed in as ${claims.sub ?? '(no subject)'} · scopes: ${scopes.join(' ') || '(none)'}${expires}`
    : 'Signed in with a token that is not a JWT';
  ui.whoami.className = scopes.includes('admin') ? 'muted' : 'warning';
  if (claims && !scopes.includes('admin')) {
    ui.whoami.textContent += ' — this token has no admin scope: the API will refuse it (403)';
  }
  ui.nav.hidden = false;
}

function signOut(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  api = null;
  ui.whoami.textContent = 'Not signed in';
  ui.whoami.className = 'muted';
  ui.nav.hidden = true;
  route();
}

ui.signInForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const token = ui.token.value.trim().replace(/^Bearer\s+/i, '');
  if (token.length === 0) {
    setStatus(ui.notice, 'Paste a token first.', 'error');
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  ui.token.value = '';
  signIn(token);
  setStatus(ui.notice, '');
  if (parseRoute().view === 'sessions') {
    route();
  } else {
    location.hash = '#sessions';
  }
});

ui.signOut.addEventListener('click', signOut);

// ---------------------------------------------------------------------------------------------
// Routing

function parseRoute(): Route {
  const hash = location.hash.replace(/^#/, '');
  const [path, query = ''] = hash.split('?', 2);
  if (path.startsWith('session/')) {
    return { view: 'session', id: decodeURIComponent(path.slice('session/'.length)) };
  }
  if (path === 'connections' || path === 'channels') {
    return { view: path };
  }
  return { view: 'sessions', query: new URLSearchParams(query) };
}

function show(view: keyof typeof ui.views): void {
  for (const [name, el] of Object.entries(ui.views)) {
    el.hidden = name !== view;
  }
  const current = view === 'session' ? 'sessions' : view;
  ui.nav.querySelectorAll<HTMLAnchorElement>('a[data-view]').forEach((link) => {
    if (link.dataset.view === current) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  });
}

/** Leaves the current view: stops its refresh, drops its recording. */
function leave(): void {
  generation++;
  kickNotice = null;
  if (refreshTimer !== null) {
    clearInterval(refreshTimer);
    refreshTimer = null;
  }
  recordingAbort?.abort();
  recordingAbort = null;
  ui.recording.pause();
  ui.recording.removeAttribute('src');
  ui.recording.replaceChildren();
  ui.recording.load();
  for (const url of [recordingUrl, captionsUrl]) {
    if (url !== null) {
      URL.revokeObjectURL(url);
    }
  }
  recordingUrl = null;
  captionsUrl = null;
}

function route(): void {
  leave();
  if (api === null) {
    show('signIn');
    document.title = 'Sign in · framegate console';
    ui.token.focus();
    return;
  }
  const r = parseRoute();
  show(r.view);
  switch (r.view) {
    case 'sessions':
      document.title = 'Sessions · framegate console';
      void searchSessions(r.query);
      return;
    case 'session':
      document.title = `Session ${r.id.slice(0, 8)} · framegate console`;
      void showSession(r.id);
      return;
    case 'connections':
      document.title = 'Live connections · framegate console';
      void loadConnections();
      refreshTimer = setInterval(() => {
        if (ui.autoRefresh.checked) {
          void loadConnections();
        }
      }, CONNECTIONS_REFRESH_MS);
      return;
    case 'channels':
      document.title = 'Channels · framegate console';
      void loadChannels();
      return;
  }
}

window.addEventListener('hashchange', route);

// ---------------------------------------------------------------------------------------------
// Sessions

for (const status of SESSION_STATUSES) {
  ui.status.append(h('option', { value: status }, status));
}

const field = (name: string): HTMLInputElement | HTMLSelectElement =>
  ui.searchForm.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement;

/** A datetime-local value (the operator's zone) as an ISO instant, or null when unreadable. */
function instantOf(local: string): string | null {
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** An ISO instant as a datetime-local value in the operator's zone. */
function localOf(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) {
    return '';
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** The admin API's query for the search form. */
function queryOfForm(): URLSearchParams | string {
  const q = new URLSearchParams();
  const value = (name: string) => field(name).value.trim();
  if (value('transactionId')) {
    q.set('param.transactionId', value('transactionId'));
  }
  const key = value('paramKey');
  if (key || value('paramValue')) {
    if (!key || !value('paramValue')) {
      return 'Give both the name and the value of the other parameter.';
    }
    q.set(`param.${key}`, value('paramValue'));
  }
  for (const name of ['channel', 'subject', 'status']) {
    if (value(name)) {
      q.set(name, value(name));
    }
  }
  for (const name of ['from', 'to']) {
    if (value(name)) {
      const iso = instantOf(value(name));
      if (iso === null) {
        return `“${name === 'from' ? 'Created from' : 'Created before'}” is not a date and time.`;
      }
      q.set(name, iso);
    }
  }
  return q;
}

function fillForm(q: URLSearchParams): void {
  ui.searchForm.reset();
  for (const [key, value] of q) {
    if (key === 'param.transactionId') {
      field('transactionId').value = value;
    } else if (key.startsWith('param.')) {
      field('paramKey').value = key.slice('param.'.length);
      field('paramValue').value = value;
    } else if (key === 'from' || key === 'to') {
      field(key).value = localOf(value);
    } else if (key === 'channel' || key === 'subject' || key === 'status') {
      field(key).value = value;
    }
  }
}

ui.searchForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const q = queryOfForm();
  if (typeof q === 'string') {
    setStatus(ui.searchStatus, q, 'error');
    return;
  }
  const hash = `#sessions?${q.toString()}`;
  if (location.hash === hash) {
    route(); // the same search again: look again
  } else {
    location.hash = hash;
  }
});

ui.more.addEventListener('click', () => {
  if (nextCursor !== null) {
    void searchSessions(shownQuery, nextCursor);
  }
});

function describeQuery(q: URLSearchParams): string {
  const parts = [...q].map(([k, v]) => `${k.replace(/^param\./, '')} = ${v}`);
  return parts.length > 0 ? parts.join(', ') : 'no filter';
}

async function searchSessions(query: URLSearchParams, cursor?: string): Promise<void> {
  const gen = generation;
  if (cursor === undefined) {
    fillForm(query);
    shownQuery = query;
    listed = 0;
    ui.results.hidden = true;
    ui.more.hidden = true;
  }
  setStatus(ui.searchStatus, 'Searching…');
  ui.more.disabled = true;
  const q = new URLSearchParams(query);
  q.set('limit', String(PAGE_SIZE));
  if (cursor !== undefined) {
    q.set('cursor', cursor);
  }
  try {
    const page = await (api as AdminApi).searchSessions(q);
    if (gen !== generation) {
      return;
    }
    const body = ui.results.tBodies[0];
    if (cursor === undefined) {
      body.replaceChildren();
    }
    body.append(...page.items.map(sessionRow));
    listed += page.items.length;
    nextCursor = page.nextCursor;
    ui.results.hidden = listed === 0;
    ui.more.hidden = nextCursor === null;
    ui.more.disabled = false;
    setStatus(
      ui.searchStatus,
      listed === 0
        ? `No session matches (${describeQuery(query)}).`
        : `${count(listed)} session${listed === 1 ? '' : 's'}${nextCursor ? ' so far' : ''}, newest first (${describeQuery(query)}).`,
    );
  } catch (err) {
    if (gen === generation) {
      ui.more.disabled = false;
      failed(ui.searchStatus, err);
    }
  }
}

function sessionRow(s: SessionSummary): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-session-id': s.id },
    h('td', {}, time(s.createdAt)),
    h('td', {}, badge(s.status)),
    h('td', {}, s.channel),
    h('td', {}, s.subject),
    h('td', {}, compact(s.params)),
    h('td', { class: 'num' }, count(s.videoFrames)),
    h(
      'td',
      {},
      h('a', { href: `#session/${s.id}`, title: `Open session ${s.id}` }, 'Open ', shortId(s.id)),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// One session

async function showSession(id: string): Promise<void> {
  const gen = generation;
  ui.sessionId.textContent = id;
  setStatus(ui.sessionStatus, 'Loading…');
  for (const el of [ui.summary, ui.counts, ui.recordingFacts]) {
    el.replaceChildren();
  }
  ui.timeline.tBodies[0].replaceChildren();
  ui.truncated.hidden = true;
  ui.recording.hidden = true;
  setStatus(ui.recordingStatus, '');
  ui.backToSearch.setAttribute('href', `#sessions?${shownQuery.toString()}`);
  let detail: SessionDetail;
  try {
    detail = await (api as AdminApi).session(id);
  } catch (err) {
    if (gen === generation) {
      failed(
        ui.sessionStatus,
        err instanceof ApiError && err.status === 404
          ? new Error('No such session (it may have been purged by retention).')
          : err,
      );
    }
    return;
  }
  if (gen !== generation) {
    return;
  }
  setStatus(ui.sessionStatus, '');
  renderSession(detail);
  void playRecording(id, detail.recording, gen);
}

function renderSession(d: SessionDetail): void {
  const s = d.session;
  const live = d.live
    ? d.live.attached
      ? `on ${d.live.node}, attached over ${d.live.attached.transport}`
      : `on ${d.live.node}, waiting for the client to resume`
    : 'not running on this node';
  facts(ui.summary, [
    ['status', badge(s.status)],
    ['subject', s.subject],
    ['channel', s.channel],
    ['parameters', compact(s.params)],
    ['created', time(s.createdAt)],
    ['closed', time(s.closedAt)],
    ['live', live],
    [
      'video',
      s.video
        ? `${s.video.width}×${s.video.height}${s.video.fps ? ` @ ${s.video.fps} fps` : ''}`
        : '–',
    ],
    ['audio', s.audio ? `${s.audio.sampleRate} Hz, ${s.audio.channels} ch` : 'none'],
  ]);
  const accepted = d.connections.filter((c) => c.outcome === 'accepted').length;
  facts(ui.counts, [
    ['last seq stored', count(s.lastSeq)],
    ['video frames', count(s.videoFrames)],
    ['audio chunks', count(s.audioFrames)],
    ['rejected frames', count(s.rejectedFrames)],
    ['bytes in', bytes(s.bytesIn)],
    [
      'connections',
      `${count(accepted)} accepted, ${count(d.connections.length - accepted)} refused`,
    ],
    ['messages', count(d.messages.length)],
  ]);
  const rows = timelineOf(d).map((e) =>
    h(
      'tr',
      { 'data-kind': e.kind },
      h('td', {}, time(e.at)),
      h('td', {}, e.label),
      h('td', {}, e.what),
      h('td', {}, e.details),
    ),
  );
  if (rows.length === 0) {
    emptyRow(ui.timeline, 'Nothing recorded for this session yet.');
  } else {
    ui.timeline.tBodies[0].replaceChildren(...rows);
  }
  ui.truncated.hidden = !d.truncated;
}

interface TimelineEntry {
  at: string;
  kind: 'status' | 'connection' | 'close' | 'event' | 'message';
  label: string;
  what: Child;
  details: Child;
}

/** Order of entries at the same instant: the handshake before what it caused. */
const KIND_ORDER: Record<TimelineEntry['kind'], number> = {
  connection: 0,
  status: 1,
  event: 2,
  message: 3,
  close: 4,
};

function timelineOf(d: SessionDetail): TimelineEntry[] {
  const entries: TimelineEntry[] = [];
  for (const change of d.statusHistory) {
    entries.push({
      at: change.at,
      kind: 'status',
      label: 'status',
      what: badge(change.status),
      details: change.cause ?? '',
    });
  }
  for (const c of d.connections) {
    entries.push(...connectionEntries(c));
  }
  for (const e of d.events) {
    const detail = compact(e.detail);
    entries.push({
      at: e.at,
      kind: 'event',
      label: 'event',
      what: e.type,
      details: h(
        'span',
        {},
        detail === '–' ? '' : detail,
        e.connectionId
          ? h('span', { class: 'muted' }, ' · connection ', shortId(e.connectionId))
          : null,
      ),
    });
  }
  for (const m of d.messages) {
    const body = m.body as { text?: unknown } | null;
    const text = body && typeof body.text === 'string' ? body.text : compact(m.body);
    entries.push({
      at: m.createdAt,
      kind: 'message',
      label: m.direction === 'in' ? 'message from client' : 'message to client',
      what: text,
      details: m.sender ? `by ${m.sender}` : '',
    });
  }
  return entries.sort(
    (a, b) => Date.parse(a.at) - Date.parse(b.at) || KIND_ORDER[a.kind] - KIND_ORDER[b.kind],
  );
}

function connectionEntries(c: ConnectionAudit): TimelineEntry[] {
  const from = [c.remoteAddress, c.userAgent].filter(Boolean).join(' · ');
  const repeated = c.count > 1 ? ` (×${c.count}, last at ${c.lastAt ?? '?'})` : '';
  const entries: TimelineEntry[] = [
    {
      at: c.at,
      kind: 'connection',
      label: `${c.transport} connection`,
      what: h('span', {}, badge(c.outcome), c.error ? ` ${c.error}` : '', repeated),
      details: h(
        'span',
        {},
        from ? `from ${from} · ` : '',
        'connection ',
        shortId(c.id),
        c.node ? ` · node ${c.node}` : '',
      ),
    },
  ];
  const close = c.close;
  if (close) {
    const by = close.closedBy ? ` by ${close.closedBy}` : '';
    entries.push({
      at: close.closedAt,
      kind: 'close',
      label: `${c.transport} closed`,
      what: `${close.closeReason ?? 'closed'}${close.closeCode !== null ? ` (${close.closeCode})` : ''}${by}`,
      details: h(
        'span',
        {},
        `after ${duration(close.durationMs)}`,
        close.framesIn !== null ? ` · ${count(close.framesIn)} frames in` : '',
        close.bytesIn !== null ? ` · ${bytes(close.bytesIn)} in` : '',
        ' · connection ',
        shortId(c.id),
      ),
    });
  }
  return entries;
}

/** Fetches the MP4 with the token (a `<video>` cannot send it) and plays it from a blob URL. */
async function playRecording(
  sessionId: string,
  rec: RecordingDetail | null,
  gen: number,
): Promise<void> {
  if (rec === null) {
    setStatus(ui.recordingStatus, 'This session has no recording.');
    return;
  }
  facts(ui.recordingFacts, [
    ['status', badge(rec.status)],
    ['frames', rec.frameCount === null ? '–' : count(rec.frameCount)],
    ['duration', duration(rec.durationMs)],
    ['size', rec.width && rec.height ? `${rec.width}×${rec.height}` : '–'],
    ['codecs', [rec.videoCodec, rec.audioCodec].filter(Boolean).join(' + ') || '–'],
    ['bytes', bytes(rec.bytes)],
    ['sha256', rec.sha256 ? h('code', {}, rec.sha256) : '–'],
    ['ready', time(rec.readyAt)],
  ]);
  if (rec.status !== 'ready') {
    setStatus(
      ui.recordingStatus,
      rec.status === 'failed'
        ? `The recording failed: ${rec.failureReason ?? 'no reason given'}.`
        : `The recording is ${rec.status}; it can be played once the session is closed and the recording is ready. Reload this page to check again.`,
      rec.status === 'failed' ? 'error' : 'muted',
    );
    return;
  }
  setStatus(ui.recordingStatus, 'Loading the recording…');
  const abort = new AbortController();
  recordingAbort = abort;
  try {
    const [blob, captions] = await Promise.all([
      (api as AdminApi).recording(sessionId, abort.signal),
      (api as AdminApi).captions(sessionId, abort.signal),
    ]);
    if (gen !== generation) {
      return;
    }
    recordingUrl = URL.createObjectURL(blob);
    captionsUrl = URL.createObjectURL(captions);
    ui.recording.src = recordingUrl;
    // The session's messages as captions at the moment they were sent (the `.vtt` sidecar: no
    // browser shows the MP4's own WebVTT track).
    ui.recording.append(
      h('track', { kind: 'captions', label: 'Messages', src: captionsUrl, default: true }),
    );
    ui.recording.hidden = false;
    setStatus(ui.recordingStatus, `Ready: ${bytes(blob.size)}. Press play.`);
  } catch (err) {
    if (gen === generation && !abort.signal.aborted) {
      failed(ui.recordingStatus, err);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Live connections

ui.refreshConnections.addEventListener('click', () => void loadConnections());

/**
 * Loads are numbered so that only the latest one paints: an auto-refresh that was in flight when
 * a kick finished would otherwise overwrite the table and the kick's message with a stale answer.
 */
let connectionsLoad = 0;
/** The last kick's outcome, kept at the head of the status line until the view is left. */
let kickNotice: string | null = null;

async function loadConnections(): Promise<void> {
  const gen = generation;
  const load = ++connectionsLoad;
  try {
    const { node, items } = await (api as AdminApi).connections();
    if (gen !== generation || load !== connectionsLoad) {
      return;
    }
    if (items.length === 0) {
      emptyRow(ui.connections, 'No live WebSocket connection on this node.');
    } else {
      ui.connections.tBodies[0].replaceChildren(...items.map(connectionRow));
    }
    const summary = `${count(items.length)} live connection${items.length === 1 ? '' : 's'} on node ${node}, as of ${dateTime.format(new Date())}.`;
    setStatus(
      ui.connectionsStatus,
      kickNotice === null ? summary : `${kickNotice} ${summary}`,
      kickNotice === null ? 'muted' : 'success',
    );
  } catch (err) {
    if (gen === generation && load === connectionsLoad) {
      failed(ui.connectionsStatus, err);
    }
  }
}

function connectionRow(c: LiveConnection): HTMLTableRowElement {
  const kick = h(
    'button',
    {
      type: 'button',
      class: 'danger',
      'data-kick': c.id,
      title: `Close connection ${c.id} with 4003`,
    },
    'Kick',
  );
  kick.addEventListener('click', () => void kickConnection(c, kick));
  return h(
    'tr',
    { 'data-connection-id': c.id, 'data-session-id': c.sessionId ?? undefined },
    h('td', {}, time(c.since)),
    h('td', {}, c.subject),
    h('td', {}, c.channel),
    h('td', {}, c.remoteAddress ?? '–'),
    h('td', { class: 'num' }, count(c.framesIn)),
    h('td', { class: 'num' }, bytes(c.bytesIn)),
    h('td', {}, time(c.lastSeen)),
    h(
      'td',
      {},
      c.sessionId
        ? h('a', { href: `#session/${c.sessionId}` }, shortId(c.sessionId))
        : 'not opened yet',
    ),
    h('td', {}, shortId(c.id)),
    h('td', {}, kick),
  );
}

async function kickConnection(c: LiveConnection, button: HTMLButtonElement): Promise<void> {
  const ok = confirm(
    `Kick connection ${c.id.slice(0, 8)} of ${c.subject} (channel ${c.channel})?\n\n` +
      'It is closed with code 4003 and its session is interrupted; the client may resume it.',
  );
  if (!ok) {
    return;
  }
  button.disabled = true;
  const gen = generation;
  try {
    await (api as AdminApi).kick(c.id);
    if (gen !== generation) {
      return;
    }
    kickNotice = `Kicked connection ${c.id.slice(0, 8)} of ${c.subject}: closed with 4003.`;
    setStatus(ui.connectionsStatus, kickNotice, 'success');
    await loadConnections();
  } catch (err) {
    button.disabled = false;
    if (gen === generation) {
      failed(ui.connectionsStatus, err);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Channels and quotas

async function loadChannels(): Promise<void> {
  const gen = generation;
  try {
    const answer = await (api as AdminApi).channels();
    if (gen !== generation) {
      return;
    }
    for (const key of QUOTA_KEYS) {
      quotaInput(key).placeholder = `default ${answer.defaults[key]}`;
    }
    if (answer.channels.length === 0) {
      emptyRow(
        ui.channels,
        'No channel has live connections on this node or a quota override. Set one below.',
      );
    } else {
      ui.channels.tBodies[0].replaceChildren(...answer.channels.map(channelRow));
    }
    setStatus(
      ui.channelsStatus,
      `Defaults: ${QUOTA_KEYS.map((k) => `${k} ${answer.defaults[k]}`).join(', ')}. ` +
        'Quotas in bold are overridden for the channel.',
    );
  } catch (err) {
    if (gen === generation) {
      failed(ui.channelsStatus, err);
    }
  }
}

function channelRow(c: ChannelView): HTMLTableRowElement {
  const edit = h('button', { type: 'button', class: 'secondary', 'data-edit': c.channel }, 'Edit');
  edit.addEventListener('click', () => editQuota(c));
  const cell = (key: QuotaKey) => {
    const overridden = c.override !== null && c.override[key] !== null;
    return h(
      'td',
      { class: 'num' },
      overridden ? h('strong', {}, count(c.effective[key])) : count(c.effective[key]),
    );
  };
  return h(
    'tr',
    { 'data-channel': c.channel },
    h('td', {}, c.channel),
    h('td', { class: 'num' }, count(c.connections)),
    ...QUOTA_KEYS.map(cell),
    h('td', {}, c.override ? h('span', {}, 'since ', time(c.override.updatedAt)) : 'none'),
    h('td', {}, edit),
  );
}

function editQuota(c: ChannelView): void {
  clearQuotaErrors();
  ui.quotaTitle.textContent = `Quotas of ${c.channel}`;
  ui.quotaChannel.value = c.channel;
  for (const key of QUOTA_KEYS) {
    const v = c.override?.[key];
    quotaInput(key).value = v === null || v === undefined ? '' : String(v);
  }
  setStatus(ui.quotaStatus, '');
  quotaInput('maxConnections').focus();
}

function clearQuotaErrors(): void {
  for (const key of QUOTA_KEYS) {
    quotaInput(key).removeAttribute('aria-invalid');
    quotaInput(key).removeAttribute('aria-describedby');
  }
  ui.quotaForm.querySelectorAll<HTMLElement>('.field-error').forEach((p) => {
    p.hidden = true;
    p.textContent = '';
  });
}

function showFieldError(key: QuotaKey, problem: string): void {
  const input = quotaInput(key);
  const p = ui.quotaForm.querySelector<HTMLElement>(`.field-error[data-field="${key}"]`);
  input.setAttribute('aria-invalid', 'true');
  if (p) {
    p.id = `q-${key}-error`;
    p.textContent = problem;
    p.hidden = false;
    input.setAttribute('aria-describedby', p.id);
  }
}

const isQuotaKey = (field: string): field is QuotaKey =>
  (QUOTA_KEYS as readonly string[]).includes(field);

ui.quotaForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void saveQuota();
});

async function saveQuota(): Promise<void> {
  clearQuotaErrors();
  const channel = ui.quotaChannel.value.trim();
  if (channel.length === 0) {
    setStatus(ui.quotaStatus, 'Name the channel whose quotas to set.', 'error');
    ui.quotaChannel.focus();
    return;
  }
  const body: Partial<Record<QuotaKey, number>> = {};
  let unreadable = false;
  for (const key of QUOTA_KEYS) {
    const input = quotaInput(key);
    if (input.validity.badInput) {
      showFieldError(key, 'not a number');
      unreadable = true;
    } else if (input.value.trim() !== '') {
      // Sent as typed: the API validates the range and says what is wrong.
      body[key] = Number(input.value);
    }
  }
  if (unreadable) {
    setStatus(ui.quotaStatus, 'Fix the fields marked in red.', 'error');
    return;
  }
  ui.saveQuota.disabled = true;
  setStatus(ui.quotaStatus, 'Saving…');
  try {
    const saved = await (api as AdminApi).setQuota(channel, body);
    const summary = QUOTA_KEYS.map((k) => `${k} ${saved.effective[k]}`).join(', ');
    setStatus(
      ui.quotaStatus,
      `Saved. ${saved.channel} now has ${summary}; it applies to the next handshake.`,
      'success',
    );
    await loadChannels();
  } catch (err) {
    if (err instanceof ApiError && err.fields.length > 0) {
      const other: string[] = [];
      for (const f of err.fields) {
        if (isQuotaKey(f.field)) {
          showFieldError(f.field, f.problem);
        } else {
          other.push(`${f.field}: ${f.problem}`);
        }
      }
      setStatus(
        ui.quotaStatus,
        `Not saved: ${err.code}. ${other.length > 0 ? other.join('; ') : 'Fix the fields marked in red.'}`,
        'error',
      );
    } else {
      failed(ui.quotaStatus, err);
    }
  } finally {
    ui.saveQuota.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Start

const stored = sessionStorage.getItem(TOKEN_KEY);
if (stored) {
  signIn(stored);
}
setStatus(ui.notice, '');
route();
