// Coda Voice browser client: plain ES modules, no dependencies, no build step. Talks
// only to the page's own origin: the REST API, then one WebSocket per conversation.

import { ApiError, createConversation, history, listConversations, serverGone } from './api.js';
import { Chat } from './chat.js';
import { Playback } from './playback.js';

const INPUT_RATE = 16000;            // rate of the PCM we send (the worklet downsamples to it)
const FRAME_SAMPLES = 320;           // 20 ms at 16 kHz per binary message
const MAX_BUFFERED = INPUT_RATE * 2; // bytes of PCM16 ≈ 1 s: above this, mic frames are dropped
const DEFAULT_OUTPUT_RATE = 24000;   // guess until `ready` tells us output_rate
const REPORT_MS = 50;                // how often played-sample progress is checked and reported
const KEY_STORE = 'coda.apiKey';
const USER_STORE = 'coda.user';
const CONVERSATION_STORE = 'coda.conversation';
const MODE_STORE = 'coda.mode';
const USER_PATTERN = /^[A-Za-z0-9_.@:-]{1,64}$/; // the server's `user=` rule
const STATES = { idle: 'idle', connecting: 'connecting…', listening: 'listening', hearing: 'hearing you',
  thinking: 'thinking', speaking: 'speaking', error: 'stopped' };
const CLOSE_REASONS = {
  1000: 'normal closure', 1001: 'going away', 1003: 'unsupported data',
  1008: 'refused (API key or limits)', 1009: 'message too big', 1011: 'server error', 1013: 'server busy: try again later',
};

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('controls'), key: $('api-key'), user: $('user'), mode: $('mode'), start: $('start'), stop: $('stop'),
  hold: $('hold'), holdHelp: $('hold-help'), restart: $('new-conversation'), status: $('status'), level: $('level'),
  error: $('error'), conversation: $('conversation'), conversations: $('conversations'),
  conversationsNone: $('conversations-none'),
};
const chat = new Chat($('chat'), $('chat-none'));

// Read by the browser test; mutated in place so the reference stays valid.
const stats = {
  turns: 0, playedSamples: 0, receivedSamples: 0, audioChunks: 0, interrupted: 0, droppedFrames: 0,
  memories: 0, tools: 0, conversations: 0, waterfalls: 0, peakLevel: 0, states: [],
};
window.codaStats = stats;

let session = null;        // everything owned by the running conversation (see start())
let conversationId = null; // the conversation shown, continued by the next Start
let state = 'idle';
let talking = false;       // push to talk: the talk control is held

const store = {
  get(name) { try { return localStorage.getItem(name); } catch { return null; } },
  set(name, value) {
    try { if (value) localStorage.setItem(name, value); else localStorage.removeItem(name); } catch { /* off */ }
  },
};

function setState(next) {
  state = next;
  if (!stats.states.includes(next)) stats.states.push(next);
  document.body.dataset.state = next;
  ui.status.textContent = STATES[next] || next;
}

function showError(message) { ui.error.textContent = message; }

const pushToTalk = () => ui.form.elements.talk.value === 'push';

function setRunning(running) {
  const focused = document.activeElement;
  ui.start.disabled = running;
  ui.stop.disabled = !running;
  for (const el of [ui.key, ui.user]) el.readOnly = running;
  ui.mode.disabled = running;
  for (const radio of ui.form.elements.talk) radio.disabled = running;
  ui.hold.hidden = ui.holdHelp.hidden = !(running && pushToTalk());
  if ([ui.start, ui.stop].includes(focused) && focused.disabled) (running ? ui.stop : ui.start).focus();
}

function micErrorMessage(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return 'Microphone access was denied. Allow the microphone for this site (the icon in the address bar) and press Start again.';
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'No microphone was found: plug one in and press Start again.';
  if (name === 'NotReadableError') return 'The microphone is busy or unavailable (used by another app?).';
  return `Could not open the microphone: ${(err && err.message) || err}`;
}

function newAudioContext(options) {
  try { return new AudioContext({ latencyHint: 'interactive', ...options }); } catch { return new AudioContext({ latencyHint: 'interactive' }); }
}

