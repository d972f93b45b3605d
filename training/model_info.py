"""`kairos model-info PRESET`: parameters per module, tokens per frame, streaming state size.

Built on the meta device, so even the 4B preset costs no memory."""
from __future__ import annotations

import argparse

import torch
from rich.console import Console
from rich.table import Table

from kairos_model.understanding import UnderstandingEncoder
from kairos_model.vae import VideoVAE
from kairos_model.world_model import WORLD_MODEL_PRESETS, KairosWorldModel, WorldModelConfig, count_parameters


def describe(preset: str) -> dict:
    cfg = WorldModelConfig.preset(preset)
    with torch.device("meta"):
        model, und, vae = KairosWorldModel(cfg), UnderstandingEncoder(cfg.und), VideoVAE(cfg.vae_config)
        state = model.init_state(1, dtype=torch.bfloat16 if preset == "kairos_4b" else torch.float32)
    rows = {
        "video VAE": count_parameters(vae),
        "understanding encoder": count_parameters(und),
        "embeddings (video, proprio, action, timestep)": sum(
            count_parameters(m) for m in (model.video_in, model.proprio_in, model.act_in, model.t_embed))
        + sum(p.numel() for p in (model.spatial_pos, model.future_pos, model.act_pos)),
        "MoT temporal mixers (SWA / DSWA / GDN)": sum(count_parameters(b.temporal) + count_parameters(b.t_norm)
                                                     for b in model.blocks),
    }
    for mod in ("video", "robot", "und"):
        rows[f"MoT '{mod}' modality (qkv, out, FFN, adaLN)"] = sum(count_parameters(b.parts[mod]) for b in model.blocks)
    rows["output heads"] = count_parameters(model.video_out) + count_parameters(model.act_out)
    return {"preset": preset, "cfg": cfg, "rows": rows, "total": sum(rows.values()),
            "state_bytes": state.nbytes(), "state_dtype": "bf16" if preset == "kairos_4b" else "fp32"}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="kairos model-info", description=__doc__)
    ap.add_argument("preset", choices=sorted(WORLD_MODEL_PRESETS))
    args = ap.parse_args(argv)
    d = describe(args.preset)
    cfg = d["cfg"]
    t = Table(title=f"Kairos world model '{args.preset}'")
    t.add_column("module")
    t.add_column("parameters", justify="right")
    for k, v in d["rows"].items():
        t.add_row(k, f"{v:,}")
    t.add_row("[bold]total[/bold]", f"[bold]{d['total']:,}[/bold] ({d['total'] / 1e9:.3f} B)")
    c = Console()
    c.print(t)
    h, w = cfg.latent_hw
    s = cfg.vae_config.spatial_down
    c.print(f"frames {h * s}x{w * s} -> latents {cfg.latent_channels}x{h}x{w} (VAE x{s} space, x{cfg.vae_config.time_down} time)"
            f" -> {cfg.video_tokens} video tokens + 1 proprio token per frame; understanding tokens {cfg.und.tokens};"
            f" predicts {cfg.future_frames} latent frames and {cfg.action_horizon}x{cfg.action_dim} actions")
    c.print(f"layers {len(cfg.memory.pattern)}: {' '.join(cfg.memory.pattern)}")
    c.print(f"streaming memory state: {d['state_bytes'] / 2**20:.2f} MiB per robot ({d['state_dtype']}), "
            "constant in the horizon")
    return d


if __name__ == "__main__":
    main()
