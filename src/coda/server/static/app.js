// Coda Voice browser client: plain ES module, no dependencies. Talks only to the
// page's own origin: POST /v1/conversations, then one WebSocket per conversation.

const INPUT_RATE = 16000;            // rate of the PCM we send (the worklet downsamples to it)
const FRAME_SAMPLES = 320;           // 20 ms at 16 kHz per binary message
const MAX_BUFFERED = INPUT_RATE * 2; // bytes of PCM16 ≈ 1 s: above this, mic frames are dropped
const DEFAULT_OUTPUT_RATE = 24000;   // guess until `ready` tells us output_rate
const REPORT_MS = 50;                // how often played-sample progress is checked and reported
const START_LEAD = 0.03;             // s of headroom when (re)starting an empty playback queue
const KEY_STORE = 'coda.apiKey';
const USER_STORE = 'coda.user';
const USER_PATTERN = /^[A-Za-z0-9_.@:-]{1,64}$/; // the server's `user=` rule
const MAX_RESULT_CHARS = 200;        // a tool result longer than this is shown cut short
const CLOSE_REASONS = {
  1000: 'normal closure', 1001: 'going away', 1003: 'unsupported data',
  1006: 'connection lost or refused', 1008: 'policy violation (API key or limits)',
  1009: 'message too big', 1011: 'server error', 1013: 'try again later',
};

const $ = (id) => document.getElementById(id);
const ui = {
  form: $('controls'), key: $('api-key'), user: $('user'), start: $('start'), stop: $('stop'),
  restart: $('new-conversation'), status: $('status'), error: $('error'),
  transcript: $('transcript'), history: $('history'), reply: $('reply'),
  memories: $('memories'), memoriesNone: $('memories-none'), tools: $('tools'), toolsNone: $('tools-none'),
  conversation: $('conversation'), mode: $('mode'), latency: $('latency'),
  breakdown: $('latency-breakdown'), played: $('played'),
};

// Read by the browser test; mutated in place so the reference stays valid.
// memories: memory items received in all; tools: tool messages received;
// receivedSamples: reply samples received (playedSamples catches up as they are heard).
const stats = {
  turns: 0, playedSamples: 0, receivedSamples: 0, audioChunks: 0, interrupted: 0, droppedFrames: 0,
  memories: 0, tools: 0, conversations: 0,
};
window.codaStats = stats;

let session = null; // everything owned by the running conversation (see start())
let state = 'idle';

function setState(next) {
  state = next;
  document.body.dataset.state = next;
  ui.status.textContent = next;
}

function showError(message) { ui.error.textContent = message; }

// Toggle the buttons; keep keyboard focus on an enabled control.
function setRunning(running) {
  const focused = document.activeElement;
  ui.start.disabled = running;
  ui.stop.disabled = !running;
  ui.restart.disabled = !running;
  ui.key.readOnly = running;
  ui.user.readOnly = running;
  if ([ui.start, ui.stop, ui.restart].includes(focused) && focused.disabled) {
    (running ? ui.stop : ui.start).focus();
  }
}

function micErrorMessage(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return 'Microphone access was denied. Allow the microphone for this site and press Start again.';
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'No microphone was found.';
  if (name === 'NotReadableError') return 'The microphone is busy or unavailable (used by another app?).';
  return `Could not open the microphone: ${(err && err.message) || err}`;
}