function showConversation(id) {
  conversationId = id;
  store.set(CONVERSATION_STORE, id);
  ui.conversation.textContent = id ? `(${id})` : '';
  for (const li of ui.conversations.children) {
    const button = li.firstElementChild;
    if (button.dataset.id === id) button.setAttribute('aria-current', 'true'); else button.removeAttribute('aria-current');
  }
}

async function start() {
  if (session) return;
  const key = ui.key.value.trim();
  if (!key) { showError('Enter an API key first.'); ui.key.focus(); return; }
  const user = ui.user.value.trim();
  if (user && !USER_PATTERN.test(user)) {
    showError('The name may have 1–64 letters, digits and _ . @ : - only.');
    ui.user.focus();
    return;
  }
  showError('');
  setState('connecting');
  setRunning(true);
  store.set(KEY_STORE, key);
  store.set(USER_STORE, user);
  store.set(MODE_STORE, ui.mode.value);
  // Both contexts are created and resumed inside the click, so autoplay policies
  // count them as user-initiated. Playback runs at the reply's rate, so chunks need
  // no per-buffer resampling.
  const s = session = {
    key, user, mode: ui.mode.value, capCtx: newAudioContext({}),
    outCtx: newAudioContext({ sampleRate: DEFAULT_OUTPUT_RATE }), ready: false, pendingAudio: null,
    closing: false, level: 0, endpointing: null, endedAt: null, heardAt: null,
  };
  s.playback = new Playback(s.outCtx, DEFAULT_OUTPUT_RATE);
  s.capCtx.resume().catch(() => {});
  s.outCtx.resume().catch(() => {});
  try {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('This page needs HTTPS (or localhost) to use the microphone.');
    }
    // The microphone first: a refused permission must not leave an empty conversation.
    try {
      s.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (err) { throw new Error(micErrorMessage(err)); }
    if (s.closing) { release(s); return; } // Stop was pressed meanwhile
    if (!conversationId) {
      const made = await createConversation(key);
      stats.conversations++;
      chat.clear();
      showConversation(made.conversation_id);
      refreshConversations(key);
    }
    if (s.closing) return;
    await s.capCtx.audioWorklet.addModule('/static/capture-worklet.js');
    if (s.closing) return;
    s.source = s.capCtx.createMediaStreamSource(s.stream);
    s.node = new AudioWorkletNode(s.capCtx, 'capture-16k', {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      channelCount: 1, channelCountMode: 'explicit', channelInterpretation: 'speakers', // downmix to mono
      processorOptions: { targetRate: INPUT_RATE, frameSamples: FRAME_SAMPLES },
    });
    // The worklet's output is silent; routing it to the destination through a muted
    // gain makes sure the graph pulls it (some browsers skip unconnected nodes).
    s.sink = s.capCtx.createGain();
    s.sink.gain.value = 0;
    s.source.connect(s.node).connect(s.sink).connect(s.capCtx.destination);
    s.node.port.onmessage = (e) => sendFrame(s, e.data);
    const track = s.stream.getAudioTracks()[0];
    if (track) track.onended = () => fail(s, 'The microphone stopped (device removed or access revoked).');
    openSocket(s, conversationId);
  } catch (err) {
    if (!s.closing) fail(s, (err && err.message) || String(err));
  }
}

function openSocket(s, id) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  // A browser cannot set headers on a WebSocket: the key goes in the query here only.
  const query = new URLSearchParams({ rate: String(INPUT_RATE), api_key: s.key });
  if (s.user) query.set('user', s.user);
  if (s.mode) query.set('mode', s.mode);
  const ws = s.ws = new WebSocket(`${scheme}//${location.host}/v1/conversations/${encodeURIComponent(id)}/stream?${query}`);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => {
    if (s.closing) return;
    if (typeof e.data === 'string') onEvent(s, e.data); else onAudio(s, e.data);
  };
  ws.onclose = (e) => onClose(s, e);
  ws.onerror = () => { /* the close event that always follows carries the details */ };
}

