"""Deployment: ONNX export, INT8 quantisation, TensorRT engine builds and their CLIs.

This layer sits above :mod:`perception.models` (the torch networks) and :mod:`perception.runtime`
(the backends that run deployed files), so models never know how they are run and the runtime never
knows how its files are made:

- ``export``: checkpoint -> ONNX (fp32) with the runtime's model record embedded; streamed parity;
- ``quantize``: fp32 ONNX -> INT8 QDQ, calibrated on what the pipeline feeds the network;
- ``engine``: ONNX -> TensorRT engine in the runtime's engine cache;
- ``ondemand``: the above made on first use, handed to the runtime's backend selection;
- ``export_cli`` / ``build_engine_cli``: ``perception export`` and ``perception build-engine``.

Import the submodules; this package import itself stays light (no torch).
"""