function newAudioContext(options) {
  try { return new AudioContext({ latencyHint: 'interactive', ...options }); }
  catch { return new AudioContext({ latencyHint: 'interactive' }); } // sampleRate unsupported
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
  // Both contexts are created and resumed synchronously inside the click so that
  // autoplay policies count them as user-initiated. Capture uses the browser's
  // preferred rate; playback runs at the reply's rate so chunks need no per-buffer
  // resampling (the context resamples the whole stream once, on its way out).
  const s = session = {
    key, user, capCtx: newAudioContext({}), outCtx: newAudioContext({ sampleRate: DEFAULT_OUTPUT_RATE }),
    outRate: DEFAULT_OUTPUT_RATE, queue: [], nextTime: 0, ready: false, pendingAudio: null,
    replyDone: false, closing: false,
  };
  s.capCtx.resume().catch(() => {});
  s.outCtx.resume().catch(() => {});
  try {
    const res = await fetch('/v1/conversations', {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'X-API-Key': key }, body: '{}',
    });
    if (!res.ok) {
      const body = (await res.text().catch(() => '')).slice(0, 200);
      throw new Error(`Could not create a conversation: HTTP ${res.status}${body ? ` — ${body}` : ''}`);
    }
    const { conversation_id: id } = await res.json();
    try {
      localStorage.setItem(KEY_STORE, key);
      if (user) localStorage.setItem(USER_STORE, user); else localStorage.removeItem(USER_STORE);
    } catch { /* storage disabled: fine */ }
    if (s.closing) return;
    newConversationShown(id);
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error('This page needs HTTPS (or localhost) to use the microphone.');
    }
    try {
      s.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (err) { throw new Error(micErrorMessage(err)); }
    if (s.closing) { release(s); return; } // Stop was pressed meanwhile: drop the new stream
    await s.capCtx.audioWorklet.addModule('/static/capture-worklet.js');
    if (s.closing) return;
    s.source = s.capCtx.createMediaStreamSource(s.stream);
    s.node = new AudioWorkletNode(s.capCtx, 'capture-16k', {
      numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1],
      channelCount: 1, channelCountMode: 'explicit', channelInterpretation: 'speakers', // downmix to mono
      processorOptions: { targetRate: INPUT_RATE, frameSamples: FRAME_SAMPLES },
    });
    // The worklet's output is silent; routing it to the destination through a muted
    // gain only makes sure the graph pulls it (some browsers skip unconnected nodes).
    s.sink = s.capCtx.createGain();
    s.sink.gain.value = 0;
    s.source.connect(s.node).connect(s.sink).connect(s.capCtx.destination);
    s.node.port.onmessage = (e) => sendFrame(s, e.data);
    const track = s.stream.getAudioTracks()[0];
    if (track) track.onended = () => fail(s, 'The microphone stopped (device removed or access revoked).');
    openSocket(s, id);
  } catch (err) {
    if (!s.closing) fail(s, (err && err.message) || String(err));
  }
}

function openSocket(s, id) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${scheme}//${location.host}/v1/conversations/${encodeURIComponent(id)}/stream`
    + `?rate=${INPUT_RATE}&api_key=${encodeURIComponent(s.key)}`
    + (s.user ? `&user=${encodeURIComponent(s.user)}` : '');
  const ws = s.ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => {
    if (s.closing) return;
    if (typeof e.data === 'string') onEvent(s, e.data); else onAudio(s, e.data);
  };
  ws.onclose = (e) => onClose(s, e);
  ws.onerror = () => { /* the close event that always follows carries the details */ };
}

// One 20 ms PCM16 frame from the worklet. Sent only once the server said `ready`;
// if the socket is backed up by more than ~1 s we drop frames rather than buffer
// without bound (late audio is useless to a live conversation).
function sendFrame(s, buf) {
  const ws = s.ws;
  if (!s.ready || !ws || ws.readyState !== WebSocket.OPEN) return;
  if (ws.bufferedAmount > MAX_BUFFERED) { stats.droppedFrames++; return; }
  ws.send(buf);
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
      if (msg.output_rate > 0) s.outRate = msg.output_rate;
      clearInterval(s.timer); // a repeated `ready` must not start a second reporter
      s.timer = setInterval(() => reportPlayed(s), REPORT_MS);
      setState('listening');
      break;
    case 'speech_started':
      if (!s.queue.length) setState('hearing');
      break;
    case 'speech_ended':
      if (!s.queue.length) setState('thinking');
      break;
    case 'transcript':
      // A turn's words come first; its memory and tool messages follow.
      clearTurnContext();
      if (msg.text) appendItem(ui.transcript, msg.text);
      break;
    case 'memory':
      showMemories(msg.memories);
      break;
    case 'tool':
      showTool(msg);
      break;
    case 'text':
      startReplyIfNew(s);
      ui.reply.append(msg.delta || '');
      break;
    case 'audio':
      s.pendingAudio = msg; // its PCM is the next binary message
      break;
    case 'interrupted':
      stopPlayback(s);
      stats.interrupted++;
      markCut(msg.spoken);
      s.replyDone = true; // the cut reply is over: the next turn's text starts a new one
      setState('hearing');
      break;
    case 'turn':
      onTurn(s, msg);
      break;
    case 'error':
      showError(`Server error${msg.code ? ` (${msg.code})` : ''}: ${msg.message || 'unknown'}`);
      break;
    default:
      break; // unknown types are ignored, for forward compatibility
  }
}

function appendItem(list, text) {
  const li = document.createElement('li');
  li.textContent = text;
  list.append(li);
  return li;
}

// #reply holds the current turn only: the first delta after a finished turn moves
// the previous reply up into #history.
function startReplyIfNew(s) {
  if (!s.replyDone) return;
  s.replyDone = false;
  if (ui.reply.textContent) {
    const li = appendItem(ui.history, '');
    li.append(...ui.reply.childNodes);
  }
  ui.reply.replaceChildren();
}

