"""The node runtime: event pump, proposing, block check and commit, admission, mempool, metrics."""
