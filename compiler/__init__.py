"""The bnnc compiler: IR, operator registry, checker, backends and CLI.

Nothing here imports torch or jax; only the generated code and
:mod:`bnnc.runtime` do.
"""
