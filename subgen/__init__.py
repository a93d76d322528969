"""subgen: generate, prove and apply graph substitutions.

Stages: `enumeration` (small graphs, fingerprinted), `pairing` (pairs, digests, normal forms,
pruning), `rules` (the rule DB, file formats, the one loader, comparison), `pipelines`
(generate, optimize, train, rollouts) and `cli`.  Importing it registers the Gym id, as
`import envcore` does.
"""
import envcore  # noqa: F401  (registers subgen/GraphRewrite-v0 when gymnasium is installed)
