"""What the edge agent costs, measured: ``python -m benchmarks.run`` (or ``edge-agent bench``).

See ``docs/benchmarks.md`` for what each figure means and how it is measured.
"""
