"""Endpoint model latency (batch 1) and throughput (batch 16) on CPU for every offered architecture (issue 7, item 3).

    .venv/bin/python -m bench.model_latency [--models resnet18,...] [--variants eager,channels_last,torchscript,onnxruntime]
                                            [--threads 2] [--repeats 7] [--image-size 224] [--quick]

The model is training_code/models.build_model(...) in eval mode (random weights: speed does not depend on
their values), fed the wire format: uint8 [N, 224, 224, 3]. Variants:
- eager: the module as inference.py builds it.
- channels_last: weights converted with .to(memory_format=torch.channels_last); the input permute in
  CountingModel already gives a channels_last view, so this removes layout conversions inside conv layers.
- torchscript: torch.jit.trace + torch.jit.freeze (folds BatchNorm into convs, inlines constants).
- compile: torch.compile(model) in its default mode; opt-in only (--variants ...,compile): its first call
  compiles for minutes on two cores.
- onnxruntime: torch.onnx.export (TorchScript exporter, opset 18, dynamic batch) run by onnxruntime's CPU
  provider with the same thread count; skipped with a note when onnxruntime is not installed.
Every variant's logits are compared with eager's on the same batch (max absolute difference), so a faster
path is only a candidate when it gives the same outputs. Timing: the variants of one model are called in
turns (bench.common.interleaved_median_ms), median of --repeats calls after warm-up; img/s = batch / median
seconds. The *_cpu_* columns use the process's CPU time instead of the wall clock: with --threads 1 they
are close to what an idle core gives, whatever else the shared machine is doing.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable

import numpy as np

from bench import common

VARIANTS = ("eager", "channels_last", "torchscript", "compile", "onnxruntime")
DEFAULT_VARIANTS = ("eager", "channels_last", "torchscript", "onnxruntime")
BATCHES = (1, 16)
COLUMNS = [
    "model",
    "variant",
    "batch1_ms",
    "batch1_cpu_ms",
    "batch16_img_s",
    "batch16_cpu_img_s",
    "batch1_speedup",
    "max_abs_diff_vs_eager",
]


def _runner(variant: str, model, example, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Build one variant; the returned callable maps a uint8 NHWC batch to logits (numpy)."""
    import torch

    if variant == "eager":
        return lambda batch: model(torch.from_numpy(batch)).numpy()
    if variant == "channels_last":
        cl = model.to(memory_format=torch.channels_last)
        return lambda batch: cl(torch.from_numpy(batch)).numpy()
    if variant == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trace warns about the (constant) image-size check in forward
            scripted = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
        return lambda batch: scripted(torch.from_numpy(batch)).numpy()
    if variant == "compile":
        compiled = torch.compile(model)
        return lambda batch: compiled(torch.from_numpy(batch)).numpy()
    if variant == "onnxruntime":
        import serving_runtime  # the serving path's own exporter and session settings: what is timed is what serves

        session = serving_runtime.OnnxRuntimeModel(model, threads).session
        return lambda batch: session.run(None, {"images": batch})[0]
    raise common.BenchError(f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}")


def calibrated_model(architecture: str, image_size: int, seed: int = 0):
    """A model whose BatchNorm statistics match its activations, like a trained one.

    A freshly initialised model in eval mode uses running stats (mean 0, var 1) that do not match its
    activations: they grow layer by layer into denormal or inf values, which run many times slower on CPU
    and would make every eager figure meaningless. Two train-mode passes with a cumulative average fix that."""
    import models
    import torch

    torch.manual_seed(seed)
    model = models.build_model(architecture, 5, image_size=image_size)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative moving average over the calibration passes
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randint(0, 256, (8, 224, 224, 3), dtype=torch.uint8, generator=generator))
    return model.eval()


