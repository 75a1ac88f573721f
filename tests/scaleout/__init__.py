"""Several ``posventa serve`` processes sharing one PostgreSQL database."""
