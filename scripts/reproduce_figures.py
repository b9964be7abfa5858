"""Run the figure presets in ``conf/experiment/``, check their expected numbers, write a gallery.

Each preset's header declares how it is reproduced::

    # Figure: <which slide figure it reproduces>
    # Command: sbrun +experiment=<name>
    # Expected: <checks>; <checks> -- <note>    (machine-readable: see sbrun/expected.py)
    # Quick: <overrides for a small, fast version>      (optional)
    # Sweep: <key=v1,v2,...>                           (optional: a multirun, panel figure)
    # GPU: <last result on a GPU>                      (optional: full size needs a GPU)
    # Post: <command run after the preset, {run} = its run directory>  (optional: figures)

Checks look like ``w2_ratio <= 1.5 @full``, ``w2[ipf_iter=10] < 0.5 * w2[ipf_iter=1]``,
``max(w2_ratio) <= 1.2`` (over a sweep's jobs); ``@quick`` / ``@full`` restrict a check to
one size. Usage::

    python scripts/reproduce_figures.py [--check] [--full] [--only a,b] [--threads 1]
        [--reuse] [--publish docs/gallery] [--out outputs/gallery]

writes ``<out>/index.md`` (per preset: command, pass/fail of every check with the measured
numbers, the PNGs) and the PNGs. ``--check`` exits non-zero when a check misses or a run
fails; ``--publish DIR`` copies the PNGs of the presets whose checks all hold (never of a
run that missed) into ``DIR``; ``--reuse`` keeps a finished run of the same overrides in
``<out>/runs/<name>`` instead of running it again. GPU presets are listed, not run, at
full size on a machine without CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from itertools import product
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from sbrun.config import CONF_DIR  # noqa: E402
from sbrun.expected import RunResults, evaluate, parse_expected  # noqa: E402, F401 (parse_expected: tests)

sys.path.insert(0, str(REPO / "scripts"))
from gallery_index import children_cpu, passed, publish, read_timing, record_timing, status, write_index  # noqa: E402, F401 (passed, status: tests)

EXPERIMENTS = CONF_DIR / "experiment"
KEYS = ("Figure", "Command", "Expected", "Quick", "Sweep", "GPU", "Post")
# overrides that do not change what a run computes (ignored when --reuse compares runs)
NEUTRAL = ("hydra.", "trainer.threads=", "trainer.progress=", "logger.mode=")


def parse_header(path: Path) -> dict:
    """The ``# Key: value`` lines at the top of a preset; ``checks`` and ``note`` parsed
    from the ``# Expected:`` lines (raises ``sbrun.expected.ExpectedError`` on a bad one)."""
    meta: dict = {"name": path.stem}
    expected = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(":")
        if key == "Expected":
            expected.append(value.strip())
        elif key in KEYS:
            meta[key.lower()] = value.strip()
    meta["expected"] = " ".join(expected)
    meta["checks"], meta["note"] = parse_expected(expected)
    return meta


def preset_args(meta: dict, full: bool, threads: int) -> list[str]:
    """The overrides a preset runs with at this size (without the run directory)."""
    args = [f"+experiment={meta['name']}", "logger.mode=disabled", "trainer.progress=false"]
    if threads:
        args.append(f"trainer.threads={threads}")
    if not full and meta.get("quick"):
        args += meta["quick"].split()
    return args


def _sweep_values(meta: dict) -> list[list[str]]:
    """The overrides of each job of a ``# Sweep:`` (Hydra's order: the last key varies fastest)."""
    axes = []
    for kv in meta.get("sweep", "").split():
        key, _, values = kv.partition("=")
        axes.append([f"{key}={v}" for v in values.split(",")])
    return [list(p) for p in product(*axes)]


def _relevant(overrides) -> set[str]:
    return {o for o in overrides if not o.startswith(NEUTRAL)}


def _job_overrides(job_dir: Path) -> list[str]:
    from omegaconf import OmegaConf

    return list(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))


def _job_dirs(run_dir: Path) -> list[Path]:
    return sorted((p.parent.parent for p in run_dir.glob("*/.hydra/overrides.yaml")),
                  key=lambda p: int(p.name) if p.name.isdigit() else 1 << 30)


