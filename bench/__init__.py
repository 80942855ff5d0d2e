"""CPU (and, where one is lent, GPU) benchmarks behind every speed and accuracy claim; see docs/benchmarks.md."""
