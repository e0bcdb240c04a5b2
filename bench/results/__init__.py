"""From run folders to the table: :mod:`~bench.results.table` reads runs (:mod:`~bench.results.runs`), groups
them into cells and rows (:mod:`~bench.results.cells`, columns in :mod:`~bench.results.columns`) with their
statistics (:mod:`~bench.results.stats`), and writes csv/md/tex (:mod:`~bench.results.formats`) and plots
(:mod:`~bench.results.plots`). Beside the table: :mod:`~bench.results.selection` (source selection, with
:mod:`~bench.results.selection_stats` and :mod:`~bench.results.selection_plots`), :mod:`~bench.results.recipe`
and :mod:`~bench.results.agreement` with :mod:`~bench.results.slices` (bench/compare.py).
"""