def finished_run(meta: dict, run_dir: Path, args: list[str]) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly these overrides (for ``--reuse``)."""
    want = _relevant(args)
    if not meta.get("sweep"):
        return (run_dir / "metrics.json").exists() and (run_dir / ".hydra" / "overrides.yaml").exists() \
            and _relevant(_job_overrides(run_dir)) == want
    jobs = _job_dirs(run_dir)
    expected = [want | set(v) for v in _sweep_values(meta)]
    return len(jobs) == len(expected) and all(
        (j / "metrics.json").exists() and _relevant(_job_overrides(j)) in expected for j in jobs)


def read_results(meta: dict, run_dir: Path) -> RunResults:
    """Final metrics and history of a run, or the jobs of a sweep (with their overrides)."""
    def load(d: Path) -> tuple[dict, list[dict]]:
        final = json.loads((d / "metrics.json").read_text()) if (d / "metrics.json").exists() else {}
        hist = d / "metrics.jsonl"
        rows = [json.loads(x) for x in hist.read_text().splitlines() if x.strip()] if hist.exists() else []
        return final, rows

    post = run_dir / "post_metrics.json"  # numbers a preset's Post script wrote
    post = json.loads(post.read_text()) if post.is_file() else {}
    if not meta.get("sweep"):
        final, rows = load(run_dir)
        return RunResults(final={**final, **post}, history=rows)
    jobs = []
    for j in _job_dirs(run_dir):
        overrides = dict(o.split("=", 1) for o in _job_overrides(j) if "=" in o)
        jobs.append(({k.lstrip("+"): v for k, v in overrides.items()}, load(j)[0]))
    return RunResults(final=post, jobs=jobs)


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


def run_preset(meta: dict, out: Path, full: bool, timeout: int, threads: int = 0,
               reuse: bool = False) -> dict:
    """Run (or reuse) one preset and check it; returns a gallery entry."""
    name, size = meta["name"], "full" if full else "quick"
    entry = {**meta, "size": size, "seconds": 0.0, "ok": True, "error": "", "reused": False,
             "images": [], "metrics": {}, "outcomes": [], "skipped": ""}
    if full and meta.get("gpu") and not has_cuda():
        entry["skipped"] = f"GPU preset (no CUDA here); last GPU result: {meta['gpu']}"
        return entry
    run_dir = out / "runs" / name
    args = preset_args(meta, full, threads)
    if reuse and finished_run(meta, run_dir, args):
        entry["reused"], entry["timing"] = True, read_timing(run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        if meta.get("sweep"):
            cmd = ["-m", *args, *meta["sweep"].split(), f"hydra.sweep.dir={run_dir}"]
        else:
            cmd = [*args, f"hydra.run.dir={run_dir}"]
        t0, cpu0 = time.perf_counter(), children_cpu()
        env = {**os.environ, "WANDB_MODE": "disabled"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        try:
            proc = subprocess.run([sys.executable, "-m", "sbrun", *cmd], capture_output=True,
                                  text=True, timeout=timeout, env=env, cwd=REPO)
            if proc.returncode:
                entry["ok"] = False
                tail = proc.stderr.strip().splitlines()
                entry["error"] = tail[-1] if tail else f"exit code {proc.returncode}"
            if entry["ok"] and meta.get("post"):
                post = meta["post"].replace("{run}", str(run_dir)).split()
                if post and post[0] == "python":
                    post[0] = sys.executable
                proc = subprocess.run(post, capture_output=True, text=True, timeout=timeout,
                                      env=env, cwd=REPO)
                if proc.returncode:
                    tail = proc.stderr.strip().splitlines()
                    entry["ok"], entry["error"] = False, "post: " + (tail[-1] if tail else "failed")
        except subprocess.TimeoutExpired:
            entry["ok"], entry["error"] = False, f"timed out after {timeout} s"
        entry["seconds"] = time.perf_counter() - t0
        entry["timing"] = record_timing(run_dir, entry["seconds"], children_cpu() - cpu0, size, threads)
    results = read_results(meta, run_dir)
    entry["metrics"] = results.final
    entry["jobs"] = results.jobs
    entry["outcomes"] = [evaluate(c, results, size) for c in meta["checks"]]
    images = [*sorted(run_dir.glob("panel_*.png")), *sorted(run_dir.glob("*.png"))] if meta.get("sweep") \
        else sorted(p for p in (run_dir / "figures").glob("*.png") if not p.name.startswith("eval_"))
    images = list(dict.fromkeys(images))
    for img in images:
        dst = out / f"{name}__{img.name}"
        shutil.copy(img, dst)
        entry["images"].append(dst.name)
    return entry


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/gallery")
    p.add_argument("--full", action="store_true", help="full-size runs instead of Quick")
    p.add_argument("--check", action="store_true",
                   help="exit non-zero when an expected number misses (or a run fails)")
    p.add_argument("--only", default="", help="comma-separated preset names")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per preset")
    p.add_argument("--threads", type=int, default=0,
                   help="trainer.threads / OMP_NUM_THREADS (0: torch's default)")
    p.add_argument("--reuse", action="store_true", help="keep finished runs of the same overrides")
    p.add_argument("--publish", default="", help="copy the PNGs of passing presets here (e.g. docs/gallery)")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    presets = sorted(EXPERIMENTS.glob("*.yaml"))
    if a.only:
        keep = set(a.only.split(","))
        unknown = keep - {q.stem for q in presets}
        if unknown:
            p.error(f"unknown preset(s): {', '.join(sorted(unknown))}")
        presets = [q for q in presets if q.stem in keep]
    entries = []
    for i, preset in enumerate(presets):
        meta = parse_header(preset)
        print(f"[{i + 1}/{len(presets)}] {meta['name']} ...", flush=True)
        e = run_preset(meta, out, a.full, a.timeout, a.threads, a.reuse)
        entries.append(e)
        print(f"    {status(e)}" + (f" ({e['seconds']:.0f} s)" if e["seconds"] else "")
              + (f": {e['error'] or e['skipped']}" if e["error"] or e["skipped"] else ""), flush=True)
        for o in e["outcomes"]:
            if o.ok is not None:
                print(f"      {o.describe()}", flush=True)
    print(f"gallery: {write_index(entries, out, a.full, a.check)}")
    if a.publish:
        n = len(publish(entries, out, Path(a.publish), a.full))
        print(f"published {n} images and checks.md to {a.publish}")
    if not all(e["ok"] for e in entries):
        return 1
    if a.check and not all(passed(e) or e["skipped"] for e in entries):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
