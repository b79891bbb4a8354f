"""The node's side of the peer network: gossip of transactions and votes, and block sync."""
