"""Training recipes: YAML files in training/recipes/ mapped strictly onto these dataclasses (an unknown
key is an error, naming the keys that exist).

The Cross-Embodiment Data Curriculum (paper, "Native Pre-training Paradigm"):
  vae        the video VAE, trained first on the recipe's video (synthetic physics + sim frames), then frozen
  stage I    physical pretraining: open-world video, video-only flow matching (no actions, zero joints)
  stage II   embodied pretraining: robot/human behaviour video with task text, actions hidden
  stage III  joint world-action training on robot trajectories: video + action chunk flow matching
Each stage starts from the previous stage's weights (the trainer carries them over).

A recipe may start from another with `base: OTHER.yaml` (a path relative to its own file) and write
only what it changes: mappings merge key by key (`model`, `vae`, and nested ones such as `model.und`),
`stages` merge by stage name (a stage the base does not have is appended), and every other value,
lists included, replaces the base's (`null` sets a key to None). Such a recipe must set its own `name`
and `out`, so that it never trains into its base's run folder. `read_recipe` resolves the chain;
distillation recipes (training/distill.py) use the same rule.
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import yaml


@dataclass
class SourceConfig:
    """One data layer in a stage's mixture.
    kind: synthetic_physics | video_folder | lerobot | rosbag | sim_expert.
    path: folder (video_folder), dataset directory (lerobot), folder of recorded episodes (rosbag: the
    kairos_ros recorder's output, converted once); for sim_expert, the dataset is collected
    there first when missing (tasks, episodes). weight: sampling share in the mixture.
    actions: use the action labels (stage III); False hides them (stage II). control_hz: for
    sim_expert, the control rate the demonstrations are collected at (kairos collect --control-hz).
    camera: for sim_expert, the simulator camera its frames (and the held-out episodes') come from.
    aux_only: the source's frames and object/goal positions (observation.environment_state) feed only
    the stage's position loss (`aux_weight`), never the video or action loss: labelled scenes, e.g. a
    `kairos collect --snapshots` dataset (lerobot kind), which no other role accepts.
    command_joints: for rosbag, joints whose action labels come from the commanded trajectory rather
    than the next joint state (a gripper; training/data/bags.py)."""
    kind: str
    weight: float = 1.0
    path: Optional[str] = None
    tasks: List[str] = field(default_factory=list)
    episodes: int = 0
    first_variation: int = 0
    actions: bool = False
    clips: int = 2048
    control_hz: float = 10.0
    camera: str = "corner2"
    aux_only: bool = False
    command_joints: List[str] = field(default_factory=list)


@dataclass
class StageConfig:
    """name: I, II or III. objective: video | video+action. frames: the clip-length ramp, one entry
    per equal share of the steps (e.g. [8, 12] = 8 frames in the first half, 12 after).
    resolution: frame side in pixels. steps, lr, batch, grad_accum: optimisation. anchors: how many
    frames of each clip predict their future per step (a random subset; fewer is cheaper per step).
    minutes: an optional wall-clock budget: the stage ends at `steps` or when it is spent, whichever
    comes first, with the learning-rate schedule following the one further along (for "same time
    budget" comparisons and for GPU leases; a budgeted run is not step-for-step reproducible).
    aux_weight > 0: a position head (training only, not exported) regresses the simulator's object and
    goal positions from the understanding encoder's image tokens, on every frame of the stage's clips
    that has them and on `aux_batch` frames (0: `batch`) of its aux_only sources per step, with this
    weight; it teaches the image tokens the action expert reads where small objects are.
    gate_weight > 0 (with und.keypoint_select): a cross-entropy with this weight teaches the keypoint
    gate which task each clip's instruction names (clips whose instruction is a keypoint task's,
    kairos_sim INSTRUCTIONS; others add nothing), so the world model is handed that task's readings;
    0: the gate learns end to end from the flow loss alone."""
    name: str
    objective: str
    sources: List[SourceConfig]
    steps: int
    lr: float = 1e-3
    batch: int = 8
    grad_accum: int = 1
    frames: List[int] = field(default_factory=lambda: [8])
    resolution: int = 64
    warmup: int = 50
    anchors: int = 4          # prediction anchors drawn per clip and step (all frames: 0)
    minutes: Optional[float] = None
    aux_weight: float = 0.0
    aux_batch: int = 0
    gate_weight: float = 0.0

    def __post_init__(self):
        if any(s.aux_only for s in self.sources) and self.aux_weight <= 0:
            raise ValueError(f"stage {self.name}: aux_only sources need aux_weight > 0 (they feed only that loss)")
        if all(s.aux_only for s in self.sources):
            raise ValueError(f"stage {self.name}: every source is aux_only; the stage needs clips to train on")
        if self.objective not in ("video", "video+action"):
            raise ValueError(f"stage {self.name}: objective must be 'video' or 'video+action', got {self.objective!r}")
        if self.objective == "video+action" and not any(s.actions and not s.aux_only for s in self.sources):
            raise ValueError(f"stage {self.name}: a video+action stage needs a source with actions: true")

    def frames_at(self, step: int) -> int:
        i = min(len(self.frames) - 1, step * len(self.frames) // max(1, self.steps))
        return self.frames[i]


@dataclass
class VAEStageConfig:
    """The VAE is trained before stage I on `sources` (5-frame clips), then frozen.

    per_frame: split every 5-frame clip into five 1-frame clips. The world model encodes and decodes
    each frame alone (the deployed engine does), which uses only the VAE's first-frame path; trained
    on 5-frame clips, four fifths of the loss goes to the 4x temporal path instead. Same frames per
    step.
    crop: train on random crop x crop windows of the frames (a multiple of the VAE's spatial
    downsampling; None = whole frames). The VAE is convolutional, so it is used on whole frames
    afterwards; a 32 px crop of a 64 px frame costs a quarter of the compute per step."""
    steps: int = 800
    lr: float = 1e-3
    batch: int = 8
    per_frame: bool = False
    crop: Optional[int] = None
    sources: List[SourceConfig] = field(default_factory=lambda: [SourceConfig(kind="synthetic_physics")])


@dataclass
class RecipeConfig:
    """preset + model overrides: the world model (WorldModelConfig field -> value; `und` and `shift`
    take dicts of UnderstandingConfig / flow.ShiftConfig fields). joint_names: the model's
    action/proprio order. out: run directory. ema_decay: EMA of weights (what is exported; the
    largest decay: it warms up as (1+t)/(10+t) from the stage's first step). eval_episodes: held-out episodes for the
    end-of-training metrics. fsdp: shard with FSDP instead of DDP when run under torchrun.
    init_from: a checkpoint/artifact to start from (fine-tuning): its config, weights, VAE, latent
    scale and normalisation are kept; `model` overrides then apply on top of its config, and its
    weights must still fit (e.g. und.image_positions, which adds no parameters; a change of shape is
    an error).
    renormalize: with init_from, compute the joint/action normalisation from this recipe's action data
    instead (new tasks whose joint ranges the pretrained model's statistics do not cover).
    new_embodiment: with init_from, the robot is another one (other joints, or another count):
    joint_names are its joints and set the model's action and proprio width; the joint layers start
    new, everything else (VAE, understanding encoder, video and action experts) is kept, and the
    normalisation comes from this recipe's action data. Without it, joint names that differ from the
    checkpoint's are an error.
    relative_actions: the action chunk is learned (and run) as offsets from the joint state at the
    frame it is predicted from, instead of absolute joint targets.
    keypoints_from: a keypoint artifact (training.experiments.goal_pixels): the understanding encoder
    gets its keypoint net, frozen, and one more image token made from its readings (the object's
    and goal's pixel and height per task; UnderstandingConfig.keypoint_tasks; with
    model.und.keypoint_select one token per task, mixed by the instruction); the token's layers
    are trained, and on top of init_from they start new."""
    name: str
    preset: str = "tiny"
    model: Dict[str, Any] = field(default_factory=dict)
    joint_names: List[str] = field(default_factory=list)
    seed: int = 0
    out: str = "runs/tiny"
    vae: VAEStageConfig = field(default_factory=VAEStageConfig)
    stages: List[StageConfig] = field(default_factory=list)
    ema_decay: float = 0.995
    checkpoint_every: int = 200
    log_every: int = 20
    eval_episodes: int = 10
    fsdp: bool = False
    init_from: Optional[str] = None
    renormalize: bool = False
    new_embodiment: bool = False
    relative_actions: bool = False
    keypoints_from: Optional[str] = None


def _strict(cls, d: Dict[str, Any], where: str) -> Dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)} in {where}; known: {sorted(known)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in d]
    if missing:
        raise ValueError(f"{where} needs {', '.join(missing)} (no default)")
    return dict(d)


def _source(d, where):
    src = SourceConfig(**_strict(SourceConfig, d, where))
    if src.command_joints and src.kind != "rosbag":
        raise ValueError(f"{where}: command_joints labels recorded bags (kind: rosbag), not a {src.kind!r} source")
    return src


def recipe_from_dict(d: Dict[str, Any]) -> RecipeConfig:
    d = _strict(RecipeConfig, d, "recipe")
    if "vae" in d:
        v = _strict(VAEStageConfig, d["vae"], "recipe.vae")
        if "sources" in v:
            v["sources"] = [_source(s, "recipe.vae.sources[]") for s in v["sources"]]
        d["vae"] = VAEStageConfig(**v)
    stages = []
    for i, s in enumerate(d.get("stages", [])):
        s = _strict(StageConfig, s, f"recipe.stages[{i}]")
        s["sources"] = [_source(x, f"recipe.stages[{i}].sources[]") for x in s.get("sources", [])]
        stages.append(StageConfig(**s))
    d["stages"] = stages
    if d.get("new_embodiment") and not d.get("init_from"):
        raise ValueError("new_embodiment: true needs init_from (the checkpoint whose weights the new robot starts from)")
    return RecipeConfig(**d)


def merge_recipe(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    """`child` written over `base` (see the module docstring); neither is modified."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if key == "stages" and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_stages(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_recipe(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_stages(base: List[Any], child: List[Any]) -> List[Any]:
    names = [s.get("name") if isinstance(s, dict) else None for s in base]
    out = list(base)
    for i, stage in enumerate(child):
        if not isinstance(stage, dict) or "name" not in stage:
            raise ValueError(f"stages[{i}] of a recipe with a base needs a name (stages merge by name), got {stage!r}")
        if stage["name"] in names:
            j = names.index(stage["name"])
            out[j] = merge_recipe(out[j], stage)
        else:
            out.append(copy.deepcopy(stage))
            names.append(stage["name"])
    return out


def read_recipe(path: str, own_keys: Sequence[str] = ("name", "out"), _chain: tuple = ()) -> Dict[str, Any]:
    """A recipe file as a mapping with its `base:` chain resolved (module docstring). own_keys: what a
    recipe with a base must set itself."""
    where = os.path.abspath(path)
    if where in _chain:
        raise ValueError("recipe bases form a cycle: " + " -> ".join(_chain + (where,)))
    with open(path) as f:
        d = yaml.safe_load(f)
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a recipe is a mapping of keys, got {type(d).__name__}")
    base = d.pop("base", None)
    if base is None:
        return d
    if not isinstance(base, str):
        raise ValueError(f"{path}: base must be the path of another recipe, got {base!r}")
    base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(where), base)
    if not os.path.isfile(base_path):
        raise FileNotFoundError(f"{path}: its base recipe {base!r} does not exist (looked for {base_path})")
    missing = [k for k in own_keys if k not in d]
    if missing:
        raise ValueError(f"{path}: a recipe with a base must set its own {' and '.join(missing)} "
                         f"(else it would train into {base}'s run)")
    return merge_recipe(read_recipe(base_path, own_keys, _chain + (where,)), d)


def load_recipe(path: str, overrides: Optional[Dict[str, Any]] = None,
                stage_overrides: Sequence[str] = ()) -> RecipeConfig:
    """overrides: top-level keys. stage_overrides: "STAGE.KEY=YAML" strings (e.g. "III.steps=300"),
    each setting one key of the named stage before the recipe is built and checked."""
    d = read_recipe(path)
    d.update(overrides or {})
    stages = {s.get("name"): s for s in d.get("stages", []) if isinstance(s, dict)}
    for item in stage_overrides:
        key, sep, value = item.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"a stage override is STAGE.KEY=VALUE, got {item!r}")
        if stage not in stages:
            raise ValueError(f"stage override {item!r}: no stage {stage!r} in the recipe (stages: {sorted(stages)})")
        stages[stage][name] = yaml.safe_load(value)
    return recipe_from_dict(d)
