"""Evaluation against labelled real images: pure metric functions (numpy only) in :mod:`.labelled`, and
the runs that produce what they score (our Perceptor at the node's defaults, the evaluation-only
reference detector) in :mod:`.labelled_run`. The CLI is ``perception eval --images DIR --labels FILE``."""

from __future__ import annotations


class EvalError(ValueError):
    """A label file or an evaluation input cannot be used; the message says what to do."""
