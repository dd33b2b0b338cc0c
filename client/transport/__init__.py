"""client/transport."""
