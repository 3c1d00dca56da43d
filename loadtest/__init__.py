"""Load generation and benchmarks against a running server; everything targets 127.0.0.1."""
