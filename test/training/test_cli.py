"""The `kairos` command: a wrong path or a refused file is one clear line and exit status 2, not a
traceback; KAIROS_DEBUG=1 brings the traceback back; a bug keeps its traceback."""
import pytest

from training import cli


def test_a_missing_artifact_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KAIROS_DEBUG", raising=False)
    rc = cli.main(["evaluate", "--artifact", str(tmp_path / "nowhere"), "--tasks", "reach-v3", "--episodes", "1",
                   "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "kairos evaluate: error: no artifact at" in err and "Traceback" not in err, err
    assert "training/evaluate.py" in err                     # where it was raised, for a bug report
    monkeypatch.setenv("KAIROS_DEBUG", "1")
    assert cli.main(["export", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "kairos export: error: no checkpoint at" in err, err


def test_a_bug_keeps_its_traceback(monkeypatch):
    import training.model_info as mi

    def broken(argv):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(mi, "main", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["model-info", "tiny"])


def test_kairos_bench_runs_any_benchmark_of_the_checkout(capsys, monkeypatch):
    """`kairos bench NAME` is bench/NAME.py (and `memory` its old alias), with bench/ importable as when
    run directly; its exit status comes back."""
    import sys
    from training.cli import bench_names, main
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    names = bench_names()
    assert {"act_latency", "onnx_norms", "paired_evals", "memory_scaling", "memory"} <= set(names)
    assert "bench_util" not in names
    assert main(["bench", "paired_evals", "--help"]) == 0
    assert "usage: paired_evals.py" in capsys.readouterr().out
    assert main(["bench", "memory", "--help"]) == 0
    assert "usage: memory_scaling.py" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "no_such_bench"])
