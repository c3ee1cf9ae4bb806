"""One validated configuration tree for a training run.

A run config is a tree of dataclasses (``data``, ``model``, ``method``, ``optim``, ``train``,
``eval``). It is read from TOML, changed by ``--set key=value`` overrides and flattened to dotted
keys (``method.z_penalty``) for MLflow params. Every leaf may also be addressed by its bare name
(``z_penalty``) when that name is unique, and ``data`` names ``data.source``.

Every field carries its meaning and unit in ``metadata["help"]``; ``python -m suite.train --help``
prints them, so the help text cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBJECTIVES = ("dcgan", "aegan", "vaegan")
IMAGE_SIZES = (32, 64, 128)
RECON_LOSSES = ("mse", "l1")
DEVICES = ("auto", "cpu", "cuda")
EXTRACTORS = ("auto", "domain", "inception-v3-compat")
BACKGROUNDS = ("white", "black")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key, the value and what is allowed."""


def _field(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or default_factory for container defaults")
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class DataConfig:
    """Training data: which source, and how images are shaped."""

    source: str = _field(
        "mnist5k",
        "data source: mnist5k, stacked-mnist, ring8, grid25, mnist, fashion-mnist, cifar10 or "
        "imagefolder:PATH",
    )
    image_size: int = _field(32, "side of the square training images in pixels: 32, 64 or 128")
    channels: int = _field(0, "image channels, 1 (gray) or 3 (RGB); 0 keeps the source's own")
    holdout: float = _field(
        0.1, "fraction of the data held out of training for reconstruction metrics, 0 to 0.5"
    )
    limit: int = _field(0, "use only the first N examples of the source; 0 uses all")
    points: int = _field(20000, "number of points drawn for the 2-D sources ring8 and grid25")
    background: str = _field(
        "white", "colour that transparent pixels of image files are composited onto: white or black"
    )
    root: str = _field("data", "folder where torchvision sources are downloaded and cached")


@dataclass
class ModelConfig:
    """Network sizes; DCGAN convolutional nets for images, MLPs for 2-D points."""

    nz: int = _field(100, "latent size: width of z and of E's codes")
    ngf: int = _field(64, "base channel count of G (hidden width for 2-D data)")
    ndf: int = _field(64, "base channel count of D (hidden width for 2-D data)")
    nef: int = _field(64, "base channel count of E (hidden width for 2-D data)")
    pac: int = _field(1, "PacGAN packing: D judges this many samples stacked on the channel axis")


@dataclass
class MethodConfig:
    """The objective under study and its switches."""

    objective: str = _field("aegan", "training objective: dcgan, aegan or vaegan")
    z_penalty: float = _field(
        0.01, "lambda: weight of the penalty max(0, |E(x)|^2 - z_floor^2) (aegan only)"
    )
    z_floor: float = _field(
        0.0, "absolute code norm below which the z-penalty is zero; 0 is a plain |z|^2 penalty"
    )
    ae_to_d: bool = _field(False, "also train D to call reconstructions fake")
    recon_adv: bool = _field(False, "also train G to make reconstructions fool D")
    recon_loss: str = _field("mse", "pixel loss of the autoencoder path: mse or l1")
    recon_weight: float = _field(1.0, "weight of the reconstruction loss")
    kl_weight: float = _field(1.0, "weight of KL(q(z|x) || N(0, I)) (vaegan only)")


@dataclass
class OptimConfig:
    """Adam settings for the three networks."""

    lr_G: float = _field(2e-4, "Adam learning rate of G")
    lr_D: float = _field(2e-4, "Adam learning rate of D")
    lr_E: float = _field(2e-4, "Adam learning rate of E")
    betas: tuple[float, float] = _field((0.5, 0.999), "Adam betas (beta1, beta2), each in [0, 1)")


@dataclass
class TrainConfig:
    """The loop: batches, epochs, evaluation schedule, seed, device and output places."""

    batch_size: int = _field(64, "images (or points) per training step")
    epochs: int = _field(5, "passes over the training data")
    eval_every: int = _field(1, "evaluate every N epochs (the last epoch always); 0 only at the end")
    log_every: int = _field(50, "log per-step losses every N steps")
    seed: int = _field(0, "seed of every random number generator in the run")
    device: str = _field("auto", "auto (CUDA when present), cpu or cuda")
    amp: bool = _field(True, "bf16 autocast on CUDA; ignored on the CPU")
    channels_last: bool = _field(True, "channels_last memory format on CUDA; ignored on the CPU")
    compile: bool = _field(False, "torch.compile the networks (CUDA only)")
    out_dir: str = _field("outputs", "folder for checkpoints of this run")
    experiment: str = _field("aegan-suite", "MLflow experiment name")
    run_name: str = _field("", "MLflow run name; empty derives one from objective and seed")


@dataclass
class EvalConfig:
    """Evaluation at the evaluation points; sample counts set the cost."""

    enabled: bool = _field(True, "compute metrics at each evaluation point")
    extractor: str = _field(
        "auto",
        "feature extractor for FID/KID/PR/IS: auto (domain classifier for labelled data, else "
        "Inception), domain or inception-v3-compat",
    )
    inception_weights: str = _field(
        "", "local file with torch-fidelity's inception-v3-compat weights; empty uses torch-fidelity's "
        "download cache"
    )
    inception_download: bool = _field(
        False, "let torch-fidelity download the Inception weights (about 92 MB) when they are missing"
    )
    num_samples: int = _field(
        2000,
        "prior samples per evaluation for FID, KID, IS, precision/recall and 10-class mode coverage; "
        "also the most real images used as the reference (must exceed the feature width: 64 for the "
        "domain extractor, 192 on stacked-mnist, 2048 for Inception)",
    )
    radii: tuple[float, ...] = _field(
        (0.0, 0.25, 0.5, 0.75, 1.0, 1.25), "radius sweep: code norms in units of sqrt(nz), each >= 0"
    )
    radius_samples: int = _field(
        500,
        "decoded codes per radius of the sweep, for its FID, sharpness and mode coverage (stacked-mnist "
        "needs at least 1000, one per mode)",
    )
    strip_rows: int = _field(4, "fixed directions (rows) shown in the radius strip image")
    stacked_mode_samples: int = _field(
        26000, "prior samples for stacked-mnist mode coverage over 1,000 modes (VEEGAN/PacGAN use 26,000)"
    )
    point_samples: int = _field(2500, "prior samples for the 2-D mode metrics of ring8 and grid25")
    mode_min_share: float = _field(
        0.25,
        "a class of 10-class data counts as covered with at least this fraction of its uniform share "
        "of the samples; stacked-mnist and 2-D data count a mode from one sample",
    )
    kid_subset_size: int = _field(500, "largest KID subset; smaller sample sets use their own size (>= 100)")
    kid_subsets: int = _field(50, "random subsets that KID averages over")
    isc_splits: int = _field(10, "most Inception Score splits; fewer when a split would hold fewer "
                                 "samples than there are classes")
    prc_neighborhood: int = _field(3, "k of the k-nearest-neighbour balls of precision and recall")
    collapse_var_ratio: float = _field(
        0.05, "collapse flag: generated feature variance below this fraction of the real data's"
    )
    collapse_mode_ratio: float = _field(
        0.5, "collapse flag: modes covered below this fraction of the previous evaluation's count"
    )
    classifier_epochs: int = _field(12, "training epochs of the domain classifier (cached per data set)")
    batch_size: int = _field(500, "images per batch when generating and extracting features")
    grid_size: int = _field(64, "images in each logged sample and reconstruction grid")


@dataclass
class RunConfig:
    """Everything that defines one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Leaves that a given objective does not read. Setting them is allowed because studies share one
# base config across objectives, but each run logs a warning naming them.
IGNORED_BY_OBJECTIVE = {
    "dcgan": (
        "method.z_penalty", "method.z_floor", "method.ae_to_d", "method.recon_adv",
        "method.recon_loss", "method.recon_weight", "method.kl_weight", "optim.lr_E", "model.nef",
    ),
    "aegan": ("method.kl_weight",),
    "vaegan": ("method.z_penalty", "method.z_floor"),
}

ALIASES = {"data": "data.source", "batch_size": "train.batch_size"}


# ----------------------------------------------------------------------------------------------
# Introspection of the tree


def _sections() -> list[dataclasses.Field]:
    return list(dataclasses.fields(RunConfig))


@functools.cache
def _leaf_table() -> dict[str, dataclasses.Field]:
    leaves = {}
    for section in _sections():
        section_type = typing.get_type_hints(RunConfig)[section.name]
        for leaf in dataclasses.fields(section_type):
            leaves[f"{section.name}.{leaf.name}"] = leaf
    return leaves


def leaf_fields() -> dict[str, dataclasses.Field]:
    """Return every leaf field of a run config by its dotted key, in declaration order."""
    return dict(_leaf_table())


@functools.cache
def _leaf_type(key: str) -> Any:
    section, name = key.split(".")
    section_type = typing.get_type_hints(RunConfig)[section]
    return typing.get_type_hints(section_type)[name]


def resolve_key(key: str) -> str:
    """Return the dotted key that ``key`` names (dotted, alias or unique bare leaf name).

    Raises:
        ConfigError: the key names no field; the message suggests the closest keys.
    """
    leaves = leaf_fields()
    if key in leaves:
        return key
    if key in ALIASES:
        return ALIASES[key]
    matches = [dotted for dotted in leaves if dotted.split(".")[1] == key]
    if len(matches) == 1:
        return matches[0]
    candidates = list(leaves) + [dotted.split(".")[1] for dotted in leaves]
    close = list(dict.fromkeys(difflib.get_close_matches(key, candidates, n=6)))[:3]
    hint = f"; did you mean {', '.join(close)}?" if close else "; `python -m suite.train --help` lists every key"
    raise ConfigError(f"unknown config key {key!r}{hint}")


def help_text() -> str:
    """Return a table of every config key with its type, default and meaning."""
    lines = []
    current = None
    for key, leaf in leaf_fields().items():
        section = key.split(".")[0]
        if section != current:
            doc = typing.get_type_hints(RunConfig)[section].__doc__
            lines.append(f"\n[{section}]  {doc}")
            current = section
        kind = _type_name(_leaf_type(key))
        default = leaf.default
        lines.append(f"  {key:<26} {kind:<6} default {default!r}\n      {leaf.metadata['help']}")
    return "\n".join(lines).lstrip("\n")


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "list"
    return getattr(kind, "__name__", str(kind))


# ----------------------------------------------------------------------------------------------
# Values in, values out


def _coerce(key: str, value: Any) -> Any:
    kind = _leaf_type(key)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        any_length = len(items) == 2 and items[1] is Ellipsis  # tuple[float, ...]
        if isinstance(value, (list, tuple)) and (any_length or len(value) == len(items)):
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                return tuple(float(v) for v in value)
        count = "numbers" if any_length else f"{len(items)} numbers"
        raise ConfigError(
            f"invalid value for {key}: {value!r}; expected a list of {count}, "
            f"for example {list(leaf_fields()[key].default)}"
        )
    raise ConfigError(
        f"invalid value for {key}: {value!r} is a {type(value).__name__}, expected {_type_name(kind)}"
    )


def parse_override(text: str) -> tuple[str, Any]:
    """Split one ``key=value`` override and read the value for the key's type.

    The value is read as a TOML value (``0.1``, ``true``, ``[0.5, 0.9]``). For text keys an
    unquoted value is taken literally, so ``run_name=nan`` is the text "nan", not a float.
    """
    if "=" not in text:
        raise ConfigError(f"invalid override {text!r}; expected key=value, for example z_penalty=0.1")
    key, raw = (part.strip() for part in text.split("=", 1))
    if _leaf_type(resolve_key(key)) is str and not raw.startswith(('"', "'")):
        return key, raw
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def flatten_mapping(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested TOML tables to dotted keys."""
    flat = {}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_mapping(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def apply(cfg: RunConfig, values: dict[str, Any]) -> RunConfig:
    """Return a copy of ``cfg`` with ``values`` (any accepted key form) set, types checked."""
    cfg = dataclasses.replace(
        cfg, **{s.name: dataclasses.replace(getattr(cfg, s.name)) for s in _sections()}
    )
    for key, value in values.items():
        dotted = resolve_key(key)
        section, name = dotted.split(".")
        setattr(getattr(cfg, section), name, _coerce(dotted, value))
    return cfg


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a run config from a TOML file (or the defaults) and apply ``key=value`` overrides.

    Raises:
        ConfigError: missing file, TOML syntax error, unknown key, wrong type or invalid value.
    """
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            mapping = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"invalid TOML in {path}: {error}") from None
        try:
            cfg = apply(cfg, flatten_mapping(mapping))
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    cfg = apply(cfg, dict(parse_override(item) for item in overrides))
    validate(cfg)
    return cfg


def from_flat(values: dict[str, Any]) -> RunConfig:
    """Build and validate a config from dotted keys, as studies and checkpoints store it."""
    cfg = apply(RunConfig(), values)
    validate(cfg)
    return cfg


def flatten(cfg: RunConfig) -> dict[str, Any]:
    """Return every leaf as ``{dotted key: value}``; tuples become lists (TOML and JSON safe)."""
    flat = {}
    for key in leaf_fields():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        flat[key] = list(value) if isinstance(value, tuple) else value
    return flat


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """List ``key: old -> new`` for every dotted key whose value differs."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def ignored_settings(cfg: RunConfig) -> list[str]:
    """Return the keys set away from their defaults that the chosen objective does not read."""
    defaults = flatten(RunConfig())
    current = flatten(cfg)
    return [k for k in IGNORED_BY_OBJECTIVE[cfg.method.objective] if current[k] != defaults[k]]


# ----------------------------------------------------------------------------------------------
# Validation


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid value for {key}: {value!r}; allowed: {allowed}")


def _finite(value: float) -> bool:
    return math.isfinite(value)


def validate(cfg: RunConfig) -> None:
    """Check every value before any data is loaded.

    Raises:
        ConfigError: the first invalid value, naming the key, the value and what is allowed.
    """
    from suite import data  # imported here: data imports this module

    d, m, meth, o, t, e = cfg.data, cfg.model, cfg.method, cfg.optim, cfg.train, cfg.eval
    data.check_source(d.source)
    _check(d.image_size in IMAGE_SIZES, "data.image_size", d.image_size, "32, 64 or 128")
    _check(d.channels in (0, 1, 3), "data.channels", d.channels, "0 (source's own), 1 or 3")
    _check(0.0 <= d.holdout <= 0.5, "data.holdout", d.holdout, "a fraction from 0 to 0.5")
    _check(d.limit >= 0, "data.limit", d.limit, "0 (all) or a positive count")
    _check(d.points >= 1, "data.points", d.points, "a positive count")
    _check(d.background in BACKGROUNDS, "data.background", d.background, ", ".join(BACKGROUNDS))

    _check(m.nz >= 1, "model.nz", m.nz, "an integer >= 1")
    for key in ("ngf", "ndf", "nef"):
        _check(getattr(m, key) >= 1, f"model.{key}", getattr(m, key), "an integer >= 1")
    _check(m.pac >= 1, "model.pac", m.pac, "an integer >= 1 (1 turns packing off)")

    _check(meth.objective in OBJECTIVES, "method.objective", meth.objective, ", ".join(OBJECTIVES))
    _check(meth.recon_loss in RECON_LOSSES, "method.recon_loss", meth.recon_loss, "mse or l1")
    for key in ("z_penalty", "z_floor", "recon_weight", "kl_weight"):
        value = getattr(meth, key)
        _check(_finite(value) and value >= 0, f"method.{key}", value, "a finite number >= 0")

    for key in ("lr_G", "lr_D", "lr_E"):
        value = getattr(o, key)
        _check(_finite(value) and value > 0, f"optim.{key}", value, "a finite number > 0")
    _check(all(0 <= b < 1 for b in o.betas), "optim.betas", list(o.betas), "two numbers in [0, 1)")

    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    _check(t.batch_size % m.pac == 0, "train.batch_size", t.batch_size, f"a multiple of model.pac ({m.pac})")
    _check(t.epochs >= 1, "train.epochs", t.epochs, "an integer >= 1")
    _check(t.eval_every >= 0, "train.eval_every", t.eval_every, "0 (end only) or a positive count")
    _check(t.log_every >= 1, "train.log_every", t.log_every, "an integer >= 1")
    _check(t.device in DEVICES, "train.device", t.device, ", ".join(DEVICES))
    _check(bool(t.experiment.strip()), "train.experiment", t.experiment, "a non-empty name")

    _check(e.extractor in EXTRACTORS, "eval.extractor", e.extractor, ", ".join(EXTRACTORS))
    for key in ("num_samples", "radius_samples", "strip_rows", "stacked_mode_samples", "point_samples",
                "kid_subsets", "isc_splits", "prc_neighborhood", "classifier_epochs", "batch_size", "grid_size"):
        _check(getattr(e, key) >= 1, f"eval.{key}", getattr(e, key), "a positive count")
    _check(e.kid_subset_size >= 100, "eval.kid_subset_size", e.kid_subset_size, "an integer >= 100")
    _check(len(e.radii) >= 1 and all(_finite(r) and r >= 0 for r in e.radii), "eval.radii", list(e.radii),
           "a non-empty list of finite numbers >= 0")
    for key in ("mode_min_share", "collapse_var_ratio", "collapse_mode_ratio"):
        value = getattr(e, key)
        _check(_finite(value) and 0 <= value <= 1, f"eval.{key}", value, "a number from 0 to 1")

    size = data.train_size(d)
    _check(
        size > 0,
        "data.source",
        d.source,
        "a source with training examples after data.limit and data.holdout; an image folder needs "
        ".png, .jpg, .jpeg or .webp files, directly or in one level of class subfolders",
    )
    _check(
        t.batch_size <= size,
        "train.batch_size",
        t.batch_size,
        f"at most the {size} training examples of {d.source!r} (after holdout and limit)",
    )
