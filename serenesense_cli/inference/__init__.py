"""Inference backends: one protocol for torch run folders and ONNX files."""
