// Main-thread side of playback: owns the AudioContext and the ring-buffer worklet.
//
// The ring runs on the clock of the audio it is fed: the stream's own rate for PCM, the codec's
// (48 kHz) for Opus. Outside this file everything is in stream samples: `push*` take ring
// positions, but `position()` and the counters in `onStats` are converted back.

export class Player {
  constructor({ sampleRate, streamRate = sampleRate, channels, jitterSeconds = 0.3, onStats = () => {}, onSplice = () => {} }) {
    this.sampleRate = sampleRate; // the ring's (and the AudioContext's) clock
    this.streamRate = streamRate;
    this.scale = streamRate / sampleRate; // ring samples → stream samples
    this.channels = channels;
    this.jitterSeconds = jitterSeconds;
    this.settled = false; // caught up with the live edge once (see follow)
    this.onStats = onStats;
    // ({id, requested, at, late, position, end}) in stream samples: where a splice went in (null:
    // never, another replaced it first), and what was playing and held then
    this.onSplice = onSplice;
    this.stats = {
      framesPlayed: 0, nonSilentFrames: 0, underruns: 0, skipped: 0, buffered: 0, position: -1, playing: false,
      splices: 0, lateSplices: 0, underrunAt: -1,
    };
    this.ringPosition = -1;
    this.reportedAt = 0;
    this.pending = []; // messages (audio, splices) that arrived while the worklet module was still loading
  }

  async start() {
    // Same rate as what the ring holds, so the browser does the one resampling to the device.
    this.ctx = new AudioContext({ sampleRate: this.sampleRate, latencyHint: "interactive" });
    await this.ctx.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
    if (!this.ctx) return; // stopped while loading
    this.node = new AudioWorkletNode(this.ctx, "jam-ring-player", {
      numberOfInputs: 0,
      outputChannelCount: [Math.max(1, Math.min(2, this.channels))],
      processorOptions: { channels: this.channels, jitterSeconds: this.jitterSeconds },
    });
    this.node.port.onmessage = (e) => {
      if (!this.ctx) return; // a report that was in flight when the player stopped
      const s = e.data, k = this.scale;
      if (s.type === "spliced") {
        const streamed = (v) => (v === null || v < 0 ? v : v * k);
        this.onSplice({
          id: s.id, requested: s.requested * k, at: streamed(s.at), late: s.late,
          position: streamed(s.position), end: streamed(s.end),
        });
        return;
      }
      this.ringPosition = s.position;
      this.stats = {
        ...s,
        framesPlayed: Math.round(s.framesPlayed * k),
        nonSilentFrames: Math.round(s.nonSilentFrames * k),
        skipped: Math.round(s.skipped * k),
        position: s.position < 0 ? -1 : s.position * k,
        underrunAt: s.underrunAt < 0 ? -1 : s.underrunAt * k,
      };
      this.reportedAt = this.ctx.currentTime;
      this.onStats(this.stats);
    };
    this.gain = this.ctx.createGain();
    this.node.connect(this.gain).connect(this.ctx.destination);
    for (const msg of this.pending.splice(0)) this.post(msg);
    if (this.ctx && this.ctx.state !== "running") await this.ctx.resume();
  }

  /** Queue interleaved int16 PCM that starts at ring sample `offset` (PCM: a stream sample). */
  push(offset, pcm) {
    this.pushFloat(offset, this.planes(pcm));
  }

  planes(pcm) {
    const n = pcm.length / this.channels;
    const data = Array.from({ length: this.channels }, () => new Float32Array(n));
    for (let i = 0, k = 0; i < n; i++) {
      for (let c = 0; c < this.channels; c++, k++) data[c][i] = pcm[k] / 32768;
    }
    return data;
  }

  /** Queue float audio, one Float32Array per channel, that starts at ring sample `offset`. */
  pushFloat(offset, data) {
    this.post({ type: "pcm", offset, data });
  }

  /**
   * Replace everything held from ring sample `offset` on with `data` (one Float32Array per
   * channel) and what follows it; played audio is never rewritten: a late splice goes in at the
   * next beat (`bpm`, counted from `offset`) after the read position. `id` comes back in
   * `onSplice` with where it went in.
   */
  splice(offset, data, bpm, id) {
    const beat = bpm > 0 ? (60 * this.sampleRate) / bpm : 0;
    this.post({ type: "splice", offset, data, beat, id });
  }

  /** Interleaved int16 PCM as a splice (see `splice`). */
  splicePcm(offset, pcm, bpm, id) {
    this.splice(offset, this.planes(pcm), bpm, id);
  }

  post(msg) {
    if (!this.node) { if (this.ctx) this.pending.push(msg); return; }
    this.node.port.postMessage(msg, msg.data ? msg.data.map((d) => d.buffer) : []);
  }

  /**
   * Keep up with the server: skip ahead when playing more than the jitter buffer plus `slack`
   * seconds behind its `playhead` (a stream sample), so every tab plays the same sample at the
   * same moment; a tab whose audio started late would otherwise stay late.
   * A playhead that took long to arrive only makes us look less late, never more.
   */
  follow(playhead, slack = 0.04) {
    const position = this.position();
    if (!this.node || !this.stats.playing || position < 0) return;
    // The first time, a tab catches up with the live edge itself (its audio may have waited
    // for the worklet to load); after that, on time is up to the jitter buffer behind it, so a
    // tab that re-buffered once does not skip.
    const allowance = this.settled ? this.jitterSeconds : 0;
    this.settled = true;
    const late = playhead - allowance * this.streamRate - position;
    if (late > slack * this.streamRate) this.node.port.postMessage({ type: "skip", frames: Math.round(late / this.scale) });
  }

  /** Forget buffered audio (a reconnect starts again at the live edge). */
  reset() {
    this.pending = [];
    this.settled = false;
    if (this.node) this.node.port.postMessage({ type: "reset" });
  }

  /** Stream sample playing right now, interpolated between worklet reports. */
  position() {
    if (!this.ctx || this.ringPosition < 0) return -1;
    const since = this.stats.playing ? Math.max(0, this.ctx.currentTime - this.reportedAt) : 0;
    return (this.ringPosition + Math.min(since, 0.2) * this.sampleRate) * this.scale;
  }

  async stop() {
    if (!this.ctx) return;
    const ctx = this.ctx;
    this.ctx = null;
    this.node = null;
    await ctx.close();
  }
}
