"""The page in a real headless Chromium: play, change the prompt live, hear 20 s without gaps.

The server is real (port 0) with the deterministic stand-in engine; the page's own counters
(``window.jamStats``, fed by the AudioWorklet) tell whether non-silent samples reached the output.
The host tab listens over Opus (WebCodecs), a second tab over PCM (``?codec=pcm``): both play
the same stream position at the same moment, Opus at a fraction of the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
from jam.serve.server import JamServer
from jam.serve.settings import ServerSettings, SessionSettings
from tests.standin import standin_app

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # Two tabs stand for two people's browsers: neither runs at a background tab's priority
    # (on a busy 2-core machine that tab's audio fell behind the live edge).
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
]
LISTEN_SECONDS = 20.0
WIDTH = 512
# Opus audio bytes per second the host tab may receive: the server's Opus (at most 64 kbit/s)
# plus the packets' 2-byte lengths (100 B/s at 50 packets/s).
OPUS_BYTES_PER_SECOND = 8_500
SYNC_SECONDS = 0.1  # how far apart the two tabs may play the same stream
SETTINGS = ServerSettings(port=0, session=SessionSettings(lead=1.5))

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package")


async def stats(page) -> dict:
    return await page.evaluate(
        "() => ({...window.jamStats, errors: window.jamStats.errors.length})"
    )


async def now_playing(page) -> tuple[float, float]:
    """(stream sample playing now, wall-clock seconds when it was read) in one tab."""
    now = await page.evaluate("() => window.jamNow()")
    return now["position"], now["at"] / 1000


@contextlib.asynccontextmanager
async def browsing(
    tmp_path: Path, settings: ServerSettings
) -> AsyncIterator[tuple[JamServer, Any, Any, list[str]]]:
    """A real server (stand-in engine) and a headless Chromium page; fails on page errors."""
    from playwright.async_api import async_playwright

    app = standin_app(SeedLibrary(TINY_PARAMS, width=WIDTH))
    server = await app.serve(settings)
    errors: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await launch(pw, tmp_path / "profile")
            try:
                page = browser.pages[0] if browser.pages else await browser.new_page()
                page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
                yield server, browser, page, errors
            finally:
                await browser.close()
    finally:
        await server.close()
        await app.close()
    assert not errors, errors


async def launch(pw: Any, profile: Path) -> Any:
    """Debian's Chromium, headless, allowed to play audio without a real user gesture."""
    return await pw.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=ARGS,
        viewport={"width": 1200, "height": 860},
        accept_downloads=True,
    )


