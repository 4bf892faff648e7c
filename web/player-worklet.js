// AudioWorklet side of the player: a ring buffer of float PCM behind a small jitter buffer.
// Runs on the audio thread, so it only copies samples and counts; all decisions that need the
// network or the DOM happen on the main thread (player.js).
//
// Positions in messages are on the ring's clock (the stream's rate for PCM, 48 kHz for Opus).
// `pcm` appends; `splice` replaces everything held from its offset on (docs/protocol.md,
// "Splices"), crossfading into the new audio, and never rewrites what has been played: a splice
// point behind (or just ahead of) the read position moves to the next beat after it.

const FADE_SECONDS = 128 / 48000; // ~2.7 ms crossfade at a splice's join
const GUARD_SECONDS = 0.005; // a splice this close ahead of the read position is too late

class RingPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.channels = o.channels || 1;
    this.capacity = Math.floor((o.capacitySeconds || 30) * sampleRate);
    this.prebuffer = Math.floor((o.jitterSeconds || 0.3) * sampleRate);
    this.maxBuffer = Math.floor((o.maxBufferSeconds || 8) * sampleRate);
    this.fade = Math.max(1, Math.round(FADE_SECONDS * sampleRate));
    // ahead of the read position: this quantum, the crossfade and a few ms
    this.guard = 128 + this.fade + Math.round(GUARD_SECONDS * sampleRate);
    this.ring = Array.from({ length: this.channels }, () => new Float32Array(this.capacity));
    this.written = 0; // absolute frames written
    this.read = 0; // absolute frames read
    this.segments = []; // [{at: absolute write index, offset: stream sample}] to map back to the stream
    this.pending = null; // a splice waiting for its (late) point: {id, offset, idx, beat, requested}
    this.playing = false; // false while (pre)buffering
    this.stats = {
      framesPlayed: 0, nonSilentFrames: 0, underruns: 0, skipped: 0, buffered: 0, position: -1,
      splices: 0, lateSplices: 0, underrunAt: -1, // stream sample where it last ran dry
    };
    this.lastReport = 0;
    this.port.onmessage = (e) => this.receive(e.data);
  }

  receive(msg) {
    if (msg.type === "pcm") {
      if (this.pending) this.feedPending(msg.offset, msg.data);
      else this.append(msg.offset, msg.data);
    } else if (msg.type === "splice") {
      this.stats.splices++;
      if (this.pending) this.report(this.pending, null); // superseded before it was reached
      const idx = this.indexOf(msg.offset);
      if (idx === null) { // nothing held: the replacement simply starts the ring
        this.append(msg.offset, msg.data);
        this.report({ id: msg.id, requested: msg.offset }, msg.offset);
        return;
      }
      const beat = msg.beat > 0 ? msg.beat : sampleRate / 2;
      this.pending = { id: msg.id, offset: msg.offset, idx, beat, requested: msg.offset, late: false };
      this.feedPending(msg.offset, msg.data);
    } else if (msg.type === "skip") {
      // Started late (or fell behind): jump ahead, keeping the jitter buffer.
      const n = Math.max(0, Math.min(msg.frames, this.written - this.read - this.prebuffer));
      this.read += n;
      this.stats.skipped += n;
    } else if (msg.type === "reset") {
      this.read = this.written;
      this.segments = [];
      this.pending = null;
      this.playing = false;
    }
  }

  /** Append at the write position (dropping any part that overlaps what is already held). */
  append(offset, data) {
    const end = this.endOffset();
    if (end !== null && offset < end) {
      const cut = end - offset;
      if (cut >= data[0].length) return;
      data = data.map((d) => d.subarray(cut));
      offset = end;
    }
    this.write(this.written, offset, data);
  }

  /** Audio at stream `offset` while a splice waits: write it from the splice point, if reached. */
  feedPending(offset, data) {
    const p = this.pending, n = data[0].length;
    const at = p.idx + (offset - p.offset); // ring index this audio replaces
    let s = at;
    const min = this.read + this.guard;
    if (s < min) {
      if (!p.late) { p.late = true; this.stats.lateSplices++; }
      s = p.idx + Math.round(Math.ceil((min - p.idx) / p.beat - 1e-9) * p.beat); // next beat
    }
    if (this.written < at) { // what was held ends before this audio: it simply continues there
      this.pending = null;
      this.write(this.written, offset, data);
      this.report(p, offset);
      return;
    }
    s = Math.min(s, this.written);
    if (s >= at + n) return; // all of it lies before the (moved) splice point: the old audio stays
    this.pending = null;
    const from = s - at;
    this.write(s, offset + from, from ? data.map((d) => d.subarray(from)) : data);
    this.report(p, offset + from);
  }

  /** Write `data` (stream `offset`) at ring index `idx` ≤ written, replacing what lies after. */
  write(idx, offset, data) {
    let n = data[0].length;
    n = Math.min(n, this.capacity - (idx - this.read));
    if (n <= 0) return;
    const fade = Math.min(this.fade, n, this.written - idx); // crossfade from the old content
    while (this.segments.length && this.segments[this.segments.length - 1].at >= idx) this.segments.pop();
    const last = this.segments[this.segments.length - 1];
    if (!last || last.offset + (idx - last.at) !== offset) this.segments.push({ at: idx, offset });
    if (this.segments.length > 256) this.segments.splice(0, this.segments.length - 256);
    for (let c = 0; c < this.channels; c++) {
      const src = data[Math.min(c, data.length - 1)], dst = this.ring[c];
      for (let i = 0; i < fade; i++) {
        const k = (idx + i) % this.capacity, w = (i + 0.5) / fade;
        dst[k] = dst[k] * (1 - w) + src[i] * w;
      }
      const start = (idx + fade) % this.capacity, rest = n - fade;
      const first = Math.min(rest, this.capacity - start);
      dst.set(src.subarray(fade, fade + first), start);
      if (first < rest) dst.set(src.subarray(fade + first, n), 0);
    }
    this.written = idx + n;
    const excess = this.written - this.read - this.maxBuffer;
    if (excess > 0) { this.read += excess; this.stats.skipped += excess; } // clock drift: catch up
  }

  report(p, at) {
    // where it went in, and (for a late one) what was playing and held then
    this.port.postMessage({
      type: "spliced", id: p.id, requested: p.requested, at, late: !!p.late,
      position: this.position(), end: this.endOffset(),
    });
  }

  /** Stream offset at the write position, or null when nothing is held. */
  endOffset() {
    const s = this.segments[this.segments.length - 1];
    return s ? s.offset + (this.written - s.at) : null;
  }

  /** Ring index of stream `offset` (the first held sample at or after it), or null. */
  indexOf(offset) {
    const segs = this.segments;
    if (!segs.length) return null;
    for (let i = segs.length - 1; i >= 0; i--) {
      if (segs[i].offset <= offset) {
        const idx = segs[i].at + (offset - segs[i].offset);
        return Math.min(idx, i + 1 < segs.length ? segs[i + 1].at : idx);
      }
    }
    return segs[0].at + (offset - segs[0].offset); // before all held audio (long played)
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
      if (n < frames) { // ran dry: wait for the jitter buffer again
        this.playing = false;
        this.stats.underruns++;
        this.stats.underrunAt = this.position();
      }
    } else {
      for (const ch of out) ch.fill(0);
    }
    if (currentFrame - this.lastReport >= sampleRate / 20) {
      this.lastReport = currentFrame;
      this.stats.buffered = (this.written - this.read) / sampleRate;
      this.stats.position = this.position();
      this.port.postMessage({ type: "stats", ...this.stats, playing: this.playing, time: currentTime });
    }
    return true;
  }
}

registerProcessor("jam-ring-player", RingPlayer);
