// The websocket client: joins or creates a session and decodes frames (see docs/protocol.md).

const AUDIO = 0x414d414a; // "JAMA" read as little-endian uint32
const OPUS = 0x4f4d414a; // "JAMO"
const IMAGE = 0x494d414a; // "JAMI"
const decoder = new TextDecoder();

export function decodeFrame(buf) {
  const v = new DataView(buf);
  const magic = v.getUint32(0, true);
  if (magic === AUDIO) {
    const seq = v.getUint32(4, true);
    const offset = Number(v.getBigUint64(8, true));
    const sampleRate = v.getUint32(16, true);
    const channels = v.getUint16(20, true);
    const frames = v.getUint32(24, true);
    const metaLen = v.getUint32(28, true);
    const meta = JSON.parse(decoder.decode(new Uint8Array(buf, 32, metaLen)));
    const pcm = new Int16Array(buf, 32 + metaLen, frames * channels);
    return { kind: "audio", seq, offset, sampleRate, channels, frames, meta, pcm, size: buf.byteLength };
  }
  if (magic === OPUS) {
    // Same header as JAMA; the reserved u16 counts the packets, `frames` is the stream samples
    // they cover (20 ms each). Then the packets, each a u16 length and that many bytes.
    const seq = v.getUint32(4, true);
    const offset = Number(v.getBigUint64(8, true));
    const sampleRate = v.getUint32(16, true);
    const channels = v.getUint16(20, true);
    const count = v.getUint16(22, true);
    const frames = v.getUint32(24, true);
    const metaLen = v.getUint32(28, true);
    const meta = JSON.parse(decoder.decode(new Uint8Array(buf, 32, metaLen)));
    const packets = [];
    let at = 32 + metaLen;
    for (let i = 0; i < count; i++) {
      const n = v.getUint16(at, true); // throws past the end: a truncated frame
      if (at + 2 + n > buf.byteLength) throw new Error("truncated opus frame");
      packets.push(new Uint8Array(buf, at + 2, n));
      at += 2 + n;
    }
    return { kind: "opus", seq, offset, sampleRate, channels, frames, meta, packets, bytes: at - 32 - metaLen, size: buf.byteLength };
  }
  if (magic === IMAGE) {
    const tile = v.getUint32(4, true);
    const offset = Number(v.getBigUint64(8, true));
    const metaLen = v.getUint32(16, true);
    const meta = JSON.parse(decoder.decode(new Uint8Array(buf, 20, metaLen)));
    const png = new Blob([new Uint8Array(buf, 20 + metaLen)], { type: "image/png" });
    return { kind: "image", tile, offset, meta, png };
  }
  throw new Error("unknown frame");
}

/** Connects and says hello; calls handlers for JSON messages by type and for binary frames. */
export class Stream {
  constructor({ hello, onMessage, onFrame, onClose }) {
    this.hello = hello;
    this.onMessage = onMessage;
    this.onFrame = onFrame;
    this.onClose = onClose;
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.ws = new WebSocket(`${scheme}//${location.host}/ws`);
    this.ws.binaryType = "arraybuffer";
    this.ws.onopen = () => this.send(this.hello);
    this.ws.onmessage = (e) => {
      if (typeof e.data === "string") this.onMessage(JSON.parse(e.data));
      else this.onFrame(decodeFrame(e.data));
    };
    this.ws.onclose = (e) => this.onClose(e);
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  close() {
    if (this.ws) { this.ws.onclose = null; this.ws.close(1000, "bye"); this.ws = null; }
  }
}
