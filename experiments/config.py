"""One typed configuration for a whole experiment, loaded from YAML and validated before any work.

A config has one section per stage; each section *is* the configuration class of its stage, so
defaults and documentation live in one place (the class) and the CLI, the YAML loader and the
docs read them from there::

    seed: 0                      # drives every random draw of every stage
    data:        shopsim.experiments.config.DataConfig   (source + the prepare options)
    encoder:     shopsim.experiments.config.EncodeConfig (EncoderConfig + evaluation options)
    simulator:   shopsim.envs.fitting.fit.SimulatorConfig
    shop:        shopsim.envs.engine.ShopperConfig       (the simulated page: k, N, what-ifs)
    reward:      {click: 1.0, purchase: 5.0, ...} | "package.module:callable"
    agents:      shopsim.experiments.config.AgentsConfig (policies, PPO, SlateQ, n_envs)
    evaluation:  shopsim.experiments.config.EvaluationConfig

Errors — an unknown key, a wrong type, an out-of-range value, a missing path, an unknown
policy or reward term, a policy whose data needs the log does not meet, a reward callable that
cannot be imported — raise :class:`~shopsim.errors.ShopsimError` with one line naming the key
path and the fix. Relative paths in a YAML file are relative to the file's folder.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import itertools
import json
import math
import os
import re
import textwrap
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, get_origin, get_type_hints

import numpy as np
import yaml
from annotated_types import Ge, Gt, Interval
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from shopsim.agents.registry import REGISTRY, policy_names
from shopsim.agents.training import PPOConfig, SlateQConfig
from shopsim.data import SessionLog
from shopsim.data.formats import FORMATS_WITH_IMPRESSIONS, PrepareOptions
from shopsim.data.samples import SAMPLES
from shopsim.encoders.finetune import EncoderConfig
from shopsim.envs.engine import ShopperConfig
from shopsim.envs.fitting.fit import SimulatorConfig
from shopsim.envs.rewards import RewardFn, WeightedReward
from shopsim.errors import ShopsimError
from shopsim.experiments.ope_stage import OPEStageConfig

SAMPLE_PREFIX = "sample:"

SEED_RANGE = Interval(ge=0, le=2**32 - 1)
"""Seeds numpy, torch and Stable-Baselines3 all accept."""

_POSITIVE_COUNTS = (
    "ft_steps_per_epoch",
    "ft_negatives",
    "lora_alpha",
    "neighbours",
    "max_positions",
    "replay_slate_size",
    "slate_size",
    "n_candidates",
    "max_steps",
    "bought_capacity",
    "target_update_interval",
    "batch",
)
_FRACTIONS = (
    "lora_dropout",
    "tau",
    "gamma",
    "exploration_fraction",
    "exploration_initial_eps",
    "exploration_final_eps",
)
_POSITIVE_REALS = ("lr", "backbone_lr", "lora_lr", "learning_rate", "max_grad_norm")
_NON_NEGATIVE = (
    "weight_decay",
    "ent_coef",
    "vf_coef",
    "choice_loss_weight",
    "fatigue",
    "exposure_intent",
    "candidate_mix",
    "patience",
    "ft_epochs",
    "learning_starts",
)
FIELD_RULES: dict[str, Any] = {
    "seed": SEED_RANGE,
    **dict.fromkeys(_POSITIVE_COUNTS, Ge(1)),
    **dict.fromkeys(_FRACTIONS, Interval(ge=0, le=1)),
    **dict.fromkeys(_POSITIVE_REALS, Gt(0)),
    **dict.fromkeys(_NON_NEGATIVE, Ge(0)),
}
"""Range of every numeric config field that its class does not check itself, by field name (one
rule per name, whatever the section; a tuple field's rule holds for each element). Every float
must also be finite. :func:`check_field_rules` applies them before the class's own checks, for
YAML sections, ``--set`` overrides and generated CLI flags alike."""


@functools.cache
def _rules_model(cls: type) -> type[BaseModel]:
    hints = get_type_hints(cls)
    spec: dict[str, Any] = {}
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            continue  # a nested section is checked on its own
        rule = FIELD_RULES.get(f.name)
        if rule is not None and get_origin(hint) is tuple:
            hint = tuple[Annotated[hint.__args__[0], rule], ...]  # type: ignore[name-defined]
        elif rule is not None:
            hint = Annotated[hint, rule]
        spec[f.name] = (hint, None)  # defaults are not validated: absent fields keep the class's
    config = ConfigDict(allow_inf_nan=False, arbitrary_types_allowed=True, extra="ignore")
    return create_model(f"{cls.__name__}Rules", __config__=config, **spec)


def check_field_rules(cls: type, values: dict[str, Any]) -> None:
    """Raise pydantic's ``ValidationError`` when a value in ``values`` (field name → value of
    dataclass ``cls``) is NaN, infinite or outside its :data:`FIELD_RULES` range."""
    _rules_model(cls).model_validate(values)


@dataclass
class DataConfig(PrepareOptions):
    """The shop's logs: where they are and how to read them (every option of ``shopsim data prepare``)."""

    # Widened from PrepareOptions' dict so that validation lets a YAML list of ``canon=source``
    # strings through; PrepareOptions.__post_init__ turns either form into the dict.
    column_map: dict[str, str] | list[str | tuple[str, str]] = field(default_factory=dict)  # type: ignore[assignment]
    """``events`` only: canonical column → source column. Also accepts the ``--map`` pairs
    (``["event=action", …]`` or ``[("event", "action"), …]``): two for one canonical column are
    an error (see :func:`parse_column_map`)."""
    source: str = ""
    """Log file or folder, or ``sample:NAME`` for a bundled sample (``sample:rees46``, ``sample:uci``,
    ``sample:toy``)."""

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ShopsimError as exc:
            # the log layer names the CLI's --map; in a config the key is column_map (the
            # loader then prefixes the section: data.column_map)
            raise ShopsimError(str(exc).replace("--map", "column_map")) from None

    def source_path(self) -> Path:
        """The log's path (a bundled sample resolves inside the installed package)."""
        return self.resolve_source(self.source)

    @staticmethod
    def resolve_source(source: str) -> Path:
        """``sample:NAME`` → the bundled sample's path; any other text → that path. The one
        resolver of source names, for ``data.source`` and the CLI's ``SRC`` alike.

        :raises ShopsimError: on an unknown sample name.
        """
        from shopsim.data import sample_path

        if source.startswith(SAMPLE_PREFIX):
            return sample_path(source[len(SAMPLE_PREFIX) :])
        return Path(source)

    def prepare_options(self) -> PrepareOptions:
        """The options without ``source``, as the prepare stage takes them."""
        kw = {f.name: getattr(self, f.name) for f in fields(PrepareOptions)}
        return PrepareOptions(**kw)

    def has_impressions(self) -> bool | None:
        """Whether the log records impressions: known for every format but ``events`` (None)."""
        return True if self.format in FORMATS_WITH_IMPRESSIONS else None if self.format == "events" else False


