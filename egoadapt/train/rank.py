"""One rank of a training job that started its own `accelerate launch` (`egoadapt.train.launch`):

    python -m egoadapt.train.rank <job>/config.yaml

trains exactly the resolved config the job wrote, in the job's folder.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from egoadapt.data.errors import DataError
from egoadapt.train.run import run


def main(argv: list[str] | None = None) -> int:
    """One rank of a launched job: train the resolved config at argv[0]."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m egoadapt.train.rank <job>/config.yaml (started by accelerate launch)")
    cfg = OmegaConf.load(args[0])
    out = Path(cfg.out)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(out / "train.log")])
    try:
        run(cfg, out)
    except DataError as e:
        raise SystemExit(f"egoadapt train: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
