"""World understanding: the instruction text and the current camera frame -> conditioning tokens.

    enc = UnderstandingEncoder(UnderstandingConfig(dim=128))
    tokens_bmc = enc(["press the button"], image_bchw)      # [B, M, C], M = text_tokens + image_tokens

Defaults that work offline and train with the model:
- text: a hashed word tokenizer (no vocabulary file; unknown words still map somewhere stable) and a
  small transformer, pooled to a fixed number of tokens by learned queries;
- image: a small CNN over the current frame, pooled to a few tokens.
`QwenTextEncoder` swaps the text part for a Qwen-family language model loaded from a local path
(the paper uses a Qwen VLM); nothing is ever downloaded.

The text tokens can be dropped per sample (`drop_text`) and replaced by a learned null, which is what
classifier-free guidance on the instruction uses.
"""
from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from kairos_model.keypoints import (POINTS, KeypointNet, KeypointNetConfig, hold_static, peak_confidence, read_peaks,
                                    static_channels)


@dataclass
class UnderstandingConfig:
    """dim: width of the output tokens (the world model's width). vocab_buckets: size of the hashed
    word vocabulary. max_words: longest instruction kept. text_layers / text_heads: the text
    transformer. text_tokens / image_tokens: tokens out per modality. image_channels: CNN width.
    qwen_path: a local directory with a Qwen-family model; when set, it replaces the text encoder.
    image_positions: add a fixed 2D sine-cosine code of each cell's place to the CNN's feature grid
    before the attention pool (no parameters), so the image tokens can say where a small object is
    and not only that it is there (the pool's queries are otherwise blind to position); off in
    configs that predate it, so their artifacts behave as trained.
    keypoint_tasks: with task names, a keypoint net (kairos_model.keypoints) reads each task's object
    and goal at the pixel level from the frame (of side keypoint_image_size, net width
    keypoint_width), and its readings (pixel and height of every task's points) become one more
    image token; its weights come from a trained keypoint artifact (recipe `keypoints_from`) and
    stay frozen. Empty (no token, no parameters) in configs that predate it.
    keypoint_select: one keypoint token per task instead of one of all tasks' readings: the image
    encoder puts out one token per keypoint task (that task's readings through a shared MLP, plus a
    learned task embedding), and UnderstandingEncoder.combine mixes them into one token by the
    instruction (a softmax over tasks from the text tokens; learned end to end, or taught the
    instruction's own task by a training stage's gate_weight). Off (one token of all readings) in
    configs that predate it.
    keypoint_hold: at run time (the engines, not training, whose clips read every frame alone), each
    episode keeps the goal readings of the frame where the keypoint net saw them most surely
    (kairos_model.keypoints.hold_static; the goal does not move within an episode, while the arm
    covers it for part of the episode): the streaming state carries them. Off in configs that
    predate it."""
    dim: int = 128
    vocab_buckets: int = 4096
    max_words: int = 24
    text_layers: int = 2
    text_heads: int = 4
    text_tokens: int = 4
    image_tokens: int = 4
    image_channels: int = 32
    qwen_path: Optional[str] = None
    image_positions: bool = False
    keypoint_tasks: List[str] = field(default_factory=list)
    keypoint_image_size: int = 64
    keypoint_width: int = 32
    keypoint_select: bool = False
    keypoint_hold: bool = False

    @property
    def image_out_tokens(self) -> int:
        """Image tokens out of the image encoder: the pooled ones and the keypoint token(s): one, or
        one per keypoint task with keypoint_select (combine() gates those into one)."""
        if not self.keypoint_tasks:
            return self.image_tokens
        return self.image_tokens + (len(self.keypoint_tasks) if self.keypoint_select else 1)

    @property
    def tokens(self) -> int:
        """Conditioning tokens the world model sees per frame (after combine())."""
        return self.text_tokens + self.image_tokens + int(bool(self.keypoint_tasks))


_WORD = re.compile(r"[a-z0-9]+")


