// The conversation as a chat: alternating user and Coda turns, each Coda turn with
// what it used (memories, tools) and, for live turns, its latency waterfall.

import { waterfall } from './waterfall.js';

const MAX_RESULT_CHARS = 200; // a tool result longer than this is shown cut short

function node(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function jsonText(value) {
  if (typeof value === 'string') return value;
  try { return JSON.stringify(value) ?? String(value); } catch { return String(value); }
}

// A tool's result for people: its `result`, else its `text`, else the JSON.
function resultText(result) {
  if (result && typeof result === 'object' && !Array.isArray(result)) {
    if ('result' in result) return jsonText(result.result);
    if ('text' in result) return jsonText(result.text);
  }
  return jsonText(result);
}

const shorten = (text) => (text.length > MAX_RESULT_CHARS ? `${text.slice(0, MAX_RESULT_CHARS - 1)}…` : text);

// One Coda turn being written: text as it streams, then what it used and its timing.
class CodaTurn {
  constructor(li) {
    this.li = li;
    this.text = node('p', 'words');
    this.used = node('ul', 'used');
    this.used.hidden = true;
    this.meta = node('p', 'meta');
    li.append(node('span', 'who', 'Coda'), this.text, this.used, this.meta);
    this.finished = false;
  }

  append(delta) { this.text.append(delta); }

  memories(list) {
    let shown = 0;
    for (const m of Array.isArray(list) ? list : []) {
      const text = m && typeof m === 'object' ? m.text : m;
      if (typeof text !== 'string' || !text) continue;
      const item = node('li', 'memory');
      item.append(node('span', 'tag', 'remembered'), ` ${text}`);
      this.used.append(item);
      shown++;
    }
    this.used.hidden = !this.used.childElementCount;
    return shown;
  }

  tool(msg) {
    const item = node('li', msg.success === false ? 'tool failed' : 'tool');
    const name = typeof msg.name === 'string' && msg.name ? msg.name : 'tool';
    item.append(node('span', 'tag', 'tool'), ' ', node('strong', '', name));
    item.append(msg.success === false ? ` failed: ${msg.error || 'unknown error'}` : ` → ${shorten(resultText(msg.result))}`);
    const args = msg.arguments && typeof msg.arguments === 'object' ? Object.entries(msg.arguments) : [];
    if (args.length) item.append(node('span', 'detail', ` (${args.map(([k, v]) => `${k} = ${shorten(jsonText(v))}`).join(', ')})`));
    this.used.append(item);
    this.used.hidden = false;
  }

  // `spoken` is the part of the reply that was played before the user spoke over it.
  cut(spoken) {
    if (this.li.querySelector('.cut')) return;
    const words = typeof spoken === 'string' ? spoken.trim().split(/\s+/).filter(Boolean) : [];
    this.li.classList.add('interrupted');
    this.text.append(node('span', 'cut',
      words.length ? ` [interrupted after “${words.slice(-6).join(' ')}”]` : ' [interrupted]'));
  }

  finish(msg, endpointing, heard) {
    this.finished = true;
    if (!this.text.textContent && msg.reply_text) this.text.textContent = msg.reply_text;
    if (msg.interrupted) this.cut();
    this.meta.textContent = msg.mode ? `answered by ${msg.mode.replace(/_/g, ' ')}` : '';
    const figure = waterfall(msg.timings_ms, endpointing, heard);
    if (figure) this.li.append(figure);
  }
}

export class Chat {
  constructor(list, none) {
    this.list = list;
    this.none = none;
    this.current = null; // the Coda turn being written
  }

  clear() {
    this.list.replaceChildren();
    this.current = null;
    this.none.hidden = false;
  }

  add(kind, text) {
    const li = node('li', `turn ${kind}`);
    if (kind === 'user') li.append(node('span', 'who', 'You'), node('p', 'words', text));
    this.list.append(li);
    this.none.hidden = true;
    li.scrollIntoView({ block: 'nearest' });
    return li;
  }

  user(text) {
    this.current = null; // what follows belongs to a new reply
    return this.add('user', text);
  }

  // The reply being written, started on its first event.
  reply() {
    if (!this.current || this.current.finished) this.current = new CodaTurn(this.add('coda'));
    return this.current;
  }

  // Turns from GET …/messages: user and Coda text, oldest first.
  restore(turns) {
    this.clear();
    for (const t of turns) {
      if (t.user_text) this.user(t.user_text);
      const reply = this.reply();
      reply.append(t.assistant_text || '');
      reply.finished = true;
      reply.meta.textContent = t.mode ? `answered by ${t.mode.replace(/_/g, ' ')}` : '';
    }
    this.current = null;
  }
}
