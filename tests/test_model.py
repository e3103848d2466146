"""Shared naming helpers of the model: endpoints and flows as every report prints them."""

from __future__ import annotations

import pytest

from xentrace_cli.model import format_endpoint, format_flow


@pytest.mark.parametrize(("address", "port", "expected"), [
    ("10.0.0.1", 11211, "10.0.0.1:11211"),
    ("2001:618:400::5199:cc70", 35995, "[2001:618:400::5199:cc70]:35995"),
    ("fe80::1", 80, "[fe80::1]:80"),
    (None, 80, "?:80"),
    (float("nan"), float("nan"), "?:?"),
])
def test_format_endpoint(address: object, port: object, expected: str) -> None:
    assert format_endpoint(address, port) == expected


def test_format_flow() -> None:
    assert format_flow("10.0.0.5", 40000, "10.0.0.1", 11211) == \
        "10.0.0.5:40000 → 10.0.0.1:11211"
    assert format_flow("::1", 1, "::2", 2, "→") == "[::1]:1→[::2]:2"
