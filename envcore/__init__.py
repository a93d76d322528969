"""envcore: the graph IR, the operator catalogue, rewriting, cost models, ONNX and the Gym env.

The lowest layer: it imports nothing from verifier, agents or subgen.  Importing it registers
`subgen/GraphRewrite-v0` with Gymnasium when gymnasium is installed (Gymnasium's convention), and
imports without error when it is not.
"""
from envcore.gym.registration import register as _register

_register()
