// The jam page: wires the stream, the player, the spectrogram view and the controls together.

import { canDecodeOpus, OpusDecoder, OPUS_RATE } from "./opus.js";
import { Player } from "./player.js";
import { SpectrogramView } from "./spectrogram.js";
import { Stream } from "./stream.js";

const $ = (id) => document.getElementById(id);

// Counters for people and tests alike (the browser test reads them).
const stats = (window.jamStats = {
  state: "idle", session: null, control: false, listeners: 0,
  framesPlayed: 0, nonSilentFrames: 0, underruns: 0, skipped: 0, buffered: 0,
  chunks: 0, tiles: 0, bytes: 0, frameBytes: 0, dropped: 0, prompt: null, seedImage: null, errors: [],
  ended: false, codec: null, position: -1, receivedEnd: 0, // stream sample where received audio ends
  splices: 0, lateSplices: 0, // splices the player applied, and those it moved to a later beat
  spliceFrames: 0, // frames received with `splice`
  session_state: null, // the session's steering state as last received (`state`, `welcome.state`)
  heard: null, // what the audible chunk's metadata says is playing: {prompt, prompts, bpm, ...}
  snapBacks: 0, // refused changes whose controls were set back to the session's state
});
// Sends a raw message on the live connection (tests use it to send what the page never would).
window.jamSend = (msg) => { if (stream) stream.send(msg); };
// The stream sample playing now, and when (ms since the epoch: comparable across tabs).
window.jamNow = () => ({ position: player && playing ? player.position() : -1, at: performance.timeOrigin + performance.now() });

const RECORDING_SECONDS = 180; // what the server keeps of a session, for the download

let info = null; // server info from /api/info: sample_rate, channels, hop_length, seeds, examples
let sessionId = location.pathname.startsWith("/s/") ? decodeURIComponent(location.pathname.slice(3)) : null;
let token = new URLSearchParams(location.hash.slice(1)).get("control");
let stream = null, player = null, view = null, opus = null;
// Offer Opus only where WebCodecs decodes it (checked once in init); `?codec=pcm` forces PCM.
const forcePcm = new URLSearchParams(location.search).get("codec") === "pcm";
let opusOK = false;
let playing = false, joinPlayhead = 0, retries = 0, pendingPrompt = null, noticeTimer = null, snapBack = false;
const timeline = []; // [{offset, end, meta}] of received chunks, sorted, to label what is audible
const spliced = new Map(); // splice id -> {x, replaced: timeline entries it took out}
let spliceSeq = 0;
// What the audio held covers, for tests: the received chunks' metadata from `from` to `to`.
window.jamHeld = (from = 0, to = Infinity) => timeline
  .filter((t) => t.end > from && t.offset < to)
  .map((t) => ({
    offset: t.offset, end: t.end, seq: t.meta.seq, tile: t.meta.tile, prompt: t.meta.prompt,
    prompt_to: t.meta.prompt_to, alpha: t.meta.alpha, bpm: t.meta.bpm, splice: t.meta.splice ?? null,
  }));

// -- controls: always showing the session's state --------------------------------------------
// `state` messages set every control, except one the user is dragging or typing in (or whose
// change is on its way to the server); a refused change (`error`, then `state`) sets them all.
let lastState = null;
const edited = new Set(); // text/number fields typed in since they last showed the state
let dragging = null; // the range input under the pointer
const awaiting = new Map(); // field -> {value, until}: sent, not yet confirmed by a `state`
const preplay = new Map(); // field -> [message, value], changed before play: sent once we steer
let taps = [], tapTimer = null;
const BPM_RANGE = [60, 180];

function setState(state, label) {
  stats.state = state;
  $("conn").dataset.state = state;
  $("conn").textContent = label || state;
  document.body.classList.toggle("playing", playing);
  $("play").setAttribute("aria-label", playing ? "stop" : "play");
}

function notice(text, kind = "warn", ms = 5000) {
  const el = $("notice");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = !text;
  clearTimeout(noticeTimer);
  if (text && ms) noticeTimer = setTimeout(() => { el.hidden = true; }, ms);
}

