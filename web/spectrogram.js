// Live spectrogram view: each tile's image placed on the stream timeline, scrolling under a
// fixed playhead. Tiles overlap where they crossfade; the newer tile is drawn on top. A tile
// heard from `meta.fade_start` on (a prompt switch, a splice) replaces the earlier tiles' columns
// from that stream sample on, and is drawn only from there.

// A magma-like palette. Tiles arrive as grey PNGs in Riffusion's convention (255 = silence,
// darker = louder); inverted and coloured here once each, so loud is bright.
const STOPS = [[0, 7, 8, 13], [0.25, 59, 15, 112], [0.5, 183, 55, 121], [0.75, 252, 137, 97], [1, 252, 253, 191]];
const LUT = new Uint8ClampedArray(256 * 3);
for (let i = 0; i < 256; i++) {
  const x = i / 255;
  let k = 0;
  while (k < STOPS.length - 2 && x > STOPS[k + 1][0]) k++;
  const [x0, ...a] = STOPS[k], [x1, ...b] = STOPS[k + 1];
  const t = (x - x0) / (x1 - x0);
  for (let c = 0; c < 3; c++) LUT[i * 3 + c] = a[c] + (b[c] - a[c]) * t;
}

async function colourise(blob) {
  const grey = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(grey.width, grey.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(grey, 0, 0);
  grey.close();
  const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const d = img.data;
  for (let i = 0; i < d.length; i += 4) {
    const v = (255 - d[i]) * 3;
    d[i] = LUT[v]; d[i + 1] = LUT[v + 1]; d[i + 2] = LUT[v + 2];
  }
  ctx.putImageData(img, 0, 0);
  return createImageBitmap(canvas);
}

export class SpectrogramView {
  constructor(canvas, { sampleRate, hopLength, secondsVisible = 10, playheadAt = 0.35 }) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.sampleRate = sampleRate;
    this.hopLength = hopLength;
    this.secondsVisible = secondsVisible;
    this.playheadAt = playheadAt;
    this.tiles = []; // {offset, samples, from, until, bitmap, meta}, in arrival order
  }

  async addTile(frame) {
    const m = frame.meta || {};
    const from = typeof m.fade_start === "number" ? Math.max(frame.offset, m.fade_start) : frame.offset;
    // Placed at once (in arrival order), drawn once coloured: a later tile cuts it at its start.
    const tile = { offset: frame.offset, samples: m.samples || 0, from, until: Infinity, bitmap: null, meta: m };
    for (const t of this.tiles) t.until = Math.min(t.until, from);
    this.tiles.push(tile);
    while (this.tiles.length > 12) { const t = this.tiles.shift(); if (t.bitmap) t.bitmap.close(); }
    const bitmap = await colourise(frame.png);
    if (!this.tiles.includes(tile)) { bitmap.close(); return; } // cleared (or dropped) meanwhile
    tile.bitmap = bitmap;
    if (!tile.samples) tile.samples = bitmap.width * this.hopLength;
  }

  draw(position) {
    const { canvas, ctx } = this;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * dpr), h = Math.round(canvas.clientHeight * dpr);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    ctx.fillStyle = "#07080d";
    ctx.fillRect(0, 0, w, h);
    const pxPerSample = w / (this.secondsVisible * this.sampleRate);
    const head = w * this.playheadAt;
    if (position >= 0) {
      ctx.imageSmoothingEnabled = true;
      for (const t of this.tiles) {
        if (!t.bitmap) continue;
        const a = t.from, b = Math.min(t.until, t.offset + t.samples); // the stream span it shows
        if (b <= a) continue;
        const x = head + (a - position) * pxPerSample;
        const tw = (b - a) * pxPerSample;
        if (x > w || x + tw < 0) continue;
        const scale = t.bitmap.width / t.samples; // image columns per stream sample
        ctx.globalAlpha = 1;
        ctx.drawImage(t.bitmap, (a - t.offset) * scale, 0, (b - a) * scale, t.bitmap.height, x, 0, tw, h);
      }
      // Dim what has already played.
      ctx.fillStyle = "rgba(7, 8, 13, 0.55)";
      ctx.fillRect(0, 0, head, h);
    }
    const grad = ctx.createLinearGradient(head - 12 * dpr, 0, head + 12 * dpr, 0);
    grad.addColorStop(0, "rgba(255, 92, 168, 0)");
    grad.addColorStop(0.5, "rgba(255, 92, 168, 0.35)");
    grad.addColorStop(1, "rgba(255, 92, 168, 0)");
    ctx.fillStyle = grad;
    ctx.fillRect(head - 12 * dpr, 0, 24 * dpr, h);
    ctx.fillStyle = "#ff5ca8";
    ctx.fillRect(head - dpr, 0, 2 * dpr, h);
  }

  clear() {
    for (const t of this.tiles) if (t.bitmap) t.bitmap.close();
    this.tiles = [];
  }
}
