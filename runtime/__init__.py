"""bnnc runtimes: Bayesian layers, distributions and losses used by generated code.

``bnnc.runtime.torch`` holds the PyTorch runtime. Importing this package imports
neither torch nor jax; each backend is imported only when asked for.
"""
