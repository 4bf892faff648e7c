"""The page in headless Chromium against ``jam serve --redis`` (a real subprocess, tiny model):
restart the server under it and the page, on its own, reconnects to the same jam and plays on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jam.cluster.store import Store
from tests.cluster.processes import Jam
from tests.cluster.redis_server import RedisServer, free_port
from tests.serve.test_browser import CHROMIUM, launch

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium package")


async def test_the_page_rejoins_its_jam_by_itself_when_the_server_restarts(
    redis_server: RedisServer, tmp_path: Path, tiny_model_dir: Path
) -> None:
    from playwright.async_api import async_playwright

    if redis_server.process is None:
        redis_server.start()
    store = Store(redis_server.url)
    await store.redis.flushdb()
    await store.close()
    port = str(free_port())
    argv = ["serve", "--redis", redis_server.url, "--model", str(tiny_model_dir), "--port", port]
    servers = [Jam(argv, tmp_path / "before.log").ready()]
    errors: list[str] = []
    try:
        async with async_playwright() as pw:
            browser = await launch(pw, tmp_path / "profile")
            try:
                page = browser.pages[0] if browser.pages else await browser.new_page()
                page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
                await page.goto(f"http://127.0.0.1:{port}/")
                await page.wait_for_selector("#seed option", state="attached")
                await page.click("#play")
                await page.wait_for_function(
                    "() => window.jamStats.nonSilentFrames > 16000", timeout=30_000
                )
                session = await page.evaluate("() => window.jamStats.session")
                servers[0].stop()  # a deploy: SIGTERM, sockets closed with 1001
                await page.wait_for_function(
                    "() => window.jamStats.state === 'reconnecting'", timeout=10_000
                )
                again = Jam(argv, tmp_path / "after.log")
                servers.append(again)
                await asyncio.to_thread(again.ready)  # the page keeps playing meanwhile
                heard = await page.evaluate("() => window.jamStats.nonSilentFrames")
                try:
                    await page.wait_for_function(
                        f"() => window.jamStats.state === 'live'"
                        f" && window.jamStats.nonSilentFrames > {heard} + 16000",
                        timeout=30_000,
                    )
                except Exception as e:  # say what the page and the server saw
                    stats = await page.evaluate(
                        "() => ({...jamStats, session_state: null, heard: null})"
                    )
                    raise AssertionError(
                        f"not playing again: {stats} (heard {heard} at the restart)\n"
                        f"{again.output()}"
                    ) from e
                stats = await page.evaluate("() => window.jamStats")
                await page.screenshot(path=str(tmp_path / "rejoined.png"))
                assert stats["session"] == session
                assert stats["control"] is True, "the control link still steers"
                assert not stats["ended"]
            finally:
                await browser.close()
    finally:
        for server in servers:
            server.stop()
            server.output()
    assert not errors, errors
