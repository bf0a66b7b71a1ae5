"""patchbay: a self-hosted LLM service hub."""

__version__ = "0.1.0"
