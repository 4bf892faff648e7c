// Opus over the websocket (JAMO frames, docs/protocol.md) decoded with WebCodecs.
// One OpusDecoder per connection. Decoded audio is 48 kHz float, placed on the codec clock:
// packet i of a frame belongs at 48 kHz position (offset + i·rate/50)·48000/rate − preSkip.

export const OPUS_RATE = 48000;

/** Whether this browser can decode Opus itself (WebCodecs; secure contexts only). */
export async function canDecodeOpus(channels) {
  if (typeof AudioDecoder === "undefined" || typeof EncodedAudioChunk === "undefined") return false;
  try {
    const r = await AudioDecoder.isConfigSupported({ codec: "opus", sampleRate: OPUS_RATE, numberOfChannels: channels });
    return !!r.supported;
  } catch {
    return false;
  }
}

export class OpusDecoder {
  /**
   * `onAudio(position, planes, splice)`: `planes` one Float32Array per channel, starting at
   * `position` on the codec clock (codecRate samples); `splice` is the frame's `{at, bpm, id}`
   * on the first output of a splice (docs/protocol.md, "Splices"), else null. `onError(err)`
   * on a decoder failure.
   */
  constructor({ channels, codecRate = OPUS_RATE, preSkip = 0, onAudio, onError = () => {} }) {
    this.channels = channels;
    this.codecRate = codecRate;
    this.preSkip = preSkip;
    this.onAudio = onAudio;
    this.onError = onError;
    this.gen = null; // the decoder being fed, and what of its output to keep (see `fresh`)
    this.tail = Promise.resolve(); // settles once every earlier decoder has said all it will
    this.next = -1; // stream sample where the next frame should start, to spot gaps
    this.closed = false;
  }

  /**
   * Start a fresh decoder for what follows. The old one finishes what it holds (its
   * timestamps are still right) but says nothing at or after `until`; the new one's output is
   * held back until the old one is done, so audio reaches the player in stream order.
   */
  fresh({ from = -Infinity, until = Infinity, splice = null } = {}) {
    const prev = this.gen;
    const gen = {
      decoder: null, from, until: Infinity, splice, open: !prev, queue: [],
      end: -Infinity, // where its output has reached
      reached: null, // once replaced: resolves when its output reaches `until`
    };
    gen.decoder = this.make(gen);
    this.gen = gen;
    if (prev) {
      prev.until = Math.min(prev.until, until);
      const d = prev.decoder;
      // Done once it has flushed, or (a splice) once its output reached `until`: what it
      // still holds lies after that, and is dropped with it.
      const reached = new Promise((resolve) => { prev.reached = resolve; });
      if (prev.end >= prev.until) prev.reached();
      const flushed = d.state === "configured" ? d.flush().catch(() => {}) : Promise.resolve();
      this.tail = Promise.all([this.tail, Promise.race([flushed, reached])]).then(() => {
        if (d.state !== "closed") d.close();
        gen.open = true;
        for (const [position, planes] of gen.queue.splice(0)) this.emit(gen, position, planes);
      });
    }
    return gen;
  }

  make(gen) {
    const channels = this.channels, rate = this.codecRate;
    const decoder = new AudioDecoder({
      output: (data) => {
        try {
          if (this.closed) return; // a late output after a reconnect or stop
          // Timestamps are µs on the codec clock; exact back to samples (1 sample ≈ 20.8 µs).
          const position = Math.round((data.timestamp * rate) / 1e6);
          const n = data.numberOfFrames;
          gen.end = Math.max(gen.end, position + n);
          if (gen.reached && gen.end >= gen.until) gen.reached(); // (after this output)
          if (position + n <= gen.from || position >= gen.until) return;
          const planes = [];
          for (let c = 0; c < channels; c++) {
            const plane = new Float32Array(n);
            data.copyTo(plane, { planeIndex: Math.min(c, data.numberOfChannels - 1), format: "f32-planar" });
            planes.push(plane);
          }
          if (gen.open) this.emit(gen, position, planes);
          else gen.queue.push([position, planes]);
        } finally {
          data.close();
        }
      },
      error: (err) => { if (gen === this.gen) { this.gen = null; this.onError(err); } },
    });
    decoder.configure({ codec: "opus", sampleRate: rate, numberOfChannels: channels });
    return decoder;
  }

  emit(gen, position, planes) {
    if (this.closed) return;
    // keep [from, until): a splice's pre-roll is before it, a replaced decoder's audio after it
    const n = planes[0].length;
    const lo = Math.max(0, gen.from - position), hi = Math.min(n, gen.until - position);
    if (hi <= lo) return;
    if (lo || hi < n) planes = planes.map((p) => p.subarray(lo, hi));
    position += lo;
    const splice = gen.splice;
    gen.splice = null; // only the first output goes in as the splice; the rest follows it
    this.onAudio(position, planes, splice);
  }

  /** Decode one JAMO frame (from stream.js): all its packets, in order; `id` names a splice. */
  decode(frame, id = 0) {
    if (this.closed) return;
    const x = frame.meta && frame.meta.splice;
    if (typeof x === "number") {
      // Replacement audio: a fresh decoder from this frame (its first packets are the pre-roll
      // the server's fresh encoder made), kept from X on; the old decoder says nothing from X.
      const at = Math.round((x * this.codecRate) / frame.sampleRate);
      this.fresh({ from: at, until: at, splice: { at, bpm: frame.meta.bpm, id } });
    } else if (!this.gen || frame.offset !== this.next) {
      // First frame, or frames were dropped for us: a fresh decoder (its first packet is the
      // pre-roll), letting the old one finish what it holds.
      this.fresh();
    }
    if (this.gen.decoder.state !== "configured") this.fresh(); // it failed meanwhile
    this.next = frame.offset + frame.frames;
    const step = frame.sampleRate / 50; // stream samples per 20 ms packet
    const decoder = this.gen.decoder;
    for (let i = 0; i < frame.packets.length; i++) {
      const position = Math.round(((frame.offset + i * step) * this.codecRate) / frame.sampleRate) - this.preSkip;
      decoder.decode(new EncodedAudioChunk({
        type: "key",
        timestamp: Math.round((position * 1e6) / this.codecRate),
        data: frame.packets[i],
      }));
    }
  }

  /** Drop whatever is still being decoded (a reconnect, or stop). */
  close() {
    const gen = this.gen;
    this.gen = null;
    this.closed = true;
    if (gen && gen.decoder.state !== "closed") gen.decoder.close();
  }
}
