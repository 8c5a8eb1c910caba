"""Signal sources: local JSON lines (default), HTTP (control server) and Kafka."""