def hash_tokenize(texts: Sequence[str], buckets: int, max_words: int):
    """Lowercased words -> ids in [1, buckets) by crc32 (stable across runs and machines); 0 pads.
    Returns (ids [B, max_words] long, valid [B, max_words] bool)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one string")
    ids = torch.zeros(len(texts), max_words, dtype=torch.long)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"instruction {i} is a {type(t).__name__}, expected str")
        words = _WORD.findall(t.lower())[:max_words]
        for j, w in enumerate(words):
            ids[i, j] = 1 + zlib.crc32(w.encode()) % (buckets - 1)
    return ids, ids > 0


class AttentionPool(nn.Module):
    """Learned queries cross-attend to a token set: [B, L, C] (+ valid mask) -> [B, Q, C]."""

    def __init__(self, dim: int, queries: int, heads: int = 4):
        super().__init__()
        self.q = nn.Parameter(torch.randn(queries, dim) * dim ** -0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, valid: Optional[torch.Tensor] = None):
        q = self.q.unsqueeze(0).expand(x.shape[0], -1, -1)
        pad = None
        if valid is not None:
            valid = valid.clone()
            valid[:, 0] |= ~valid.any(1)          # an empty instruction still has one key to attend to
            pad = ~valid
        out, _ = self.attn(q, x, x, key_padding_mask=pad, need_weights=False)
        return self.norm(out + q)


class HashedTextEncoder(nn.Module):
    """Instructions -> [B, text_tokens, dim], trained from scratch with the model."""

    def __init__(self, cfg: UnderstandingConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_buckets, cfg.dim)
        self.pos = nn.Parameter(torch.zeros(cfg.max_words, cfg.dim))
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.text_heads, 2 * cfg.dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.pool = AttentionPool(cfg.dim, cfg.text_tokens, cfg.text_heads)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        ids, valid = hash_tokenize(texts, self.cfg.vocab_buckets, self.cfg.max_words)
        ids, valid = ids.to(self.pos.device), valid.to(self.pos.device)
        h = self.embed(ids) + self.pos
        h = self.encoder(h, src_key_padding_mask=~(valid | ~valid.any(1, keepdim=True)))
        return self.pool(h, valid)


class QwenTextEncoder(nn.Module):
    """A Qwen-family language model from a local directory (frozen) + a trained projection and pool.

    Loads with `transformers` and local_files_only=True: give it a directory holding config.json,
    the weights and the tokenizer files (e.g. a downloaded Qwen2.5 or Qwen3 checkpoint)."""

    def __init__(self, cfg: UnderstandingConfig):
        super().__init__()
        path = cfg.qwen_path
        if not path or not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.json")):
            raise FileNotFoundError(
                f"Qwen model directory {path!r} not found (it must hold config.json, weights and tokenizer "
                "files). Download a Qwen checkpoint to a local folder and pass its path; nothing is fetched "
                "at run time. Or leave qwen_path unset to use the built-in text encoder.")
        from transformers import AutoModel, AutoTokenizer
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.lm = AutoModel.from_pretrained(path, local_files_only=True).eval().requires_grad_(False)
        hidden = self.lm.config.hidden_size
        self.proj = nn.Linear(hidden, cfg.dim)
        self.pool = AttentionPool(cfg.dim, cfg.text_tokens, cfg.text_heads)
        self.max_words = cfg.max_words

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                               max_length=4 * self.max_words).to(self.proj.weight.device)
        with torch.no_grad():
            h = self.lm(**batch).last_hidden_state
        return self.pool(self.proj(h.to(self.proj.weight.dtype)), batch["attention_mask"].bool())


def sincos_2d(h: int, w: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed 2D position code [h * w, dim] (row-major cells): a quarter of the channels are sin and a
    quarter cos of the row at geometric frequencies, the other half the same of the column (dim % 4
    == 0)."""
    if dim % 4:
        raise ValueError(f"sincos_2d needs dim divisible by 4, got {dim}")
    q = dim // 4
    freq = 1.0 / (10000.0 ** (torch.arange(q, device=device, dtype=torch.float32) / q))      # [q]
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    ay, ax = ys.reshape(-1, 1) * freq, xs.reshape(-1, 1) * freq                             # [hw, q]
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1).to(dtype)


