"""Everything MedLedger keeps on disk: a key-value store interface with LevelDB and in-memory
implementations (`kv`), and the chain's layout on top of it (`chain`: blocks, transaction
index, state, consensus write-ahead log). No other package opens a file for ledger data."""