def measure_model(architecture: str, variants: list[str], threads: int, repeats: int, image_size: int) -> list[dict]:
    """Build every variant from the same weights, check its outputs against eager, then time them in turns."""
    import copy

    import torch

    rng = np.random.default_rng(0)
    batches = {n: rng.integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8) for n in BATCHES}
    base = calibrated_model(architecture, image_size)
    rows: dict[str, dict] = {}
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    reference: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for variant in variants:
            try:
                # A deep copy each: same weights for every variant, so outputs are comparable.
                run = _runner(variant, copy.deepcopy(base), torch.from_numpy(batches[1]), threads)
            except ImportError as error:
                print(f"note: {variant} skipped ({error}); install it with the pin in requirements-dev.txt")
                continue
            row: dict = {
                "model": architecture,
                "variant": variant,
                "image_size": image_size,
                "threads": threads,
                "max_abs_diff_vs_eager": 0.0,
            }
            for n, batch in batches.items():
                out = run(batch)
                if not np.isfinite(out).all():
                    raise common.BenchError(f"{architecture} {variant} produced non-finite logits: the figures would be meaningless")
                reference.setdefault(n, out)  # eager comes first
                row["max_abs_diff_vs_eager"] = max(row["max_abs_diff_vs_eager"], float(np.abs(out - reference[n]).max()))
            runners[variant], rows[variant] = run, row
        for n, batch in batches.items():
            # Batch 16 costs 16x more per call: fewer repeats keep the run cheap, still a median of 5+.
            calls = {v: (lambda run=run, batch=batch: run(batch)) for v, run in runners.items()}
            medians = common.interleaved_median_ms(calls, repeats=repeats if n == 1 else max(5, repeats // 2), warmup=1)
            for variant, ms in medians.items():
                if n == 1:
                    rows[variant]["batch1_ms"], rows[variant]["batch1_cpu_ms"] = ms["wall_ms"], ms["cpu_ms"]
                else:
                    rows[variant][f"batch{n}_img_s"] = n / (ms["wall_ms"] / 1000.0)
                    rows[variant][f"batch{n}_cpu_img_s"] = n / (ms["cpu_ms"] / 1000.0)
    for row in rows.values():
        row["batch1_speedup"] = rows["eager"]["batch1_ms"] / row["batch1_ms"]
    return list(rows.values())


def get_args_parser() -> argparse.ArgumentParser:
    import_models = ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_small", "mobilenet_v3_large")
    parser = argparse.ArgumentParser(
        description="CPU latency/throughput of each architecture under eager, channels_last, TorchScript, ONNX Runtime."
    )
    parser.add_argument("--models", default=",".join(import_models), help="comma-separated architectures (models.ARCHITECTURES)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (an ml.m5.large endpoint has 2 vCPUs)")
    parser.add_argument("--repeats", type=int, default=7, help="timed batch-1 calls (batch 16 uses half, at least 5)")
    parser.add_argument("--image-size", type=int, default=224, help="the model's internal resolution (train.py --image-size)")
    parser.add_argument("--quick", action="store_true", help="mobilenet_v3_small and resnet18 only, 5 repeats")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        common.quick_results()
    import models
    import torch

    names = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [m for m in names if m not in models.ARCHITECTURES] + [v for v in variants if v not in VARIANTS]
    if bad or not names or not variants or args.threads < 1 or args.repeats < 1:
        print(
            f"error: unknown or empty --models/--variants {bad}, or --threads/--repeats below 1: "
            f"models are {', '.join(models.ARCHITECTURES)}; variants are {', '.join(VARIANTS)}",
            file=sys.stderr,
        )
        return 2
    if "eager" not in variants:
        variants.insert(0, "eager")  # the reference for the outputs check and the speed-up column
    if args.quick:
        names, repeats = [n for n in names if n in ("mobilenet_v3_small", "resnet18")] or names[:1], 5
    else:
        repeats = args.repeats
    torch.set_num_threads(args.threads)
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if args.threads > 1 and load > cpus:
        # Measured here: at load 5-9 on 2 cores, 2-thread eager torch ran 10-100x slower than 1 thread.
        print(
            f"note: load average {load:.1f} on {cpus} CPUs: multi-threaded torch figures will be dominated by contention; try --threads 1"
        )
    rows = []
    for name in names:
        rows += measure_model(name, variants, args.threads, repeats, args.image_size)
        common.print_table(rows[-len(variants) :], COLUMNS)
    path = common.write_result("model_latency", common.command_line("bench.model_latency", argv), rows, {"repeats": repeats})
    print(f"wrote {common.display(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