@dataclass
class EncodeConfig(EncoderConfig):
    """The encoder stage: the encoder's configuration plus how it is evaluated."""

    text: str = "auto"
    """``auto``: keep item text only if it helps on the valid split (frozen backbone); ``on``: always."""
    n_boot: int = 1000
    """Bootstrap resamples of the next-item intervals in eval.json."""
    ablation: bool = False
    """Also train and report the ablation variants (text / attributes / IDs off)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.text not in ("auto", "on"):
            raise ShopsimError(f"text={self.text!r}: use auto or on")
        if self.n_boot < 10:
            raise ShopsimError(f"n_boot={self.n_boot}: use at least 10 resamples")

    def encoder_config(self) -> EncoderConfig:
        """The :class:`EncoderConfig` part."""
        return EncoderConfig(**{f.name: getattr(self, f.name) for f in fields(EncoderConfig)})


@dataclass
class AgentsConfig:
    """Which policies play, and how the RL agents train."""

    policies: list[str] | None = None
    """Registered policy names (see ``shopsim policies``); default: every default policy whose
    data requirements the log meets."""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO budget and hyper-parameters."""
    dqn: SlateQConfig = field(default_factory=SlateQConfig)
    """SlateQ budget and hyper-parameters."""
    n_envs: int = 32
    """Shoppers simulated in parallel while training."""

    def __post_init__(self) -> None:
        if self.n_envs < 1:
            raise ShopsimError(f"n_envs={self.n_envs}: must be ≥ 1")
        for name in self.policies or []:
            if name not in REGISTRY:
                raise ShopsimError(f"unknown policy {name!r}; registered: {', '.join(REGISTRY)}")
        if self.policies is not None and not self.policies:
            raise ShopsimError("policies is empty; list at least one, or leave it out for the defaults")