async def test_page_plays_without_gaps_and_follows_live_prompt_and_beat_changes(
    tmp_path: Path,
) -> None:
    async with browsing(tmp_path, SETTINGS) as (server, browser, page, errors):
        await page.goto(server.url)
        await page.wait_for_selector("#seed option", state="attached")
        assert await page.locator("#examples button").count() >= 3

        clicked = time.monotonic()
        await page.click("#play")
        await page.wait_for_function("() => window.jamStats.nonSilentFrames > 0", timeout=20_000)
        first_audio = time.monotonic() - clicked
        s = await stats(page)
        assert s["state"] == "live" and s["control"] is True
        assert s["codec"] == "opus", "a browser with WebCodecs listens over Opus"
        assert "/s/" in page.url and "#control=" in page.url

        # Change the prompt live: the audible chunks follow it.
        await page.fill("#prompt", "glass harmonica choir")
        sent = time.monotonic()
        await page.press("#prompt", "Enter")
        await page.wait_for_function(
            "() => window.jamStats.prompt === 'glass harmonica choir'", timeout=30_000
        )
        heard = time.monotonic() - sent

        # A second tab on the share link hears the same session.
        share = await page.input_value("#share")
        other = await browser.new_page()
        other.on("pageerror", lambda e: errors.append(f"pageerror (pcm tab): {e}"))
        await other.goto(share + "?codec=pcm")
        await other.click("#play")
        await other.wait_for_function("() => window.jamStats.nonSilentFrames > 0", timeout=15_000)
        s = await stats(other)
        assert s["control"] is False
        assert s["codec"] == "pcm", "?codec=pcm forces PCM"
        await page.wait_for_function("() => window.jamStats.listeners === 2", timeout=5_000)
        assert await other.locator("#prompt").is_disabled()

        # Listen for 20 s, changing the beat on the way: both tabs hear tiles made from
        # the new seed loop, and the worklet's counters show sound throughout, no gaps.
        before = await stats(page)
        other_before = await stats(other)
        listening = time.monotonic()
        assert before["seedImage"] == "four_on_floor"
        await page.select_option("#seed", "half_time")
        for tab in (page, other):
            await tab.wait_for_function(
                "() => window.jamStats.seedImage === 'half_time'", timeout=15_000
            )
        assert await other.input_value("#seed") == "half_time", "listeners see the beat"
        beat_heard = time.monotonic() - listening
        await asyncio.sleep(max(0.0, LISTEN_SECONDS - beat_heard))
        after = await stats(page)
        other_after = await stats(other)
        listened = time.monotonic() - listening
        rate = TINY_PARAMS.sample_rate
        played = after["framesPlayed"] - before["framesPlayed"]
        loud = after["nonSilentFrames"] - before["nonSilentFrames"]
        print(
            f"first audio {first_audio:.2f} s after play; prompt heard {heard:.2f} s "
            f"after Enter; beat heard {beat_heard:.2f} s after the change; "
            f"{played / rate:.1f} s played, {loud / max(played, 1):.0%} "
            f"non-silent, underruns {after['underruns']}"
        )
        assert played >= 0.9 * LISTEN_SECONDS * rate, "the output clock kept pulling audio"
        assert loud >= 0.8 * played, "what played was sound, not silence"
        assert after["underruns"] == 0, "no gaps"
        assert other_after["underruns"] == 0
        assert other_after["framesPlayed"] - other_before["framesPlayed"] >= (
            0.9 * LISTEN_SECONDS * rate
        )
        assert after["errors"] == 0 and other_after["errors"] == 0

        # Opus costs a fraction of PCM's bytes (16-bit at the stream rate): bytes per
        # second of stream received in the window (the lead makes wall time inexact).
        opus_s = (after["receivedEnd"] - before["receivedEnd"]) / rate
        pcm_s = (other_after["receivedEnd"] - other_before["receivedEnd"]) / rate
        opus_bps = (after["bytes"] - before["bytes"]) / opus_s
        pcm_bps = (other_after["bytes"] - other_before["bytes"]) / pcm_s
        opus_wire = (after["frameBytes"] - before["frameBytes"]) / opus_s
        pcm_wire = (other_after["frameBytes"] - other_before["frameBytes"]) / pcm_s
        print(
            f"received {opus_s:.1f} s (opus) and {pcm_s:.1f} s (pcm) of stream in {listened:.1f} s"
        )
        print(
            f"audio received: opus {opus_bps:.0f} B/s ({opus_bps * 8 / 1000:.1f} kbit/s; "
            f"{opus_wire:.0f} B/s with headers and metadata), pcm {pcm_bps:.0f} B/s "
            f"({pcm_wire:.0f} B/s framed); opus/pcm {opus_bps / pcm_bps:.1%}"
        )
        assert pcm_bps >= 0.9 * 2 * rate, "PCM is 16-bit at the stream rate"
        assert 0 < opus_bps <= OPUS_BYTES_PER_SECOND
        assert opus_wire <= OPUS_BYTES_PER_SECOND + 1_500, "metadata stays small"

        # Both tabs play the same stream sample at the same moment.
        (opus_pos, opus_at), (pcm_pos, pcm_at) = await asyncio.gather(
            now_playing(page), now_playing(other)
        )
        apart = (opus_pos - pcm_pos) / rate - (opus_at - pcm_at)
        print(
            f"playing now: opus tab at {opus_pos / rate:.3f} s, pcm tab at "
            f"{pcm_pos / rate:.3f} s, read {1000 * (opus_at - pcm_at):+.1f} ms apart: "
            f"opus {1000 * apart:+.1f} ms ahead"
        )
        assert opus_pos > 0 and pcm_pos > 0
        assert abs(apart) <= SYNC_SECONDS

        # Download the recording (the server encodes it; MP3 is the default).
        assert await page.input_value("#rec-format") == "mp3"
        s = await stats(page)
        async with page.expect_download() as download_info:
            await page.click("#download")
        download = await download_info.value
        assert download.suggested_filename == f"jam-{s['session']}.mp3"
        mp3 = tmp_path / "jam.mp3"
        await download.save_as(mp3)
        from pydub import AudioSegment

        seconds = len(AudioSegment.from_file(mp3, format="mp3")) / 1000
        # The session records what it publishes: up to its lead past what has played.
        held = min(180.0, s["receivedEnd"] / rate)
        print(
            f"recording: {seconds:.2f} s of MP3 ({mp3.stat().st_size} bytes); "
            f"the session published {held:.2f} s, played {s['position'] / rate:.2f} s"
        )
        assert abs(seconds - held) <= 1.0

        # The other formats on the menu: Ogg Opus and WAV, each as long as what the session
        # had published when it was asked for (it plays on while the MP3 is made and read).
        for fmt, magic in (("opus", b"OggS"), ("wav", b"RIFF")):
            await page.select_option("#rec-format", fmt)
            held = min(180.0, (await stats(page))["receivedEnd"] / rate)
            async with page.expect_download() as download_info:
                await page.click("#download")
            download = await download_info.value
            assert download.suggested_filename == f"jam-{s['session']}.{fmt}"
            path = tmp_path / f"jam.{fmt}"
            await download.save_as(path)
            assert path.read_bytes()[:4] == magic
            got = len(AudioSegment.from_file(path, format="ogg" if fmt == "opus" else fmt))
            assert abs(got / 1000 - held) <= 1.0, (fmt, got, held)

        shot = tmp_path / "jam.png"
        await page.screenshot(path=str(shot))
        shutil.copy(shot, "/tmp/jam_screenshot.png")
        await other.set_viewport_size({"width": 390, "height": 844})
        await other.screenshot(path=str(tmp_path / "jam_phone.png"), full_page=True)
        shutil.copy(tmp_path / "jam_phone.png", "/tmp/jam_screenshot_phone.png")
        scroll = await other.evaluate("() => document.documentElement.scrollWidth")
        assert scroll <= 390, "no sideways scrolling at phone width"


