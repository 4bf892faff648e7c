// Keeps the last few minutes of received PCM so the listener can download them as a WAV file.

export class Recorder {
  constructor({ sampleRate, channels, seconds = 180 }) {
    this.sampleRate = sampleRate;
    this.channels = channels;
    this.limit = seconds * sampleRate * channels;
    this.parts = [];
    this.total = 0;
  }

  add(pcm) {
    this.parts.push(pcm.slice());
    this.total += pcm.length;
    while (this.total - this.parts[0].length >= this.limit) this.total -= this.parts.shift().length;
  }

  get seconds() {
    return this.total / this.channels / this.sampleRate;
  }

  wav() {
    const bytes = this.total * 2;
    const buf = new ArrayBuffer(44 + bytes);
    const v = new DataView(buf);
    const text = (at, s) => [...s].forEach((ch, i) => v.setUint8(at + i, ch.charCodeAt(0)));
    text(0, "RIFF"); v.setUint32(4, 36 + bytes, true); text(8, "WAVE");
    text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true);
    v.setUint16(22, this.channels, true); v.setUint32(24, this.sampleRate, true);
    v.setUint32(28, this.sampleRate * this.channels * 2, true);
    v.setUint16(32, this.channels * 2, true); v.setUint16(34, 16, true);
    text(36, "data"); v.setUint32(40, bytes, true);
    let at = 44;
    for (const p of this.parts) { new Int16Array(buf, at, p.length).set(p); at += p.length * 2; }
    return new Blob([buf], { type: "audio/wav" });
  }
}
