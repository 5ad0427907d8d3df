"""Self-supervised per-volume SR: the method, its training planes, its shipped priors."""
