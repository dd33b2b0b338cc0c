"""client/codec."""
