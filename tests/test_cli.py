"""The command line: help lists every command, mistakes get a clear message."""
import pytest

from egoadapt.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for words in COMMANDS:
        assert " ".join(words) in out


def test_unknown_command_is_a_clear_error():
    with pytest.raises(SystemExit, match="unknown command 'trian'"):
        main(["trian", "out=x"])


def test_command_help_shows_its_defaults(capsys):
    assert main(["data", "synth", "--help"]) == 0
    assert "videos_per_domain" in capsys.readouterr().out


def test_bad_override_names_the_key():
    with pytest.raises(SystemExit, match="nonexistent"):
        main(["data", "synth", "out=/tmp/x", "nonexistent=1"])


def test_every_recipe_composes(capsys):
    from egoadapt.cli import recipes

    names = recipes()
    assert {"demo/tiny_sft", "demo/tiny_grpo", "egocross/sft_qwen2_5_vl_7b", "egocross/grpo_qwen2_5_vl_7b"} <= set(names)
    for name in names:
        assert main(["train", f"recipe={name}", "out=/tmp/x", "--cfg", "job"]) == 0
        out = capsys.readouterr().out
        assert "algorithm:" in out and "trainer:" in out


@pytest.mark.parametrize("flag", [["--cfg", "job"], ["--cfg=job"], ["-c", "job"], ["--cfg"]])
def test_every_command_prints_its_config_with_hydras_flag_spellings(flag, capsys):
    assert main(["eval", "checkpoint=ckpt", "out=/tmp/never-written", "+vllm.engine_kwargs.tensor_parallel_size=2",
                 *flag]) == 0
    out = capsys.readouterr().out
    assert "checkpoint: ckpt" in out and "tensor_parallel_size: 2" in out


def test_a_hydra_flag_a_command_does_not_take_is_refused():
    with pytest.raises(SystemExit, match="sweeps with -m are for `egoadapt train`"):
        main(["eval", "checkpoint=ckpt", "out=/tmp/x", "-m"])