async def test_page_offering_opus_to_a_pcm_only_server_plays_pcm(tmp_path: Path) -> None:
    """The page asks for Opus (its /api/info made to look like an older server's, without
    ``codecs``); the server, Opus switched off, answers PCM: the page plays that, no gaps."""
    pcm_only = dataclasses.replace(SETTINGS, bitrate=0)
    async with browsing(tmp_path, pcm_only) as (server, _, page, _errors):

        async def without_codecs(route: Any) -> None:
            response = await route.fetch()
            info = await response.json()
            assert info.pop("codecs") == ["pcm"]
            await route.fulfill(response=response, json=info)

        await page.route("**/api/info", without_codecs)
        await page.goto(server.url)
        await page.wait_for_selector("#seed option", state="attached")
        await page.click("#play")
        await page.wait_for_function("() => window.jamStats.nonSilentFrames > 0", timeout=20_000)
        before = await stats(page)
        assert before["codec"] == "pcm"
        await asyncio.sleep(4.0)
        after = await stats(page)
        rate = TINY_PARAMS.sample_rate
        assert after["framesPlayed"] - before["framesPlayed"] >= 3.5 * rate
        assert after["underruns"] == 0 and after["errors"] == 0
        assert after["bytes"] - before["bytes"] >= 2 * 3.5 * rate, "16-bit PCM"


async def test_link_to_an_ended_jam_says_so_and_creates_a_jam_only_when_asked(
    tmp_path: Path,
) -> None:
    """A guest on a dead share link must not silently become the controller of a new jam."""
    async with browsing(tmp_path, SETTINGS) as (server, _, page, _errors):
        await page.goto(server.url + "s/no-such-jam")
        await page.wait_for_selector("#seed option", state="attached")
        await page.click("#play")
        await page.wait_for_function("() => window.jamStats.ended === true", timeout=5_000)

        ended = page.locator("#ended")
        button = page.get_by_role("button", name="Start a new jam")
        assert await ended.is_visible()
        assert "This jam has ended." in await ended.inner_text()
        assert await button.is_visible()
        await asyncio.sleep(0.5)  # time enough for a wrongly sent create to land
        assert server.hub.sessions == {}, "no jam was created behind the guest's back"
        s = await stats(page)
        assert s["state"] == "idle" and s["control"] is False
        assert "/s/no-such-jam" in page.url
        await page.screenshot(path="/tmp/jam_ended.png")

        await button.click()
        await page.wait_for_function("() => window.jamStats.nonSilentFrames > 0", timeout=8_000)
        s = await stats(page)
        assert s["control"] is True and s["ended"] is False
        assert not await ended.is_visible()
        assert list(server.hub.sessions) == [s["session"]]
        assert f"/s/{s['session']}#control=" in page.url

        # The server drops the jam (as a restart would): the page reconnects, finds it
        # gone and says so again; even its controller does not get a new one unasked.
        await server.hub.stop_session(s["session"])
        await page.wait_for_function("() => window.jamStats.ended === true", timeout=5_000)
        await asyncio.sleep(0.3)
        assert await button.is_visible()
        assert server.hub.sessions == {}


