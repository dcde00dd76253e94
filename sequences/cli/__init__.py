"""The sequence commands: fwdlearn seq train, bench seq, influence seq."""