@dataclass
class EvaluationConfig:
    """How every policy is evaluated."""

    episodes: int = 3000
    """Test sessions each policy plays in the simulator (the same sessions for all)."""
    n_boot: int = 1000
    """Bootstrap resamples of the in-simulator intervals."""
    offline: bool = True
    """Also report held-out next-item metrics of the policies that have a next-item model."""
    offline_n_boot: int = 200
    """Bootstrap resamples of the offline metrics."""
    reference_episodes: int = 1000
    """Valid-split sessions on which the supervised and CF rankers play to choose the
    *deployable reference* (the best of them; never chosen on test sessions)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ShopsimError(f"episodes={self.episodes}: must be ≥ 1")
        if self.reference_episodes < 1:
            raise ShopsimError(f"reference_episodes={self.reference_episodes}: must be ≥ 1")
        if self.n_boot < 10 or self.offline_n_boot < 10:
            raise ShopsimError("n_boot and offline_n_boot: use at least 10 resamples")


RewardSpec = dict[str, float] | str | Callable[..., Any]


class RunConfig(BaseModel):
    """A whole experiment: data → encoder → simulator → agents → evaluation (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    seed: Annotated[int, SEED_RANGE] = 0
    """Drives every random draw of every stage (copied into each stage's own seed)."""
    data: DataConfig
    """The shop's logs."""
    encoder: EncodeConfig = Field(default_factory=EncodeConfig)
    """The item and state encoder."""
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    """The fitted shopper simulator."""
    shop: ShopperConfig = Field(default_factory=ShopperConfig)
    """The simulated page every policy is trained and evaluated on (``split`` is set per use)."""
    reward: RewardSpec = Field(default_factory=lambda: {"click": 1.0})
    """Weights of :class:`~shopsim.envs.rewards.WeightedReward` terms, an import path
    ``package.module:callable``, or (from Python) any callable ``fn(StepEvents) -> (B,) array``."""
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    """Policies and RL training."""
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    """Evaluation of every policy."""
    ope: OPEStageConfig = Field(default_factory=OPEStageConfig)
    """Optional off-policy evaluation stage (the ``ope`` block of results.json)."""

    # ------------------------------------------------------------------ derived views
    def reward_fn(self) -> RewardFn:
        """The reward as a callable (weights → :class:`WeightedReward`)."""
        return resolve_reward(self.reward)

    def reward_label(self) -> str:
        """How reports name the reward (``clicks``, ``1·click + 5·purchase``, ``pkg.mod:fn``)."""
        r = self.reward
        if isinstance(r, dict):
            terms = {k: v for k, v in asdict(WeightedReward(**r)).items() if v}
            if terms == {"click": 1.0}:
                return "clicks"
            return " + ".join(f"{v:g}·{k}" for k, v in terms.items()) or "0"
        if isinstance(r, str):
            return r
        return f"{getattr(r, '__module__', '?')}.{getattr(r, '__qualname__', type(r).__name__)}"

    def reward_key(self) -> str | None:
        """Content of the reward for stage reuse: its weights, or the callable's source (None
        when the source cannot be read: reuse is then off)."""
        r = self.reward
        if isinstance(r, dict):
            return json.dumps(asdict(WeightedReward(**r)), sort_keys=True)
        return callable_key(resolve_reward(r))

    def shop_for(self, split: str) -> ShopperConfig:
        """The shop on the sessions of ``split`` (``train`` for training, ``test`` for evaluation)."""
        return replace(self.shop, split=split)

    def resolved(self) -> dict[str, Any]:
        """The config as plain data (what ``run`` writes to ``config.yaml``)."""
        out: dict[str, Any] = {"seed": self.seed}
        for name in ("data", "encoder", "simulator", "shop"):
            out[name] = _plain(asdict(getattr(self, name)))
        out["reward"] = self.reward if not callable(self.reward) else self.reward_label()
        out["agents"] = _plain(asdict(self.agents))
        out["evaluation"] = _plain(asdict(self.evaluation))
        out["ope"] = _plain(asdict(self.ope))
        return out


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


# ---------------------------------------------------------------------- rewards
class _Unstable(Exception):
    """A value whose content cannot be written down reproducibly (reuse is then off)."""


def _content(x: Any, depth: int = 0) -> Any:
    """Plain, reproducible data for ``x``: what a callable's result may depend on.

    Numbers, strings, containers, arrays (by their bytes), functions (source, defaults,
    closure cells and the plain globals they read), ``functools.partial`` (function + arguments)
    and instances (class source + attributes). Anything else raises :class:`_Unstable`, so two
    rewards that differ only in an opaque object never share trained models.
    """
    if depth > 8:
        raise _Unstable("too deep")
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, np.generic):
        return [type(x).__name__, repr(x.item())]
    if isinstance(x, np.ndarray):
        return ["ndarray", str(x.dtype), list(x.shape), hashlib.sha256(x.tobytes()).hexdigest()]
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, [_content(v, depth + 1) for v in x]]
    if isinstance(x, dict):
        if not all(isinstance(k, str) for k in x):
            raise _Unstable("dict with non-string keys")
        return {k: _content(x[k], depth + 1) for k in sorted(x)}
    if isinstance(x, functools.partial):
        return [
            "partial",
            _content(x.func, depth + 1),
            _content(x.args, depth + 1),
            _content(dict(x.keywords), depth + 1),
        ]
    if inspect.ismodule(x):
        return ["module", x.__name__]
    if inspect.isfunction(x):
        try:
            src = inspect.getsource(x)
        except (OSError, TypeError) as e:
            raise _Unstable("no source") from e
        code = x.__code__
        cells = [c.cell_contents for c in (x.__closure__ or ())]
        # the plain module-level values the body reads (a global LAMBDA = 0.5, say); other
        # globals (modules, classes, helper functions) are named, not expanded
        plain = {
            n: x.__globals__[n]
            for n in code.co_names
            if n in x.__globals__ and isinstance(x.__globals__[n], (bool, int, float, str, tuple, np.generic))
        }
        return [
            "function",
            src,
            _content(x.__defaults__, depth + 1),
            _content(dict(x.__kwdefaults__ or {}), depth + 1),
            _content(cells, depth + 1),
            _content(plain, depth + 1),
        ]
    if inspect.isbuiltin(x):
        return ["builtin", getattr(x, "__module__", None), x.__qualname__]
    if inspect.isclass(x):
        try:
            return ["class", inspect.getsource(x)]
        except (OSError, TypeError) as e:
            raise _Unstable("no source") from e
    if is_dataclass(x) or hasattr(x, "__dict__"):
        state = asdict(x) if is_dataclass(x) and not isinstance(x, type) else dict(vars(x))
        return ["instance", _content(type(x), depth + 1), _content(state, depth + 1)]
    raise _Unstable(type(x).__name__)