# -- every control, shown truthfully in every tab, and heard --------------------------------


async def set_range(page: Any, selector: str, value: float) -> None:
    """Move a slider as the keyboard would: its value, then ``input`` and ``change``."""
    await page.eval_on_selector(
        selector,
        """(el, v) => {
            el.value = v;
            el.dispatchEvent(new Event("input", {bubbles: true}));
            el.dispatchEvent(new Event("change", {bubbles: true}));
        }""",
        value,
    )


async def drag_range(page: Any, selector: str, fraction: float) -> float:
    """Drag a slider's thumb with the mouse to ``fraction`` of its width; its new value."""
    box = await page.locator(selector).bounding_box()
    value = float(await page.input_value(selector))
    lo = float(await page.get_attribute(selector, "min"))
    hi = float(await page.get_attribute(selector, "max"))
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * (value - lo) / (hi - lo), y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * fraction, y, steps=5)
    await page.mouse.up()
    return float(await page.input_value(selector))


async def in_both(tabs: tuple[Any, ...], js: str, arg: Any = None, timeout: float = 15_000) -> None:
    await asyncio.gather(*(t.wait_for_function(js, arg=arg, timeout=timeout) for t in tabs))


HEARD = "(v) => window.jamStats.heard && window.jamStats.heard.{field} === v"
HEARD_NEAR = "(v) => window.jamStats.heard && Math.abs(window.jamStats.heard.{field} - v) < {eps}"
STATE_NEAR = (
    "(v) => window.jamStats.session_state && "
    "Math.abs(window.jamStats.session_state.{field} - v) < 1e-3"
)