function links() {
  const base = `${location.origin}/s/${encodeURIComponent(sessionId)}`;
  $("share").value = base;
  $("control-card").hidden = !token;
  $("control-link").value = token ? `${base}#control=${token}` : "";
  history.replaceState(null, "", `/s/${encodeURIComponent(sessionId)}${location.search}${token ? `#control=${token}` : ""}`);
}

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const near = (a, b, eps = 1e-6) => typeof a === "number" && typeof b === "number" && Math.abs(a - b) <= eps;
const clean = (t) => String(t || "").replace(/\s+/g, " ").trim();

/** The blend a state (or chunk metadata) names: [{text, weight}], weights summing to 1. */
function blendOf(prompts, prompt) {
  let ps = Array.isArray(prompts) && prompts.length ? prompts : prompt ? [{ text: prompt, weight: 1 }] : [];
  ps = ps.map((p) => (Array.isArray(p) ? { text: p[0], weight: p[1] } : p)); // [text, weight] pairs too
  const total = ps.reduce((a, p) => a + (p.weight || 0), 0) || 1;
  return ps.map((p) => ({ text: p.text, weight: (p.weight || 0) / total }));
}

function sameBlend(a, b) {
  if (!a || !b) return false;
  [a, b] = [a.filter((p) => p.weight > 0.005), b.filter((p) => p.weight > 0.005)]; // a 0-weight text is not heard
  if (a.length !== b.length) return false;
  return a.every((p) => b.some((q) => clean(q.text) === clean(p.text) && Math.abs(q.weight - p.weight) < 0.02));
}

/** The state's value of one steering field, comparable with what the page sent. */
function fieldValue(field, s) {
  return field === "prompts" ? blendOf(s.prompts, s.prompt) : s[field];
}

function fieldMatches(field, sent, s) {
  const v = fieldValue(field, s);
  if (field === "prompts") return sameBlend(sent, v);
  if (typeof sent === "number") return near(sent, v, 1e-3);
  return sent === v;
}

function isHeld(id) {
  const el = $(id);
  return dragging === id || (edited.has(id) && document.activeElement === el) || (id === "tap" && tapTimer !== null);
}

function showState(s, { force = false } = {}) {
  if (!s) return;
  lastState = s;
  stats.session_state = s;
  const now = performance.now();
  const free = (field, ids) => {
    if (force) return true;
    const wait = awaiting.get(field);
    if (wait) {
      if (fieldMatches(field, wait.value, s) || wait.until <= now) awaiting.delete(field);
      else return false; // our change is on its way: this state predates it
    }
    return !ids.some(isHeld);
  };
  if (force) { awaiting.clear(); edited.clear(); }
  if (free("prompts", ["prompt", "prompt2", "blend"])) showBlend(blendOf(s.prompts, s.prompt));
  if (s.seed_image && free("seed_image", ["seed"]) && $("seed").value !== s.seed_image) $("seed").value = s.seed_image;
  if (typeof s.strength === "number" && free("strength", ["strength"])) setStrength(s.strength);
  if (typeof s.guidance === "number" && free("guidance", ["guidance"])) setGuidance(s.guidance);
  if (typeof s.bpm === "number" && free("bpm", ["bpm", "bpm-num", "tap"])) setBpm(s.bpm);
  if (typeof s.glide === "number" && free("glide", ["glide"])) setGlide(s.glide);
  seedInfo();
}

/** Set the prompt fields and the blend slider to a blend (the first two of its prompts). */
function showBlend(blend) {
  if (!blend.length) return;
  let [a, b] = blend;
  // keep each text where it was shown, whichever the server lists first
  if (b && clean($("prompt").value) === clean(b.text) && clean($("prompt2").value) === clean(a.text)) [a, b] = [b, a];
  $("prompt").value = a.text;
  edited.delete("prompt");
  $("blend-panel").hidden = !b;
  $("prompt2").value = b ? b.text : "";
  edited.delete("prompt2");
  if (b) setBlend(b.weight / (a.weight + b.weight || 1));
  const more = blend.length - 2;
  $("blend-more").hidden = more <= 0;
  $("blend-more").textContent = more > 0 ? `and ${more} more prompt${more === 1 ? "" : "s"} in the blend (set by another client)` : "";
  controls();
}

function setBlend(w) {
  $("blend").value = w;
  blendLabels();
}

function blendLabels() {
  const w = Number($("blend").value);
  $("blend-wa").value = `${Math.round((1 - w) * 100)}%`;
  $("blend-wb").value = `${Math.round(w * 100)}%`;
  $("blend-a").textContent = clean($("prompt").value) || $("prompt").placeholder;
  $("blend-b").textContent = clean($("prompt2").value) || "second prompt";
}

function setStrength(v) { $("strength").value = v; $("strength-out").value = Number(v).toFixed(2); }
function setGuidance(v) { $("guidance").value = v; $("guidance-out").value = Number(v).toFixed(1); }
function setGlide(v) {
  $("glide").value = v;
  v = Math.round(v);
  $("glide-out").value = v === 0 ? "next beat" : `${v} beat${v === 1 ? "" : "s"}`;
}
/** A tempo as people read it: whole, or to a tenth (a loop's own 93.9 bpm). */
const fmtBpm = (v) => (Math.abs(v - Math.round(v)) < 0.05 ? String(Math.round(v)) : v.toFixed(1));

function setBpm(v) {
  const shown = Math.round(v * 10) / 10;
  $("bpm").value = shown;
  $("bpm-num").value = shown;
  $("bpm-out").value = `${fmtBpm(v)} bpm`;
  edited.delete("bpm-num");
}

function seedInfo() {
  const seed = info && info.seeds.find((s) => s.name === $("seed").value);
  $("seed-info").textContent = seed ? [seed.bpm && `loop at ${Math.round(seed.bpm)} bpm`, seed.description].filter(Boolean).join(" · ") : "";
}

const STEERING = ["prompt", "prompt2", "blend", "blend-remove", "blend-add", "seed", "strength", "guidance", "bpm", "bpm-num", "tap", "glide"];

function controls() {
  const canSteer = !playing || stats.control;
  for (const id of STEERING) $(id).disabled = !canSteer;
  document.querySelectorAll(".chips button, .go").forEach((b) => { b.disabled = !canSteer; });
  $("blend-add").hidden = !$("blend-panel").hidden;
  $("listen-only").hidden = canSteer;
  document.body.classList.toggle("listener", !canSteer);
}

/**
 * Send a steering change (`field` as the state names it, `value` what the state will say);
 * before play, keep it for once we steer the jam.
 */
function send(field, msg, value) {
  if (!playing) { preplay.set(field, [msg, value]); return; }
  if (!stats.control || !stream) return;
  stream.send(msg);
  awaiting.set(field, { value, until: performance.now() + 2000 });
  setTimeout(() => { if (lastState) showState(lastState); }, 2100); // never confirmed: show the state
}

/** The blend the prompt fields and slider show, as a message: `prompts` with two, else `prompt`. */
function blendMessage() {
  const a = clean($("prompt").value) || (lastState && lastState.prompt) || "";
  const b = $("blend-panel").hidden ? "" : clean($("prompt2").value);
  if (!a) return null;
  if (!b) return [{ type: "prompt", text: a }, [{ text: a, weight: 1 }], a];
  const w = Math.round(Number($("blend").value) * 100) / 100;
  const prompts = [{ text: a, weight: Math.round((1 - w) * 100) / 100 }, { text: b, weight: w }];
  return [{ type: "prompts", prompts }, blendOf(prompts), `${a} + ${b}`];
}

function sendBlend() {
  const m = blendMessage();
  if (!m) return;
  const [msg, value, label] = m;
  edited.delete("prompt");
  edited.delete("prompt2");
  if (playing && stats.control) pendingPrompt = { label, blend: value };
  send("prompts", msg, value);
  blendLabels();
}

function onMessage(msg) {
  switch (msg.type) {
    case "welcome":
      if (retries > 0) notice("Reconnected: back in the same jam.", "info", 3000); // clears "Reconnecting…"
      retries = 0;
      sessionId = msg.session;
      if (msg.control) token = msg.token;
      Object.assign(stats, { session: msg.session, control: msg.control, listeners: msg.listeners });
      joinPlayhead = msg.playhead;
      $("listeners").textContent = msg.listeners;
      listen(msg);
      links();
      controls();
      setState("live", "live");
      lastState = msg.state || lastState;
      if (msg.control) { // what was changed before play, now that we steer
        for (const [field, [m, value]] of preplay) {
          if (field !== "prompts") { send(field, m, value); continue; }
          const blend = blendMessage(); // as the fields show it now (the prompt went in `create`)
          if (blend && blend[0].type === "prompts") send(field, blend[0], blend[1]);
        }
      }
      preplay.clear();
      showState(msg.state);
      break;
    case "state":
      showState(msg.state, { force: snapBack });
      snapBack = false;
      break;
    case "listeners":
      stats.listeners = msg.count;
      $("listeners").textContent = msg.count;
      break;
    case "health":
      if (player && typeof msg.playhead === "number") player.follow(msg.playhead);
      $("rtf").textContent = msg.rtf == null ? "—" : `${msg.rtf.toFixed(2)}× real time`;
      $("rtf").classList.toggle("bad", msg.behind || (msg.rtf != null && msg.rtf < 1));
      if (msg.behind) notice("The server is falling behind — the music may pause while it catches up.", "warn", 4000);
      break;
    case "notice": // the server's own trouble, e.g. its session store away for a moment
      stats.notices = (stats.notices || 0) + 1;
      notice(msg.message, msg.level === "info" ? "info" : "warn", msg.level === "info" ? 3000 : 0);
      break;
    case "dropped":
      stats.dropped += msg.count;
      notice(`Your connection is too slow: skipped ${msg.count} chunk${msg.count === 1 ? "" : "s"}.`, "warn");
      break;
    case "error":
      stats.errors.push(msg);
      if (msg.code === "unknown_session") {
        ended(); // a guest must never silently become the controller of a jam of its own
      } else if (msg.code === "bad_token") {
        notice("That control link is not valid; listening instead.", "info");
        token = null;
        stream.send(hello());
      } else {
        notice(msg.message, "error");
        // Refused: the controls go back to what the session plays (the `state` that follows
        // says so again; an older server sends none).
        snapBack = true;
        stats.snapBacks++;
        pendingPrompt = null;
        if (lastState) showState(lastState, { force: true });
      }
      break;
  }
}

/** After `welcome`: play its codec, on a ring running at that codec's clock. */
function listen(msg) {
  const codec = msg.codec === "opus" ? "opus" : "pcm"; // an older server says nothing: PCM
  stats.codec = codec;
  const streamRate = msg.sample_rate || info.sample_rate, channels = msg.channels || info.channels;
  const rate = codec === "opus" ? msg.codec_rate || OPUS_RATE : streamRate;
  if (player.sampleRate !== rate || player.streamRate !== streamRate || player.channels !== channels) {
    player.stop(); // guessed wrong at the click (the server chose otherwise): start again
    startPlayer(rate, streamRate, channels);
  }
  if (opus) opus.close();
  opus = null;
  if (codec !== "opus") return;
  const dec = (opus = new OpusDecoder({
    channels,
    codecRate: rate,
    preSkip: msg.pre_skip || 0,
    onAudio: (position, planes, splice) => {
      if (dec !== opus) return;
      const start = Math.round((joinPlayhead * rate) / streamRate); // trim before the live edge
      const n = planes[0].length;
      if (position + n <= start) return;
      if (position < start) { planes = planes.map((p) => p.subarray(start - position)); position = start; }
      if (splice) player.splice(position, planes, splice.bpm, splice.id);
      else player.pushFloat(position, planes);
    },
    onError: (err) => { stats.errors.push({ code: "decoder", message: String(err && err.message) }); },
  }));
}

function onFrame(frame) {
  if (frame.kind === "image") {
    stats.tiles++;
    view.addTile(frame);
    return;
  }
  stats.chunks++;
  stats.frameBytes += frame.size;
  // A splice: this frame replaces what was received from stream sample `x` on.
  const x = typeof frame.meta.splice === "number" ? frame.meta.splice : null;
  const id = x === null ? 0 : ++spliceSeq;
  if (x !== null) stats.spliceFrames++;
  let { offset } = frame;
  const end = offset + frame.frames;
  if (frame.kind === "opus") {
    stats.bytes += frame.bytes;
    if (end <= joinPlayhead || !opus) return; // a late joiner starts at the live edge
    opus.decode(frame, id); // all of it: its first packet is the decoder's pre-roll; trimmed after
  } else {
    stats.bytes += frame.pcm.byteLength;
    if (end <= joinPlayhead) return;
    let { pcm } = frame;
    if (offset < joinPlayhead) {
      pcm = pcm.subarray((joinPlayhead - offset) * frame.channels);
      offset = joinPlayhead;
    }
    if (x !== null) player.splicePcm(offset, pcm, frame.meta.bpm, id);
    else player.push(offset, pcm);
  }
  if (x !== null) {
    replaceFrom(x, id);
    stats.receivedEnd = end;
  } else {
    stats.receivedEnd = Math.max(stats.receivedEnd, end);
  }
  timeline.push({ offset: Math.max(x ?? offset, joinPlayhead), end, meta: frame.meta });
  if (timeline.length > 400) timeline.splice(0, 100);
}

/** A splice at `x`: the timeline's entries from there on are replaced (kept aside, in case the
 * player has to put the splice in later, on a beat after what it has played). */
function replaceFrom(x, id) {
  const replaced = [];
  for (let i = timeline.length - 1; i >= 0; i--) {
    const t = timeline[i];
    if (t.end <= x) break;
    if (t.offset >= x) { replaced.unshift(t); timeline.splice(i, 1); } else { replaced.unshift({ ...t, offset: x }); t.end = x; }
  }
  spliced.set(id, { x, replaced });
  for (const k of spliced.keys()) { if (spliced.size <= 16) break; spliced.delete(k); }
}

/** The player put splice `id` in at stream sample `at` (later than asked when it came late). */
function onSplice({ id, at, late, position, end }) {
  if (late) stats.lastLateSplice = { at, position, end }; // where it went in, what played and was held
  const rec = spliced.get(id);
  spliced.delete(id);
  if (!rec || at === null || at <= rec.x + 1) return;
  at = Math.round(at);
  // [x, at) still plays what was there: the replacement's entries start at `at`
  for (let i = timeline.length - 1; i >= 0; i--) {
    const t = timeline[i];
    if (t.end <= rec.x) break;
    if (t.offset >= at || t.offset < rec.x) continue;
    if (t.end <= at) timeline.splice(i, 1); else t.offset = at;
  }
  for (const t of rec.replaced) if (t.offset < at) timeline.push({ ...t, end: Math.min(t.end, at) });
  timeline.sort((a, b) => a.offset - b.offset);
}

function onClose(e) {
  stream = null;
  if (!playing) return;
  if (e.code === 4004) { ended(); return; } // reconnecting would only find it gone
  const why = e.code === 4008 ? "your connection fell behind" : e.code === 1001 ? "the server is restarting" : e.code === 1013 ? "the server is busy for a moment" : "the connection dropped";
  notice(`Disconnected: ${why}. Reconnecting…`, "error", 0);
  setState("reconnecting", "reconnecting");
  if (retries++ > 20) { stop(); return; }
  setTimeout(() => { if (playing && !stream) connect(); }, Math.min(5000, 500 * retries));
}

/** The jam is gone: stop and say so; only the "Start a new jam" button creates another. */
function ended() {
  stop();
  stats.ended = true;
  notice("");
  $("now-prompt").textContent = "this jam has ended";
  $("now-detail").textContent = "";
  $("ended").hidden = false;
  $("new-jam").focus();
}

function startNewJam() {
  sessionId = null;
  token = null;
  $("share").value = "";
  $("control-card").hidden = true;
  history.replaceState(null, "", "/");
  play(); // inside the click, so the AudioContext may start
}

function offersOpus() {
  const served = !info.codecs || info.codecs.includes("opus"); // an older server's info has no list
  return opusOK && !forcePcm && served;
}

function hello() {
  const codecs = offersOpus() ? ["opus", "pcm"] : ["pcm"];
  if (sessionId) return { type: "join", session: sessionId, ...(token ? { token } : {}), codecs };
  const prompt = $("prompt").value.trim();
  return { type: "create", ...(prompt ? { prompt } : {}), ...($("seed").value ? { seed_image: $("seed").value } : {}), codecs };
}

function connect() {
  joinPlayhead = 0;
  stats.receivedEnd = 0;
  if (opus) { opus.close(); opus = null; } // a fresh decoder for every connection
  player.reset();
  stream = new Stream({ hello: hello(), onMessage, onFrame, onClose });
  stream.open();
  setState("connecting", "connecting");
}

async function play() {
  if (!info) return;
  playing = true;
  stats.ended = false;
  $("ended").hidden = true;
  // The AudioContext is made inside the click (autoplay rules), at the clock of the codec
  // we are about to ask for; `welcome` replaces it in the rare case the server picks another.
  startPlayer(offersOpus() ? OPUS_RATE : info.sample_rate, info.sample_rate, info.channels);
  view.clear();
  timeline.length = 0;
  connect();
  controls();
}

async function startPlayer(sampleRate, streamRate, channels) {
  const mine = (player = new Player({
    sampleRate, streamRate, channels,
    onStats: (s) => { if (player === mine) Object.assign(stats, s); },
    onSplice: (s) => { if (player === mine) onSplice(s); },
  }));
  try { await mine.start(); } catch (err) {
    // A player stopped while starting (the jam had ended) is no failure to report.
    if (playing && player === mine) { notice(`Audio failed to start: ${err.message}`, "error", 0); stop(); }
  }
}

function stop() {
  playing = false;
  if (stream) { stream.close(); stream = null; }
  if (opus) { opus.close(); opus = null; }
  if (player) player.stop();
  setState("idle", "offline");
  controls();
  $("now-prompt").textContent = "stopped — press play to rejoin";
}

function audible(position) {
  for (let i = timeline.length - 1; i >= 0; i--) {
    const t = timeline[i];
    if (t.offset <= position) return position < t.end ? t.meta : null;
  }
  return null;
}

function frameLoop() {
  const position = player && playing ? player.position() : -1;
  view.draw(position);
  if (playing && player) {
    const buffered = stats.buffered || 0;
    $("buffer-bar").style.width = `${Math.min(100, (buffered / 4) * 100)}%`;
    $("buffer-bar").dataset.low = buffered < 0.5 ? "1" : "";
    $("buffer-text").textContent = `${buffered.toFixed(1)} s buffered${stats.underruns ? ` · ${stats.underruns} gaps` : ""}`;
    const meta = audible(position);
    if (meta) showAudible(meta);
    if (position >= 0) {
      // The server keeps the session's last 3 minutes: about as much as has played.
      const secs = Math.floor(Math.min(RECORDING_SECONDS, position / player.streamRate));
      $("rec-len").textContent = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
      $("download").disabled = secs < 1 || !sessionId;
    }
  }
  requestAnimationFrame(frameLoop);
}

const blendLabel = (blend) => blend.length > 1
  ? blend.map((p) => `${p.text} ${Math.round(p.weight * 100)}%`).join(" + ") : (blend[0] && blend[0].text) || "";

/** The "now playing" line and `stats.heard`, from the audible chunk's metadata. */
function showAudible(meta) {
  const from = blendOf(meta.prompts, meta.prompt);
  const to = blendOf(meta.prompts_to, meta.prompt_to || meta.prompt);
  const moving = !sameBlend(from, to) || (meta.prompt_to && meta.prompt_to !== meta.prompt);
  const now = meta.alpha > 0 && moving ? `${blendLabel(from)} → ${blendLabel(to)}` : blendLabel(from);
  const done = meta.alpha >= 1;
  stats.prompt = done ? meta.prompt_to : meta.prompt;
  stats.seedImage = meta.seed_image;
  stats.heard = {
    prompt: stats.prompt, prompts: done ? to : from, seed_image: meta.seed_image, bpm: meta.bpm,
    strength: meta.strength, guidance: meta.guidance, seed: meta.seed, alpha: meta.alpha,
    tile: meta.tile, seq: meta.seq,
  };
  if ($("now-prompt").textContent !== now) $("now-prompt").textContent = now;
  const beat = meta.seed_image && meta.seed_image.replaceAll("_", " ");
  const bpm = typeof meta.bpm === "number" ? `${fmtBpm(meta.bpm)} bpm` : "";
  const bits = [beat, bpm, `seed ${meta.seed}`];
  if (moving) bits.push(`${Math.round(meta.alpha * 100)}% of the way`);
  if (pendingPrompt && (sameBlend(to, pendingPrompt.blend) || sameBlend(from, pendingPrompt.blend))) pendingPrompt = null;
  if (pendingPrompt) bits.push(`next: ${pendingPrompt.label}`);
  const detail = bits.filter(Boolean).join(" · ");
  if ($("now-detail").textContent !== detail) $("now-detail").textContent = detail;
  const tempo = bpm ? `playing ${bpm}` : "—";
  if ($("tempo-info").textContent !== tempo) $("tempo-info").textContent = tempo;
}

/** A prompt from the field or an example: alone, or blended with the second prompt. */
function changePrompt(text) {
  text = clean(text);
  if (!text) return;
  $("prompt").value = text;
  if (!playing) { play(); return; }
  if (!stats.control) return;
  sendBlend();
}

function sendNumber(field, value) {
  if (!Number.isFinite(value)) { if (lastState) showState(lastState, { force: true }); return; }
  send(field, { type: field, value }, value);
}

/** Tap tempo: the average of the last few intervals; sent once the taps stop. */
function tap() {
  const t = performance.now();
  if (taps.length && t - taps[taps.length - 1] > 2000) taps = []; // a new run of taps
  taps.push(t);
  if (taps.length > 5) taps.shift(); // the last four intervals
  $("tap").classList.remove("flash");
  void $("tap").offsetWidth; // restart the flash
  $("tap").classList.add("flash");
  clearTimeout(tapTimer);
  let bpm = null;
  if (taps.length >= 2) {
    const beat = (taps[taps.length - 1] - taps[0]) / (taps.length - 1);
    bpm = Math.round(clamp(60000 / beat, ...BPM_RANGE));
    setBpm(bpm);
  }
  tapTimer = setTimeout(() => {
    tapTimer = null;
    taps = [];
    if (bpm !== null) sendNumber("bpm", bpm);
  }, 1100);
}

/** Range inputs: one under the pointer is not overwritten by `state` until released. */
function trackDrag(id) {
  $(id).addEventListener("pointerdown", () => { dragging = id; });
}

/** Text fields: typed in, they keep what is typed; left without Enter, they show the state. */
function trackTyping(id, selectOnFocus = false) {
  const el = $(id);
  el.addEventListener("input", () => edited.add(id));
  el.addEventListener("blur", () => setTimeout(() => {
    if (document.activeElement === el || !edited.has(id) || !playing || !lastState) return;
    edited.delete(id);
    showState(lastState);
  }, 250));
  // showing the state, a click selects it all, so typing starts a new prompt
  if (selectOnFocus) el.addEventListener("focus", () => setTimeout(() => { if (!edited.has(id)) el.select(); }, 0));
}

function wireControls() {
  $("prompt-form").onsubmit = (e) => { e.preventDefault(); changePrompt($("prompt").value); };
  $("prompt2-form").onsubmit = (e) => {
    e.preventDefault();
    if (!clean($("prompt2").value)) return;
    sendBlend();
    if (!playing) play();
  };
  $("prompt").addEventListener("input", blendLabels);
  $("prompt2").addEventListener("input", blendLabels);
  $("blend-add").onclick = () => {
    $("blend-panel").hidden = false;
    $("prompt2").value = "";
    setBlend(0.5);
    controls();
    $("prompt2").focus();
  };
  $("blend-remove").onclick = () => {
    const blended = lastState && blendOf(lastState.prompts, lastState.prompt).length > 1;
    $("blend-panel").hidden = true;
    $("prompt2").value = "";
    edited.delete("prompt2");
    controls();
    if (blended || !playing) sendBlend(); // back to the first prompt alone
    $("blend-add").focus();
  };
  $("blend").oninput = blendLabels;
  $("blend").onchange = () => { if (clean($("prompt2").value)) sendBlend(); };
  $("seed").onchange = () => {
    seedInfo();
    if (playing) send("seed_image", { type: "seed_image", name: $("seed").value }, $("seed").value);
  };
  $("strength").oninput = () => { $("strength-out").value = Number($("strength").value).toFixed(2); };
  $("strength").onchange = () => sendNumber("strength", Number($("strength").value));
  $("guidance").oninput = () => { $("guidance-out").value = Number($("guidance").value).toFixed(1); };
  $("guidance").onchange = () => sendNumber("guidance", Number($("guidance").value));
  $("glide").oninput = () => setGlide(Number($("glide").value));
  $("glide").onchange = () => sendNumber("glide", Number($("glide").value));
  $("bpm").oninput = () => { $("bpm-num").value = $("bpm").value; $("bpm-out").value = `${$("bpm").value} bpm`; };
  $("bpm").onchange = () => sendNumber("bpm", Number($("bpm").value));
  // typed as it is: the server refuses a tempo out of range, and says why
  const typedBpm = () => {
    if (!edited.has("bpm-num")) return;
    edited.delete("bpm-num");
    sendNumber("bpm", $("bpm-num").value === "" ? NaN : Number($("bpm-num").value));
  };
  $("bpm-num").onchange = typedBpm;
  $("bpm-num").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); typedBpm(); } });
  $("tap").onclick = tap;
  for (const id of ["blend", "strength", "guidance", "bpm", "glide"]) trackDrag(id);
  const released = () => {
    if (dragging === null) return;
    dragging = null;
    setTimeout(() => { if (lastState && dragging === null) showState(lastState); }, 60);
  };
  window.addEventListener("pointerup", released);
  window.addEventListener("pointercancel", released);
  trackTyping("prompt", true);
  trackTyping("prompt2", true);
  trackTyping("bpm-num");
}