def callable_key(fn: Callable[..., Any]) -> str | None:
    """A content hash of a reward callable, or None when its content cannot be written down.

    Two rewards share trained models only if they have the same key, so parametrised rewards —
    ``make_reward(lam)`` closures, ``functools.partial(f, lam=...)``, instances with a
    ``lam`` attribute — get one key per parameter value, not one per source text.
    """
    try:
        content = _content(fn)
    except _Unstable:
        return None
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def resolve_reward(spec: RewardSpec) -> RewardFn:
    """A reward callable from weights, an import path or a callable (clear errors otherwise)."""
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {f.name for f in fields(WeightedReward)})
        if unknown:
            raise ShopsimError(
                f"reward: unknown term(s) {', '.join(unknown)}; "
                f"use {', '.join(f.name for f in fields(WeightedReward))}"
            )
        bad = [k for k, v in spec.items() if not isinstance(v, (int, float)) or not math.isfinite(v)]
        if bad:
            raise ShopsimError(f"reward: {bad[0]}={spec[bad[0]]!r}: a weight must be a finite number")
        return WeightedReward(**spec)
    if isinstance(spec, str):
        module, _, attr = spec.partition(":")
        if not module or not attr:
            raise ShopsimError(f"reward: {spec!r} is not an import path; write package.module:callable")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ShopsimError(
                f"reward: cannot import {spec!r} ({exc}); "
                "make the module importable (pip install -e, PYTHONPATH)"
            ) from None
        if not callable(obj):
            raise ShopsimError(f"reward: {spec!r} is a {type(obj).__name__}, not a callable")
        return obj
    if callable(spec):
        return spec
    raise ShopsimError(f"reward: expected weights, an import path or a callable, got {type(spec).__name__}")


# ---------------------------------------------------------------------- loading
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "encoder": EncodeConfig,
    "simulator": SimulatorConfig,
    "shop": ShopperConfig,
    "agents": AgentsConfig,
    "evaluation": EvaluationConfig,
    "ope": OPEStageConfig,
}
"""Top-level sections and their configuration classes."""

_SEEDED = ("encoder", "simulator")


