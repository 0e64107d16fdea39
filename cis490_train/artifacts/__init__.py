"""Content-addressed model bundles: packing, the store's files, its HTTP service and its client.

`bundle`, `records` and `client` run on every worker host (Windows included);
`store` and `server` run only where the store lives (they need `fcntl`).
"""
