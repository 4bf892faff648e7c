"""Admission by measured capacity (pure): the device's busy share decides, with headroom."""

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


def test_a_new_session_is_admitted_while_the_device_keeps_its_headroom():
    policy = Admission(max_sessions=16, per_client=4, headroom=1.3)
    ok = dict(live=2, client_live=0)
    # 2 sessions keep the device 50% busy: a 3rd projects 75%, x1.3 = 97.5%: fits
    assert refused(policy, generating=2, utilization=0.50, **ok) is None
    # at 60%, a 3rd projects 90%, x1.3 > 100%: refused
    assert refused(policy, generating=2, utilization=0.60, **ok) == "server_full"
    # nothing measured yet, or nothing generating: only the caps apply
    assert refused(policy, generating=0, utilization=0.9, **ok) is None
    assert refused(policy, generating=2, utilization=None, **ok) is None


@pytest.mark.parametrize(
    "live, client_live, code",
    [(15, 3, None), (16, 0, "server_full"), (3, 4, "too_many_sessions")],
)
def test_the_caps_hold_whatever_the_load(live, client_live, code):
    policy = Admission(max_sessions=16, per_client=4)
    assert refused(policy, live=live, generating=0, client_live=client_live, utilization=0) == code