def load_config(
    source: Path | dict[str, Any],
    overrides: list[str] | None = None,
    *,
    where: str | None = None,
    base_dir: Path | None = None,
) -> RunConfig:
    """Read, override (``key.path=value``, values in YAML syntax), expand environment variables
    (:func:`expand_env`) and validate a config.

    :param source: a YAML file or an already-parsed mapping.
    :param where: how messages name the config (default: the file's path, or ``config``).
    :param base_dir: the folder relative paths are relative to (default: the file's folder; a
        packaged config passes the current folder, since its own folder is inside the package).
    """
    if isinstance(source, Path):
        if not source.is_file():
            raise ShopsimError(f"{source}: no such config file; pass a YAML file such as quickstart.yaml")
        try:
            raw = yaml.safe_load(source.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ShopsimError(f"{source}: not a text file (not UTF-8); pass a YAML config") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1})" if mark is not None else ""
            raise ShopsimError(f"{source}: not valid YAML{at}; check indentation and quoting") from None
        base = source.resolve().parent
        where = where or str(source)
    else:
        raw, base, where = source, None, where or "config"
    if not isinstance(raw, dict):
        raise ShopsimError(
            f"{where}: expected a mapping of sections (data, encoder, …), got {type(raw).__name__}"
        )
    raw = dict(raw)
    for item in overrides or []:  # before expansion: --set data.source=DIR needs no variable
        _apply_override(raw, item)
    raw = expand_env(raw, where=where)
    return validate_config(raw, where=where, base=base_dir or base)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::\?([^}]*))?\}")
"""``${NAME}`` or ``${NAME:?why}`` (why the variable is needed, shown when it is unset)."""


