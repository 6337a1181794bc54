"""Reinforcement-learning parts: a replay buffer as arrays in the state, actor-critic losses."""