// `spoken` is the part of the reply that was played (`heard` is what the user said).
function markCut(spoken) {
  if (ui.reply.querySelector('.cut')) return;
  const mark = document.createElement('span');
  mark.className = 'cut';
  mark.textContent = typeof spoken === 'string' && spoken.trim()
    ? ` [interrupted — heard up to “${spoken.trim().split(/\s+/).slice(-6).join(' ')}”]`
    : ' [interrupted]';
  ui.reply.append(mark);
}

// A new conversation starts with an empty page (its id is shown under "Last turn").
function newConversationShown(id) {
  stats.conversations++;
  ui.conversation.textContent = id;
  for (const el of [ui.transcript, ui.history, ui.reply, ui.breakdown]) el.replaceChildren();
  ui.mode.textContent = '—';
  ui.latency.textContent = '—';
  clearTurnContext();
}

// "What Coda used": the memories and tools of the current turn only.
function clearTurnContext() {
  ui.memories.replaceChildren();
  ui.tools.replaceChildren();
  ui.memoriesNone.hidden = false;
  ui.toolsNone.hidden = false;
}

function showMemories(memories) {
  if (!Array.isArray(memories)) return;
  stats.memories += memories.length;
  for (const m of memories) {
    const text = m && typeof m === 'object' ? m.text : m;
    if (typeof text !== 'string' || !text) continue;
    const li = appendItem(ui.memories, text);
    const facts = [];
    if (m.kind) facts.push(String(m.kind));
    if (Number.isFinite(m.relevance)) facts.push(`relevance ${m.relevance.toFixed(2)}`);
    if (facts.length) li.append(detail(` (${facts.join(', ')})`));
  }
  ui.memoriesNone.hidden = ui.memories.childElementCount > 0;
}

function showTool(msg) {
  stats.tools++;
  const li = document.createElement('li');
  const name = document.createElement('strong');
  name.textContent = typeof msg.name === 'string' && msg.name ? msg.name : 'tool';
  li.append(name);
  if (msg.success === false) {
    li.classList.add('failed');
    li.append(` failed: ${msg.error || 'unknown error'}`);
  } else {
    li.append(` → ${shorten(resultText(msg.result))}`);
  }
  const args = msg.arguments && typeof msg.arguments === 'object' ? Object.entries(msg.arguments) : [];
  if (args.length) {
    li.append(detail(` (${args.map(([k, v]) => `${k} = ${shorten(jsonText(v))}`).join(', ')})`));
  }
  ui.tools.append(li);
  ui.toolsNone.hidden = true;
}

// A tool's result for people: its `result`, else its `text`, else the JSON.
function resultText(result) {
  if (result && typeof result === 'object' && !Array.isArray(result)) {
    if ('result' in result) return jsonText(result.result);
    if ('text' in result) return jsonText(result.text);
  }
  return jsonText(result);
}

function jsonText(value) {
  if (typeof value === 'string') return value;
  try { return JSON.stringify(value) ?? String(value); } catch { return String(value); }
}

function shorten(text) {
  return text.length > MAX_RESULT_CHARS ? `${text.slice(0, MAX_RESULT_CHARS - 1)}…` : text;
}

function detail(text) {
  const span = document.createElement('span');
  span.className = 'detail';
  span.textContent = text;
  return span;
}

function onTurn(s, msg) {
  stats.turns++;
  startReplyIfNew(s); // no-op unless this turn produced no text deltas
  if (!ui.reply.textContent && msg.reply_text) ui.reply.textContent = msg.reply_text;
  if (msg.interrupted) markCut();
  s.replyDone = true;
  ui.mode.textContent = msg.mode || '—';
  const t = msg.timings_ms || {};
  const keys = Object.keys(t).filter((k) => Number.isFinite(t[k]));
  const fmt = (k) => `${k.replace(/_/g, ' ')} ${Math.round(t[k])} ms`;
  const headline = ['first_audio', 'total'].filter((k) => keys.includes(k));
  ui.latency.textContent = (headline.length ? headline : keys).map(fmt).join(' · ') || '—';
  ui.breakdown.replaceChildren();
  for (const k of keys) appendItem(ui.breakdown, fmt(k));
  if (!s.queue.length) setState('listening');
}

