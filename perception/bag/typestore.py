"""The rosbags typestore of this project: ROS 2 Kilted's standard types plus vision_msgs.

vision_msgs is not part of rosbags' stores; its ``.msg`` definitions are registered from the
installed package (a ROS install or this repo's compatibility build) or, failing that, from the
source tree's ``interfaces/vision_msgs/msg`` (same fields, so the same type hashes).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any


def vision_msgs_dir() -> Path:
    """Directory holding vision_msgs' ``*.msg`` files (installed share, else the source tree)."""
    spec = importlib.util.find_spec("vision_msgs")
    if spec is not None and spec.origin:
        # <prefix>/lib/python3.X/site-packages/vision_msgs/__init__.py -> <prefix>/share/vision_msgs/msg
        installed = Path(spec.origin).resolve().parents[4] / "share" / "vision_msgs" / "msg"
        if installed.is_dir():
            return installed
    return Path(__file__).resolve().parents[2] / "interfaces" / "vision_msgs" / "msg"


@lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' Kilted typestore plus vision_msgs (cached: building it takes ~0.1 s)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for f in sorted(vision_msgs_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(encoding="utf-8"), f"vision_msgs/msg/{f.stem}"))
    store.register(types)
    return store
