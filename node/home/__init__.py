"""A node home on disk: its configuration, keys, TLS material, systemd unit and logging."""
