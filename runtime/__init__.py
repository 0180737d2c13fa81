"""bnnc runtimes: Bayesian layers, distributions and losses used by generated code.

``bnnc.runtime.torch`` holds the PyTorch runtime and ``bnnc.runtime.jax`` the
JAX/Flax NNX one, with the same class names, attribute names and maths;
``bnnc.runtime.transfer`` moves weights and samples between the two. Importing
this package imports neither torch nor jax; each is imported only when asked for.
"""
