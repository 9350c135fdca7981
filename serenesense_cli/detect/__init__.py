"""Detection: one streaming path for recordings and the live microphone.

``stream`` cuts blocks into windows (ring buffer), ``decisions`` turns window
scores into events (thresholds, smoothing, hysteresis, silence gate,
unknown), ``detector`` joins them, ``files`` and ``mic`` feed it, ``writers``
and ``render`` present the results. Nothing here imports torch: with an ONNX
model, detection runs on onnxruntime and numpy alone. See docs/detection.md.
"""
