"""CT-guided unsupervised MRI SR: the method, its unpaired data, its task."""