// Binary message: the PCM16 LE promised by the preceding `audio` event. Queue it
// immediately, back to back with what is already scheduled.
function onAudio(s, buf) {
  if (!s.pendingAudio) return; // binary without an `audio` header: ignore
  s.pendingAudio = null;
  const n = buf.byteLength >> 1;
  if (!n) return;
  const ctx = s.outCtx;
  if (ctx.state === 'suspended') ctx.resume().catch(() => {});
  const audio = ctx.createBuffer(1, n, s.outRate); // resampled by Web Audio if rates differ
  const ch = audio.getChannelData(0), view = new DataView(buf);
  for (let i = 0; i < n; i++) ch[i] = view.getInt16(2 * i, true) / 32768;
  const src = ctx.createBufferSource();
  src.buffer = audio;
  src.connect(ctx.destination);
  // Gapless: each chunk starts exactly when the previous one ends on the context
  // clock (sample-accurate). If the queue ran dry, restart slightly ahead of now,
  // since a start time in the past would cut off the chunk's beginning.
  if (s.nextTime < ctx.currentTime + 0.005) s.nextTime = ctx.currentTime + START_LEAD;
  src.start(s.nextTime);
  s.queue.push({ src, start: s.nextTime, samples: n, counted: 0 });
  s.nextTime += n / s.outRate;
  stats.audioChunks++;
  stats.receivedSamples += n;
  setState('speaking');
}

// Played-sample accounting. What the listener hears now is what the context
// rendered `latency` seconds ago, so the playhead is currentTime minus the output
// latency. For each scheduled chunk, played = (playhead - start) * rate, clamped to
// [0, samples]; we report only the increase since the last report, so the values
// sent add up exactly to the samples heard. Nothing is reported for audio that was
// stopped by `interrupted` beyond what had already been reported.
function reportPlayed(s) {
  const ctx = s.outCtx;
  if (s.closing || ctx.state === 'closed') return;
  const latency = Math.min(0.5, (ctx.baseLatency || 0) + (ctx.outputLatency || 0));
  const playhead = ctx.currentTime - latency;
  let delta = 0;
  for (const e of s.queue) {
    if (playhead <= e.start) break; // later chunks start later still
    // max(): a latency estimate that grows must never make the count go backwards
    const done = Math.max(e.counted, Math.min(e.samples, Math.round((playhead - e.start) * s.outRate)));
    delta += done - e.counted;
    e.counted = done;
  }
  while (s.queue.length && s.queue[0].counted === s.queue[0].samples) s.queue.shift();
  if (delta > 0) {
    stats.playedSamples += delta;
    ui.played.textContent = String(stats.playedSamples);
    sendJson(s, { type: 'played', samples: delta });
  }
  if (!s.queue.length && state === 'speaking') setState('listening');
}

// Barge-in: silence everything scheduled, now, and forget the queue.
function stopPlayback(s) {
  for (const e of s.queue) {
    try { e.src.stop(); } catch { /* never started or already stopped */ }
    e.src.disconnect();
  }
  s.queue = [];
  s.nextTime = 0;
  s.pendingAudio = null;
}

function onClose(s, e) {
  if (s.closing) return; // we closed it ourselves
  const label = CLOSE_REASONS[e.code] || 'closed';
  const text = `Connection closed: ${e.code} ${label}${e.reason ? ` — ${e.reason}` : ''}`;
  if (e.code === 1000) { release(s); showError(text); setState('idle'); } else fail(s, text);
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
  stopPlayback(s);
  if (s.stream) for (const t of s.stream.getTracks()) { t.onended = null; t.stop(); }
  if (s.node) { s.node.port.onmessage = null; s.node.disconnect(); }
  if (s.source) s.source.disconnect();
  for (const ctx of [s.capCtx, s.outCtx]) if (ctx.state !== 'closed') ctx.close().catch(() => {});
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000, 'client stop');
  if (session === s) { session = null; setRunning(false); }
}

function stop() {
  const s = session;
  if (!s) return;
  sendJson(s, { type: 'end' }); // queued before the close frame, so the server sees it first
  release(s);
  setState('idle');
}

// Ends the running conversation and opens a fresh one (still inside the click, so
// the new audio contexts count as user-initiated).
function restart() {
  const wasFocused = document.activeElement === ui.restart;
  stop();
  start();
  if (wasFocused && session) ui.restart.focus();
}

// --- wiring ---------------------------------------------------------------------
{
  let key = new URLSearchParams(location.search).get('key');
  if (!key) { try { key = localStorage.getItem(KEY_STORE); } catch { key = null; } }
  if (key) ui.key.value = key;
  let user = new URLSearchParams(location.search).get('user');
  if (user === null) { try { user = localStorage.getItem(USER_STORE); } catch { user = null; } }
  if (user) ui.user.value = user;
  ui.form.addEventListener('submit', (e) => { e.preventDefault(); start(); });
  ui.stop.addEventListener('click', stop);
  ui.restart.addEventListener('click', restart);
  window.addEventListener('pagehide', stop); // release the mic when leaving
  setRunning(false);
  setState('idle');
  clearTurnContext();
}
