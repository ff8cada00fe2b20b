// AudioWorklet processor: mic audio at the AudioContext's rate -> mono PCM16 LE at
// 16 kHz, posted to the main thread as 20 ms (320-sample) ArrayBuffers.
//
// Resampling = (1) a windowed-sinc FIR low-pass at the input rate, cut off a bit
// below the new Nyquist (8 kHz), then (2) linear interpolation between consecutive
// filtered samples at each output instant. Interpolation alone would fold
// everything above 8 kHz back into the speech band; once the signal is
// band-limited, linear interpolation is accurate enough for speech recognition.
// Handles any ratio (48k, 44.1k, 96k; a rate <= 16k is just interpolated).
// The node is created with channelCount 1 / 'explicit', so Web Audio has already
// mixed the mic down to mono.

function blackmanLowPass(inRate, cutoffHz, taps) {
  const h = new Float32Array(taps), mid = (taps - 1) / 2, fc = cutoffHz / inRate;
  let sum = 0;
  for (let i = 0; i < taps; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const a = (2 * Math.PI * i) / (taps - 1);
    h[i] = sinc * (0.42 - 0.5 * Math.cos(a) + 0.08 * Math.cos(2 * a));
    sum += h[i];
  }
  for (let i = 0; i < taps; i++) h[i] /= sum; // unity gain at DC
  return h;
}

class Capture16k extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.outRate = o.targetRate || 16000;
    this.frame = o.frameSamples || 320;
    this.step = sampleRate / this.outRate; // input samples per output sample
    // ~20 taps per unit of decimation keeps the Blackman transition band
    // (~5.5 * inRate / taps wide) within about 7.2 kHz .. 11 kHz.
    const taps = this.step > 1 ? Math.min(255, Math.ceil(20 * this.step) | 1) : 1;
    this.h = taps > 1 ? blackmanLowPass(sampleRate, 0.45 * this.outRate, taps) : Float32Array.of(1);
    this.hist = new Float32Array(2 * taps); // doubled ring: the last `taps` inputs are always contiguous
    this.w = 0;
    this.prev = 0; // previous filtered sample
    this.pos = 1;  // next output instant, in input samples after `prev` (1 = the current sample)
    this.newFrame();
  }

  newFrame() {
    this.out = new DataView(new ArrayBuffer(this.frame * 2));
    this.k = 0;
  }

  emit(v) {
    const s = v > 1 ? 1 : v < -1 ? -1 : v;
    this.out.setInt16(2 * this.k, Math.round(s < 0 ? s * 0x8000 : s * 0x7fff), true);
    if (++this.k === this.frame) {
      const buf = this.out.buffer;
      this.port.postMessage(buf, [buf]); // transfer, no copy
      this.newFrame();
    }
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true; // nothing connected this quantum
    const { h, hist, step } = this, n = h.length;
    for (let i = 0; i < input.length; i++) {
      hist[this.w] = hist[this.w + n] = input[i];
      this.w = this.w + 1 === n ? 0 : this.w + 1;
      let y = 0; // FIR output for this input sample (h is symmetric, so order is irrelevant)
      for (let j = 0, b = this.w; j < n; j++) y += h[j] * hist[b + j];
      // Emit every output sample whose instant falls in (prev, current].
      while (this.pos <= 1) {
        this.emit(this.prev + (y - this.prev) * this.pos);
        this.pos += step;
      }
      this.pos -= 1;
      this.prev = y;
    }
    return true; // keep alive while the mic runs; the main thread disconnects us on stop
  }
}

registerProcessor('capture-16k', Capture16k);
