"""predictions.jsonl takes any text a model can produce: a lone surrogate, NULs, a 1 MB output."""
from __future__ import annotations

from egoadapt.eval.generate import Item, PredictionsLog


def test_any_output_is_written_and_read_back(tmp_path):
    log = PredictionsLog(tmp_path / "predictions.jsonl")
    odd = ["{\"prediction\": \"B\ud800\"}", "\x00\x00", "x" * 1_000_000, "\udcff tail"]
    log.append({"id": str(i), "qa": "close", "output": text} for i, text in enumerate(odd))
    (tmp_path / "predictions.jsonl").read_bytes().decode("utf-8")  # strict UTF-8: nothing unencodable written
    done = log.load()
    assert [done[Item(str(i), "close")]["output"] for i in range(len(odd))] == [
        "{\"prediction\": \"B\ufffd\"}", "\x00\x00", "x" * 1_000_000, "\ufffd tail"]
