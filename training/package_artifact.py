"""`kairos package-artifact RUN/artifact --out artifacts/NAME [--half]`: turn a training run's export into
a shippable artifact directory: the same config.json and safetensors (optionally stored in float16,
half the size; loading casts back to float32), plus manifest.json with the sha256 of every file, the
command that rebuilds it and provenance. `kairos_model.checkpoint.load_checkpoint` verifies the
manifest when one is present and refuses a tampered or truncated file."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file, save_file

from kairos_model.checkpoint import MANIFEST, sha256_file
from kairos_model.durable import staged_dir


def package(src: str, out: str, half: bool, rebuild: str) -> dict:
    if not os.path.isfile(os.path.join(src, "config.json")):
        raise FileNotFoundError(f"{src} has no config.json: not a checkpoint written by kairos train")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    with staged_dir(out) as tmp:         # complete or absent: written beside `out`, then renamed over it
        shutil.copy(os.path.join(src, "config.json"), os.path.join(tmp, "config.json"))
        for f in sorted(os.listdir(src)):
            if f.endswith(".safetensors"):
                t = load_file(os.path.join(src, f))
                if half:
                    t = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in t.items()}
                save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(tmp, f))
        files = {f: sha256_file(os.path.join(tmp, f)) for f in sorted(os.listdir(tmp)) if f != MANIFEST}
        manifest = {"format": "kairos-artifact-1", "files": files, "weights_dtype": "float16" if half else "float32",
                    "rebuild": rebuild, "source": src, "git_commit": commit,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__}
        with open(os.path.join(tmp, MANIFEST), "w") as f:
            json.dump(manifest, f, indent=2)
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="kairos package-artifact", description=__doc__)
    ap.add_argument("src", help="a checkpoint directory (e.g. runs/tiny/artifact)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--half", action="store_true", help="store float32 weights as float16")
    ap.add_argument("--rebuild", default="kairos train training/recipes/tiny.yaml",
                    help="the command that rebuilds the source (recorded in the manifest)")
    args = ap.parse_args(argv)
    m = package(args.src, args.out, args.half, args.rebuild)
    print(f"wrote {args.out} ({len(m['files'])} files, sha256 in {MANIFEST})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
