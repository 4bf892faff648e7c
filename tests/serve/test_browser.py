"""The page in a real headless Chromium: play, change the prompt live, hear 20 s without gaps.

The server is real (port 0) with the deterministic stand-in engine; the page's own counters
(``window.jamStats``, fed by the AudioWorklet) tell whether non-silent samples reached the output.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from jam.model.blank import TINY_PARAMS
from jam.seeds.library import SeedLibrary
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

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package")


async def stats(page) -> dict:
    return await page.evaluate(
        "() => ({...window.jamStats, errors: window.jamStats.errors.length})"
    )


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
    from playwright.async_api import async_playwright

    app = standin_app(SeedLibrary(TINY_PARAMS, width=WIDTH))
    server = await app.serve(ServerSettings(port=0, session=SessionSettings(lead=1.5)))
    console: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await launch(pw, tmp_path / "profile")
            try:
                page = browser.pages[0] if browser.pages else await browser.new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                await page.goto(server.url)
                await page.wait_for_selector("#seed option", state="attached")
                assert await page.locator("#examples button").count() >= 3

                clicked = time.monotonic()
                await page.click("#play")
                await page.wait_for_function(
                    "() => window.jamStats.nonSilentFrames > 0", timeout=20_000
                )
                first_audio = time.monotonic() - clicked
                s = await stats(page)
                assert s["state"] == "live" and s["control"] is True
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
                await other.goto(share)
                await other.click("#play")
                await other.wait_for_function(
                    "() => window.jamStats.nonSilentFrames > 0", timeout=15_000
                )
                assert (await stats(other))["control"] is False
                await page.wait_for_function("() => window.jamStats.listeners === 2", timeout=5_000)
                assert await other.locator("#prompt").is_disabled()

                # Listen for 20 s, changing the beat on the way: both tabs hear tiles made from
                # the new seed loop, and the worklet's counters show sound throughout, no gaps.
                before = await stats(page)
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
                assert (await stats(other))["underruns"] == 0
                assert after["errors"] == 0

                # Download the recording as WAV.
                async with page.expect_download() as download_info:
                    await page.click("#download")
                download = await download_info.value
                wav = tmp_path / "jam.wav"
                await download.save_as(wav)
                head = wav.read_bytes()[:12]
                assert head[:4] == b"RIFF" and head[8:12] == b"WAVE"
                assert wav.stat().st_size > 44 + 2 * rate * 10

                shot = tmp_path / "jam.png"
                await page.screenshot(path=str(shot))
                shutil.copy(shot, "/tmp/jam_screenshot.png")
                await other.set_viewport_size({"width": 390, "height": 844})
                await other.screenshot(path=str(tmp_path / "jam_phone.png"), full_page=True)
                shutil.copy(tmp_path / "jam_phone.png", "/tmp/jam_screenshot_phone.png")
                scroll = await other.evaluate("() => document.documentElement.scrollWidth")
                assert scroll <= 390, "no sideways scrolling at phone width"
            finally:
                await browser.close()
    finally:
        await server.close()
        if any("pageerror" in line for line in console):
            print("\n".join(console))
    assert not [line for line in console if line.startswith("pageerror")]


async def test_link_to_an_ended_jam_says_so_and_creates_a_jam_only_when_asked(
    tmp_path: Path,
) -> None:
    """A guest on a dead share link must not silently become the controller of a new jam."""
    from playwright.async_api import async_playwright

    app = standin_app(SeedLibrary(TINY_PARAMS, width=WIDTH))
    server = await app.serve(ServerSettings(port=0, session=SessionSettings(lead=1.5)))
    console: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await launch(pw, tmp_path / "profile")
            try:
                page = browser.pages[0] if browser.pages else await browser.new_page()
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
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
                await page.wait_for_function(
                    "() => window.jamStats.nonSilentFrames > 0", timeout=8_000
                )
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
            finally:
                await browser.close()
    finally:
        await server.close()
        await app.close()
    assert not console, console
