"""A runtime harness: several `Node` objects in one process on a virtual clock (clock.py),
joined by an in-memory transport (network.py), built and pumped together (cluster.py).
Nothing here opens a socket, starts a process or sleeps."""