async def test_every_control_change_shows_in_controller_and_listener_tabs_and_is_heard_by_both(
    tmp_path: Path,
) -> None:
    """A controller tab (Opus) and a listener on the share link (PCM). The controller changes
    glide, prompt, a two-prompt blend, tempo (tap), beat, strength (mouse drag) and guidance:
    each shows in both tabs' controls (read-only for the listener) and is heard there (the
    audible chunk's metadata names it), with no gaps; after all the splices both tabs hold the
    same chunks at the same stream offsets. (The splice margin is wider than the product's
    0.2 s: on a loaded 2-core CI machine one splice in six once reached a tab 18 ms too late,
    and the page put it on the next beat; here the test asks every splice to be in time.)"""
    settings = dataclasses.replace(SETTINGS, session=SessionSettings(lead=1.5, splice_margin=0.35))
    async with browsing(tmp_path, settings) as (server, browser, page, errors):
        await page.goto(server.url)
        await page.wait_for_selector("#seed option", state="attached")
        await page.click("#play")
        await page.wait_for_function("() => window.jamStats.nonSilentFrames > 0", timeout=20_000)
        other = await browser.new_page()
        other.on("pageerror", lambda e: errors.append(f"pageerror (listener): {e}"))
        await other.goto(await page.input_value("#share") + "?codec=pcm")
        await other.click("#play")
        await other.wait_for_function("() => window.jamStats.nonSilentFrames > 0", timeout=15_000)
        tabs = (page, other)
        assert (await stats(other))["control"] is False
        for control in ("#prompt", "#strength", "#guidance", "#bpm", "#bpm-num", "#tap", "#glide"):
            assert await other.locator(control).is_disabled(), control
        assert not await page.locator("#bpm").is_disabled()
        started = time.monotonic()

        # glide 0: later changes are heard on the next reachable beat
        await set_range(page, "#glide", 0)
        await in_both(tabs, STATE_NEAR.format(field="glide"), 0)
        assert await other.input_value("#glide") == "0"

        # the prompt
        await page.fill("#prompt", "glass harmonica choir")
        await page.press("#prompt", "Enter")
        await in_both(tabs, HEARD.format(field="prompt"), "glass harmonica choir")
        assert await other.input_value("#prompt") == "glass harmonica choir"
        assert await other.locator("#blend-panel").is_hidden()

        # a blend of two prompts, 70/30
        await page.click("#blend-add")
        await page.fill("#prompt2", "deep dub bass")
        await page.eval_on_selector(
            "#blend", "el => { el.value = 0.3; el.dispatchEvent(new Event('input')); }"
        )
        await page.press("#prompt2", "Enter")
        blend_heard = """() => {
            const h = window.jamStats.heard;
            const w = (t) => (h.prompts.find((p) => p.text === t) || {weight: -1}).weight;
            return h && h.prompts.length === 2 && Math.abs(w("glass harmonica choir") - 0.7) < 0.02
                && Math.abs(w("deep dub bass") - 0.3) < 0.02;
        }"""
        await in_both(tabs, blend_heard)
        assert await other.locator("#blend-panel").is_visible()
        assert await other.input_value("#prompt2") == "deep dub bass"
        assert abs(float(await other.input_value("#blend")) - 0.3) < 0.01
        assert await other.locator("#prompt2").is_disabled()
        assert await other.locator("#blend").is_disabled()

        # the tempo, tapped: four taps 0.4 s apart (timed in the page: Playwright's clicks are
        # too slow to keep time)
        await page.evaluate(
            """() => new Promise((done) => {
                let n = 0;
                const tap = () => {
                    document.getElementById("tap").click();
                    if (++n < 4) setTimeout(tap, 400); else done();
                };
                tap();
            })"""
        )
        await page.wait_for_function("() => window.jamStats.session_state.bpm > 120", timeout=5_000)
        bpm = (await stats(page))["session_state"]["bpm"]
        assert 135 <= bpm <= 150, f"four taps 0.4 s apart are 150 bpm (timers run late), not {bpm}"
        # played within 0.5%: a tile stretched to it is a whole number of spectrogram columns
        await in_both(tabs, HEARD_NEAR.format(field="bpm", eps=0.005 * bpm), bpm)
        for tab in tabs:
            assert float(await tab.input_value("#bpm-num")) == bpm
            played = (await stats(tab))["heard"]["bpm"]
            shown = str(round(played)) if abs(played - round(played)) < 0.05 else f"{played:.1f}"
            assert f" {shown} bpm" in await tab.inner_text("#now-detail"), "the tempo played"

        # the beat
        await page.select_option("#seed", "half_time")
        await in_both(tabs, HEARD.format(field="seed_image"), "half_time")
        assert await other.input_value("#seed") == "half_time"

        # strength, dragged with the mouse
        strength = await drag_range(page, "#strength", 0.3)
        assert abs(strength - 0.75) > 0.1, "the drag moved the slider"
        await in_both(tabs, HEARD_NEAR.format(field="strength", eps=1e-3), strength)
        assert float(await other.input_value("#strength")) == strength

        # guidance
        await set_range(page, "#guidance", 12)
        await in_both(tabs, HEARD_NEAR.format(field="guidance", eps=1e-3), 12)
        assert float(await other.input_value("#guidance")) == 12
        changed = time.monotonic() - started

        # Both tabs hold the same chunks at the same stream offsets: at the middle of each chunk
        # the listener (PCM: chunk-exact offsets) holds, the controller (Opus, its frames up to
        # a packet earlier) holds the same chunk.
        await asyncio.sleep(1.0)
        rate = TINY_PARAMS.sample_rate
        held = await asyncio.gather(*(t.evaluate("() => window.jamHeld()") for t in tabs))
        ends = [max(h["end"] for h in hs) for hs in held]
        # from the listener's second chunk (its first is cut at the live edge it joined at)
        common = (held[1][1]["offset"], min(ends) - int(0.3 * rate))

        def at(entries: list[dict], sample: float) -> dict | None:
            return next((e for e in entries if e["offset"] <= sample < e["end"]), None)

        def ident(entry: dict | None) -> tuple | None:
            return entry and (entry["seq"], entry["tile"], entry["prompt"], entry["bpm"])

        compared, differ = 0, []
        for chunk in held[1]:
            mid = (chunk["offset"] + chunk["end"]) / 2
            if not common[0] <= mid < common[1] or chunk["end"] - mid < 0.025 * rate:
                continue  # (an Opus frame's end is up to a 20 ms packet before its chunk's)
            compared += 1
            if ident(mine := at(held[0], mid)) != ident(chunk):
                differ.append((mid, ident(mine), ident(chunk)))

        s = [await stats(t) for t in tabs]
        print(
            f"all changes heard in {changed:.1f} s; splices: controller {s[0]['splices']} "
            f"(late {s[0]['lateSplices']}), listener {s[1]['splices']} "
            f"(late {s[1]['lateSplices']}); {compared} chunks compared"
        )
        assert s[0]["spliceFrames"] >= 5, "the changes were spliced in"
        for name, t, hs in zip(("controller", "listener"), s, held, strict=True):
            cuts = [h["splice"] for h in hs if h["splice"] is not None]
            assert t["underruns"] == 0, f"no gaps ({name}: at {t['underrunAt']}; splices {cuts})"
            assert t["errors"] == 0
            assert t["splices"] == t["spliceFrames"] == s[0]["spliceFrames"], name
            late = t.get("lastLateSplice")
            assert t["lateSplices"] == 0, f"a splice came after the {name} played past it: {late}"
        assert compared >= 20
        assert not differ, f"(stream sample, controller's chunk, listener's chunk): {differ}"
        await page.screenshot(path=str(tmp_path / "controls.png"), full_page=True)
        await other.screenshot(path=str(tmp_path / "listener.png"), full_page=True)
        shutil.copy(tmp_path / "controls.png", "/tmp/jam_screenshot_controls.png")
        shutil.copy(tmp_path / "listener.png", "/tmp/jam_screenshot_listener.png")


