"""The search service (``ray-rag serve``): an HTTP API and a search page over the index."""
