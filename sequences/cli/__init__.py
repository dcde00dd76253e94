"""The sequence commands: fwdlearn seq train, seq sample, bench seq, influence seq."""