// One 20 ms PCM16 frame from the worklet: shown on the level meter, and sent once
// the server said `ready`. Push to talk sends silence while the control is up, so
// the server's clock runs on; a backed-up socket drops frames (late audio is useless).
function sendFrame(s, buf) {
  const pcm = new Int16Array(buf);
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) sum += pcm[i] * pcm[i];
  const rms = Math.sqrt(sum / Math.max(1, pcm.length)) / 32768;
  s.level = Math.max(Math.min(1, rms * 4), s.level * 0.85); // fast attack, slow release
  ui.level.value = s.level;
  stats.peakLevel = Math.max(stats.peakLevel, s.level);
  const ws = s.ws;
  if (!s.ready || !ws || ws.readyState !== WebSocket.OPEN) return;
  if (ws.bufferedAmount > MAX_BUFFERED) { stats.droppedFrames++; return; }
  ws.send(pushToTalk() && !talking ? new ArrayBuffer(buf.byteLength) : buf);
}

function sendJson(s, obj) {
  if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(obj));
}

function onEvent(s, text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  switch (msg.type) {
    case 'ready':
      s.ready = true;
      if (msg.output_rate > 0) s.playback.rate = msg.output_rate;
      clearInterval(s.timer); // a repeated `ready` must not start a second reporter
      s.timer = setInterval(() => reportPlayed(s), REPORT_MS);
      setState('listening');
      break;
    case 'speech_started':
      if (!s.playback.playing) setState('hearing');
      break;
    case 'speech_ended':
      s.endpointing = msg.endpointing_ms;
      s.endedAt = performance.now();
      s.heardAt = null;
      if (!s.playback.playing) setState('thinking');
      break;
    case 'transcript':
      if (msg.text) chat.user(msg.text);
      break;
    case 'memory':
      stats.memories += chat.reply().memories(msg.memories);
      break;
    case 'tool':
      stats.tools++;
      chat.reply().tool(msg);
      break;
    case 'text':
      chat.reply().append(msg.delta || '');
      break;
    case 'audio':
      s.pendingAudio = msg; // its PCM is the next binary message
      break;
    case 'interrupted':
      s.playback.stop();
      s.pendingAudio = null;
      stats.interrupted++;
      if (chat.current) chat.current.cut(msg.spoken);
      setState('hearing');
      break;
    case 'turn':
      onTurn(s, msg);
      break;
    case 'stored':
      refreshConversations(s.key); // the list's turn counts include it now
      break;
    case 'error':
      showError(`Coda could not answer: ${msg.message || 'unknown error'}${msg.code ? ` (${msg.code})` : ''}`);
      if (!s.playback.playing) setState('listening');
      break;
    default:
      break; // unknown types are ignored, for forward compatibility
  }
}

function onTurn(s, msg) {
  stats.turns++;
  const heard = s.heardAt !== null && s.endedAt !== null && Number.isFinite(s.endpointing)
    ? s.endpointing + (s.heardAt - s.endedAt) : undefined;
  const reply = chat.reply();
  reply.finish(msg, s.endpointing, heard);
  if (reply.li.querySelector('figure')) stats.waterfalls++;
  s.heardAt = null;
  if (!s.playback.playing) setState('listening');
}

// Binary message: the PCM16 LE promised by the preceding `audio` event.
function onAudio(s, buf) {
  if (!s.pendingAudio) return; // binary without an `audio` header: ignore
  s.pendingAudio = null;
  const heardAt = s.playback.push(buf);
  if (s.heardAt === null) s.heardAt = heardAt; // the turn's first sample
  stats.audioChunks++;
  stats.receivedSamples += buf.byteLength >> 1;
  setState('speaking');
}

function reportPlayed(s) {
  if (s.closing) return;
  const delta = s.playback.takePlayed();
  if (delta > 0) {
    stats.playedSamples += delta;
    sendJson(s, { type: 'played', samples: delta });
  }
  if (!s.playback.playing && state === 'speaking') setState('listening');
}

function onClose(s, e) {
  if (s.closing) return; // we closed it ourselves
  if (e.code === 1000) { release(s); setState('idle'); return; }
  if (e.code === 1006) { fail(s, serverGone); return; }
  const label = CLOSE_REASONS[e.code] || 'closed';
  fail(s, `The server closed the conversation: ${label}${e.reason ? ` (${e.reason})` : ''}.`);
}

