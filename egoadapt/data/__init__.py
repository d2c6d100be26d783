"""Data layer: annotations -> Sample (load), splits, frames, input cache, prompts.

Submodules import their heavy dependencies (PIL, decord, torch) only where needed; import
what you use from them directly, e.g. `from egoadapt.data.load import load_samples`.
"""
