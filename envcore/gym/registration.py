"""The Gym id and its registration, apart from the env so that registering stays cheap: it
imports gymnasium only, and the env module loads when `gym.make` first asks for it."""
from __future__ import annotations

ENV_ID = "subgen/GraphRewrite-v0"
ENTRY_POINT = "envcore.gym.env:GraphRewriteEnv"


def register() -> bool:
    """Register ENV_ID with Gymnasium if gymnasium is installed (idempotent); False if it is not."""
    try:
        import gymnasium as gym
    except ImportError:
        return False
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=ENTRY_POINT)
    return True
