"""What a data load reports: one `Problem` (file, record, field, message), `DataError` raising
them, `LoadReport` counting them, and `handle`, which raises or counts one bad record by `on_error`."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    file: str
    record: str  # id or "#index"; "" for file-level problems
    field: str
    message: str
    kind: str = "bad_field"  # bad_field | missing_field | duplicate_id | missing_file | ...

    def __str__(self) -> str:
        where = f"{self.file}"
        if self.record:
            where += f": record {self.record}"
        if self.field:
            where += f": field '{self.field}'"
        # printable whatever the record held: a lone surrogate would make print() itself fail
        return f"{where}: {self.message}".encode("utf-8", "backslashreplace").decode("utf-8")


class DataError(ValueError):
    """A data problem with a message a user can act on (no library traceback needed)."""

    def __init__(self, problems: Problem | list[Problem]):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        msg = "; ".join(str(p) for p in self.problems[:5])
        if len(self.problems) > 5:
            msg += f"; ... and {len(self.problems) - 5} more"
        super().__init__(msg)


@dataclass
class LoadReport:
    """What a load found: problems, and how many records were loaded or skipped."""

    loaded: int = 0
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(p.kind for p in self.problems)
        return {"loaded": self.loaded, "skipped": self.skipped, **dict(sorted(c.items()))}


def handle(report: LoadReport, on_error: str, problems: list[Problem]) -> None:
    """One bad record: raise (on_error=raise) or count it as skipped."""
    if on_error == "raise":
        raise DataError(problems)
    report.problems.extend(problems)
    report.skipped += 1
