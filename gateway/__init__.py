"""Loomgate gateway: the partner-facing reverse proxy, its admin listener and the CLI."""

__version__ = "0.1.0"
