"""Just enough of CDR to work on raw message bytes without deserialising them.

Every stamped ROS 2 message starts with ``std_msgs/Header``: after the 4-byte encapsulation
header come ``int32 sec``, ``uint32 nanosec`` and the ``frame_id`` string. Reading or rewriting
the stamp in place lets the player publish a bag's bytes as they are (or restamped, as
ros2_benchmark does) and lets readers key messages by stamp at memory speed; :func:`image_view`
gives the pixels of a sensor_msgs/Image as a numpy view of the raw buffer (no copy).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from perception.bag import BagError

_STAMP = struct.Struct("<iI")
_STAMP_BE = struct.Struct(">iI")


def _little(raw: bytes | bytearray | memoryview) -> bool:
    if len(raw) < 12:
        raise BagError(f"message of {len(raw)} bytes is too short for a stamped message (truncated?)")
    kind = raw[1]
    if raw[0] != 0 or kind not in (0, 1):
        raise BagError(f"not a plain CDR message (encapsulation {bytes(raw[:2]).hex()})")
    return kind == 1


def header_stamp_ns(raw: bytes | bytearray | memoryview) -> int:
    """The header stamp (integer nanoseconds) of a serialised stamped message."""
    sec, nsec = (_STAMP if _little(raw) else _STAMP_BE).unpack_from(raw, 4)
    return sec * 1_000_000_000 + nsec


def restamp(raw: bytes | bytearray | memoryview, stamp: int) -> bytearray:
    """A copy of ``raw`` whose header stamp is ``stamp`` nanoseconds."""
    out = bytearray(raw)
    (_STAMP if _little(out) else _STAMP_BE).pack_into(out, 4, stamp // 1_000_000_000, stamp % 1_000_000_000)
    return out


class _Cursor:
    def __init__(self, raw: Any, little: bool) -> None:
        self.raw, self.pos, self.e = raw, 4, "<" if little else ">"

    def align(self, n: int) -> None:
        self.pos += (-(self.pos - 4)) % n

    def u32(self) -> int:
        self.align(4)
        (v,) = struct.unpack_from(self.e + "I", self.raw, self.pos)
        self.pos += 4
        return int(v)

    def string(self) -> str:
        n = self.u32()
        s = bytes(self.raw[self.pos : self.pos + max(0, n - 1)]).decode("utf-8", "replace")
        self.pos += n
        return s


_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}


def image_view(raw: bytes | bytearray | memoryview) -> tuple[int, str, np.ndarray]:
    """(stamp ns, encoding, (H, W[, C]) uint8 view of the pixels) of a serialised 8-bit sensor_msgs/Image."""
    c = _Cursor(raw, _little(raw))
    stamp = header_stamp_ns(raw)
    c.pos = 12
    c.string()  # frame_id
    h, w = c.u32(), c.u32()
    enc = c.string()
    c.pos += 1  # is_bigendian
    step = c.u32()
    n = c.u32()
    ch = _CHANNELS.get(enc)
    if ch is None:
        raise BagError(f"image_view reads 8-bit images only, not {enc!r}")
    if n < step * h or step < w * ch or c.pos + n > len(raw):
        raise BagError(f"{enc} image {w}x{h} step {step}: {n} data bytes (of {len(raw) - c.pos} left) is too few")
    buf = np.frombuffer(raw, np.uint8, count=step * h, offset=c.pos).reshape(h, step)[:, : w * ch]
    return stamp, enc, buf.reshape(h, w, ch) if ch > 1 else buf
