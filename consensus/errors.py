"""Errors named by whose fault they are.

Bad input from a peer never raises: the engine returns a discard verdict. What raises is a
broken contract on this node's side: the runtime calling the engine in a way the contract
forbids, a write-ahead log that does not decode, or a bug in the engine itself.
"""

from __future__ import annotations


class LocalProtocolError(RuntimeError):
    """This node (its runtime or the engine itself) broke the engine's contract."""


class WalCorruptError(LocalProtocolError):
    """The write-ahead log handed to the engine at start-up does not decode: storage's fault."""
