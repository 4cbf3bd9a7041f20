"""qdask benchmark suite; results are recorded in benchmarks/results/."""
