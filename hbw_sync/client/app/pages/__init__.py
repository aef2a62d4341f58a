"""The local app's pages, one module per group; each has ``register(app)`` adding its routes."""
