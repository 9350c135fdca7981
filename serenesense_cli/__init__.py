"""serenesense: recognise battlefield sounds, from data preparation to a Raspberry Pi."""

__version__ = "0.1.0"
