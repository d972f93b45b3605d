"""Checkpoints: a directory with config.json and one safetensors file per model part.

    save_checkpoint("runs/ckpt", cfg, {"world_model": m, "vae": vae, "understanding": und})
    cfg, parts = load_checkpoint("runs/ckpt")          # rebuilt modules with their weights

Weights are safetensors only (never unpickled). The config is the full WorldModelConfig as JSON,
rebuilt strictly: an unknown key is an error, not a silent default. (The deployable artifact with
hashes and exported graphs is a later layer on top of this.)
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Tuple

import torch.nn as nn
from safetensors.torch import load_file, save_file

from kairos_model import flow
from kairos_model.durable import staged_dir
from kairos_model.memory.hybrid import HybridMemoryConfig
from kairos_model.understanding import UnderstandingConfig, UnderstandingEncoder
from kairos_model.vae import VideoVAE
from kairos_model.world_model import KairosWorldModel, WorldModelConfig

FORMAT = "kairos-checkpoint-1"
MANIFEST = "manifest.json"


def sha256_file(path: str) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_manifest(path: str) -> None:
    """If `path` has a manifest.json, every file it lists must exist with its sha256, and every
    file present must be listed. Raises ValueError naming the first problem."""
    mpath = os.path.join(path, MANIFEST)
    if not os.path.isfile(mpath):
        return
    with open(mpath) as f:
        files = json.load(f).get("files", {})
    for name, digest in files.items():
        fp = os.path.join(path, name)
        if not os.path.isfile(fp):
            raise ValueError(f"artifact {path!r}: {name} is listed in {MANIFEST} but missing")
        if sha256_file(fp) != digest:
            raise ValueError(f"artifact {path!r}: {name} does not match its sha256 in {MANIFEST} "
                             f"(tampered or truncated); refusing to load it")
    extra = []
    for root, _, names in os.walk(path):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), path)
            if rel != MANIFEST and rel not in files:
                extra.append(rel)
    if extra:
        raise ValueError(f"artifact {path!r}: {sorted(extra)[:5]} are not listed in {MANIFEST}; an artifact "
                         "holds exactly the files its manifest hashes (re-export or re-package it)")
_NESTED = {"memory": HybridMemoryConfig, "und": UnderstandingConfig, "shift": flow.ShiftConfig}


def config_to_dict(cfg: WorldModelConfig) -> dict:
    return dataclasses.asdict(cfg)


def _strict(cls, d: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in {where}; known: {sorted(known)}")
    return d


def config_from_dict(d: dict) -> WorldModelConfig:
    d = dict(_strict(WorldModelConfig, d, "world model config"))
    for k, cls in _NESTED.items():
        if k in d:
            d[k] = cls(**_strict(cls, d[k], f"world model config '{k}'"))
    return WorldModelConfig(**d)


def build_parts(cfg: WorldModelConfig) -> Dict[str, nn.Module]:
    return {"world_model": KairosWorldModel(cfg), "vae": VideoVAE(cfg.vae_config),
            "understanding": UnderstandingEncoder(cfg.und)}


def save_checkpoint(path: str, cfg: WorldModelConfig, parts: Dict[str, nn.Module], meta: dict = None) -> None:
    """Write the checkpoint folder `path` whole: it replaces what was there (kairos_model.durable:
    written beside it, fsynced, renamed), so a crash never leaves one part's new weights beside
    another's old ones."""
    with staged_dir(path) as tmp:
        for name, module in parts.items():
            tensors = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            save_file(tensors, os.path.join(tmp, f"{name}.safetensors"))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump({"format": FORMAT, "world_model": config_to_dict(cfg), "parts": sorted(parts),
                       "meta": meta or {}}, f, indent=2)


def load_checkpoint(path: str, require=("world_model", "vae", "understanding")
                    ) -> Tuple[WorldModelConfig, Dict[str, nn.Module]]:
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"no checkpoint at {path!r}: {cfg_path} is missing")
    verify_manifest(path)
    with open(cfg_path) as f:
        doc = json.load(f)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} has format {doc.get('format')!r}, expected {FORMAT!r}")
    cfg = config_from_dict(doc["world_model"])
    parts = build_parts(cfg)
    out = {}
    for name in require:
        file = os.path.join(path, f"{name}.safetensors")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"checkpoint {path!r} has no {name}.safetensors")
        missing, unexpected = parts[name].load_state_dict(load_file(file), strict=False)
        if missing or unexpected:
            raise ValueError(f"{file} does not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
        out[name] = parts[name]
    return cfg, out
