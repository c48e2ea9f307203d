"""Benchmark data: formats (ReVOS, MeViS, ReasonVOS, Ref-YouTube-VOS, Ref-DAVIS17), writers, VTS-CoT and RL
records, and the synthetic reasoning-VOS task.

>>> from videoseg_o3.data import load_benchmark
>>> dataset = load_benchmark("data/revos", "revos")          # doctest: +SKIP
>>> record = dataset[0]; masks = record.load_masks()         # doctest: +SKIP  (T, H, W) bool
"""

from videoseg_o3.data.formats import FORMATS, BenchmarkDataset, load_benchmark, read_json
from videoseg_o3.data.records import EXPRESSION_TYPES, ExpressionRecord
from videoseg_o3.data.writers import WRITE_LAYOUTS, DatasetWriter, ExpressionSpec, VideoAnnotation, write_dataset

__all__ = [
    "EXPRESSION_TYPES",
    "FORMATS",
    "WRITE_LAYOUTS",
    "BenchmarkDataset",
    "DatasetWriter",
    "ExpressionRecord",
    "ExpressionSpec",
    "VideoAnnotation",
    "load_benchmark",
    "read_json",
    "write_dataset",
]
