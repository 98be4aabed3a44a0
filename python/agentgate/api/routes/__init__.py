"""One module per API resource; each exposes `routes(ctx) -> list[Route]`."""
