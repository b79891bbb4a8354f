"""Domain types below the ledger rules: transactions, blocks, genesis (like CometBFT's types/)."""
