"""Compressed camera images (JPEG, PNG) -> RGB arrays, refusing what a hostile sender can craft.

Every failure raises :class:`CoreError` with a message that says what is wrong; nothing else leaves
:func:`decode_rgb` (an OpenCV error or a bad length is turned into one).

What is checked, in this order (the cheap checks run before any pixel is decoded):

1. **Format and size from the header.** JPEG: every segment from SOI is walked by its length
   (APPn / COM segments of any size and number, so EXIF blocks larger than 64 KiB are fine) up to
   the frame header (SOF) that gives width and height. PNG: the IHDR chunk (its CRC checked).
   More than ``max_pixels`` pixels is refused here: a small file whose header claims 4000 x 4000
   never reaches the decoder (a decompression bomb costs a header parse).
2. **Structure (JPEG).** Every segment length fits the data, there is exactly one SOF, Huffman
   tables are well formed, every scan (SOS) is followed by entropy-coded data and the stream
   ends with an EOI marker: a file cut short during transfer has no EOI and is refused before
   decoding. A lower bound on the entropy-coded bits of each scan follows from the file's own
   Huffman tables (every 8x8 block of a sequential scan takes at least one DC and one AC code,
   of at least the shortest code length in its tables): a scan with fewer bytes than that bound
   cannot hold the image its header claims (a truncated file with an EOI appended, or a
   patched SOF), and is refused before decoding as well.
3. **Decoding (OpenCV).** ``cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION``: the pixels come
   out in the orientation the sensor wrote them, whatever an EXIF Orientation tag says. Camera
   drivers publish the sensor's orientation and the camera model (CameraInfo, extrinsics) is
   calibrated in it, so a rotation here would break the image <-> camera geometry; the decoded
   shape must then equal the header's. libjpeg reports data it could not decode ("Corrupt JPEG
   data: premature end of data segment", "Premature end of JPEG file", bad Huffman codes, ...)
   only as a warning on the C stderr while OpenCV still returns an image (filled with grey where
   data was missing). :func:`decode_rgb` captures file descriptor 2 while OpenCV decodes (under a
   lock; other lines written meanwhile are passed on to the real stderr afterwards) and refuses
   the image when libjpeg reported corrupt data. This also keeps libjpeg/libpng warnings out of
   the node's log: they become the drop reason instead.

The pixel limit bounds what a frame can cost downstream as well: the node publishes its outputs
at the input resolution (mono8 + rgb8 + 32FC1 = 8 bytes per input pixel).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from perception.core.boxes import CoreError
from perception.core.fdcapture import StderrCapture

DEFAULT_MAX_PIXELS = 4096 * 4096  # width * height above which an image is refused before decoding
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_HUFFMAN_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7))
_PROGRESSIVE_SOF = frozenset((0xC2, 0xC6, 0xCA, 0xCE))
_STD_MIN_CODE = 2  # shortest code of the standard Huffman tables (JPEG Annex K), DC and AC
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0..7: no length field
# libjpeg warnings that mean image data was missing or undecodable (the image is partly made up)
_JPEG_CORRUPT = re.compile(
    r"Corrupt JPEG data: (?!\d+ extraneous bytes)|Premature end of JPEG file|Inconsistent progression sequence|"
    r"Invalid SOS parameters"
)

@dataclass(frozen=True)
class ImageHeader:
    """What a compressed image's header says, read without decoding it."""

    format: str  # "jpeg" or "png"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def sniff_format(data: bytes) -> str | None:
    """"jpeg", "png" or None, from the first bytes."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == PNG_SIGNATURE:
        return "png"
    return None


# -- PNG -------------------------------------------------------------------------------------------
def png_header(data: bytes) -> ImageHeader:
    """Width and height from the IHDR chunk (which must come first and carry a valid CRC)."""
    if len(data) < 33:
        raise CoreError(f"PNG of {len(data)} bytes is too short to hold its IHDR header")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise CoreError(f"PNG does not start with a 13-byte IHDR chunk (found {ctype!r}, {length} bytes): corrupt")
    (crc,) = struct.unpack(">I", data[29:33])
    if zlib.crc32(data[12:29]) != crc:
        raise CoreError("PNG IHDR chunk fails its CRC: corrupt header")
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    if depth not in (1, 2, 4, 8, 16) or colour not in (0, 2, 3, 4, 6):
        raise CoreError(f"PNG IHDR has bit depth {depth} / colour type {colour}: not a valid PNG")
    return ImageHeader("png", int(w), int(h))


def _png_structure(data: bytes) -> None:
    """Chunks walked by length to IEND (a PNG cut short has none); at least one IDAT."""
    i, n, idat = 8, len(data), 0
    while True:
        if i + 12 > n:
            raise CoreError(f"PNG ends after {n} bytes without an IEND chunk: truncated")
        length, ctype = struct.unpack(">I4s", data[i : i + 8])
        if i + 12 + length > n:
            raise CoreError(f"PNG chunk {ctype!r} at byte {i} claims {length} bytes, the file ends first: truncated")
        if ctype == b"IDAT":
            idat += 1
        elif ctype == b"IEND":
            break
        i += 12 + length
    if not idat:
        raise CoreError("PNG has no image data (IDAT chunk)")


# -- JPEG ------------------------------------------------------------------------------------------
@dataclass
class _Frame:
    width: int = 0
    height: int = 0
    huffman: bool = False
    progressive: bool = False
    sampling: dict[int, tuple[int, int]] | None = None  # component id -> (h, v)


def _min_code_lengths(seg: bytes, tables: dict[tuple[int, int], int]) -> None:
    """DHT payload -> {(class, id): shortest code length in bits}; raises on a malformed table."""
    j = 0
    while j < len(seg):
        if j + 17 > len(seg):
            raise CoreError("JPEG Huffman table (DHT) is cut short: corrupt")
        tc, th = seg[j] >> 4, seg[j] & 15
        counts = seg[j + 1 : j + 17]
        total = sum(counts)
        if tc > 1 or th > 3 or total == 0 or total > 256 or j + 17 + total > len(seg):
            raise CoreError(f"JPEG Huffman table (class {tc}, id {th}, {total} codes) is malformed: corrupt")
        tables[(tc, th)] = next(k + 1 for k, c in enumerate(counts) if c)
        j += 17 + total


def _parse_sof(seg: bytes, marker: int) -> _Frame:
    if len(seg) < 6:
        raise CoreError("JPEG frame header (SOF) is cut short: corrupt")
    _, h, w, nf = struct.unpack(">BHHB", seg[:6])
    if nf not in (1, 3, 4) or len(seg) < 6 + 3 * nf:
        raise CoreError(f"JPEG frame header declares {nf} components: corrupt or unsupported")
    sampling = {}
    for k in range(nf):
        cid, hv = seg[6 + 3 * k], seg[7 + 3 * k]
        hs, vs = hv >> 4, hv & 15
        if not (1 <= hs <= 4 and 1 <= vs <= 4):
            raise CoreError(f"JPEG component {cid} has sampling factors {hs}x{vs}: corrupt")
        sampling[cid] = (hs, vs)
    if h == 0:
        raise CoreError("JPEG frame header gives height 0 (height in a DNL marker): unsupported")
    return _Frame(w, h, marker in _HUFFMAN_SOF, marker in _PROGRESSIVE_SOF, sampling)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _scan_min_bits(frame: _Frame, seg: bytes, tables: dict[tuple[int, int], int]) -> int:
    """Fewest bits the entropy-coded data of this scan can take (0 where no bound is known)."""
    if len(seg) < 1 or len(seg) < 1 + 2 * seg[0] + 3:
        raise CoreError("JPEG scan header (SOS) is cut short: corrupt")
    ns = seg[0]
    ss, se, ahl = seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns]
    sampling = frame.sampling or {}
    comps = [(seg[1 + 2 * k], seg[2 + 2 * k] >> 4, seg[2 + 2 * k] & 15) for k in range(ns)]
    if not comps or any(c[0] not in sampling for c in comps):
        raise CoreError("JPEG scan refers to a component the frame header does not declare: corrupt")
    if not frame.huffman or (frame.progressive and (ss != 0 or ahl >> 4 != 0)):
        return 0  # arithmetic coding, AC or refinement scans: end-of-band runs can cover many blocks
    hmax = max(s[0] for s in sampling.values())
    vmax = max(s[1] for s in sampling.values())
    bits = 0
    for cid, td, ta in comps:
        hs, vs = sampling[cid]
        if ns == 1:  # non-interleaved: the component's own block grid
            blocks = _ceil(_ceil(frame.width * hs, hmax), 8) * _ceil(_ceil(frame.height * vs, vmax), 8)
        else:  # interleaved: whole MCUs of hs x vs blocks
            blocks = _ceil(frame.width, 8 * hmax) * _ceil(frame.height, 8 * vmax) * hs * vs
        # Motion-JPEG frames (USB cameras) carry no DHT: libjpeg then uses the standard tables (shortest
        # code 2 bits); an undefined table is otherwise left to libjpeg to refuse
        dc = tables.get((0, td), _STD_MIN_CODE if td < 2 else 1)
        ac = tables.get((1, ta), _STD_MIN_CODE if ta < 2 else 1) if se > 0 and not frame.progressive else 0
        bits += blocks * (dc + ac)
    return bits


def jpeg_header(data: bytes, check_structure: bool = True) -> ImageHeader:
    """Walk the JPEG's segments (any number, any size) and return its size from the SOF.

    With ``check_structure`` the whole stream is walked: segment lengths, one SOF, well-formed
    Huffman tables, entropy data long enough for every scan, and a final EOI marker.
    """
    n = len(data)
    if data[:2] != b"\xff\xd8":
        raise CoreError("JPEG does not start with an SOI marker: not a JPEG")
    arr = np.frombuffer(data, dtype=np.uint8)
    ends: np.ndarray | None = None  # positions of markers that end entropy-coded data
    stuffed: np.ndarray | None = None  # positions of stuffed FF 00 pairs
    frame: _Frame | None = None
    tables: dict[tuple[int, int], int] = {}
    i = 2
    while True:
        while i < n and data[i] == 0xFF and i + 1 < n and data[i + 1] == 0xFF:
            i += 1  # fill bytes
        if i + 2 > n:
            break
        if data[i] != 0xFF:
            raise CoreError(f"JPEG has no marker at byte {i} (found 0x{data[i]:02x}): corrupt segment lengths")
        marker = data[i + 1]
        if marker == 0xD9:  # EOI
            if frame is None:
                raise CoreError("JPEG ends (EOI) before any frame header: corrupt")
            return ImageHeader("jpeg", frame.width, frame.height)
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0x00, 0xD8):
            raise CoreError(f"JPEG has a stray marker 0x{marker:02x} at byte {i}: corrupt")
        if i + 4 > n:
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if length < 2 or i + 2 + length > n:
            raise CoreError(f"JPEG segment 0x{marker:02x} at byte {i} claims {length} bytes, the data has "
                            f"{n - i - 2}: truncated or corrupt")
        seg = data[i + 4 : i + 2 + length]
        i += 2 + length
        if marker in _SOF:
            if frame is not None:
                raise CoreError("JPEG has more than one frame header (SOF): corrupt or unsupported")
            frame = _parse_sof(seg, marker)
            if not check_structure:
                return ImageHeader("jpeg", frame.width, frame.height)
        elif marker == 0xC4:
            _min_code_lengths(seg, tables)
        elif marker == 0xDA:
            if frame is None:
                raise CoreError("JPEG scan (SOS) comes before the frame header (SOF): corrupt")
            min_bits = _scan_min_bits(frame, seg, tables)
            if ends is None:  # FF followed by anything but 00 (stuffing), FF (fill) or RSTn
                ff = np.flatnonzero(arr[:-1] == 0xFF)
                nxt = arr[ff + 1]
                ends = ff[(nxt != 0) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7))]
                stuffed = ff[nxt == 0]
            assert stuffed is not None
            k = int(np.searchsorted(ends, i))
            end = int(ends[k]) if k < len(ends) else n
            coded = (end - i) - (int(np.searchsorted(stuffed, end)) - int(np.searchsorted(stuffed, i)))
            if end >= n:
                raise CoreError(f"JPEG ({frame.width}x{frame.height}) ends inside its scan data without an EOI "
                                "marker: truncated")
            if 8 * coded < min_bits:
                raise CoreError(f"JPEG header claims {frame.width}x{frame.height} but a scan holds {coded} bytes, "
                                f"fewer than the {-(-min_bits // 8)} its Huffman tables need at least: truncated "
                                "or a forged header")
            i = end
    if frame is None:
        raise CoreError(f"JPEG of {n} bytes has no frame header (SOF): truncated or corrupt")
    if not check_structure:
        return ImageHeader("jpeg", frame.width, frame.height)
    raise CoreError(f"JPEG ({frame.width}x{frame.height}) ends after {n} bytes without an EOI marker: truncated")


def image_header(data: bytes, check_structure: bool = False) -> ImageHeader:
    """Format and size of a JPEG or PNG without decoding it (``check_structure``: also walk the whole stream)."""
    fmt = sniff_format(data)
    if fmt == "jpeg":
        return jpeg_header(data, check_structure)
    if fmt == "png":
        header = png_header(data)
        if check_structure:
            _png_structure(data)
        return header
    raise CoreError(f"data ({len(data)} bytes, starting {data[:4].hex() or 'empty'}) is neither JPEG nor PNG")


def check_pixels(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse zero-sized images and images of more than ``max_pixels`` pixels."""
    if width <= 0 or height <= 0:
        raise CoreError(f"image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise CoreError(f"image {width}x{height} has more than {max_pixels} pixels (raise the pixel limit, "
                        "input.max_pixels, if such images are expected)")


# -- decoding with libjpeg's warnings captured ------------------------------------------------------
_capture: StderrCapture | None = None


def _decoder_capture() -> StderrCapture:
    """The process's capture of fd 2 around decodes (created on first use)."""
    global _capture
    if _capture is None:
        _capture = StderrCapture()
    return _capture


def decode_rgb(data: bytes | bytearray | memoryview | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS,
               strict: bool = True, decoder_warnings: list[str] | None = None) -> np.ndarray:
    """A JPEG or PNG -> (H, W, 3) uint8 RGB in the sensor's orientation (EXIF Orientation ignored).

    ``max_pixels`` is checked on the header before decoding. ``strict`` (default) walks the whole
    stream first and refuses a JPEG for which libjpeg reports corrupt or missing data (see the
    module docstring); without it only the header and the decoded shape are checked. What libjpeg /
    libpng print while decoding never reaches stderr: lines that do not refuse the image are appended
    to ``decoder_warnings`` when given (for the caller to log, throttled). Raises :class:`CoreError`
    for anything malformed.
    """
    raw = np.ascontiguousarray(np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray)
                               else data.reshape(-1).view(np.uint8))
    if raw.size == 0:
        raise CoreError("compressed image has no data")
    buf = raw.tobytes()
    header = image_header(buf, check_structure=False)
    check_pixels(header.width, header.height, max_pixels)
    if strict:
        image_header(buf, check_structure=True)
    try:
        with _decoder_capture()() as lines:
            bgr = cv2.imdecode(raw, DECODE_FLAGS)
    except cv2.error as e:
        raise CoreError(f"{header.format} {header.width}x{header.height} could not be decoded: {e}") from e
    if bgr is None or bgr.ndim != 3 or bgr.shape[:2] != (header.height, header.width):
        got = "nothing" if bgr is None else "x".join(map(str, bgr.shape[1::-1]))
        raise CoreError(f"{header.format} {header.width}x{header.height} could not be decoded (got {got}): corrupt")
    if strict and header.format == "jpeg" and (fatal := [ln for ln in lines if _JPEG_CORRUPT.search(ln)]):
        raise CoreError(f"jpeg {header.width}x{header.height} is corrupt, libjpeg: {fatal[0]}")
    if decoder_warnings is not None:
        decoder_warnings.extend(lines)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


# -- crafting streams (tests and the fuzzer) -------------------------------------------------------
def jpeg_segment(marker: int, payload: bytes) -> bytes:
    """One JPEG marker segment (``payload`` at most 65533 bytes)."""
    if len(payload) > 65533:
        raise CoreError(f"a JPEG segment holds at most 65533 bytes, got {len(payload)}")
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def exif_orientation_segment(orientation: int) -> bytes:
    """An APP1 EXIF segment holding only the Orientation tag (1..8; 6 = rotate 90 degrees clockwise)."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    return jpeg_segment(0xE1, b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd)


def insert_after_soi(jpeg: bytes, *segments: bytes) -> bytes:
    """``jpeg`` with ``segments`` placed right after its SOI marker (before the frame header)."""
    if jpeg[:2] != b"\xff\xd8":
        raise CoreError("not a JPEG (no SOI marker)")
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with the size in its frame header replaced (a forged header: the data stays the same)."""
    i = 2
    while i + 4 <= len(jpeg):
        marker = jpeg[i + 1]
        (length,) = struct.unpack(">H", jpeg[i + 2 : i + 4])
        if marker in _SOF:
            return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]
        i += 2 + length
    raise CoreError("JPEG has no frame header (SOF) before its first scan")
