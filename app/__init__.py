"""Atelier: a local image-generation web UI in the AUTOMATIC1111 style."""

__version__ = "0.1.0"
