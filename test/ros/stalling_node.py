"""perception_node whose torch backend stalls while the file named by ``$STALL_FILE`` exists (tests only).

The real node, worker and torch backend run; only ``infer`` waits on the file (it writes
``$STALL_FILE.started`` with the wall time when a stall begins), so a test can freeze the inference
worker mid-batch from outside the process -- what a hung GPU driver or a deadlocked runtime looks like.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from perception.runtime import select
from perception.runtime.select import BackendEntry, ModelSource, RuntimeConfig
from perception.runtime.torch_backend import TorchBackend


class StallingTorch(TorchBackend):
    def infer(self, inputs: dict[str, np.ndarray], skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
        flag = os.environ.get("STALL_FILE", "")
        if flag and os.path.exists(flag):
            Path(flag + ".started").write_text(repr(time.time()), encoding="utf-8")
            while os.path.exists(flag):
                time.sleep(0.01)
        return super().infer(inputs, skip)


def main() -> int:
    real = select.BACKENDS["torch"]

    def make(source: ModelSource, cfg: RuntimeConfig) -> Any:
        backend = real.make(source, cfg)
        backend.__class__ = StallingTorch
        return backend

    select.BACKENDS["torch"] = BackendEntry(real.unavailable, make)
    from perception.ros.nodes import perception_node

    return perception_node.main()


if __name__ == "__main__":
    sys.exit(main())
