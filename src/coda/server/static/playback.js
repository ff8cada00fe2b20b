// Reply audio: PCM16 chunks scheduled back to back on an AudioContext, with an
// exact count of the samples the listener has heard (reported to the server, which
// uses it for echo cancellation and to know what was heard at a barge-in).

const START_LEAD = 0.03; // s of headroom when (re)starting an empty playback queue

export class Playback {
  constructor(ctx, rate) {
    this.ctx = ctx;
    this.rate = rate;
    this.queue = [];
    this.nextTime = 0;
  }

  get playing() { return this.queue.length > 0; }

  // Queue one PCM16 LE chunk; returns when (performance.now() ms) its first sample
  // reaches the listener.
  push(buf) {
    const n = buf.byteLength >> 1;
    const ctx = this.ctx;
    if (!n) return performance.now();
    if (ctx.state === 'suspended') ctx.resume().catch(() => {});
    const audio = ctx.createBuffer(1, n, this.rate); // resampled by Web Audio if rates differ
    const ch = audio.getChannelData(0), view = new DataView(buf);
    for (let i = 0; i < n; i++) ch[i] = view.getInt16(2 * i, true) / 32768;
    const src = ctx.createBufferSource();
    src.buffer = audio;
    src.connect(ctx.destination);
    // Gapless: each chunk starts exactly when the previous one ends on the context
    // clock. If the queue ran dry, restart slightly ahead of now: a start time in
    // the past would cut off the chunk's beginning.
    if (this.nextTime < ctx.currentTime + 0.005) this.nextTime = ctx.currentTime + START_LEAD;
    src.start(this.nextTime);
    this.queue.push({ src, start: this.nextTime, samples: n, counted: 0 });
    const heardAt = performance.now() + (this.nextTime - ctx.currentTime + this.latency()) * 1000;
    this.nextTime += n / this.rate;
    return heardAt;
  }

  latency() {
    return Math.min(0.5, (this.ctx.baseLatency || 0) + (this.ctx.outputLatency || 0));
  }

  // Samples heard since the last call. What the listener hears now is what the
  // context rendered `latency` seconds ago; per chunk, played = (playhead - start) *
  // rate, clamped, and only increases are returned, so the values add up exactly
  // to the samples heard. Nothing is counted for audio stopped by `stop()`.
  takePlayed() {
    if (this.ctx.state === 'closed') return 0;
    const playhead = this.ctx.currentTime - this.latency();
    let delta = 0;
    for (const e of this.queue) {
      if (playhead <= e.start) break; // later chunks start later still
      // max(): a latency estimate that grows must never make the count go backwards
      const done = Math.max(e.counted, Math.min(e.samples, Math.round((playhead - e.start) * this.rate)));
      delta += done - e.counted;
      e.counted = done;
    }
    while (this.queue.length && this.queue[0].counted === this.queue[0].samples) this.queue.shift();
    return delta;
  }

  // Barge-in: silence everything scheduled, now, and forget the queue.
  stop() {
    for (const e of this.queue) {
      try { e.src.stop(); } catch { /* never started or already stopped */ }
      e.src.disconnect();
    }
    this.queue = [];
    this.nextTime = 0;
  }
}
