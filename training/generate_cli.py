"""`kairos generate`: roll the world model forward from an image and a prompt into a video.

    kairos generate --checkpoint runs/ckpt --image first.png --prompt "a red ball falls" --frames 65 --out clip.mp4

The clip may be far longer than any training clip: generation streams through the fixed-size memory.
"""
from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from tqdm import tqdm

from kairos_model.checkpoint import load_checkpoint
from kairos_model.generate import GenerateConfig, WorldGenerator


def read_image(path: str, size) -> torch.Tensor:
    """PNG/JPEG -> float [3, H, W] in [0, 1], resized to `size` (H, W)."""
    from PIL import Image
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} not found")
    img = Image.open(path).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def write_video(frames_tchw: torch.Tensor, path: str, fps: int = 10) -> None:
    """Frames in [0, 1] -> an H.264 mp4 (PyAV), an animated GIF when path ends in .gif, or a strip of
    up to 12 evenly spaced frames (twice their size) when it ends in .png."""
    arr = (frames_tchw.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".png"):
        from PIL import Image
        idx = np.unique(np.linspace(0, len(arr) - 1, min(12, len(arr))).round().astype(int))
        strip = Image.fromarray(np.concatenate([arr[i] for i in idx], axis=1))
        strip.resize((strip.width * 2, strip.height * 2), Image.NEAREST).save(path)
        return
    if path.endswith(".gif"):
        from PIL import Image
        ims = [Image.fromarray(a) for a in arr]
        ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
        return
    import av
    with av.open(path, mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = arr.shape[2], arr.shape[1]
        stream.pix_fmt = "yuv420p"
        for a in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="kairos generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="directory written by save_checkpoint")
    ap.add_argument("--image", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cfg-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--out", default="clip.mp4", help=".mp4, .gif, or .png (a strip of frames)")
    args = ap.parse_args(argv)
    cfg, parts = load_checkpoint(args.checkpoint)
    import json
    with open(os.path.join(args.checkpoint, "config.json")) as f:
        latent_scale = float((json.load(f).get("meta") or {}).get("latent_scale", 1.0))
    gen = WorldGenerator(parts["world_model"], parts["vae"], parts["understanding"], latent_scale)
    s = cfg.vae_config.spatial_down
    image = read_image(args.image, (cfg.latent_hw[0] * s, cfg.latent_hw[1] * s))
    frames = []
    with tqdm(total=args.frames, desc="generate", unit="frame") as bar:
        for f in gen.stream(image, args.prompt, GenerateConfig(args.frames, args.steps, args.cfg_scale, args.seed)):
            frames.append(f)
            bar.update(1)
    write_video(torch.stack(frames), args.out, args.fps)
    print(f"wrote {len(frames)} frames to {args.out}")


if __name__ == "__main__":
    main()
