"""The ledger application: transaction types and the deterministic state machine that executes
blocks. Adding a transaction type is a matter of one module in `node/app/types/` that declares a
`TxType` and registers it."""
