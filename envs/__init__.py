"""Vantage environments: importing this package registers them with Gymnasium.

>>> import gymnasium as gym, envs
>>> env = gym.make("vantage/ActiveTracking-v0", reward="td", action_mode="discrete")
"""

from envs.registration import ENVIRONMENTS, register_all

register_all()

__all__ = ["ENVIRONMENTS", "register_all"]
