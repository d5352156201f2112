"""Every metric and evaluation report, between the pipeline and the tools that use them.

- 2D detection, segmentation, temporal and attention metrics and their accumulator: :mod:`.metrics`;
  reports (Markdown, HTML, figures, comparison tables): :mod:`.report`
- checkpoints and backends on synthetic drives: :mod:`.synthetic`; 3D objects (fusion + tracking) on
  drives with LiDAR: :mod:`.objects` (box metrics in :mod:`.metrics3d`)
- tracking (CLEAR MOT, IDF1, AMOTA): :mod:`.tracking`; the synthetic world's ground truth as tracks and
  noisy detections: :mod:`.track_groundtruth`; the tracker on synthetic drives (``perception track-eval``):
  :mod:`.track_cli`
- real footage, agreement with a reference detector: :mod:`.agreement`; hand-labelled real images: pure
  metric functions in :mod:`.labelled`, the runs that produce what they score in :mod:`.labelled_run`
- recorded bags: outputs against a drive bag's ground truth, a Perceptor over a drive bag (the fleet's
  offline mode): :mod:`.bags`; golden regression of outputs against expected ones: :mod:`.golden`
- ``perception eval``: :mod:`.cli` (its ``--bags`` fleet mode is :mod:`perception.fleet`, above this package)
"""

from __future__ import annotations


class EvalError(ValueError):
    """Bad input to an evaluation: a label file, a metric's arguments; the message says what to do."""
