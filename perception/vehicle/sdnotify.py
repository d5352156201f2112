"""systemd's notification protocol (sd_notify(3)), written out: a unix datagram to ``$NOTIFY_SOCKET``.

A service of ``Type=notify`` tells systemd ``READY=1`` (started), ``WATCHDOG=1`` (still alive, within
``WatchdogSec``), ``STATUS=...`` (one line shown by ``systemctl status``) and ``STOPPING=1``. The message
is newline-separated ``KEY=VALUE`` lines in one datagram to the socket named by ``$NOTIFY_SOCKET``: a path,
or an abstract-namespace name written with a leading ``@``. Without ``$NOTIFY_SOCKET`` (not run by
systemd) every call is a no-op. ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, when set, naming this process)
says the watchdog is on and how often systemd expects a ping.

Standard library only (no libsystemd binding): what this file sends is all there is to it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | None:
    """The ``AF_UNIX`` address of a ``$NOTIFY_SOCKET`` value (abstract ``@name`` -> ``\\0name``); None if unusable."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock:... and relative paths: not used by the systemd versions we target


def watchdog_usec(env: Mapping[str, str] | None = None, pid: int | None = None) -> int:
    """``$WATCHDOG_USEC`` when the watchdog is on for this process, else 0 (sd_watchdog_enabled(3))."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner.isdigit() and int(owner) != (os.getpid() if pid is None else pid):
        return 0  # meant for another process (e.g. our parent)
    return max(0, usec)


class Notifier:
    """Sends sd_notify messages; every method returns whether a datagram went out (False: not under systemd
    or the socket is gone -- logged once, never raised: a notification must not take the service down)."""

    def __init__(self, notify_socket: str | None = None) -> None:
        value = os.environ.get("NOTIFY_SOCKET", "") if notify_socket is None else notify_socket
        self.address = socket_address(value) if value else None
        if value and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is not a path or @abstract name: systemd notifications are off", value)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """One datagram of ``KEY=VALUE`` lines (newlines inside a value become spaces)."""
        if self.address is None:
            return False
        text = "\n".join(f"{k}={str(v).replace(chr(10), ' ')}" for k, v in fields.items())
        with self._lock:
            try:
                if self._sock is None:
                    # non-blocking: a receiver that stops reading (its queue holds ~10 datagrams) must not
                    # freeze the caller -- the datagram is dropped and logged instead
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                self._sock.sendto(text.encode("utf-8", "replace"), self.address)
                self._failed = False
                return True
            except OSError as e:
                if not self._failed:
                    log.warning("sd_notify to %r failed: %s", self.address.replace("\0", "@"), e)
                self._failed = True
                return False

    def ready(self, status: str = "") -> bool:
        return self.send(READY=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str = "") -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status else {}))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
