"""Admission by measured capacity (pure): sessions' measured speed decides, with headroom."""

from __future__ import annotations

import pytest

from jam.serve.admission import Admission
from jam.serve.protocol import ProtocolError


def refused(policy: Admission, **state: float | int | None) -> str | None:
    try:
        policy.check(**state)  # type: ignore[arg-type]
    except ProtocolError as e:
        return e.code
    return None


@pytest.mark.parametrize(
    "generating, speed, admitted",
    # the embedded model on this CPU (benchmarks/bench_admission.py): worst session speed
    # with 1, 2, 3, 4 sessions generating; the 5th session was the first to underrun
    [(1, 3.57, True), (2, 2.72, True), (3, 2.31, True), (4, 1.56, False)],
)
def test_a_new_session_is_admitted_while_every_session_keeps_its_headroom(
    generating, speed, admitted
):
    policy = Admission()  # the default headroom
    state = dict(live=generating, generating=generating, client_live=0)
    code = refused(policy, speed=speed, measured=generating, **state)
    assert (code is None) == admitted
    assert code in (None, "server_full")


def test_sessions_admitted_before_they_were_measured_count_against_the_next():
    policy = Admission(headroom=1.3)
    # one session measured at 3.6x; two more just admitted (no tile yet): 3.6 * 1/4 < 1.3
    assert refused(policy, live=3, generating=3, client_live=0, speed=3.6, measured=1)
    # nothing measured yet: only the caps apply
    assert refused(policy, live=3, generating=3, client_live=0, speed=None) is None


@pytest.mark.parametrize(
    "live, client_live, code",
    [(15, 3, None), (16, 0, "server_full"), (3, 4, "too_many_sessions")],
)
def test_the_caps_hold_whatever_the_speed(live, client_live, code):
    policy = Admission(max_sessions=16, per_client=4)
    assert refused(policy, live=live, generating=0, client_live=client_live, speed=100.0) == code
