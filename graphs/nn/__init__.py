"""GNN blocks (PyG convs), cached aggregation, and the models: ForwardGNN and ForwardLinkPredictor."""
