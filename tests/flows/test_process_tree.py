"""The /proc helpers the lifecycle tests judge runs with: they must see a socket open to the network."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from tests.flows.process_tree import _decode_address, is_loopback, listening_sockets

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")


@pytest.mark.parametrize(
    ("host", "family", "loopback"),
    [
        ("127.0.0.1", socket.AF_INET, True),
        ("0.0.0.0", socket.AF_INET, False),
        ("::1", socket.AF_INET6, True),
        ("::", socket.AF_INET6, False),
    ],
)
def test_listening_sockets_of_this_process_are_found_and_judged(host, family, loopback):
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((host, 0))
    except OSError as exc:
        pytest.skip(f"cannot bind {host}: {exc}")
    with sock:
        sock.listen()
        port = sock.getsockname()[1]
        found = [addr for pid, addr in listening_sockets({os.getpid()}) if addr.endswith(f":{port}")]
        assert len(found) == 1
        assert is_loopback(found[0]) is loopback


def test_ipv4_mapped_loopback_is_decoded():
    assert _decode_address("0000000000000000FFFF00000100007F:9DBB") == "::ffff:127.0.0.1:40379"
    assert is_loopback("::ffff:127.0.0.1:1") and not is_loopback("::ffff:192.0.2.2:1")
