"""The emergence harness: model protocol, checkpoints, tasks, runner and exports."""
