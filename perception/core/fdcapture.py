"""Capture what C libraries print on file descriptor 2 during a call (libjpeg / libpng warnings).

``cv2.imdecode`` has no switch for libjpeg's warnings ("Corrupt JPEG data: premature end of data
segment"): libjpeg prints them with ``fprintf(stderr)``, one line per damaged frame, which floods a
node's log at camera rate. :class:`StderrCapture` points fd 2 at a temporary file for the duration
of a call and hands the decoder's lines to the caller (to count and log throttled); any other line
written to fd 2 meanwhile (another thread's log) is written back to the real stderr right after.

fd 2 is process-wide, so captures are serialised by one process-wide lock; the cost is two
``dup2`` calls and a read of a usually empty file (microseconds), paid only around decodes.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# what libjpeg / libpng / OpenCV's image codecs print (libjpeg's jerror.h messages, libpng's prefixes)
DECODER_LINE = re.compile(
    r"^(Corrupt JPEG|Premature end of JPEG|Inconsistent progression|Bogus |Invalid JPEG|Invalid SOS|"
    r"Unsupported JPEG|Not a JPEG|Huffman table|Quantization table|JPEG datastream|Warning: |libpng |"
    r"\[ ?WARN:\S* .*(imgcodecs|loadsave|grfmt))"
)

_LOCK = threading.Lock()  # one capture of fd 2 at a time, process-wide


class StderrCapture:
    """``with capture() as lines:`` run a decode; afterwards ``lines`` holds the decoder's messages."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - held for the object's life, closed by close()

    @contextmanager
    def __call__(self) -> Iterator[list[str]]:
        lines: list[str] = []
        with _LOCK:
            for stream in (sys.stderr, sys.__stderr__):
                if stream is not None:
                    stream.flush()
            try:
                saved = os.dup(2)
            except OSError:  # no fd 2 at all (a daemon with its descriptors closed): nothing to capture
                yield lines
                return
            try:
                os.dup2(self._file.fileno(), 2)
                yield lines
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                self._file.seek(0)
                data = self._file.read()
                self._file.seek(0)
                self._file.truncate()
                self._dispatch(data, lines)

    @staticmethod
    def _dispatch(data: bytes, lines: list[str]) -> None:
        other = []
        for line in data.decode("utf-8", errors="replace").splitlines(keepends=True):
            if DECODER_LINE.match(line):
                lines.append(line.strip())
            else:
                other.append(line)
        if other:
            os.write(2, "".join(other).encode("utf-8"))

    def close(self) -> None:
        self._file.close()
