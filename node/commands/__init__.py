"""The command groups of `medledger`, one module per area; `cli.py` adds them to its root group.

Each module parses its commands' options, calls into `node/` (the client library, the daemon,
the home initialiser, and, imported lazily inside a command, the tools of node/devtools) and
prints the result. What the commands share lives in three modules: `options` (the repeated
click options and context settings), `args` (reading ids, dates, types and key files from the
command line) and `output` (one-line errors with exit codes, text or JSON results, the outcome
of a transaction).
"""
