"""`egoadapt eval sweep=DIR`: what it refuses and what it lists, without a model (the whole path with
trained jobs is tests/train/test_sweep_cluster.py)."""
from pathlib import Path

from egoadapt.cli import main as cli


def job(sweep: Path, name: str, override: str) -> Path:
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "overrides.yaml").write_text(f"- {override}\n")
    return sweep / name


def test_jobs_without_final_are_listed_and_nothing_is_written(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for i in range(2):
        job(sweep, str(i), f"trainer.learning_rate={i}")
    assert cli(["eval", f"sweep={sweep}", "data=synthetic", f"data.root={tmp_path}"]) == 2
    assert "no job has a final/ yet (2 jobs)" in capsys.readouterr().err
    assert not any((sweep / j / "eval").exists() for j in ("0", "1"))


def test_checkpoint_or_out_with_sweep_is_refused(tmp_path, capsys):
    job(tmp_path / "sweep", "0", "seed=1")
    for extra in ("checkpoint=runs/x/final", f"out={tmp_path / 'eval'}"):
        assert cli(["eval", f"sweep={tmp_path / 'sweep'}", "data=synthetic", f"data.root={tmp_path}", extra]) == 2
        assert f"leave {extra.split('=')[0]}= out" in capsys.readouterr().err


def test_a_folder_without_jobs_is_named(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert cli(["eval", f"sweep={tmp_path / 'runs'}", "data=synthetic", f"data.root={tmp_path}"]) == 2
    assert "no job folders" in capsys.readouterr().err
