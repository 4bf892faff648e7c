"""The ``jam`` command line, run as a user runs it: a real subprocess on a real model folder."""

from __future__ import annotations

import subprocess
import sys
import wave

import numpy as np
import pytest
from pydub import AudioSegment

from tests.cluster.redis_server import free_port


def jam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jam.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_render_writes_a_continuous_wav_of_the_asked_length(tiny_model_dir, tmp_path):
    out = tmp_path / "out.wav"
    result = jam(
        "render",
        "dreamy ambient pads",
        "--to",
        "fast techno",
        "--seconds",
        "12",
        "-o",
        str(out),
        "--model",
        str(tiny_model_dir),
    )
    assert result.returncode == 0, result.stderr
    with wave.open(str(out)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    assert rate == 16000
    assert audio.size == 12 * rate
    win = rate // 20  # 50 ms windows: no silent gap anywhere
    rms = np.sqrt((audio[: audio.size // win * win].reshape(-1, win) ** 2).mean(1))
    assert rms.min() > 0.01
    assert np.abs(audio).max() < 0.99


@pytest.mark.parametrize("suffix", ["mp3", "opus"])
def test_render_writes_mp3_and_opus_through_ffmpeg(tiny_model_dir, tmp_path, suffix):
    out = tmp_path / f"out.{suffix}"
    result = jam(
        "render", "lofi hip hop", "--seconds", "6", "-o", str(out), "--model", str(tiny_model_dir)
    )
    assert result.returncode == 0, result.stderr
    decoded = AudioSegment.from_file(out)
    assert abs(decoded.duration_seconds - 6) < 0.2


def test_render_plays_a_weighted_blend_at_a_chosen_tempo(tiny_model_dir, tmp_path):
    out = tmp_path / "blend.wav"
    result = jam(
        "render",
        "--prompt",
        "lofi hip hop:0.7",
        "--prompt",
        "bossa nova: slow:0.3",  # a colon inside the prompt itself
        "--bpm",
        "150",
        "--seconds",
        "6",
        "-o",
        str(out),
        "--model",
        str(tiny_model_dir),
    )
    assert result.returncode == 0, result.stderr
    with wave.open(str(out)) as w:
        assert w.getnframes() == 6 * w.getframerate()


@pytest.mark.parametrize(
    "args, message",
    [
        (["render", "   ", "-o", "x.wav"], "prompt is empty"),
        (["render", "-o", "x.wav"], "give a prompt"),
        (["render", "techno", "--bpm", "500", "-o", "x.wav"], "bpm must be between 60 and 180"),
        (
            ["render", *[x for p in "abcde" for x in ("--prompt", p)], "-o", "x.wav"],
            "at most 4 prompts",
        ),
        (["render", "--prompt", "a:-1", "-o", "x.wav"], "must be a finite number >= 0"),
        (["render", "techno", "--seconds", "0", "-o", "x.wav"], "seconds must be between"),
        (["render", "techno", "-o", "x.xyz"], "unknown audio suffix"),
        (
            ["render", "techno", "-o", "x.wav", "--model", "no/such-model-here"],
            "could not be fetched",
        ),
        (
            ["render", "techno", "-o", "x.wav", "--seed-image", "nope.wav", "--model", "TINY"],
            "no such audio file",
        ),
    ],
)
def test_render_reports_bad_input_clearly(tiny_model_dir, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    args = [str(tiny_model_dir) if a == "TINY" else a for a in args]
    result = jam(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_edge_without_redis_and_a_worker_whose_redis_is_down_say_so(tiny_model_dir):
    edge = jam("serve", "--no-generate", "--port", "0")
    assert edge.returncode == 2
    assert "--no-generate needs --redis" in edge.stderr
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    worker = jam("worker", "--redis", url, "--model", str(tiny_model_dir))
    assert worker.returncode == 2
    assert f"cannot use Redis at {url}" in worker.stderr
