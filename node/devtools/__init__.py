"""Tools for testing and measuring MedLedger: bench, workload, chaos, cluster, byzantine, fuzz.

Nothing the daemon imports lives here: a node runs without these modules, and a Byzantine
test node is wired in by `node.devtools.byzantine.hook` through the daemon's hook (only with
--unsafe-test-switches). `hypothesis` (fuzz) and `matplotlib` (bench --sweep) come with the
`tools` extra: pip install 'medledger[tools]'.
"""
