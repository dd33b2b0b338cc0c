"""flight_server/auth."""
