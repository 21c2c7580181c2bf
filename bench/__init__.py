"""redfix's benchmark suite: each figure beside a baseline measured in the same run."""
