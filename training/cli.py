"""The `kairos` command. Subcommands import their modules lazily so that `kairos --help` is fast.

    kairos bench NAME [ARGS]            a benchmark: bench/NAME.py (memory = memory_scaling), e.g.
                                        kairos bench act_latency --backends onnx torch
    kairos experiment recall [ARGS]     Theorem 1 experiment (training/experiments/recall.py)
    kairos model-info PRESET            parameters per module, tokens per frame, state size
    kairos train-vae [ARGS]             train the video VAE on synthetic physics video
    kairos generate --checkpoint ...    image + prompt -> video, streamed chunk by chunk
    kairos collect --tasks ... --out D  expert demonstrations as a LeRobot dataset
    kairos train RECIPE.yaml            stages I-III of the curriculum (torchrun for several processes)
    kairos evaluate --artifact ...      closed-loop episodes in the simulator + report
    kairos sim-act                      the main job: the act node drives the simulated robot
    kairos demo                         the same, as `make demo` runs it
    kairos act --config config/act.yaml the act node in one process (configure + activate + spin)
    kairos record [--output-dir D]      the recorder node in one process (config/record.yaml)
    kairos replay BAG... [--rate R]     recorded episodes played onto the topics, the act node scored on them
    kairos distill RECIPE.yaml          teacher -> few-step student (consistency distillation + DMD)
    kairos export OUT --checkpoint C    ONNX graphs (+ TensorRT engines) and a verified manifest
    kairos verify ARTIFACT              hashes, graph signatures, and a run on every backend here
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
BENCH_ALIASES = {"memory": "memory_scaling"}


def bench_names() -> list:
    """Every bench/NAME.py of a source checkout (helpers excluded), and the aliases."""
    found = sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem != "bench_util")
    return found + sorted(a for a in BENCH_ALIASES if BENCH_ALIASES[a] in found)
EXPERIMENTS = {"recall": "training.experiments.recall"}
COMMANDS = {  # name: (module with main(argv), one-line help)
    "model-info": ("training.model_info", "parameters per module, tokens per frame, state size"),
    "train-vae": ("training.train_vae", "train the video VAE on synthetic physics video"),
    "generate": ("training.generate_cli", "image + prompt -> video, streamed chunk by chunk"),
    "collect": ("training.collect", "scripted-expert demonstrations -> LeRobot dataset"),
    "train": ("training.trainer", "the curriculum: kairos train training/recipes/tiny.yaml"),
    "evaluate": ("training.evaluate", "closed-loop episodes in the simulator, with a report"),
    "package-artifact": ("training.package_artifact", "a run's export -> shippable artifact with sha256 manifest"),
    "train-bc": ("training.baselines.bc", "the plain CNN+MLP behaviour-cloning baseline"),
    "dataset": ("training.data.bags", "dataset from-bags: recorded episodes -> LeRobot dataset"),
    "eval-bag": ("training.eval_bag", "offline evaluation of an artifact on recorded bags, with a report"),
    "sim-act": ("kairos_ros.sim_act_cli", "the main job: act node + simulated robot, closed loop, report"),
    "demo": ("training.cli:demo", "the main job as `make demo` runs it (sim-act, 5 episodes, report in runs/sim_act)"),
    "act": ("kairos_ros.act_cli", "run the act node in one process (configure, activate, spin)"),
    "record": ("kairos_ros.record_cli", "run the recorder node in one process: episodes into rosbag2 (mcap)"),
    "replay": ("kairos_ros.replay_cli", "recorded episodes played onto the topics through the act node, scored"),
    "distill": ("training.distill", "few-step distillation (consistency + DMD) of a trained checkpoint"),
    "export": ("training.export", "checkpoint -> deployed artifact: ONNX graphs (+ TensorRT engines), manifest"),
    "verify": ("training.export:verify_main", "check an artifact's hashes and graphs and run it on each backend"),
}


# What a wrong path, a bad file or a refused artifact raises: the command prints the message, not a
# traceback (KAIROS_DEBUG=1 shows it), and exits with 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
               ValueError)


def _report(cmd: str, e: BaseException) -> int:
    import os
    import traceback
    if os.environ.get("KAIROS_DEBUG"):
        traceback.print_exception(e)
    tb = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" ({os.path.relpath(tb.filename)}:{tb.lineno})" if tb else ""
    print(f"kairos {cmd}: error: {e}\n  [{type(e).__name__}{where}; KAIROS_DEBUG=1 shows the traceback]",
          file=sys.stderr)
    return 2


def demo(argv) -> int:
    """`make demo`'s main job: sim-act on 5 held-out episodes, report in runs/sim_act (further
    sim-act arguments override)."""
    from kairos_ros.sim_act_cli import main as sim_act
    return sim_act(["--episodes", "5", "--report", "runs/sim_act", *argv])


def _bench(name: str, rest) -> int:
    path = BENCH_DIR / f"{BENCH_ALIASES.get(name, name)}.py"
    if not path.is_file():
        print(f"kairos bench: {path} not found; benchmarks run from a source checkout of kairos_ros",
              file=sys.stderr)
        return 2
    sys.argv = [str(path), *rest]
    sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]      # as `python bench/NAME.py` would have it
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:                                     # the scripts end in sys.exit(main())
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos", description="Kairos-ROS: world action model on ROS 2")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="run a benchmark from bench/", add_help=False)
    b.add_argument("name", choices=bench_names() or list(BENCH_ALIASES))
    e = sub.add_parser("experiment", help="run an experiment", add_help=False)
    e.add_argument("name", choices=sorted(EXPERIMENTS))
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    args, rest = ap.parse_known_args(argv)
    if args.cmd in COMMANDS:
        import importlib
        mod, _, fn = COMMANDS[args.cmd][0].partition(":")
        entry = getattr(importlib.import_module(mod), fn or "main")
        try:
            rc = entry(rest)
        except USER_ERRORS as e:
            return _report(args.cmd, e)
        return rc if isinstance(rc, int) else 0
    if args.cmd == "bench":
        return _bench(args.name, rest)
    if args.cmd == "experiment":
        import importlib
        importlib.import_module(EXPERIMENTS[args.name]).main(rest)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
