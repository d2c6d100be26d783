"""egoadapt: adapt video multimodal LLMs to unfamiliar egocentric domains."""

__version__ = "0.1.0"
