"""ONNX export, INT8 quantization and edge bundles.

``onnx.py`` (export + parity), ``quantize.py`` (dynamic / static INT8 that keeps
the audio front end in float), ``bundle.py`` (a folder ready for a Raspberry
Pi), ``graph.py`` (metadata and front-end nodes of an exported graph),
``clips.py`` (real windows for parity, calibration and agreement) and
``lstm.py`` (fast export of LSTMs). Submodules import torch / onnxruntime
lazily; importing this package imports neither.
"""
