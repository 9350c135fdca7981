"""Latency, throughput and memory of exported and torch models, on this host.

``latency.py`` measures one model end to end (waveform in, scores out),
``worker.py`` runs that in a fresh process, ``run.py`` runs several models with
a profile (``default`` or ``pi5``) and a budget, ``host.py`` describes the
machine (CPU, board, temperature, clock). Importing this package imports
neither torch nor onnxruntime.
"""
