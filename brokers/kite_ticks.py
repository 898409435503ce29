"""Kite Connect v3 market ticks: the ticker's binary frames, both ways.

A frame is a big-endian uint16 packet count, then per packet a uint16 length and the packet. The
length is the mode: 8 bytes `ltp`, 44 `quote`, 184 `full` (5 buy then 5 sell depth entries of 12
bytes); index tokens send 8/28/32. Integers are big-endian and unsigned, prices are integers in
the segment's smallest unit: ÷100, ÷1e7 on CDS, ÷1e4 on BCD and NCO. The segment is the token's
low byte. A 1-byte frame is a heartbeat. Field names and the derived `change` (percent against the
previous close) follow the official client (`kiteconnect.KiteTicker._parse_binary`); times are
epoch seconds.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Literal

import attrs

Mode = Literal["ltp", "quote", "full"]
MODES: tuple[Mode, ...] = ("ltp", "quote", "full")
DEPTH_LEVELS = 5


class Segment(enum.IntEnum):
    """The exchange segment, as the low byte of an instrument token."""

    NSE = 1
    NFO = 2
    CDS = 3
    BSE = 4
    BFO = 5
    BCD = 6
    MCX = 7
    MCXSX = 8
    INDICES = 9
    NCO = 12


def instrument_token(exchange_token: int, segment: Segment) -> int:
    """The instrument token Kite derives from an exchange token: the segment in the low byte."""
    return (exchange_token << 8) | int(segment)


def segment_of(token: int) -> int:
    return token & 0xFF


def price_divisor(token: int) -> float:
    """Paise to rupees, or the finer units of the currency segments."""
    segment = segment_of(token)
    if segment == Segment.CDS:
        return 10_000_000.0
    if segment in (Segment.BCD, Segment.NCO):
        return 10_000.0
    return 100.0


@attrs.frozen
class Ohlc:
    open: float
    high: float
    low: float
    close: float


@attrs.frozen
class DepthEntry:
    quantity: int
    price: float
    orders: int


@attrs.frozen
class Depth:
    buy: tuple[DepthEntry, ...]
    sell: tuple[DepthEntry, ...]


@attrs.frozen
class Tick:
    """One instrument's market data; fields beyond the mode's packet are None."""

    instrument_token: int
    mode: Mode
    last_price: float
    last_traded_quantity: int | None = None
    average_traded_price: float | None = None
    volume_traded: int | None = None
    total_buy_quantity: int | None = None
    total_sell_quantity: int | None = None
    ohlc: Ohlc | None = None
    change: float | None = None
    last_trade_time: int | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    exchange_timestamp: int | None = None
    depth: Depth | None = None

    @property
    def tradable(self) -> bool:
        return segment_of(self.instrument_token) != Segment.INDICES


class FrameError(ValueError):
    """A binary frame that is not Kite's layout."""


HEARTBEAT = b"\x00"
LTP = struct.Struct(">II")
QUOTE = struct.Struct(">11I")  # token, ltp, qty, avg, volume, buy qty, sell qty, o, h, l, c
FULL_EXTRA = struct.Struct(">5I")  # last trade time, oi, oi high, oi low, exchange timestamp
DEPTH_ENTRY = struct.Struct(">IIH2x")
INDEX_QUOTE = struct.Struct(">6Ii")  # token, ltp, h, l, o, c, net change (signed)
INDEX_TIME = struct.Struct(">I")
COUNT = struct.Struct(">H")
PACKET_BYTES = {"ltp": 8, "quote": 44, "full": 184}
INDEX_PACKET_BYTES = {"ltp": 8, "quote": 28, "full": 32}


def decode_frame(data: bytes) -> list[Tick]:
    """Every packet of a binary ticker frame; a heartbeat (shorter than 2 bytes) gives []."""
    if len(data) < 2:
        return []
    (count,) = COUNT.unpack_from(data, 0)
    ticks, at = [], 2
    for _ in range(count):
        if at + 2 > len(data):
            raise FrameError(f"frame: {count} packets announced, ends after {len(ticks)}")
        (length,) = COUNT.unpack_from(data, at)
        packet = data[at + 2:at + 2 + length]
        if len(packet) != length:
            raise FrameError(
                f"frame: packet {len(ticks)} is cut short ({len(packet)} of {length} bytes)"
            )
        ticks.append(decode_packet(packet))
        at += 2 + length
    return ticks


#: A frame of `ltp` packets only is a count, then (length 8, token, last price) records.
LTP_RECORD = struct.Struct(">HII")
_DIVISORS = {int(Segment.CDS): 10_000_000.0, int(Segment.BCD): 10_000.0,
             int(Segment.NCO): 10_000.0}


def decode_prices(data: bytes) -> list[tuple[int, float]]:
    """(instrument token, last price) of every packet of a binary frame: all P&L needs, with
    no `Tick` made per packet. A frame of `ltp` packets (what the gateway subscribes) is read
    in one pass; any other goes through `decode_frame`. A heartbeat gives []."""
    if len(data) < 2:
        return []
    (count,) = COUNT.unpack_from(data, 0)
    if len(data) == 2 + LTP_RECORD.size * count:
        records = LTP_RECORD.iter_unpack(memoryview(data)[2:])
        prices = [(token, ltp / _DIVISORS.get(token & 0xFF, 100.0))
                  for length, token, ltp in records if length == 8]
        if len(prices) == count:
            return prices
    return [(tick.instrument_token, tick.last_price) for tick in decode_frame(data)]


