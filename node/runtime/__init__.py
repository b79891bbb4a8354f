"""The node runtime: the event pump (runtime.py), proposing (proposer.py), block check and commit
(blocks.py), admission and waiters (admission.py), the mempool, memory sampling, and the clock and
transport protocols it runs on (clock.py, transport.py)."""
