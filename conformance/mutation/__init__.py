"""Mutation testing of the conformance suite: ``python -m conformance.mutation`` (``make
mutation``) plants seeded mutants (operators.py) in the lines of ``mlxnote/nn`` and
``mlxnote/kernels`` that the suite executes, judges each by the cases that execute its line
(worker.py: one process importing TensorFlow and MLX once, references cached), and reports
the share of non-equivalent mutants the suite kills (driver.py). Equivalent mutants are
listed, each with its reason, in ``equivalent.toml``."""
