"""The graph commands: fwdlearn graph train, bench graph, quickstart, influence graph, bench influence."""
