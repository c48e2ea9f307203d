"""Summaries, ratios, machine info, the markdown table and the stacked-bar plot of bench/latency.py.

Every number in the markdown and the plot comes from the summary dict that is also written to the JSON,
so the three outputs cannot disagree.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

# The stacked stages, in pipeline order; their sum plus "other" is the per-video latency.
STAGES = (
    "video_decode", "frame_prep", "vision_encoder", "prefill", "decode",
    "sam2_image_encoder", "sam2_seg_decode", "propagation", "other",
)
STAGE_LABELS = {
    "video_decode": "video decode",
    "frame_prep": "frame prep",
    "vision_encoder": "vision encoder",
    "prefill": "prefill",
    "decode": "decode",
    "sam2_image_encoder": "SAM2 image encoding",
    "sam2_seg_decode": "[SEG] decode",
    "propagation": "propagation (memory)",
    "other": "other",
}


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-video runs of one (protocol, backend): means per video, latency percentiles, totals."""
    latencies = [r["latency_s"] for r in runs]
    decode_tokens = sum(r["decode_tokens"] for r in runs)
    decode_s = sum(r["stages"]["decode"] for r in runs)
    prefill_tokens = sum(r["prefill_tokens"] for r in runs)
    prefill_s = sum(r["stages"]["prefill"] for r in runs)
    frames = sum(r["num_frames"] for r in runs)
    max_turns = max((r["turns"] for r in runs), default=0)
    per_turn = []
    for t in range(max_turns):
        rows = [r["per_turn"][t] for r in runs if len(r["per_turn"]) > t]
        per_turn.append({
            "turn": t,
            "episodes": len(rows),
            "prefill_tokens": _mean([row["prefill_tokens"] for row in rows]),
            "decode_tokens": _mean([row["decode_tokens"] for row in rows]),
            "prefill_s": _mean([row["prefill"] for row in rows]),
            "decode_s": _mean([row["decode"] for row in rows]),
            "vision_encoder_s": _mean([row["vision_encoder"] for row in rows]),
        })
    return {
        "videos": len(runs),
        "stages_s": {stage: _mean([r["stages"][stage] for r in runs]) for stage in STAGES},
        "latency_s": {"mean": _mean(latencies), "p50": float(np.percentile(latencies, 50)),
                      "p90": float(np.percentile(latencies, 90))},
        "turns_per_episode": _mean([r["turns"] for r in runs]),
        "prefill_tokens": _mean([r["prefill_tokens"] for r in runs]),
        "decode_tokens": _mean([r["decode_tokens"] for r in runs]),
        "per_turn": per_turn,
        "decode_tokens_per_s": decode_tokens / decode_s if decode_s > 0 else float("nan"),
        "prefill_tokens_per_s": prefill_tokens / prefill_s if prefill_s > 0 else float("nan"),
        "frames_per_s": frames / sum(latencies) if sum(latencies) > 0 else float("nan"),
        "frames": {
            "num_frames": _mean([r["num_frames"] for r in runs]),
            "episode_requested": _mean([r["frames"]["episode_requested"] for r in runs]),
            "episode_decoded": _mean([r["frames"]["episode_decoded"] for r in runs]),
            "episode_gop_floor": _mean([r["frames"]["episode_gop_floor"] for r in runs]),
            "total_decoded": _mean([r["frames"]["total_decoded"] for r in runs]),
        },
        "peak_memory_mib": max(r["peak_memory_mib"] for r in runs),
        "peak_memory_increase_mib": max(r["peak_memory_increase_mib"] for r in runs),
    }


