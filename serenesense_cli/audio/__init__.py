"""Audio input/output and the front-end feature modules."""

from serenesense_cli.audio.io import (
    SAMPLE_RATE,
    AudioInfo,
    load_audio,
    probe_audio,
    resample,
    stream_audio,
    write_audio,
)

__all__ = [
    "SAMPLE_RATE",
    "AudioInfo",
    "load_audio",
    "probe_audio",
    "resample",
    "stream_audio",
    "write_audio",
]
