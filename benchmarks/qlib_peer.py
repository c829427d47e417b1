"""Qlib's own LightGBM + Alpha158 workflow on the shared S&P 500 set: the peer of ``bench_alpha.py``.

Runs inside the Qlib venv (``benchmarks/.qlib-venv``; ``bench_alpha.py`` creates it on demand and
calls this script as a subprocess), never in the project's venv: pyqlib pins its own versions.
Imports nothing from the project. Input: one CSV per symbol (``date, symbol, open, high, low,
close, volume, vwap, factor``, adjusted the way Qlib's data is: prices x factor, volume / factor),
written by ``bench_alpha.py``. Steps, each timed:

1. convert: Qlib's ``scripts/dump_bin.py dump_all`` (from a microsoft/qlib checkout, not
   committed here) into Qlib's binary format;
2. dataset build: ``Alpha158`` handler (its 158 expressions and its label, default processors)
   + ``DatasetH`` with the train / valid / test segments;
3. training: ``LGBModel`` with the parameters of Qlib's ``workflow_config_lightgbm_Alpha158.yaml``
   (``num_threads`` set to the cores here), early stopping on the valid segment;
4. prediction on the test segment.

Writes ``<work>/qlib_h<h>.parquet`` (date, symbol, score, label: Qlib's raw label) and prints one
JSON line of timings and peak RSS (this process and its worker processes).

    benchmarks/.qlib-venv/bin/python benchmarks/qlib_peer.py --csv DIR --work DIR --qlib-repo DIR --horizon 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

SEGMENTS = {"train": ("2008-01-01", "2014-12-31"), "valid": ("2015-01-01", "2016-12-31"),
            "test": ("2017-01-01", "2020-12-31")}
FEATURES_SPAN = ("2007-01-01", "2020-12-31")
# Qlib's workflow_config_lightgbm_Alpha158.yaml, num_threads aside.
LGB_PARAMS = dict(loss="mse", colsample_bytree=0.8879, learning_rate=0.2, subsample=0.8789, lambda_l1=205.6999,
                  lambda_l2=580.9768, max_depth=8, num_leaves=210)


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def cpu_s() -> float:
    """User + system CPU of this process and its finished worker processes (joblib's)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def label_expression(h: int) -> str:
    # Alpha158's own label for h = 1 (Ref($close, -2) / Ref($close, -1) - 1): bought at the next
    # close, held h sessions.
    return f"Ref($close, -{h + 1}) / Ref($close, -1) - 1"


def dump_bin_script(repo: Path, work: Path) -> Path:
    """``scripts/dump_bin.py`` of a checkout, or read out of a bare git directory (the ``fetch`` mirror)."""
    if (repo / "scripts" / "dump_bin.py").is_file():
        return repo / "scripts" / "dump_bin.py"
    text = subprocess.run(["git", "--git-dir", str(repo), "show", "HEAD:scripts/dump_bin.py"], check=True,
                          capture_output=True, text=True).stdout
    script = work / "dump_bin.py"
    script.write_text(text)
    return script


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--qlib-repo", required=True, help="a microsoft/qlib checkout (for scripts/dump_bin.py)")
    parser.add_argument("--horizon", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-convert", action="store_true", help="reuse <work>/qlib_data from an earlier call")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    args.csv, args.qlib_repo = str(Path(args.csv).resolve()), str(Path(args.qlib_repo).resolve())
    # Qlib's MLflow lock file lands at the tracking URI's path made relative (expm.py strips its
    # leading "/"), i.e. under the current directory: keep it inside the work folder.
    os.chdir(work)
    qlib_dir = work / "qlib_data"
    figures: dict = {"horizon": args.horizon}

    if not args.skip_convert:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(dump_bin_script(Path(args.qlib_repo), work)), "dump_all",
                        "--data_path", args.csv, "--qlib_dir", str(qlib_dir), "--freq", "day",
                        "--date_field_name", "date", "--symbol_field_name", "symbol",
                        "--include_fields", "open,high,low,close,volume,vwap,factor",
                        "--max_workers", str(args.threads)], check=True, capture_output=True, cwd=work)
        figures["convert_s"] = time.perf_counter() - t0
        print(f"convert {figures['convert_s']:.1f} s", file=sys.stderr, flush=True)

    import qlib
    from qlib.constant import REG_US
    from qlib.contrib.data.handler import Alpha158
    from qlib.contrib.model.gbdt import LGBModel
    from qlib.data.dataset import DatasetH
    from qlib.data.dataset.handler import DataHandlerLP

    # Qlib records runs through MLflow: a file store under the work folder (not ./mlruns).
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    qlib.init(provider_uri=str(qlib_dir), region=REG_US, kernels=args.threads,
              exp_manager={"class": "MLflowExpManager", "module_path": "qlib.workflow.expm",
                           "kwargs": {"uri": (work / "mlruns").as_uri(), "default_exp_name": "Experiment"}})
    t0, c0 = time.perf_counter(), cpu_s()
    handler_kwargs = dict(instruments="all", start_time=FEATURES_SPAN[0], end_time=FEATURES_SPAN[1],
                          fit_start_time=SEGMENTS["train"][0], fit_end_time=SEGMENTS["train"][1])
    if args.horizon != 1:
        handler_kwargs["label"] = ([label_expression(args.horizon)], ["LABEL0"])
    handler = Alpha158(**handler_kwargs)
    dataset = DatasetH(handler=handler, segments=SEGMENTS)
    figures["dataset_build_s"], figures["build_cpu_s"] = time.perf_counter() - t0, cpu_s() - c0
    figures["features"] = int(handler.fetch(col_set="feature").shape[1])
    figures["rss_after_build_mb"] = peak_rss_mb()
    print(f"dataset build {figures['dataset_build_s']:.1f} s", file=sys.stderr, flush=True)

    t0, c0 = time.perf_counter(), cpu_s()
    model = LGBModel(**LGB_PARAMS, num_threads=args.threads)
    model.fit(dataset)
    figures["train_s"], figures["train_cpu_s"] = time.perf_counter() - t0, cpu_s() - c0
    figures["trees"] = int(model.model.num_trees())
    print(f"train {figures['train_s']:.1f} s", file=sys.stderr, flush=True)

    t0, c0 = time.perf_counter(), cpu_s()
    score = model.predict(dataset, segment="test")
    figures["predict_s"], figures["predict_cpu_s"] = time.perf_counter() - t0, cpu_s() - c0

    label = dataset.prepare("test", col_set="label", data_key=DataHandlerLP.DK_R)
    frame = score.rename("score").to_frame().join(label.iloc[:, 0].rename("label"))
    frame = frame.reset_index().rename(columns={"datetime": "date", "instrument": "symbol"})
    out = work / f"qlib_h{args.horizon}.parquet"
    frame.to_parquet(out, index=False)
    figures["predictions"] = str(out)
    figures["rows_test"] = int(len(frame))
    figures["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
