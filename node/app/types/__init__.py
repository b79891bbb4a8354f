"""One module per transaction type (or family of types); each calls `registry.register`."""
