"""Benchmarks: images/s of inference and training steps against the peers, and the roofline fraction."""

from crunet.bench.report import format_table, write_csv, write_json
from crunet.bench.runner import BenchConfig, Case, Row, cases, run_bench
from crunet.bench.timing import Stats, dense_conv_rate

__all__ = ["BenchConfig", "Case", "Row", "Stats", "cases", "dense_conv_rate", "format_table", "run_bench",
           "write_csv", "write_json"]