def expand_env(node: Any, *, where: str = "config", path: tuple[str, ...] = ()) -> Any:
    """``node`` with every ``${NAME}`` in its strings replaced by the environment variable NAME.

    Only the braced forms ``${NAME}`` and ``${NAME:?why}`` are read (no bare ``$NAME``, no
    defaults), so a ``$`` elsewhere stays as written. A variable that is unset or empty is one
    error line naming the key, the variable, the folder the value expects below it and ``why``,
    and the ``--set`` that replaces it. A relative value that starts a string is taken relative
    to the current folder (as the shell that set it sees it), not to the config file's folder.
    """
    if isinstance(node, dict):
        return {k: expand_env(v, where=where, path=(*path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, where=where, path=(*path, str(i))) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node
    key = ".".join(path)

    def value(m: re.Match[str]) -> str:
        name, why = m.group(1), m.group(2)
        got = os.environ.get(name, "")
        if not got:
            below = node[m.end() :].lstrip("/").split("/")[0]
            notes = [n for n in (f"the folder holding {below}" if below else "", (why or "").strip()) if n]
            paren = f" ({'; '.join(notes)})" if notes else ""
            fix = f"--set {key}={'DIR' if below else 'VALUE'}"
            raise ShopsimError(f"{where}: {key} needs ${name}{paren} — set it or pass {fix}")
        if m.start() == 0 and not Path(got).is_absolute():
            got = os.path.abspath(got)
        return got

    out = _ENV_REF.sub(value, node)
    if "${" in _ENV_REF.sub("", node):
        raise ShopsimError(
            f"{where}: {key}: {node!r}: write an environment variable as ${{NAME}} or ${{NAME:?why}}"
        )
    return out


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ShopsimError(f"--set {item!r}: expected key.path=value, e.g. --set agents.ppo.steps=20000")
    path = key.strip().split(".")
    _check_key_path(path, f"--set {key}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ShopsimError(f"--set {key}: {part} is not a section")
    node[path[-1]] = value


def _check_key_path(path: list[str], what: str) -> None:
    """An error naming the known keys when ``path`` names no config field."""
    cls: Any = RunConfig
    for i, part in enumerate(path):
        if cls is RunConfig:
            known = list(RunConfig.model_fields)
        elif is_dataclass(cls):
            known = [f.name for f in fields(cls)]
        else:  # a mapping (reward weights) or a value: deeper keys are the value's own business
            return
        if part not in known:
            at = ".".join(path[:i]) or "the top level"
            raise ShopsimError(f"{what}: no such key {part!r} in {at}; known: {', '.join(known)}")
        cls = _field_type(cls, part)


def _field_type(cls: Any, name: str) -> Any:
    if cls is RunConfig:
        return SECTIONS.get(name, dict if name == "reward" else int)
    hint = get_type_hints(cls).get(name)
    return hint if is_dataclass(hint) else None


def validate_config(raw: dict[str, Any], *, where: str = "config", base: Path | None = None) -> RunConfig:
    """Validate a parsed config (see :func:`load_config`): one error line naming the key path."""
    unknown = sorted(set(raw) - set(RunConfig.model_fields))
    if unknown:
        raise ShopsimError(
            f"{where}: unknown section {unknown[0]!r}; sections are {', '.join(RunConfig.model_fields)}"
        )
    if "data" not in raw:
        raise ShopsimError(f"{where}: missing section 'data' (at least data.source and data.format)")
    seed = raw.get("seed", 0)
    try:  # before the sections, which copy it: the error then names the key the user wrote
        TypeAdapter(Annotated[int, SEED_RANGE]).validate_python(seed)
    except ValidationError as exc:
        raise ShopsimError(f"{where}: {_first_error(exc, prefix='seed')}") from None
    parsed: dict[str, Any] = {"seed": seed, "reward": raw.get("reward", {"click": 1.0})}
    for name, cls in SECTIONS.items():
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ShopsimError(f"{where}: {name} must be a mapping of settings, not {type(section).__name__}")
        if name in _SEEDED and section.get("seed", seed) != seed:  # a resolved config repeats it
            raise ShopsimError(f"{where}: {name}.seed: set the top-level seed, which drives every stage")
        if name in _SEEDED:
            section = {**section, "seed": seed}
        parsed[name] = _section(cls, section, name, where)
    try:
        cfg = RunConfig(**parsed)
    except ValidationError as exc:
        raise ShopsimError(f"{where}: {_first_error(exc)}") from None
    if base is not None:
        cfg = _resolve_paths(cfg, base)
    check_config(cfg, where)
    return cfg


def _section(cls: type, values: dict[str, Any], name: str, where: str) -> Any:
    """Validate one (possibly nested) section; errors name the full key path."""
    hints = get_type_hints(cls)
    values = dict(values)
    unknown = [k for k in values if k not in hints or k not in {f.name for f in fields(cls)}]
    if unknown:  # pydantic ignores extra keys of stdlib dataclasses
        raise ShopsimError(
            f"{where}: {name}.{unknown[0]}: unknown key; check the spelling against the keys of {name}"
        )
    for f in fields(cls):  # nested sections first, so their errors carry their own path
        sub = hints[f.name]
        if is_dataclass(sub) and isinstance(values.get(f.name), dict):
            values[f.name] = _section(sub, values[f.name], f"{name}.{f.name}", where)  # type: ignore[arg-type]
    try:
        check_field_rules(cls, values)
        return TypeAdapter(cls).validate_python(values)
    except ValidationError as exc:
        raise ShopsimError(f"{where}: {_first_error(exc, prefix=name)}") from None
    except ShopsimError as exc:  # the class's own range checks name CLI flags; here they are keys
        msg = re.sub(r"--([a-z][a-z0-9-]*)", lambda m: f"{name}.{m.group(1).replace('-', '_')}", str(exc))
        first = re.match(r"\w+", msg)
        if first and first.group(0) in {f.name for f in fields(cls)}:
            msg = f"{name}.{msg}"
        elif not msg.startswith(f"{name}."):
            msg = f"{name}: {msg}"
        raise ShopsimError(f"{where}: {msg}") from None


def _first_error(exc: ValidationError, prefix: str | None = None) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    path = ".".join(([prefix] if prefix else []) + loc)
    if err["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        parent = path.rsplit(".", 1)[0] if "." in path else "the top level"
        return f"{path}: unknown key; check the spelling against the keys of {parent}"
    if err["type"] == "missing_argument" or err["type"] == "missing":
        return f"{path}: required; add it to the config"
    got = err.get("input")
    shown = json.dumps(got) if isinstance(got, (int, float, str, bool, type(None))) else type(got).__name__
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path}: {err['msg'].rstrip('.')}, got {shown}{more}"


def _resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    data = cfg.data
    src = data.source
    if src and not src.startswith(SAMPLE_PREFIX) and not Path(src).is_absolute():
        src = str(base / src)
    items = data.items if data.items is None or data.items.is_absolute() else base / data.items
    enc = cfg.encoder
    bb = enc.backbone
    if bb != EncoderConfig.backbone and (bb.startswith(".") or "/" in bb) and not Path(bb).is_absolute():
        enc = replace(enc, backbone=str(base / bb))
    return cfg.model_copy(update={"data": replace(data, source=src, items=items), "encoder": enc})


def check_config(cfg: RunConfig, where: str = "config") -> None:
    """Cross-section checks that need no data: paths exist, slate fits the candidates, the
    policies' requirements, the reward resolves."""
    d = cfg.data
    if not d.source:
        raise ShopsimError(f"{where}: data.source: required; a log file/folder or sample:NAME")
    if d.source.startswith(SAMPLE_PREFIX):
        name = d.source[len(SAMPLE_PREFIX) :]
        if name not in SAMPLES:
            raise ShopsimError(
                f"{where}: data.source: unknown sample {name!r}; bundled: {', '.join(SAMPLES)}"
            )
    elif not Path(d.source).exists():
        raise ShopsimError(
            f"{where}: data.source: {d.source} does not exist; fix the path (relative to the config file)"
        )
    if d.items is not None and not d.items.exists():
        raise ShopsimError(f"{where}: data.items: {d.items} does not exist; fix the path")
    bb = cfg.encoder.backbone
    if bb != EncoderConfig.backbone and not Path(bb).is_dir():
        raise ShopsimError(
            f"{where}: encoder.backbone: {bb} is not a folder; "
            f"use {EncoderConfig.backbone} or a local Hugging Face folder"
        )
    s = cfg.shop
    if s.slate_size < 1 or s.n_candidates < 1 or s.max_steps < 1:
        raise ShopsimError(f"{where}: shop.slate_size, shop.n_candidates and shop.max_steps must be ≥ 1")
    if s.slate_size > s.n_candidates:
        raise ShopsimError(
            f"{where}: shop.slate_size {s.slate_size} > shop.n_candidates {s.n_candidates}; "
            "a slate cannot show more items than there are candidates"
        )
    try:
        resolve_reward(cfg.reward)
    except ShopsimError as exc:
        raise ShopsimError(f"{where}: {exc}") from None
    impressions = d.has_impressions()
    if cfg.simulator.click_negatives == "impressions" and impressions is False:
        raise ShopsimError(f"{where}: {_no_impressions(f'format {d.format!r}')}")
    if _basket_weight(cfg) and d.format in FORMATS_WITH_IMPRESSIONS:  # click logs: no purchases
        raise ShopsimError(f"{where}: {_no_baskets(cfg, f'format {d.format!r} records no purchases')}")
    if impressions is not False:  # impressions, or an events log (checked once prepared)
        return
    for name in cfg.agents.policies or []:
        if not REGISTRY[name].runs_on({"log"}):
            raise ShopsimError(
                f"{where}: agents.policies: {name!r} needs a log with impressions and format "
                f"{d.format!r} records none; remove it or use an impression log "
                "(mind, obd, events with impressions)"
            )


def _no_impressions(what: str) -> str:
    return (
        f"simulator.click_negatives: impressions needs a log with impressions and {what} records none; "
        "use auto or sampled, or an impression log (mind, obd, events with impression rows)"
    )


def _basket_weight(cfg: RunConfig) -> float:
    """The reward's ``basket`` weight (0 for a reward callable: its terms are its own)."""
    r = cfg.reward
    return float(r.get("basket", 0.0)) if isinstance(r, dict) else 0.0


def _no_baskets(cfg: RunConfig, why: str) -> str:
    return (
        f"reward.basket={_basket_weight(cfg):g}: bundle mode needs sessions with two or more purchased "
        f"items and {why}; set reward.basket=0 or use a log with multi-item baskets"
    )


def basket_sessions(log: SessionLog) -> int:
    """Sessions of ``log`` with two or more distinct purchased items: the baskets bundle mode
    rewards completing. (The engine's basket is the logged session's remaining items, its hidden
    intent; a purchase is a basket completion when another purchase of the session is in it.)"""
    buys = log.events.loc[log.events["event"] == "purchase", ["session_id", "item_id"]]
    return int((buys.groupby("session_id", observed=True)["item_id"].nunique() >= 2).sum())


def check_prepared(cfg: RunConfig, log: SessionLog, where: str = "config") -> None:
    """Checks that need the prepared log, cheap enough to run between prepare and encode:
    ``simulator.click_negatives: impressions`` needs impression rows (an ``events`` log's are
    only known once prepared), and a ``reward.basket`` weight (bundle mode) needs at least one
    session with two or more purchased items."""
    if cfg.simulator.click_negatives == "impressions" and not (log.events["event"] == "impression").any():
        raise ShopsimError(f"{where}: {_no_impressions(f'the prepared {cfg.data.format} log')}")
    if _basket_weight(cfg) and basket_sessions(log) == 0:
        ev = log.events
        n_buy = int((ev["event"] == "purchase").sum())
        n_sess = int(ev["session_id"].nunique())
        why = f"no session of the prepared log has any ({n_buy:,} purchases in {n_sess:,} sessions)"
        raise ShopsimError(f"{where}: {_no_baskets(cfg, why)}")


def selected_policies(cfg: RunConfig, impressions: bool) -> list[str]:
    """The policies an experiment runs: the config's list, or every default policy whose
    requirements the (prepared) log meets."""
    have = {"log", "impressions"} if impressions else {"log"}
    if cfg.agents.policies is not None:
        for name in cfg.agents.policies:
            if not REGISTRY[name].runs_on(have):
                raise ShopsimError(
                    f"agents.policies: {name!r} needs a log with impressions; this log has none"
                )
        return list(cfg.agents.policies)
    return [n for n in policy_names() if REGISTRY[n].default and REGISTRY[n].runs_on(have)]


# ---------------------------------------------------------------------- documentation
def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation: the string literal after it (attribute docstring) or its
    ``:param name:`` line in the class docstring. Base classes' fields are included."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass) and klass is not RunConfig:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for a, b in itertools.pairwise(body):
            if (
                isinstance(a, ast.AnnAssign)
                and isinstance(a.target, ast.Name)
                and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant)
                and isinstance(b.value.value, str)
            ):
                out[a.target.id] = " ".join(b.value.value.split())
        doc = inspect.getdoc(klass) or ""
        for m in re.finditer(r":param ([\w, ]+):(.*?)(?=\n\s*:param |\Z)", doc, re.S):
            for name in m.group(1).split(","):
                out.setdefault(name.strip(), " ".join(m.group(2).split()))
    return out


def field_default(f: Any) -> Any:
    """A dataclass field's default value (calling its factory)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def config_reference() -> str:
    """Markdown reference of every config key with its type, default and documentation."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    top = field_docs(RunConfig)
    lines.append(f"| `seed` | int | 0 | {top['seed']} |")
    lines.append(f"| `reward` | weights \\| import path | `{{click: 1.0}}` | {top['reward']} |")

    def walk(cls: type, prefix: str) -> None:
        docs = field_docs(cls)
        hints = get_type_hints(cls)
        for f in fields(cls):
            hint = hints[f.name]
            if is_dataclass(hint):
                walk(hint, f"{prefix}{f.name}.")  # type: ignore[arg-type]
                continue
            default = field_default(f)
            shown = "required" if default is MISSING else f"`{json.dumps(_plain(default))}`"
            tname = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
            if get_origin(hint) is not None:
                tname = str(hint).replace("typing.", "").replace("pathlib.", "")
            tname = tname.replace("|", "\\|")  # a literal | would split the Markdown cell
            lines.append(f"| `{prefix}{f.name}` | {tname} | {shown} | {docs.get(f.name, '')} |")

    for name, cls in SECTIONS.items():
        walk(cls, f"{name}.")
    return "\n".join(lines)


def _configs_folder() -> Path:
    return Path(str(resources.files("shopsim.experiments").joinpath("configs")))


def packaged_configs() -> dict[str, str]:
    """The configs shipped with shopsim: name → one-line description (the file's first comment
    line, without its ``# name:`` prefix)."""
    out: dict[str, str] = {}
    for path in sorted(_configs_folder().glob("*.yaml")):
        first = next((ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()), "")
        text = first.lstrip("#").strip()
        head, sep, rest = text.partition(": ")
        out[path.stem] = rest if sep and " " not in head else text
    return out


def packaged_config(name: str) -> Path:
    """Path of a config shipped with shopsim (``quickstart`` → ``configs/quickstart.yaml``)."""
    path = _configs_folder() / f"{name}.yaml"
    if not path.is_file():
        raise ShopsimError(f"no packaged config {name!r}; packaged: {', '.join(packaged_configs())}")
    return path


def resolve_config(arg: str | Path) -> tuple[Path, str, Path | None]:
    """What ``shopsim run ARG`` reads: (the YAML file, how messages name it, the folder its relative
    paths are relative to — None: the file's own).

    An existing file is itself; a bare name (no folder part; ``.yaml`` optional) names a
    packaged config (:func:`packaged_configs`), whose relative paths (``--set data.source=DIR``)
    are relative to the current folder; anything else is one error line listing the packaged
    names (a path with a folder part keeps :func:`load_config`'s own message)."""
    path = Path(arg)
    if path.is_file() or len(path.parts) != 1 or "/" in str(arg) or os.sep in str(arg):
        return path, str(path), None
    name = path.name.removesuffix(".yaml")
    names = packaged_configs()
    if name in names:
        return packaged_config(name), f"{name}.yaml", Path.cwd()
    if path.exists():
        raise ShopsimError(f"{path}: is a folder, not a config; pass a YAML file or a packaged config name")
    raise ShopsimError(
        f"{arg}: no such config file nor packaged config; packaged: {', '.join(names)} "
        "(`shopsim configs` describes them)"
    )


def load_named_config(arg: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """:func:`load_config` of a config file or a packaged config name (:func:`resolve_config`)."""
    path, where, base = resolve_config(arg)
    return load_config(path, overrides, where=where, base_dir=base)


__all__ = [
    "AgentsConfig",
    "DataConfig",
    "EncodeConfig",
    "EvaluationConfig",
    "RunConfig",
    "basket_sessions",
    "check_config",
    "check_prepared",
    "config_reference",
    "expand_env",
    "field_docs",
    "load_config",
    "load_named_config",
    "packaged_config",
    "packaged_configs",
    "resolve_config",
    "resolve_reward",
    "selected_policies",
    "validate_config",
]
