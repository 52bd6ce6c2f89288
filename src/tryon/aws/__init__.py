"""Talking to AWS from a workstation: packaging and deploying models, stacks, executions."""
