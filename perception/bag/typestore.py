"""The rosbags typestore of this project: ROS 2 Kilted's standard types plus vision_msgs,
autoware_perception_msgs and foxglove_msgs.

Those are not part of rosbags' stores; their ``.msg`` definitions are registered from the installed
package (a ROS install or this repo's compatibility build) or, failing that, from the source tree's
``interfaces/<package>/msg`` (same fields, so the same type hashes).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGES = ("vision_msgs", "autoware_perception_msgs", "foxglove_msgs")  # registered on top of rosbags' Kilted store


def msg_dir(package: str) -> Path:
    """Directory holding a package's ``*.msg`` files (installed share, else the source tree)."""
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin:
        # <prefix>/lib/python3.X/site-packages/<pkg>/__init__.py -> <prefix>/share/<pkg>/msg
        installed = Path(spec.origin).resolve().parents[4] / "share" / package / "msg"
        if installed.is_dir():
            return installed
    return Path(__file__).resolve().parents[2] / "interfaces" / package / "msg"


def vision_msgs_dir() -> Path:
    """Directory holding vision_msgs' ``*.msg`` files (installed share, else the source tree)."""
    return msg_dir("vision_msgs")


@lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' Kilted typestore plus :data:`PACKAGES` (cached: building it takes ~0.1 s)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for package in PACKAGES:
        for f in sorted(msg_dir(package).glob("*.msg")):
            types.update(get_types_from_msg(f.read_text(encoding="utf-8"), f"{package}/msg/{f.stem}"))
    store.register(types)
    return store
