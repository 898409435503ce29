"""`brokers.kite_ticks` against what the official client decodes, and encode∘decode.

The expectations are in tests/fixtures/kite_ticks.json, derived by
tests/fixtures/derive_kite_ticks.py from Zerodha's reference frames (zerodha/kiteconnect-mocks,
commit c7a8123), which stay outside the project: nothing here reads them (the derivation is run
by hand, where a checkout of them is at hand).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kiteconnect import KiteTicker

from brokers.kite_ticks import (
    MODES,
    Depth,
    DepthEntry,
    FrameError,
    Ohlc,
    Segment,
    Tick,
    decode_frame,
    decode_prices,
    encode_frame,
    instrument_token,
    price_divisor,
)
from tests.fixtures.derive_kite_ticks import official_decode

EXPECTED: dict[str, list[dict[str, Any]]] = json.loads(
    Path(__file__).with_name("fixtures").joinpath("kite_ticks.json").read_text())["frames"]


def as_kite(tick: Tick) -> dict[str, Any]:
    """A Tick as the official client's dict (times as epoch seconds, as derived)."""
    fields = attrs.asdict(tick)
    out = {"tradable": tick.tradable, **{k: v for k, v in fields.items() if v is not None}}
    if "depth" in out:
        out["depth"] = {side: list(entries) for side, entries in out["depth"].items()}
    return out


def from_kite(d: dict[str, Any]) -> Tick:
    """The official client's dict as a Tick (the inverse of `as_kite`)."""
    fields = {k: v for k, v in d.items() if k != "tradable"}
    if "ohlc" in fields:
        fields["ohlc"] = Ohlc(**fields["ohlc"])
    if "depth" in fields:
        fields["depth"] = Depth(*(tuple(DepthEntry(**e) for e in fields["depth"][side])
                                  for side in ("buy", "sell")))
    return Tick(**fields)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_encoded_reference_ticks_decode_as_the_official_client_does(name: str) -> None:
    expected = EXPECTED[name]
    frame = encode_frame([(from_kite(d), d["mode"]) for d in expected])
    assert official_decode(frame) == expected
    assert [as_kite(t) for t in decode_frame(frame)] == expected


def test_heartbeat_and_empty() -> None:
    assert decode_frame(b"\x00") == []
    assert decode_frame(b"") == []
    assert encode_frame([]) == b"\x00"


@pytest.mark.parametrize("frame", [
    b"\x00\x02\x00\x08" + bytes(8),  # two packets announced, one sent
    b"\x00\x01\x00\x2c" + bytes(20),  # a quote packet cut short
    b"\x00\x01\x00\x05" + bytes(5),  # no Kite packet is 5 bytes
])
def test_malformed_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(frame)


@pytest.mark.parametrize(("segment", "divisor"), [
    (Segment.NSE, 100.0), (Segment.NFO, 100.0), (Segment.CDS, 1e7), (Segment.BCD, 1e4),
    (Segment.NCO, 1e4), (Segment.MCX, 100.0),
])
def test_divisor_by_the_segment_in_the_low_byte(segment: Segment, divisor: float) -> None:
    token = instrument_token(35_000, segment)
    assert token & 0xFF == segment
    assert price_divisor(token) == divisor
    assert price_divisor(token) == _official_divisor(token)


def _official_divisor(token: int) -> float:
    frame = struct.pack(">HHII", 1, 8, token, 10_000_000)  # an LTP packet by hand
    return 10_000_000 / KiteTicker("key", "token")._parse_binary(frame)[0]["last_price"]


@pytest.mark.parametrize(("mode", "size"), [("ltp", 8), ("quote", 28), ("full", 32)])
def test_index_packets(mode: str, size: int) -> None:
    token = instrument_token(1024, Segment.INDICES)
    tick = Tick(token, "full", 24_010.5, ohlc=Ohlc(23_990.0, 24_050.25, 23_950.0, 24_000.0),
                change=0.04375, exchange_timestamp=1_700_000_000)
    frame = encode_frame([(tick, mode)])  # type: ignore[list-item]
    assert len(frame) == 4 + size
    (decoded,) = decode_frame(frame)
    assert not decoded.tradable
    assert as_kite(decoded) == official_decode(frame)[0]


UNIT = st.integers(min_value=0, max_value=2**31)
COUNT = st.integers(min_value=0, max_value=2**32 - 1)
SEGMENTS = st.sampled_from([s for s in Segment if s != Segment.INDICES])


@st.composite
def ticks(draw: st.DrawFn) -> tuple[Tick, str]:
    token = instrument_token(draw(st.integers(1, 2**24 - 1)), draw(SEGMENTS))
    div = price_divisor(token)

    def price() -> float:
        return draw(UNIT) / div

    entries = [DepthEntry(draw(COUNT), price(), draw(st.integers(0, 65535))) for _ in range(10)]
    ohlc = Ohlc(price(), price(), price(), price())
    ltp = price()
    tick = Tick(
        token, "full", ltp, draw(COUNT), price(), draw(COUNT), draw(COUNT), draw(COUNT), ohlc,
        (ltp - ohlc.close) * 100 / ohlc.close if ohlc.close else 0, draw(COUNT), draw(COUNT),
        draw(COUNT), draw(COUNT), draw(COUNT), Depth(tuple(entries[:5]), tuple(entries[5:])),
    )
    return tick, draw(st.sampled_from(MODES))


@given(st.lists(ticks(), max_size=5))
def test_encode_then_decode_round_trips(pairs: list[tuple[Tick, str]]) -> None:
    frame = encode_frame(pairs)  # type: ignore[arg-type]
    decoded = decode_frame(frame)
    assert len(decoded) == len(pairs)
    for got, (tick, mode) in zip(decoded, pairs, strict=True):
        assert got.mode == mode
        sent = as_kite(attrs.evolve(tick, mode=mode))
        assert as_kite(got) == {k: v for k, v in sent.items() if k in as_kite(got)}
    assert encode_frame([(t, t.mode) for t in decoded]) == frame
    if pairs:
        assert [as_kite(t) for t in decoded] == official_decode(frame)


@given(st.lists(ticks(), max_size=5))
def test_prices_are_what_the_full_decode_reads(pairs: list[tuple[Tick, str]]) -> None:
    """`decode_prices` (the gateway's per-frame path: one pass over a frame of ltp packets, no
    Tick per packet) gives every packet's token and last price, as `decode_frame` does, in any
    mode and segment."""
    frame = encode_frame(pairs)  # type: ignore[arg-type]
    assert decode_prices(frame) == [(t.instrument_token, t.last_price)
                                    for t in decode_frame(frame)]
    ltp_only = encode_frame([(tick, "ltp") for tick, _ in pairs])
    assert decode_prices(ltp_only) == [(t.instrument_token, t.last_price)
                                       for t in decode_frame(ltp_only)]
