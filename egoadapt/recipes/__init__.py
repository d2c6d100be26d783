"""egoadapt's training recipes (a package, for Hydra's pkg://egoadapt.recipes)."""