async function init() {
  info = await (await fetch("/api/info")).json();
  opusOK = await canDecodeOpus(info.channels);
  view = new SpectrogramView($("spectrogram"), { sampleRate: info.sample_rate, hopLength: info.hop_length });
  for (const s of info.seeds) $("seed").append(new Option(s.name.replaceAll("_", " "), s.name));
  if (info.default_seed) $("seed").value = info.default_seed;
  seedInfo();
  for (const p of info.examples) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = p;
    b.onclick = () => changePrompt(p);
    $("examples").append(b);
  }
  $("play").onclick = () => (playing ? stop() : play());
  $("new-jam").onclick = startNewJam;
  wireControls();
  document.querySelectorAll("[data-copy]").forEach((b) => {
    b.onclick = async () => {
      const input = $(b.dataset.copy);
      try { await navigator.clipboard.writeText(input.value); } catch { input.select(); document.execCommand("copy"); }
      b.textContent = "copied";
      setTimeout(() => { b.textContent = "copy"; }, 1200);
    };
  });
  $("download").onclick = () => {
    if (!sessionId) return;
    const fmt = $("rec-format").value; // mp3, opus (Ogg Opus) or wav, made by the server
    const a = document.createElement("a");
    a.href = `/recording/${encodeURIComponent(sessionId)}.${fmt}?seconds=${RECORDING_SECONDS}`;
    a.download = `jam-${sessionId}.${fmt}`;
    a.click();
  };
  if (sessionId) {
    $("share").value = `${location.origin}/s/${encodeURIComponent(sessionId)}`;
    $("now-prompt").textContent = token ? "press play to take the controls" : "press play to join the jam";
  }
  controls();
  requestAnimationFrame(frameLoop);
  setState("idle", "offline");
}

init().catch((err) => notice(`Could not reach the server: ${err.message}`, "error", 0));
