"""Fleet evaluation: many bags, one task each, on a local process pool or a Dask cluster.

``perception eval --bags DIR|GLOB|LIST`` (:mod:`perception.fleet.cli`): every input bag is one task;
a worker loads the model once and runs the bag's camera frames through the Perceptor (offline, the
fast path) or through a real ROS graph (``--ros``: ``perception replay`` on a private ROS domain per
worker), then scores them against the bag's ground truth with the project's metrics. Results are
cached by bag content hash + model sha + config, so a re-run skips finished bags; a bag whose worker
crashed is retried and then reported as failed, never dropped. The engine (Dask) is optional and
imported only when asked for (``pip install .[fleet]``).
"""


class FleetError(RuntimeError):
    """A fleet evaluation cannot run as asked (no bags found, engine not installed, bad baseline)."""
