"""The OpenAI Realtime API over a websocket: ``/v1/realtime``, on the turn pipeline."""
