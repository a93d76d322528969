"""The Gymnasium face of envcore: `env` (GraphRewriteEnv), `observation` (the Dict space and its
torch_geometric view), `wrappers` (hierarchical actions), `registration` (the id)."""
