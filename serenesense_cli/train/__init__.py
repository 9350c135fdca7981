"""Training: configs and recipes, the loop, schedules, checkpoints, distributed."""
