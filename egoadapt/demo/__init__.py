"""`egoadapt demo` (`make demo`): the paper's study at laptop scale, CPU only (`egoadapt.demo.study`),
and its report (`egoadapt.demo.report`)."""
from egoadapt.demo.study import main

__all__ = ["main"]
