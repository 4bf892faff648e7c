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
   * `onAudio(position, planes)`: `planes` one Float32Array per channel, starting at `position`
   * on the codec clock (codecRate samples). `onError(err)` on a decoder failure.
   */
  constructor({ channels, codecRate = OPUS_RATE, preSkip = 0, onAudio, onError = () => {} }) {
    this.channels = channels;
    this.codecRate = codecRate;
    this.preSkip = preSkip;
    this.onAudio = onAudio;
    this.onError = onError;
    this.decoder = null;
    this.next = -1; // stream sample where the next frame should start, to spot gaps
    this.closed = false;
  }

  fresh() {
    const channels = this.channels, rate = this.codecRate;
    const decoder = new AudioDecoder({
      output: (data) => {
        try {
          if (this.closed) return; // a late output after a reconnect or stop
          // Timestamps are µs on the codec clock; exact back to samples (1 sample ≈ 20.8 µs).
          const position = Math.round((data.timestamp * rate) / 1e6);
          const n = data.numberOfFrames;
          const planes = [];
          for (let c = 0; c < channels; c++) {
            const plane = new Float32Array(n);
            data.copyTo(plane, { planeIndex: Math.min(c, data.numberOfChannels - 1), format: "f32-planar" });
            planes.push(plane);
          }
          this.onAudio(position, planes);
        } finally {
          data.close();
        }
      },
      error: (err) => { if (decoder === this.decoder) { this.decoder = null; this.onError(err); } },
    });
    decoder.configure({ codec: "opus", sampleRate: rate, numberOfChannels: channels });
    return decoder;
  }

  /** Decode one JAMO frame (from stream.js): all its packets, in order. */
  decode(frame) {
    if (this.closed) return;
    if (frame.offset !== this.next && this.decoder) {
      // Frames were dropped for us: start a fresh decoder (its first packet is the pre-roll),
      // letting the old one finish what it holds — its timestamps are still right.
      const old = this.decoder;
      this.decoder = null;
      old.flush().catch(() => {}).finally(() => { if (old.state !== "closed") old.close(); });
    }
    if (!this.decoder) this.decoder = this.fresh();
    this.next = frame.offset + frame.frames;
    const step = frame.sampleRate / 50; // stream samples per 20 ms packet
    for (let i = 0; i < frame.packets.length; i++) {
      const position = Math.round(((frame.offset + i * step) * this.codecRate) / frame.sampleRate) - this.preSkip;
      this.decoder.decode(new EncodedAudioChunk({
        type: "key",
        timestamp: Math.round((position * 1e6) / this.codecRate),
        data: frame.packets[i],
      }));
    }
  }

  /** Drop whatever is still being decoded (a reconnect, or stop). */
  close() {
    const d = this.decoder;
    this.decoder = null;
    this.closed = true;
    if (d && d.state !== "closed") d.close();
  }
}
