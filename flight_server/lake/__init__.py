"""flight_server/lake."""