class ImageEncoder(nn.Module):
    """Current camera frame [B, 3, H, W] in [0, 1] -> [B, image_tokens, dim]."""

    def __init__(self, cfg: UnderstandingConfig):
        super().__init__()
        self.positions = cfg.image_positions
        c = cfg.image_channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, cfg.dim, 3, stride=2, padding=1))
        self.pool = AttentionPool(cfg.dim, cfg.image_tokens, cfg.text_heads)
        self.keypoints = None
        if cfg.keypoint_tasks:
            kcfg = KeypointNetConfig(list(cfg.keypoint_tasks), cfg.keypoint_image_size, cfg.keypoint_width)
            self.keypoints = KeypointNet(kcfg)
            self.select = cfg.keypoint_select
            per_token = 3 * len(POINTS) if self.select else 3 * kcfg.channels    # readings into one token
            self.keypoint_token = nn.Sequential(nn.Linear(per_token, cfg.dim), nn.SiLU(),
                                                nn.Linear(cfg.dim, cfg.dim))
            if self.select:
                self.task_embed = nn.Parameter(torch.randn(len(kcfg.tasks), cfg.dim) * 0.02)

    def keypoint_readings(self, image_bchw: torch.Tensor, confidence: bool = False):
        """[B, 3, S, S] -> [B, C, 3]: each keypoint channel's peak (column, row in [-1, 1]) and height (m);
        with confidence=True also [B, C]: the peak's confidence (kairos_model.keypoints.peak_confidence)."""
        s = self.keypoints.cfg.image_size
        if tuple(image_bchw.shape[2:]) != (s, s):
            raise ValueError(f"the keypoint net reads {s}x{s} frames, got {tuple(image_bchw.shape[2:])}")
        logits, heights = self.keypoints(image_bchw)                   # [B, C, G, G] each
        B, C = logits.shape[:2]
        px, h = read_peaks(logits.flatten(0, 1), heights.flatten(0, 1), s)
        read = torch.cat([px / s * 2 - 1, h[:, None]], 1).view(B, C, 3)
        if not confidence:
            return read
        return read, peak_confidence(logits.flatten(0, 1)).view(B, C)

    def _check(self, image_bchw: torch.Tensor) -> None:
        if image_bchw.dim() != 4 or image_bchw.shape[1] != 3:
            raise ValueError(f"image must be [B, 3, H, W], got {tuple(image_bchw.shape)}")
        if not image_bchw.is_floating_point():
            raise TypeError(f"image must be floating point in [0, 1], got {image_bchw.dtype}")

    def _tokens(self, image_bchw: torch.Tensor, readings: Optional[torch.Tensor]) -> torch.Tensor:
        """The pooled tokens, then the keypoint token(s) of readings [B, C, 3] (when there is a net)."""
        h = self.net(image_bchw * 2 - 1)                       # [B, C, h, w]
        tokens = h.flatten(2).transpose(1, 2)                    # [B, h*w, C]
        if self.positions:
            tokens = tokens + sincos_2d(h.shape[2], h.shape[3], h.shape[1], h.device, tokens.dtype)
        out = self.pool(tokens)
        if readings is not None:
            k = readings.to(out.dtype)                                          # [B, C, 3]
            if self.select:                                                     # one token per task
                k = k.unflatten(1, (len(self.keypoints.cfg.tasks), len(POINTS))).flatten(2)   # [B, K, 3P]
                out = torch.cat([out, self.keypoint_token(k) + self.task_embed], 1)
            else:                                                               # one token of all readings
                out = torch.cat([out, self.keypoint_token(k.flatten(1))[:, None]], 1)
        return out

    def forward(self, image_bchw: torch.Tensor) -> torch.Tensor:
        self._check(image_bchw)
        return self._tokens(image_bchw, None if self.keypoints is None else self.keypoint_readings(image_bchw))

    def init_hold(self, batch: int, device=None):
        """The keypoint hold's state at an episode's start: held readings [B, C, 3] and confidences
        [B, C] (zeros: the first frame's readings are taken)."""
        C = self.keypoints.cfg.channels
        return torch.zeros(batch, C, 3, device=device), torch.zeros(batch, C, device=device)

    def forward_held(self, image_bchw: torch.Tensor, held_bc3: torch.Tensor, held_conf_bc: torch.Tensor):
        """One frame per row, in episode order: the tokens with the goal readings held
        (UnderstandingConfig.keypoint_hold). Returns (tokens, held, held_conf)."""
        self._check(image_bchw)
        if self.keypoints is None:
            raise ValueError("keypoint_hold needs a keypoint net (UnderstandingConfig.keypoint_tasks)")
        read, conf = self.keypoint_readings(image_bchw, confidence=True)
        static = static_channels(self.keypoints.cfg.tasks).to(read.device)
        read, held, held_conf = hold_static(read, conf, held_bc3.to(read.dtype), held_conf_bc.to(conf.dtype), static)
        return self._tokens(image_bchw, read), held, held_conf


