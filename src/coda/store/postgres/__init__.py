"""The PostgreSQL store: what several Coda instances share (see ``coda.store.backends``)."""