def ratios(reference: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """How ``ours`` compares with the reference protocol measured in the same run.

    ``*_speedup`` are reference / ours (> 1: ours is faster); ``prefill_token_ratio`` and
    ``episode_decoded_ratio`` are ours / reference (< 1: ours does less work).
    """
    def div(a: float, b: float) -> float:
        return float(a / b) if b else float("nan")

    return {
        "end_to_end_speedup": div(reference["latency_s"]["mean"], ours["latency_s"]["mean"]),
        "p50_speedup": div(reference["latency_s"]["p50"], ours["latency_s"]["p50"]),
        "p90_speedup": div(reference["latency_s"]["p90"], ours["latency_s"]["p90"]),
        "stage_speedup": {s: div(reference["stages_s"][s], ours["stages_s"][s]) for s in STAGES},
        "prefill_token_ratio": div(ours["prefill_tokens"], reference["prefill_tokens"]),
        "episode_decoded_ratio": div(ours["frames"]["episode_decoded"], reference["frames"]["episode_decoded"]),
        "episode_gop_floor_ratio": div(ours["frames"]["episode_gop_floor"], reference["frames"]["episode_decoded"]),
        "total_decoded_ratio": div(ours["frames"]["total_decoded"], reference["frames"]["total_decoded"]),
        "peak_memory_ratio": div(ours["peak_memory_mib"], reference["peak_memory_mib"]),
    }


# ---------------------------------------------------------------------------------------------- machine
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def _git_commit(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def machine_info(device: torch.device, repo: Path) -> dict[str, Any]:
    """CPU/GPU names, core counts, library versions, the compiled extension and the git commit."""
    from videoseg_o3 import _ext

    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda,
        "extension": {"cpu": bool(_ext.HAS_C), "cuda": bool(_ext.HAS_CUDA_EXT)},
        "versions": {name: _version(name) for name in (
            "torch", "transformers", "sam2", "av", "numpy", "torchcodec", "onnxruntime", "tensorrt", "PyNvVideoCodec",
        )},
        "git": _git_commit(repo),
    }
    return info


# ---------------------------------------------------------------------------------------------- outputs
def _ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{1e3 * seconds:,.1f}"


def _x(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}x"


def markdown_table(report: dict[str, Any]) -> str:
    """Per-stage milliseconds per video, reference vs each measured backend, with ratios; then counts."""
    reference = report["summary"]["reference"]
    measured = [(name, entry) for name, entry in report["summary"]["ours"].items() if "stages_s" in entry]
    lines = []
    header = "| stage (ms per video) | reference |" + "".join(f" ours: {n} | speed-up |" for n, _ in measured)
    lines += [header, "|---|---:|" + "---:|---:|" * len(measured)]
    for stage in STAGES:
        row = f"| {STAGE_LABELS[stage]} | {_ms(reference['stages_s'][stage])} |"
        for name, entry in measured:
            row += f" {_ms(entry['stages_s'][stage])} | {_x(report['ratios'][name]['stage_speedup'][stage])} |"
        lines.append(row)
    for key, label in (("mean", "**latency, mean**"), ("p50", "latency p50"), ("p90", "latency p90")):
        row = f"| {label} | {_ms(reference['latency_s'][key])} |"
        for name, entry in measured:
            ratio_key = "end_to_end_speedup" if key == "mean" else f"{key}_speedup"
            row += f" {_ms(entry['latency_s'][key])} | {_x(report['ratios'][name][ratio_key])} |"
        lines.append(row)
    lines.append("")
    lines.append("| per video | reference |" + "".join(f" ours: {n} | ours / reference |" for n, _ in measured))
    lines.append("|---|---:|" + "---:|---:|" * len(measured))
    counts = (
        ("turns per episode", lambda s: s["turns_per_episode"], None, "{:.2f}"),
        ("prefill tokens", lambda s: s["prefill_tokens"], "prefill_token_ratio", "{:,.0f}"),
        ("generated tokens", lambda s: s["decode_tokens"], None, "{:,.0f}"),
        ("decode tokens/s", lambda s: s["decode_tokens_per_s"], None, "{:,.1f}"),
        ("prefill tokens/s", lambda s: s["prefill_tokens_per_s"], None, "{:,.0f}"),
        ("frames in the video", lambda s: s["frames"]["num_frames"], None, "{:.1f}"),
        ("frames requested by the policy", lambda s: s["frames"]["episode_requested"], None, "{:.1f}"),
        ("frames decoded for the policy", lambda s: s["frames"]["episode_decoded"], "episode_decoded_ratio", "{:.1f}"),
        ("GOP floor for those frames", lambda s: s["frames"]["episode_gop_floor"], "episode_gop_floor_ratio", "{:.1f}"),
        ("frames decoded in all", lambda s: s["frames"]["total_decoded"], "total_decoded_ratio", "{:.1f}"),
        ("frames/s (end to end)", lambda s: s["frames_per_s"], None, "{:.2f}"),
        ("peak memory (MiB)", lambda s: s["peak_memory_mib"], "peak_memory_ratio", "{:,.0f}"),
    )
    for label, get, ratio_key, fmt in counts:
        row = f"| {label} | {fmt.format(get(reference))} |"
        for name, entry in measured:
            ratio = _x(report["ratios"][name][ratio_key]) if ratio_key else ""
            row += f" {fmt.format(get(entry))} | {ratio} |"
        lines.append(row)
    if measured:
        name, entry = measured[0]
        lines.append("")
        lines.append(f"| turn | prefill tokens: reference | ours: {name} | prefill ms: reference | ours | "
                     "generated tokens | decode ms: reference | ours |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for ref_turn, our_turn in zip(reference["per_turn"], entry["per_turn"]):
            lines.append(
                f"| {ref_turn['turn']} | {ref_turn['prefill_tokens']:,.0f} | {our_turn['prefill_tokens']:,.0f} | "
                f"{_ms(ref_turn['prefill_s'])} | {_ms(our_turn['prefill_s'])} | {our_turn['decode_tokens']:,.0f} | "
                f"{_ms(ref_turn['decode_s'])} | {_ms(our_turn['decode_s'])} |")
    export = report.get("export")
    if export:
        lines.append("")
        if export["status"] == "exported":
            check = {True: "verified against PyTorch", False: "verification FAILED", None: "not verified"}[export["verified"]]
            lines.append(f"One-off export (not in the per-video numbers): {export['seconds']:.1f} s for "
                         f"{len(export['components'])} graphs ({check}; TensorRT engines: {export['tensorrt']}) "
                         f"to {export['export_dir']}.")
        elif export["status"] == "existing":
            lines.append(f"Exported graphs reused from {export['export_dir']} (no export cost in this run).")
        else:
            lines.append(f"Export failed: {export['reason']}.")
    unavailable = [f"{n}: {e['status']}" for n, e in report["summary"]["ours"].items() if "stages_s" not in e]
    if unavailable:
        lines.append("")
        lines.append("Not measured: " + "; ".join(unavailable) + ".")
    return "\n".join(lines) + "\n"


def plot_stages(report: dict[str, Any], path: Path) -> None:
    """Stacked per-stage seconds per video: the reference protocol and each measured backend of ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [("reference", report["summary"]["reference"])]
    bars += [(f"ours ({n})", e) for n, e in report["summary"]["ours"].items() if "stages_s" in e]
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(bars), 4.8))
    colours = plt.get_cmap("tab10").colors
    bottoms = np.zeros(len(bars))
    for i, stage in enumerate(STAGES):
        heights = np.array([max(entry["stages_s"][stage], 0.0) for _, entry in bars])
        ax.bar([name for name, _ in bars], heights, bottom=bottoms, label=STAGE_LABELS[stage], color=colours[i % 10])
        bottoms += heights
    for x, (_, entry) in enumerate(bars):
        ax.text(x, bottoms[x], f"{entry['latency_s']['mean']:.2f} s", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("seconds per video (mean)")
    meta = report["config"]
    ax.set_title(f"{meta['model_size']} models, {meta['device']}: per-stage time", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
