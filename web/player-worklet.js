// AudioWorklet side of the player: a ring buffer of float PCM behind a small jitter buffer.
// Runs on the audio thread, so it only copies samples and counts; all decisions that need the
// network or the DOM happen on the main thread (player.js).

class RingPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.channels = o.channels || 1;
    this.capacity = Math.floor((o.capacitySeconds || 30) * sampleRate);
    this.prebuffer = Math.floor((o.jitterSeconds || 0.3) * sampleRate);
    this.maxBuffer = Math.floor((o.maxBufferSeconds || 8) * sampleRate);
    this.ring = Array.from({ length: this.channels }, () => new Float32Array(this.capacity));
    this.written = 0; // absolute frames written
    this.read = 0; // absolute frames read
    this.segments = []; // [{at: absolute write index, offset: stream sample}] to map back to the stream
    this.playing = false; // false while (pre)buffering
    this.stats = { framesPlayed: 0, nonSilentFrames: 0, underruns: 0, skipped: 0, buffered: 0, position: -1 };
    this.lastReport = 0;
    this.port.onmessage = (e) => this.receive(e.data);
  }

  receive(msg) {
    if (msg.type === "pcm") {
      const { offset, data } = msg; // data: array of Float32Array per channel
      const n = data[0].length;
      if (this.written - this.read + n > this.capacity) return; // cannot happen with maxBuffer
      this.segments.push({ at: this.written, offset });
      if (this.segments.length > 256) this.segments.splice(0, this.segments.length - 256);
      for (let c = 0; c < this.channels; c++) {
        const src = data[Math.min(c, data.length - 1)], dst = this.ring[c];
        const start = this.written % this.capacity;
        const first = Math.min(n, this.capacity - start);
        dst.set(src.subarray(0, first), start);
        if (first < n) dst.set(src.subarray(first), 0);
      }
      this.written += n;
      const excess = this.written - this.read - this.maxBuffer;
      if (excess > 0) { this.read += excess; this.stats.skipped += excess; } // clock drift: catch up
    } else if (msg.type === "skip") {
      // Started late (or fell behind): jump ahead, keeping the jitter buffer.
      const n = Math.max(0, Math.min(msg.frames, this.written - this.read - this.prebuffer));
      this.read += n;
      this.stats.skipped += n;
    } else if (msg.type === "reset") {
      this.read = this.written;
      this.segments = [];
      this.playing = false;
    }
  }

  position() {
    let seg = null;
    for (let i = this.segments.length - 1; i >= 0; i--) {
      if (this.segments[i].at <= this.read) { seg = this.segments[i]; break; }
    }
    return seg ? seg.offset + (this.read - seg.at) : -1;
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const frames = out[0].length;
    const available = this.written - this.read;
    if (!this.playing && available >= this.prebuffer) this.playing = true;
    if (this.playing) {
      const n = Math.min(frames, available);
      let loud = 0;
      for (let c = 0; c < out.length; c++) {
        const src = this.ring[Math.min(c, this.channels - 1)];
        const dst = out[c];
        for (let i = 0; i < n; i++) {
          const v = src[(this.read + i) % this.capacity];
          dst[i] = v;
          if (c === 0 && (v > 1e-4 || v < -1e-4)) loud++;
        }
        for (let i = n; i < frames; i++) dst[i] = 0;
      }
      this.read += n;
      this.stats.framesPlayed += n;
      this.stats.nonSilentFrames += loud;
      if (n < frames) { this.playing = false; this.stats.underruns++; }
    } else {
      for (const ch of out) ch.fill(0);
    }
    if (currentFrame - this.lastReport >= sampleRate / 20) {
      this.lastReport = currentFrame;
      this.stats.buffered = (this.written - this.read) / sampleRate;
      this.stats.position = this.position();
      this.port.postMessage({ ...this.stats, playing: this.playing, time: currentTime });
    }
    return true;
  }
}

registerProcessor("jam-ring-player", RingPlayer);
