"""The local stack's ports: chosen where no outgoing connection can take them, and a service that
dies before listening says why."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from heimdex.dev import emulators


def test_ports_are_below_the_ephemeral_range_distinct_and_free() -> None:
    start = emulators._ephemeral_start()
    ports = [emulators.free_port() for _ in range(100)]
    assert len(set(ports)) == len(ports)
    if start - max(1024, start - 16384) >= 1024:
        assert all(p < start for p in ports), "a port from the range outgoing connections draw from"
    for port in ports[:10]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_someone_listens_on_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, *range(busy + 1, busy + 100)])  # the busy one first
        monkeypatch.setattr(emulators._ports_random, "randrange", lambda low, high: next(picks))
        monkeypatch.setattr(emulators, "_ephemeral_start", lambda: 65535)
        assert emulators.free_port() != busy


def test_a_service_that_dies_before_listening_shows_its_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="Address already in use"):
        emulators.spawn(
            "dies",
            [sys.executable, "-c", "raise OSError(98, 'Address already in use')"],
            emulators.free_port(),
            tmp_path,
            timeout=30,
        )
