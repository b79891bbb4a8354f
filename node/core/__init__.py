"""Primitives every layer of MedLedger shares: canonical encoding, hashing, Ed25519 identities
and Merkle trees. Nothing here does IO or imports from the rest of the project, so the
consensus engine, storage and transport may all depend on it."""
