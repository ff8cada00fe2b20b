"""Coda behind a server: REST + WebSocket API, metrics, and the browser client."""
