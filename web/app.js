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
});
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
let playing = false, joinPlayhead = 0, retries = 0, pendingPrompt = null, noticeTimer = null;
const timeline = []; // [{offset, end, meta}] of received chunks, to label what is audible

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

function showState(s) {
  if (!s) return;
  if (s.seed_image && $("seed").value !== s.seed_image) $("seed").value = s.seed_image;
  if (typeof s.strength === "number") { $("strength").value = s.strength; $("strength-out").value = s.strength.toFixed(2); }
  if (s.prompt && document.activeElement !== $("prompt") && !$("prompt").value) $("prompt").placeholder = s.prompt;
  seedInfo();
}

function seedInfo() {
  const seed = info && info.seeds.find((s) => s.name === $("seed").value);
  $("seed-info").textContent = seed ? [seed.bpm && `${Math.round(seed.bpm)} bpm`, seed.description].filter(Boolean).join(" · ") : "";
}

function controls() {
  const canSteer = !playing || stats.control;
  for (const id of ["prompt", "seed", "strength"]) $(id).disabled = !canSteer;
  document.querySelectorAll(".chips button, .go").forEach((b) => { b.disabled = !canSteer; });
  $("listen-only").hidden = canSteer;
}

function onMessage(msg) {
  switch (msg.type) {
    case "welcome":
      retries = 0;
      sessionId = msg.session;
      if (msg.control) token = msg.token;
      Object.assign(stats, { session: msg.session, control: msg.control, listeners: msg.listeners });
      joinPlayhead = msg.playhead;
      $("listeners").textContent = msg.listeners;
      listen(msg);
      links();
      showState(msg.state);
      controls();
      setState("live", "live");
      break;
    case "state":
      showState(msg.state);
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
    onAudio: (position, planes) => {
      if (dec !== opus) return;
      const start = Math.round((joinPlayhead * rate) / streamRate); // trim before the live edge
      const n = planes[0].length;
      if (position + n <= start) return;
      if (position < start) { planes = planes.map((p) => p.subarray(start - position)); position = start; }
      player.pushFloat(position, planes);
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
  let { offset } = frame;
  const end = offset + frame.frames;
  if (frame.kind === "opus") {
    stats.bytes += frame.bytes;
    if (end <= joinPlayhead || !opus) return; // a late joiner starts at the live edge
    opus.decode(frame); // all of it: its first packet is the decoder's pre-roll; trimmed after
  } else {
    stats.bytes += frame.pcm.byteLength;
    if (end <= joinPlayhead) return;
    let { pcm } = frame;
    if (offset < joinPlayhead) {
      pcm = pcm.subarray((joinPlayhead - offset) * frame.channels);
      offset = joinPlayhead;
    }
    player.push(offset, pcm);
  }
  stats.receivedEnd = Math.max(stats.receivedEnd, end);
  timeline.push({ offset: Math.max(offset, joinPlayhead), end, meta: frame.meta });
  if (timeline.length > 400) timeline.splice(0, 100);
}

function onClose(e) {
  stream = null;
  if (!playing) return;
  if (e.code === 4004) { ended(); return; } // reconnecting would only find it gone
  const why = e.code === 4008 ? "your connection fell behind" : e.code === 1001 ? "the server is restarting" : "the connection dropped";
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
  const mine = (player = new Player({ sampleRate, streamRate, channels, onStats: (s) => { if (player === mine) Object.assign(stats, s); } }));
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
    if (meta) {
      const now = meta.alpha > 0 && meta.prompt_to && meta.prompt_to !== meta.prompt
        ? `${meta.prompt} → ${meta.prompt_to}` : meta.prompt;
      stats.prompt = meta.alpha >= 1 ? meta.prompt_to : meta.prompt;
      stats.seedImage = meta.seed_image;
      if ($("now-prompt").textContent !== now) $("now-prompt").textContent = now;
      const beat = meta.seed_image && meta.seed_image.replaceAll("_", " ");
      const bits = [beat, meta.bpm && `${Math.round(meta.bpm)} bpm`, `seed ${meta.seed}`];
      if (meta.prompt_to && meta.prompt_to !== meta.prompt) bits.push(`${Math.round(meta.alpha * 100)}% of the way`);
      if (pendingPrompt && (meta.prompt_to === pendingPrompt || meta.prompt === pendingPrompt)) pendingPrompt = null;
      if (pendingPrompt) bits.push(`next: ${pendingPrompt}`);
      $("now-detail").textContent = bits.filter(Boolean).join(" · ");
    }
    if (position >= 0) {
      // The server keeps the session's last 3 minutes: about as much as has played.
      const secs = Math.floor(Math.min(RECORDING_SECONDS, position / player.streamRate));
      $("rec-len").textContent = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
      $("download").disabled = secs < 1 || !sessionId;
    }
  }
  requestAnimationFrame(frameLoop);
}

function changePrompt(text) {
  text = text.trim();
  if (!text) return;
  if (!playing) { $("prompt").value = text; play(); return; }
  if (!stats.control) return;
  pendingPrompt = text;
  stream && stream.send({ type: "prompt", text });
  $("prompt").value = "";
  $("prompt").placeholder = text;
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
  $("prompt-form").onsubmit = (e) => { e.preventDefault(); changePrompt($("prompt").value); };
  $("seed").onchange = () => { seedInfo(); if (playing && stats.control) stream.send({ type: "seed_image", name: $("seed").value }); };
  $("strength").oninput = () => { $("strength-out").value = Number($("strength").value).toFixed(2); };
  $("strength").onchange = () => { if (playing && stats.control) stream.send({ type: "strength", value: Number($("strength").value) }); };
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
