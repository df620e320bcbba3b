"""One evaluation run: configuration, tasks, item metrics, cross-entropy, the runner loop, manifest, export."""
