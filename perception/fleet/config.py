"""What a fleet run evaluates with: the model, the scoring and the mode (one frozen dataclass)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from perception.fleet import FleetError

RESULT_FORMAT = 1  # bump when a result's content changes: old cache entries are then ignored
MODES = ("offline", "ros")


@dataclass(frozen=True)
class FleetConfig:
    checkpoint: str = ""  # shipped name or .safetensors path (resolved by perception.weights)
    untrained: str = ""  # instead: a registry network with random weights (plumbing, benchmarks)
    model_seed: int = 0  # with untrained: torch seed of the weights
    input_size: tuple[int, int] = (256, 448)  # (H, W) with untrained; a checkpoint brings its own
    score_thresh: float = 0.3  # operating point of flicker / recall (mAP uses the full PR curve)
    mode: str = "offline"  # offline: the Perceptor in the worker; ros: `perception replay` on a private domain
    threads: int = 1  # intra-op threads per worker (single-threaded workers scale by processes)
    retries: int = 1  # a bag whose worker crashed or failed is tried this many more times, then reported failed
    keep_replays: str = ""  # ros mode: keep each bag's recorded outputs in <keep_replays>/<bag name> (many-bag replay)

    def __post_init__(self) -> None:
        if bool(self.checkpoint) == bool(self.untrained):
            raise FleetError("give exactly one of --checkpoint NAME|PATH and --untrained REGISTRY_NAME")
        if self.mode not in MODES:
            raise FleetError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.retries < 0 or self.threads < 1:
            raise FleetError("retries must be >= 0 and threads >= 1")

    def checkpoint_path(self) -> Path | None:
        """The checkpoint's path stem (as perception.weights resolves it), or None for an untrained network."""
        if not self.checkpoint:
            return None
        from perception.weights import resolve_checkpoint

        return resolve_checkpoint(self.checkpoint)

    def model_sha(self) -> str:
        """sha256 of the checkpoint file, or of the untrained network's recipe (name, seed, input size)."""
        path = self.checkpoint_path()
        if path is not None:
            from perception.core.files import sha256_file

            return sha256_file(path.with_suffix(".safetensors"))
        recipe = f"untrained:{self.untrained}:{self.model_seed}:{self.input_size}"
        return hashlib.sha256(recipe.encode()).hexdigest()

    def scoring(self) -> dict[str, Any]:
        """The fields that change a bag's result (threads, retries and where replays are kept do not)."""
        d = asdict(self)
        for k in ("checkpoint", "untrained", "threads", "retries", "keep_replays"):
            d.pop(k)
        return d


def cache_key(bag_sha: str, model_sha: str, cfg: FleetConfig) -> str:
    text = json.dumps({"bag": bag_sha, "model": model_sha, "config": cfg.scoring(), "format": RESULT_FORMAT},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class BagTask:
    """One bag to evaluate: its path, display name, content hash and cache key."""

    path: str
    name: str
    bag_sha: str
    key: str
