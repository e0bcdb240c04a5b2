"""dpiat-bench experiment layer: Hydra entry points, Lightning training, sweeps and aggregation."""
