"""Attention networks (torch only): layers, the stan family, registry and checkpoints.

Import the submodules (``perception.models.registry``, ``.checkpoint``) — this package import
itself stays light so the CLI can list verbs without loading torch.
"""
