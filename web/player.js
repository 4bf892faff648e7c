// Main-thread side of playback: owns the AudioContext and the ring-buffer worklet.

export class Player {
  constructor({ sampleRate, channels, jitterSeconds = 0.3, onStats = () => {} }) {
    this.sampleRate = sampleRate;
    this.channels = channels;
    this.jitterSeconds = jitterSeconds;
    this.onStats = onStats;
    this.stats = { framesPlayed: 0, nonSilentFrames: 0, underruns: 0, skipped: 0, buffered: 0, position: -1, playing: false };
    this.reportedAt = 0;
    this.pending = []; // PCM that arrived while the worklet module was still loading
  }

  async start() {
    // Same rate as the stream, so the browser does the one resampling to the device itself.
    this.ctx = new AudioContext({ sampleRate: this.sampleRate, latencyHint: "interactive" });
    await this.ctx.audioWorklet.addModule(new URL("./player-worklet.js", import.meta.url));
    this.node = new AudioWorkletNode(this.ctx, "jam-ring-player", {
      numberOfInputs: 0,
      outputChannelCount: [Math.max(1, Math.min(2, this.channels))],
      processorOptions: { channels: this.channels, jitterSeconds: this.jitterSeconds },
    });
    this.node.port.onmessage = (e) => {
      this.stats = e.data;
      this.reportedAt = this.ctx.currentTime;
      this.onStats(this.stats);
    };
    this.gain = this.ctx.createGain();
    this.node.connect(this.gain).connect(this.ctx.destination);
    for (const [offset, pcm] of this.pending.splice(0)) this.push(offset, pcm);
    if (this.ctx.state !== "running") await this.ctx.resume();
  }

  /** Queue interleaved int16 PCM that starts at stream sample `offset`. */
  push(offset, pcm) {
    if (!this.node) { if (this.ctx) this.pending.push([offset, pcm]); return; }
    const n = pcm.length / this.channels;
    const data = Array.from({ length: this.channels }, () => new Float32Array(n));
    for (let i = 0, k = 0; i < n; i++) {
      for (let c = 0; c < this.channels; c++, k++) data[c][i] = pcm[k] / 32768;
    }
    this.node.port.postMessage({ type: "pcm", offset, data }, data.map((d) => d.buffer));
  }

  /** Forget buffered audio (a reconnect starts again at the live edge). */
  reset() {
    this.pending = [];
    if (this.node) this.node.port.postMessage({ type: "reset" });
  }

  /** Stream sample playing right now, interpolated between worklet reports. */
  position() {
    if (!this.ctx || this.stats.position < 0) return -1;
    const since = this.stats.playing ? Math.max(0, this.ctx.currentTime - this.reportedAt) : 0;
    return this.stats.position + Math.min(since, 0.2) * this.sampleRate;
  }

  async stop() {
    if (!this.ctx) return;
    const ctx = this.ctx;
    this.ctx = null;
    this.node = null;
    await ctx.close();
  }
}
