"""What a websocket server sent us, parsed without awaiting: whole messages, and the control
frames that need an answer (ping, close). Part of the ticker's lean client (`_ws_client`).

Parsing is synchronous so that whoever reads the socket can do it: the shared reader
(`ticker_reader`) for many connections at once, or the consumer itself. Server frames are
unmasked, so parsing them by hand is a few lines and costs about 1 us per heartbeat (wsproto:
12 us). Kite's heartbeat (a binary message of one byte) can be absorbed here: it then only
counts as heard, and nobody is woken for it.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Control", "Incoming", "ProtocolFault"]

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_KNOWN = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG))

CLOSE_PROTOCOL = 1002
CLOSE_BAD_DATA = 1007
CLOSE_TOO_BIG = 1009

MAX_ITEMS = 64  # messages waiting for the consumer before the reader stops reading this socket


class ProtocolFault(Exception):
    """Something the server must not send: we close with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Control(tuple[int, bytes]):
    """A ping or close frame (opcode, payload): the consumer answers it."""

    __slots__ = ()


class Incoming:
    """The bytes received so far, cut into `items` (str: text, bytes: binary, Control) in
    order; `fault` is set at the first frame we refuse, and parsing stops there, as it does
    after a close frame (`closing`)."""

    def __init__(self, max_message: int, *, absorb_heartbeats: bool = False) -> None:
        self.items: deque[str | bytes | Control] = deque()
        self.queued = 0  # bytes of the messages in `items`
        self.fault: ProtocolFault | None = None
        self.closing = False  # a close frame is in `items`: nothing after it counts
        self._buf = bytearray()
        self._max = max_message
        self._absorb = absorb_heartbeats
        self._parts: list[bytes] = []  # the fragments of the message being assembled
        self._part_op = 0  # its opcode (0: none under way)
        self._part_size = 0

    @property
    def stopped(self) -> bool:
        """Nothing more will be parsed: a fault, or the peer's close frame."""
        return self.fault is not None or self.closing

    def backlogged(self) -> bool:
        """The consumer is behind: whoever reads should wait for it to catch up."""
        return self.stopped or len(self.items) >= MAX_ITEMS or self.queued >= self._max

    def take(self) -> str | bytes | Control:
        item = self.items.popleft()
        if not isinstance(item, Control):
            self.queued -= len(item)
        return item

    def feed(self, data: bytes | bytearray) -> bool:
        """Parse `data` after what came before; True if the consumer has news (an item or a
        fault), False if it was all heartbeats or the start of a frame."""
        if self.stopped:
            return False
        buf = self._buf
        buf += data
        before = len(self.items)
        try:
            while len(buf) >= 2 and not self.closing:
                frame = self._frame()
                if frame is None:
                    break
                self._add(*frame)
        except ProtocolFault as fault:
            self.fault = fault
            return True
        return len(self.items) > before

    def _add(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == OP_BINARY and fin and not self._part_op:  # the common case
            if not (self._absorb and len(payload) <= 1):
                self.items.append(payload)
                self.queued += len(payload)
            return
        if opcode >= OP_CLOSE:
            if opcode == OP_PONG:
                return
            self.items.append(Control((opcode, payload)))
            self.closing = opcode == OP_CLOSE
            return
        if opcode == OP_CONTINUATION:
            if not self._part_op:
                raise ProtocolFault(CLOSE_PROTOCOL, "continuation frame without a message")
        elif self._part_op:
            raise ProtocolFault(CLOSE_PROTOCOL, "new message inside a fragmented one")
        else:
            self._part_op = opcode
        self._parts.append(payload)
        self._part_size += len(payload)
        if not fin:
            return
        whole, opcode = b"".join(self._parts), self._part_op
        self._parts, self._part_op, self._part_size = [], 0, 0
        message: str | bytes = whole
        if opcode == OP_TEXT:
            try:
                message = whole.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolFault(CLOSE_BAD_DATA, "text message is not UTF-8") from None
        self.items.append(message)
        self.queued += len(whole)

    def _frame(self) -> tuple[int, bool, bytes] | None:
        """The next whole frame off the buffer (None: not all of it here yet). Refuses what a
        server must not send, and a message over `max_message` as soon as its header says so."""
        buf = self._buf
        b0, b1 = buf[0], buf[1]
        if b1 & 0x80:
            raise ProtocolFault(CLOSE_PROTOCOL, "masked frame from the server")
        if b0 & 0x70:
            raise ProtocolFault(CLOSE_PROTOCOL, "reserved bits set (no extension was agreed)")
        opcode, fin, length, head = b0 & 0x0F, bool(b0 & 0x80), b1 & 0x7F, 2
        if opcode not in _KNOWN:
            raise ProtocolFault(CLOSE_PROTOCOL, f"reserved opcode {opcode:#x}")
        if length >= 126:
            head = 4 if length == 126 else 10
            if len(buf) < head:
                return None
            length = int.from_bytes(buf[2:head], "big")
            if length >> 63:
                raise ProtocolFault(CLOSE_PROTOCOL, "frame length over 2**63")
        if opcode >= OP_CLOSE:
            if length > 125 or not fin:
                raise ProtocolFault(CLOSE_PROTOCOL, "control frame fragmented or over 125 bytes")
        elif self._part_size + length > self._max:
            raise ProtocolFault(CLOSE_TOO_BIG, f"message over {self._max} bytes")
        end = head + length
        if len(buf) < end:
            return None
        payload = bytes(buf[head:end])
        del buf[:end]
        return opcode, fin, payload
