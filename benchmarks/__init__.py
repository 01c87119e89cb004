"""dblayer's benchmarks: the same work through dblayer and through the raw driver, side by side.

Run ``python -m benchmarks --help``; see benchmarks/README.md.
"""
