"""Config checks that run before a command loads or writes anything: every key known (with a
did-you-mean), types and ranges of every group, secrets refused, `out=` sane.

`check(cfg, command)` raises ConfigError listing every problem; `egoadapt.cli` calls it for
each command, `egoadapt.train.run.preflight` for training (with TRL's fields). Schemas:
`egoadapt.config.schema`. This package imports nothing from train/, eval/ or rollout/.
"""
from egoadapt.config.validate import ConfigError, check, problems, suggest
from egoadapt.config.values import is_secret_key, secret_message

__all__ = ["ConfigError", "check", "is_secret_key", "problems", "secret_message", "suggest"]
