"""The HTTP API: the aiohttp application, its middleware, signed-request auth and the routes."""