function fail(s, message) {
  if (s.closing) return;
  release(s);
  showError(message);
  setState('error');
}

// Free everything the session holds. Idempotent: safe to call from any path.
function release(s) {
  s.closing = true;
  clearInterval(s.timer);
  s.playback.stop();
  if (s.stream) for (const t of s.stream.getTracks()) { t.onended = null; t.stop(); }
  if (s.node) { s.node.port.onmessage = null; s.node.disconnect(); }
  if (s.source) s.source.disconnect();
  for (const ctx of [s.capCtx, s.outCtx]) if (ctx.state !== 'closed') ctx.close().catch(() => {});
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000, 'client stop');
  ui.level.value = 0;
  if (session === s) { session = null; setRunning(false); }
}

function stop() {
  const s = session;
  if (!s) return;
  sendJson(s, { type: 'end' }); // queued before the close frame, so the server sees it first
  release(s);
  setState('idle');
}

// --- conversations ---------------------------------------------------------------

async function refreshConversations(key) {
  if (!key) return;
  let listed;
  try { listed = await listConversations(key); } catch { return; } // shown when it matters: at Start
  ui.conversations.replaceChildren();
  for (const c of listed.conversations) {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'conversation';
    button.dataset.id = c.conversation_id;
    const when = new Date(c.last_activity * 1000).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
    const first = document.createElement('span');
    first.className = 'first-words';
    first.textContent = c.first_words || 'No turns yet';
    const detail = document.createElement('span');
    detail.className = 'detail';
    detail.textContent = `${c.turns} turn${c.turns === 1 ? '' : 's'} · ${when}`;
    button.append(first, detail);
    button.addEventListener('click', () => openConversation(c.conversation_id));
    li.append(button);
    ui.conversations.append(li);
  }
  ui.conversationsNone.hidden = listed.conversations.length > 0;
  showConversation(conversationId);
}

// Show a stored conversation; the next Start continues it.
async function openConversation(id, focus = true) {
  const key = ui.key.value.trim();
  if (session) stop();
  showError('');
  try {
    const past = await history(key, id);
    chat.restore(past.turns);
    showConversation(id);
    if (focus) $('chat-h').focus();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      showConversation(null);
      chat.clear();
    } else {
      showError(err.message);
    }
  }
}

function newConversation() {
  if (session) stop();
  showConversation(null);
  chat.clear();
  showError('');
  ui.start.focus();
}

// --- push to talk ----------------------------------------------------------------

function hold(down) {
  talking = down;
  ui.hold.setAttribute('aria-pressed', String(down));
  ui.hold.classList.toggle('held', down);
}

function typing(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}

// --- wiring ----------------------------------------------------------------------
{
  const params = new URLSearchParams(location.search);
  ui.key.value = params.get('key') || store.get(KEY_STORE) || '';
  ui.user.value = params.get('user') ?? store.get(USER_STORE) ?? '';
  ui.mode.value = params.get('mode') || store.get(MODE_STORE) || '';
  ui.form.addEventListener('submit', (e) => { e.preventDefault(); start(); });
  ui.stop.addEventListener('click', stop);
  ui.restart.addEventListener('click', newConversation);
  ui.hold.addEventListener('pointerdown', (e) => { ui.hold.setPointerCapture(e.pointerId); hold(true); });
  for (const name of ['pointerup', 'pointercancel']) ui.hold.addEventListener(name, () => hold(false));
  document.addEventListener('keydown', (e) => {
    if (e.key === ' ' && session && pushToTalk() && !typing(e.target)) { e.preventDefault(); if (!e.repeat) hold(true); }
  });
  document.addEventListener('keyup', (e) => {
    if (e.key === ' ' && pushToTalk() && !typing(e.target)) { e.preventDefault(); hold(false); }
  });
  window.addEventListener('blur', () => hold(false)); // a key released elsewhere is released
  window.addEventListener('pagehide', stop); // release the mic when leaving
  setRunning(false);
  setState('idle');
  const key = ui.key.value.trim();
  const remembered = store.get(CONVERSATION_STORE);
  if (key) {
    refreshConversations(key);
    if (remembered) openConversation(remembered, false);
  }
}