class UnderstandingEncoder(nn.Module):
    """(instructions, current frame) -> conditioning tokens [B, text_tokens + image_tokens, dim]."""

    def __init__(self, cfg: UnderstandingConfig = UnderstandingConfig()):
        super().__init__()
        self.cfg = cfg
        self.text = QwenTextEncoder(cfg) if cfg.qwen_path else HashedTextEncoder(cfg)
        self.image = ImageEncoder(cfg)
        self.null_text = nn.Parameter(torch.zeros(cfg.text_tokens, cfg.dim))
        self.type_embed = nn.Parameter(torch.zeros(2, cfg.dim))
        if cfg.keypoint_tasks and cfg.keypoint_select:
            self.keypoint_gate = nn.Linear(cfg.dim, len(cfg.keypoint_tasks))

    def encode_text(self, texts: Sequence[str], drop_text: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, text_tokens, dim]; rows where drop_text [B] is True get the learned null (CFG)."""
        t = self.text(texts)
        if drop_text is not None:
            t = torch.where(drop_text.view(-1, 1, 1).to(t.device), self.null_text.to(t.dtype), t)
        return t + self.type_embed[0]

    def encode_image(self, image_bchw: torch.Tensor) -> torch.Tensor:
        return self.image(image_bchw) + self.type_embed[1]

    def encode_image_held(self, image_bchw: torch.Tensor, held_bc3: torch.Tensor, held_conf_bc: torch.Tensor):
        """encode_image with the goal readings held across an episode's frames (cfg.keypoint_hold;
        ImageEncoder.init_hold gives the state at its start) -> (tokens, held, held_conf)."""
        tokens, held, held_conf = self.image.forward_held(image_bchw, held_bc3, held_conf_bc)
        return tokens + self.type_embed[1], held, held_conf

    def keypoint_weights(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """text tokens [..., Mt, C] -> each keypoint task's weight [..., K] (softmax) for this
        instruction (keypoint_select)."""
        return self.keypoint_gate(text_tokens.mean(-2)).float().softmax(-1).to(text_tokens.dtype)

    def combine(self, text_tokens: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """The conditioning tokens of frames: text [B, Mt, C] (encode_text) and image [B, Mi_out, C]
        or [B, T, Mi_out, C] (encode_image) -> [B, (T,) cfg.tokens, C]. With keypoint_select the
        per-task keypoint tokens are gated into one by the instruction."""
        if image_tokens.dim() == 4:
            B, T = image_tokens.shape[:2]
            text_tokens = text_tokens.unsqueeze(1).expand(B, T, *text_tokens.shape[1:])
        if self.cfg.keypoint_tasks and self.cfg.keypoint_select:
            K = len(self.cfg.keypoint_tasks)
            g = self.keypoint_weights(text_tokens)                                  # [..., K]
            chosen = (g.unsqueeze(-1) * image_tokens[..., -K:, :]).sum(-2, keepdim=True)   # [..., 1, C]
            image_tokens = torch.cat([image_tokens[..., :-K, :], chosen], -2)
        return torch.cat([text_tokens, image_tokens], -2)

    def forward(self, texts: Sequence[str], image_bchw: torch.Tensor,
                drop_text: Optional[torch.Tensor] = None) -> torch.Tensor:
        if len(texts) != image_bchw.shape[0]:
            raise ValueError(f"{len(texts)} instructions for a batch of {image_bchw.shape[0]} images")
        return self.combine(self.encode_text(texts, drop_text), self.encode_image(image_bchw))