async def test_refused_changes_snap_the_controls_back_and_say_why(tmp_path: Path) -> None:
    """A tempo out of range and a prompt past the rate limit are refused by the server: the
    page shows its reason and its controls show the session's state again, not what was typed."""
    async with browsing(tmp_path, SETTINGS) as (server, _, page, _errors):
        await page.goto(server.url)
        await page.wait_for_selector("#seed option", state="attached")
        await page.click("#play")
        await page.wait_for_function("() => window.jamStats.session_state !== null", timeout=20_000)
        state = (await stats(page))["session_state"]

        # typed out of range
        await page.fill("#bpm-num", "300")
        await page.press("#bpm-num", "Enter")
        await page.wait_for_function("() => window.jamStats.errors.length === 1", timeout=5_000)
        error = (await page.evaluate("() => window.jamStats.errors"))[0]
        assert error["code"] == "out_of_range"
        await page.wait_for_function(
            "(v) => document.getElementById('bpm-num').value === String(v)",
            arg=round(state["bpm"], 1),
            timeout=2_000,
        )
        assert await page.inner_text("#notice") == error["message"]
        assert await page.locator("#notice").is_visible()

        # one prompt change more than the limit allows (6 per 10 s)
        for i in range(7):
            await page.fill("#prompt", f"prompt number {i}")
            await page.press("#prompt", "Enter")
        await page.wait_for_function("() => window.jamStats.errors.length === 2", timeout=5_000)
        error = (await page.evaluate("() => window.jamStats.errors"))[1]
        assert error["code"] == "rate_limited"
        await page.wait_for_function(
            "() => window.jamStats.session_state.prompt === 'prompt number 5'", timeout=5_000
        )
        await asyncio.sleep(0.3)  # the snap-back state after the error
        assert await page.input_value("#prompt") == "prompt number 5", "snapped back"
        assert await page.inner_text("#notice") == error["message"]
        s = await stats(page)
        assert s["snapBacks"] == 2
        await page.wait_for_function(
            "() => window.jamStats.heard && window.jamStats.heard.prompt === 'prompt number 5'",
            timeout=15_000,
        )
        assert (await stats(page))["underruns"] == 0