def decode_packet(packet: bytes) -> Tick:
    """One packet, its mode told by its length."""
    if len(packet) < 8:
        raise FrameError(f"packet: {len(packet)} bytes is no Kite packet length")
    token, ltp = LTP.unpack_from(packet, 0)
    div = price_divisor(token)
    if len(packet) == 8:
        return Tick(token, "ltp", ltp / div)
    if len(packet) in (28, 32):
        return _decode_index(packet, div)
    if len(packet) not in (44, 184):
        raise FrameError(f"packet: {len(packet)} bytes is no Kite packet length")
    _, _, qty, avg, volume, buys, sells, o, h, lo, c = QUOTE.unpack_from(packet, 0)
    ohlc = Ohlc(o / div, h / div, lo / div, c / div)
    tick = Tick(
        token, "quote", ltp / div, last_traded_quantity=qty, average_traded_price=avg / div,
        volume_traded=volume, total_buy_quantity=buys, total_sell_quantity=sells, ohlc=ohlc,
        change=_change(ltp / div, ohlc.close),
    )
    if len(packet) == 44:
        return tick
    traded_at, oi, oi_high, oi_low, stamp = FULL_EXTRA.unpack_from(packet, QUOTE.size)
    entries = [
        DepthEntry(q, p / div, n)
        for q, p, n in DEPTH_ENTRY.iter_unpack(packet[QUOTE.size + FULL_EXTRA.size:])
    ]
    depth = Depth(tuple(entries[:DEPTH_LEVELS]), tuple(entries[DEPTH_LEVELS:]))
    return attrs.evolve(
        tick, mode="full", last_trade_time=traded_at, oi=oi, oi_day_high=oi_high,
        oi_day_low=oi_low, exchange_timestamp=stamp, depth=depth,
    )


def _decode_index(packet: bytes, div: float) -> Tick:
    token, ltp, h, lo, o, c, _net = INDEX_QUOTE.unpack_from(packet, 0)
    ohlc = Ohlc(o / div, h / div, lo / div, c / div)
    tick = Tick(token, "quote", ltp / div, ohlc=ohlc, change=_change(ltp / div, ohlc.close))
    if len(packet) == INDEX_QUOTE.size:
        return tick
    (stamp,) = INDEX_TIME.unpack_from(packet, INDEX_QUOTE.size)
    return attrs.evolve(tick, mode="full", exchange_timestamp=stamp)


def _change(last_price: float, close: float) -> float:
    return (last_price - close) * 100 / close if close else 0


def encode_frame(ticks: Sequence[tuple[Tick, Mode]]) -> bytes:
    """One binary frame: each tick as a packet of the mode it is paired with (fields the tick
    lacks are sent as 0). An empty sequence gives the heartbeat."""
    if not ticks:
        return HEARTBEAT
    parts = [COUNT.pack(len(ticks))]
    for tick, mode in ticks:
        packet = encode_packet(tick, mode)
        parts += (COUNT.pack(len(packet)), packet)
    return b"".join(parts)


def encode_packet(tick: Tick, mode: Mode) -> bytes:
    token = tick.instrument_token
    div = price_divisor(token)

    def units(price: float | None) -> int:
        return round((price or 0.0) * div)

    head = LTP.pack(token, units(tick.last_price))
    if mode == "ltp":
        return head
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    ohlc = tick.ohlc or Ohlc(0.0, 0.0, 0.0, 0.0)
    if not tick.tradable:
        packet = INDEX_QUOTE.pack(
            token, units(tick.last_price), units(ohlc.high), units(ohlc.low), units(ohlc.open),
            units(ohlc.close), units(tick.last_price) - units(ohlc.close),
        )
        return packet + INDEX_TIME.pack(tick.exchange_timestamp or 0) if mode == "full" else packet
    packet = QUOTE.pack(
        token, units(tick.last_price), tick.last_traded_quantity or 0,
        units(tick.average_traded_price), tick.volume_traded or 0, tick.total_buy_quantity or 0,
        tick.total_sell_quantity or 0, units(ohlc.open), units(ohlc.high), units(ohlc.low),
        units(ohlc.close),
    )
    if mode == "quote":
        return packet
    extra = FULL_EXTRA.pack(
        tick.last_trade_time or 0, tick.oi or 0, tick.oi_day_high or 0, tick.oi_day_low or 0,
        tick.exchange_timestamp or 0,
    )
    depth = tick.depth or Depth((), ())
    levels = [*_levels(depth.buy), *_levels(depth.sell)]
    entries = b"".join(DEPTH_ENTRY.pack(e.quantity, units(e.price), e.orders) for e in levels)
    return packet + extra + entries


def _levels(side: tuple[DepthEntry, ...]) -> list[DepthEntry]:
    """Exactly five levels: missing ones are empty (0 quantity, 0 price, 0 orders)."""
    empty = DepthEntry(0, 0.0, 0)
    return [*side[:DEPTH_LEVELS], *[empty] * (DEPTH_LEVELS - len(side[:DEPTH_LEVELS]))]
