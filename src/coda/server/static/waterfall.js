// A turn's latency as a waterfall: each stage a bar on one time axis whose zero is
// the moment the user stopped speaking. The server's timings_ms mixes durations
// (asr, hooks) and offsets from the turn's start (llm_first_clause, first_audio);
// started_after_speech_ms places the turn's start on the axis (negative when the
// reply was begun during the pause, before the end of the turn was confirmed).

const NS = 'http://www.w3.org/2000/svg';
const ROW = 22, LABEL = 170, RIGHT = 70, WIDTH = 640, AXIS = 24;

const num = (t, k) => (Number.isFinite(t[k]) ? t[k] : null);

// [{name, from, to}] in ms from the end of speech. `endpointing` comes from the
// speech_ended event; `heard` is when the reply's first sample reached the listener.
export function stages(t, endpointing, heard) {
  const out = [];
  const ended = Number.isFinite(endpointing) ? endpointing : null;
  if (ended !== null) out.push({ name: 'Endpointing', from: 0, to: ended });
  const start = num(t, 'started_after_speech_ms') ?? ended ?? 0;
  let at = start + (num(t, 'frontend') ?? 0);
  const asr = num(t, 'asr');
  if (asr !== null) {
    out.push({ name: asr > 0 ? 'Recognition' : 'Recognition (in the pause)', from: at, to: at + asr });
    at += asr;
  }
  at += num(t, 'hooks') ?? 0;
  const clause = num(t, 'llm_first_clause');
  const first = num(t, 'first_audio');
  if (clause !== null) {
    out.push({ name: 'LLM to first clause', from: at, to: start + clause });
    at = start + clause;
  }
  if (first !== null) {
    out.push({ name: clause !== null ? 'Synthesis' : 'Moshi to first audio', from: at, to: start + first });
    at = start + first;
  }
  const sent = Math.max(at, ended ?? at); // a reply made in the pause waits for the end
  if (Number.isFinite(heard) && heard > sent) out.push({ name: 'Transport and playback', from: sent, to: heard });
  return out.filter((s) => s.to >= s.from);
}

function el(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function tickStep(span) {
  for (const step of [50, 100, 200, 250, 500, 1000, 2000, 5000, 10000]) if (span / step <= 6) return step;
  return 20000;
}

// A <figure> with the waterfall, or null when the turn has no timings.
export function waterfall(t, endpointing, heard) {
  const rows = stages(t || {}, endpointing, heard);
  if (!rows.length) return null;
  const low = Math.min(0, ...rows.map((s) => s.from));
  const high = Math.max(...rows.map((s) => s.to), 1);
  const plot = WIDTH - LABEL - RIGHT;
  const x = (ms) => LABEL + ((ms - low) / (high - low)) * plot;
  const height = rows.length * ROW + AXIS;
  const total = Number.isFinite(heard) ? heard : rows[rows.length - 1].to;
  const summary = `Reply heard ${Math.round(total)} ms after you stopped speaking: `
    + rows.map((s) => `${s.name} ${Math.round(s.to - s.from)} ms`).join(', ');
  const svg = el('svg', { viewBox: `0 0 ${WIDTH} ${height}`, role: 'img', 'aria-label': summary, class: 'waterfall' });
  const step = tickStep(high - low);
  for (let ms = Math.ceil(low / step) * step; ms <= high; ms += step) {
    svg.append(el('line', { x1: x(ms), x2: x(ms), y1: 0, y2: rows.length * ROW, class: ms === 0 ? 'zero' : 'grid' }));
    svg.append(el('text', { x: x(ms), y: rows.length * ROW + 16, class: 'tick', 'text-anchor': 'middle' },
      ms === 0 ? 'you stopped' : `${ms} ms`));
  }
  rows.forEach((s, i) => {
    const y = i * ROW;
    svg.append(el('text', { x: LABEL - 8, y: y + 15, class: 'label', 'text-anchor': 'end' }, s.name));
    const width = Math.max(2, x(s.to) - x(s.from));
    svg.append(el('rect', { x: x(s.from), y: y + 4, width, height: ROW - 8, rx: 3, class: `bar bar-${i}` }));
    svg.append(el('text', { x: x(s.from) + width + 6, y: y + 15, class: 'value' }, `${Math.round(s.to - s.from)} ms`));
  });
  const figure = document.createElement('figure');
  figure.className = 'latency';
  const caption = document.createElement('figcaption');
  caption.textContent = `Heard after ${Math.round(total)} ms`;
  figure.append(caption, svg);
  return figure;
}
