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

        # The other formats on the menu: Ogg Opus and WAV.
        for fmt, magic in (("opus", b"OggS"), ("wav", b"RIFF")):
            await page.select_option("#rec-format", fmt)
            async with page.expect_download() as download_info:
                await page.click("#download")
            download = await download_info.value
            assert download.suggested_filename == f"jam-{s['session']}.{fmt}"
            path = tmp_path / f"jam.{fmt}"
            await download.save_as(path)
            assert path.read_bytes()[:4] == magic
            got = len(AudioSegment.from_file(path, format="ogg" if fmt == "opus" else fmt))
            assert abs(got / 1000 - seconds) <= 1.5, (fmt, got)

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