# The worklet's ring, run on the page's main thread with the AudioWorklet globals stubbed: fed
# one stream of 1s, then a splice of 2s; `play(n)` pulls n samples as the audio thread would.
RING = """async () => {
    const src = await (await fetch("/player-worklet.js")).text();
    const posted = [];
    class Processor { constructor() { this.port = { postMessage: (m) => posted.push(m) }; } }
    const make = new Function("AudioWorkletProcessor", "registerProcessor", "sampleRate",
        "currentFrame", "currentTime", src + "; return RingPlayer;");
    const RingPlayer = make(Processor, () => {}, 16000, 0, 0);
    const ring = new RingPlayer({ processorOptions: { channels: 1, jitterSeconds: 0.01 } });
    const fill = (v, n) => [new Float32Array(n).fill(v)];
    const played = [];
    const play = (n) => {
        for (let i = 0; i < n; i += 128) {
            const out = [new Float32Array(128)];
            ring.process([], [out]);
            played.push(...out[0]);
        }
    };
    for (let k = 0; k < 4; k++) {
        ring.receive({ type: "pcm", offset: 1000 + 1000 * k, data: fill(1, 1000) });
    }
    play(640); // stream samples 1000..1639 played
    const spliced = [];
    // on time: from stream sample 3000 on, 2s replace the 1s held
    ring.receive({ type: "splice", offset: 3000, data: fill(2, 1000), beat: 500, id: 1 });
    ring.receive({ type: "pcm", offset: 4000, data: fill(2, 1000) });
    spliced.push(posted.filter((m) => m.type === "spliced").pop());
    const held = { written: ring.written, end: ring.endOffset(), late: ring.stats.lateSplices };
    const joined = Array.from(ring.ring[0].slice(1990, 2100)); // ring index 2000 = sample 3000
    // late: from 1100, behind what has played; it goes in at the next beat (500) after the
    // read position and the guard: 1100 + 500·k, here ring index 1100 = stream sample 2100
    ring.receive({ type: "splice", offset: 1100, data: fill(3, 1000), beat: 500, id: 2 });
    ring.receive({ type: "pcm", offset: 2100, data: fill(3, 3000) });
    spliced.push(posted.filter((m) => m.type === "spliced").pop());
    play(4352);
    const end = ring.endOffset();
    return { held, joined, spliced, played, stats: ring.stats, written: ring.written, end };
}"""


async def test_player_ring_splices_replace_held_audio_and_never_rewrite_what_played(
    tmp_path: Path,
) -> None:
    async with browsing(tmp_path, SETTINGS) as (server, _, page, _errors):
        await page.goto(server.url)
        r = await page.evaluate(RING)
    # on time: the ring is cut at 3000 (ring index 2000) and holds 2s from there to 5000
    assert r["held"] == {"written": 4000, "end": 5000, "late": 0}
    on_time = {"type": "spliced", "id": 1, "requested": 3000, "at": 3000, "late": False}
    assert r["spliced"][0] == on_time | {"position": 1640, "end": 4000}
    fade = round(128 / 48000 * 16000)  # the crossfade: ~2.7 ms
    joined = r["joined"]
    assert set(joined[:10]) == {1.0} and set(joined[10 + fade :]) == {2.0}
    assert joined[10 : 10 + fade] == sorted(joined[10 : 10 + fade])
    # late: moved to the beat at stream sample 2100, counted
    late = {"type": "spliced", "id": 2, "requested": 1100, "at": 2100, "late": True}
    assert r["spliced"][1] == late | {"position": 1640, "end": 2100 + 3000}
    assert r["stats"]["splices"] == 2 and r["stats"]["lateSplices"] == 1
    assert r["end"] == 2100 + 3000 and r["written"] == 1100 + 3000
    audio = r["played"]  # ring index i played as sample i (held audio was there at once)
    assert set(audio[:1100]) == {1.0}, "what was held before the late splice point plays"
    ramp = audio[1100 : 1100 + fade]
    assert all(1.0 < v < 3.0 for v in ramp) and ramp == sorted(ramp), "a short crossfade into it"
    assert set(audio[1100 + fade : 4100]) == {3.0}, "then the replacement"
    assert set(audio[4100:]) == {0.0} and r["stats"]["underruns"] == 1, "then the ring ran dry"
