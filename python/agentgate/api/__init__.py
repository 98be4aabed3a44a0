"""HTTP APIs served with Starlette: for now the gateway's admin listener."""
