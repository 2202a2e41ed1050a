"""`make bench`: Memory Admin measured through the real app, against the floor and the naive way.

Run `python -m bench --help` for the flags; README.md, "Benchmarks", shows the latest table.
"""
