"""egoadapt's Hydra config groups and primary configs (a package, for Hydra's pkg://egoadapt.conf)."""
