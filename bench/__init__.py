"""bnnc's benchmark suite: Bayesian overhead measured against same-run baselines.

``python -m bench`` (or ``scripts/bench.sh``) runs the matrix of models
(:mod:`bench.workloads`) and backends, times every contender round by round
(:mod:`bench.timing`), measures peak memory in child processes
(:mod:`bench.memory`), counts parameters (:mod:`bench.params`), times the
compiler (:mod:`bench.compile_time`), and prints a table and the targets with
pass/fail (:mod:`bench.report`). See ``bench/RESULTS.md``.
"""
