"""Thin command-line entry points: each parses options and calls the library (envs, agents, perception)."""
