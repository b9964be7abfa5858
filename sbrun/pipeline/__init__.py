"""The shared engine: build, train, sample, evaluate, log, save."""
